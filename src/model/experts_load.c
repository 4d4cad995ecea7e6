/* Loading gpt-oss's experts into the plan's linears, [E * out, in]. A
 * checkpoint holds each either as transformers' parameter, [E, in, out] in a
 * float dtype (turned here), or as MXFP4 `_blocks` / `_scales` whose rows
 * are already the output dimension (dequantized here; base/mxfp4.h). The
 * bias `<name>_bias` is [E, out]. Everything passes through fp32 on the host,
 * so the device holds nothing beyond the plan. */
#include <stdio.h>
#include <stdlib.h>

#include "io/safetensors.h"
#include "model/experts_load.h"
#include "base/mxfp4.h"

/* t (any float dtype, numel elements) as fp32 into out. */
static void to_f32(const struct st_tensor *t, float *out, int64_t numel)
{
    struct tensor src = tensor_1d((void *)t->data, t->dtype, numel), dst = tensor_1d(out, DTYPE_F32, numel);
    struct backend *cpu = backend_cpu();
    cpu->convert(cpu, &dst, &src);
}

static bool is_float(enum dtype d) { return d == DTYPE_F32 || d == DTYPE_BF16 || d == DTYPE_F16; }

/* Whether MXFP4 blocks hold W [E, out, in]; else err says what they hold. */
static bool check_blocks(const struct st_tensor *blocks, const char *name, int64_t E, int64_t out, int64_t in,
                         tune_err *err)
{
    if (blocks->rank == 4 && blocks->shape[0] == E && blocks->shape[1] == out && blocks->shape[2] * MXFP4_BLOCK == in)
        return true;
    err_set(err, "'%s_blocks' is not [%lld, %lld, %lld, 16] for %lld inputs", name, (long long)E, (long long)out,
            (long long)(in / MXFP4_BLOCK), (long long)in);
    return false;
}

void experts_transpose(float *dst, const float *src, int64_t E, int64_t rows, int64_t cols)
{
    for (int64_t e = 0; e < E; e++)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++)
                dst[(e * cols + c) * rows + r] = src[(e * rows + r) * cols + c];
}

/* The weight W [E, out, in] of `name` into host (E * out * in floats). */
static int read_weight(const struct st_model *st, const char *name, int64_t E, int64_t out, int64_t in, float *host,
                       tune_err *err)
{
    const struct st_file *file;
    const struct st_tensor *t = st_model_find(st, name, &file);
    if (t) {
        if (!is_float(t->dtype) || t->rank != 3 || t->shape[0] != E || t->shape[1] != in || t->shape[2] != out)
            return err_set(err, "%s: tensor '%s' is %s of %d dims, expected a float [%lld, %lld, %lld]", file->path,
                           name, dtype_name(t->dtype), t->rank, (long long)E, (long long)in, (long long)out);
        float *tmp = malloc(sizeof(float) * (size_t)(E * in * out));
        if (!tmp)
            return err_set(err, "out of memory reading '%s'", name);
        to_f32(t, tmp, E * in * out);
        experts_transpose(host, tmp, E, in, out);
        free(tmp);
        return 0;
    }
    const struct st_tensor *blocks, *scales;
    if (st_model_find_mxfp4(st, name, &blocks, &scales, err))
        return err_prefix(err, "expert weight '%s' is neither a float tensor nor MXFP4", name);
    if (!check_blocks(blocks, name, E, out, in, err))
        return -1;
    mxfp4_dequantize(blocks->data, scales->data, E * out * (in / MXFP4_BLOCK), host);
    return 0;
}

static int read_bias(const struct st_model *st, const char *name, int64_t E, int64_t out, float *host, tune_err *err)
{
    const struct st_file *file;
    const struct st_tensor *t = st_model_find(st, name, &file);
    if (!t)
        return err_set(err, "missing tensor '%s'", name);
    if (!is_float(t->dtype) || t->rank != 2 || t->shape[0] != E || t->shape[1] != out)
        return err_set(err, "%s: tensor '%s' is not a float [%lld, %lld]", file->path, name, (long long)E,
                       (long long)out);
    to_f32(t, host, E * out);
    return 0;
}

/* The checkpoint's MXFP4 blocks and scales of `name`, as they are, into w
 * (the plan keeps the experts quantized). */
static int copy_mxfp4(struct llama *m, const struct st_model *st, const char *name, struct tensor *w, int64_t E,
                      int64_t out, int64_t in, tune_err *err)
{
    const struct st_tensor *blocks, *scales;
    if (st_model_find_mxfp4(st, name, &blocks, &scales, err))
        return err_prefix(err, "'%s' is not MXFP4, which --base-dtype mxfp4 keeps as it is; --base-dtype bf16 "
                               "loads float experts", name);
    if (!check_blocks(blocks, name, E, out, in, err))
        return -1;
    m->be->upload(m->be, w->data, blocks->data, (size_t)(E * out * in / 2));
    m->be->upload(m->be, w->scales, scales->data, (size_t)(E * out * in / MXFP4_BLOCK));
    return 0;
}

int experts_load(struct llama *m, const struct st_model *st, int64_t l, int i, tune_err *err)
{
    const struct linear_shape *li = &m->lin[i];
    struct llama_layer *ly = &m->layers[l];
    int64_t E = li->stack, out = li->out, in = li->in;
    char name[192];
    snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)l, li->module);
    float *host = malloc(sizeof(float) * (size_t)(E * out * in));
    if (!host)
        return err_set(err, "out of memory reading '%s'", name);
    int rc = ly->w[i].dtype == DTYPE_MXFP4 ? copy_mxfp4(m, st, name, &ly->w[i], E, out, in, err)
                                           : read_weight(st, name, E, out, in, host, err) ||
                                                 llama_upload(m->be, &ly->w[i], host, DTYPE_F32, E * out * in, err);
    if (!rc && ly->bias[i].data) {
        snprintf(name, sizeof name, "model.layers.%lld.%s_bias", (long long)l, li->module);
        rc = read_bias(st, name, E, out, host, err) || llama_upload(m->be, &ly->bias[i], host, DTYPE_F32, E * out, err);
    }
    free(host);
    return rc ? -1 : 0;
}
