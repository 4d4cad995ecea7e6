/* See merge.h. Each targeted weight is merged in fp32 on the CPU backend
 * (convert, one GEMM, convert back) when the writer reaches it, and every
 * other tensor is copied as it is from the mapped base. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "model/merge.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/backend.h"
#include "base/mxfp4.h"
#include "base/str.h"
#include "io/atomic_file.h"
#include "io/json.h"
#include "io/read_file.h"
#include "io/safetensors.h"
#include "model/experts_load.h"
#include "model/peft.h"
#include "model/spec.h"

/* Whether the adapter's factors A, B fit base tensor `name` of the shape it is merged in: a Linear's
 * [out, in] (A [r, in], B [out, r]) or gpt-oss's experts [E, in, out] (PEFT's stacked A [E * r, in],
 * B [out, r * E]); F32, BF16 or F16 (peft_factor_f32). */
static int factors_fit(const char *name, int rank, const int64_t *shape, const struct st_tensor *A,
                       const struct st_tensor *B, tune_err *err)
{
    bool experts = rank == 3;
    int64_t E = experts ? shape[0] : 1, in = shape[1], out = shape[experts ? 2 : 0];
    int64_t r = A->rank == 2 && E ? A->shape[0] / E : 0;
    if (peft_factor_dtype_check(A, err) || peft_factor_dtype_check(B, err))
        return -1;
    if ((rank != 2 && rank != 3) || A->rank != 2 || B->rank != 2 || A->shape[0] != E * r || A->shape[1] != in ||
        B->shape[0] != out || B->shape[1] != r * E)
        return experts ? err_set(err, "adapter factors for '%s' do not fit its [%lld, %lld, %lld] experts", name,
                                 (long long)E, (long long)in, (long long)out)
                       : err_set(err, "adapter factors for '%s' do not fit its [%lld, %lld] weight", name,
                                 (long long)out, (long long)in);
    return 0;
}

/* merged[out, in] = W + scale * B[out, r] A[r, in], in W's dtype; merged may be W's own memory
 * (factors_fit first). */
static int merge_one(const struct st_tensor *w, const struct st_tensor *A, const struct st_tensor *B, float scale,
                     void *merged, tune_err *err)
{
    struct backend *be = backend_cpu();
    int64_t out = w->shape[0], in = w->shape[1], r = A->shape[0];
    float *w32 = malloc(sizeof(float) * (size_t)(out * in));
    if (!w32)
        return err_set(err, "out of memory merging '%s'", w->name);
    struct tensor src = tensor_2d((void *)w->data, w->dtype, out, in), f = tensor_2d(w32, DTYPE_F32, out, in);
    struct tensor a = tensor_2d((void *)A->data, DTYPE_F32, r, in), b = tensor_2d((void *)B->data, DTYPE_F32, out, r);
    struct tensor dst = tensor_2d(merged, w->dtype, out, in);
    be->convert(be, &f, &src);
    be->matmul(be, &f, &b, false, &a, false, scale, 1.0f);
    be->convert(be, &dst, &f);
    free(w32);
    return 0;
}

/* gpt-oss's experts, transformers' [E, in, out] weight w: merged[e] = w[e] +
 * scale * A_e^T B_e^T, with PEFT's layout of the stacked factors: A [E * r,
 * in] (rows of expert e together), B [out, r * E] (column j * E + e); merged
 * may be w's own memory (factors_fit first). */
static int merge_experts(const struct st_tensor *w, const struct st_tensor *A, const struct st_tensor *B,
                         float scale, void *merged, tune_err *err)
{
    struct backend *be = backend_cpu();
    int64_t E = w->shape[0], in = w->shape[1], out = w->shape[2], r = A->shape[0] / E, n = in * out;
    float *w32 = malloc(sizeof(float) * (size_t)n), *bt = malloc(sizeof(float) * (size_t)(r * out));
    if (!w32 || !bt) {
        free(w32);
        free(bt);
        return err_set(err, "out of memory merging '%s'", w->name);
    }
    const float *b = B->data;
    for (int64_t e = 0; e < E; e++) { /* one expert at a time in fp32 */
        for (int64_t j = 0; j < r; j++) /* B_e^T [r, out] */
            for (int64_t o = 0; o < out; o++)
                bt[j * out + o] = b[o * r * E + j * E + e];
        size_t at = (size_t)dtype_bytes(w->dtype, e * n);
        struct tensor src = tensor_2d((char *)w->data + at, w->dtype, in, out), we = tensor_2d(w32, DTYPE_F32, in, out);
        struct tensor ae = tensor_2d((float *)A->data + e * r * in, DTYPE_F32, r, in);
        struct tensor be_t = tensor_2d(bt, DTYPE_F32, r, out);
        struct tensor dst = tensor_2d((char *)merged + at, w->dtype, in, out);
        be->convert(be, &we, &src);
        be->matmul(be, &we, &ae, true, &be_t, false, scale, 1.0f);
        be->convert(be, &dst, &we);
    }
    free(w32);
    free(bt);
    return 0;
}

/* The MXFP4 experts `stem` (<stem>_blocks [E, out, in / 32, 16] and <stem>_scales), found and
 * checked; *t describes the float parameter transformers makes of them, [E, in, out] in dtype. */
static int experts_float_shape(const struct st_model *base, const char *stem, enum dtype dtype,
                               const struct st_tensor **blocks, const struct st_tensor **scales, struct st_tensor *t,
                               tune_err *err)
{
    if (st_model_find_mxfp4(base, stem, blocks, scales, err))
        return -1;
    const struct st_tensor *b = *blocks;
    if (b->rank != 4)
        return err_set(err, "'%s': MXFP4 experts are [E, out, in / 32, 16]", b->name);
    int64_t E = b->shape[0], rows = b->shape[1], in = b->shape[2] * MXFP4_BLOCK;
    *t = (struct st_tensor){.name = stem, .dtype = dtype, .rank = 3, .shape = {E, in, rows},
                            .nbytes = dtype_bytes(dtype, E * rows * in)};
    return 0;
}

/* t's values (experts_float_shape's) into *out (malloc'd), one expert at a time: dequantized, turned
 * to [in, out], converted. */
static int dequantize_experts(const struct st_tensor *blocks, const struct st_tensor *scales,
                              const struct st_tensor *t, void **out, tune_err *err)
{
    int64_t E = t->shape[0], in = t->shape[1], rows = t->shape[2], nb = in / MXFP4_BLOCK, n = rows * in;
    float *w = malloc(sizeof(float) * (size_t)n), *turned = malloc(sizeof(float) * (size_t)n);
    *out = malloc((size_t)t->nbytes);
    if (!w || !turned || !*out) {
        free(w);
        free(turned);
        free(*out);
        *out = NULL;
        return err_set(err, "out of memory dequantizing '%s'", blocks->name);
    }
    for (int64_t e = 0; e < E; e++) {
        mxfp4_dequantize((const uint8_t *)blocks->data + e * rows * nb * 16,
                         (const uint8_t *)scales->data + e * rows * nb, rows * nb, w); /* [out, in] */
        experts_transpose(turned, w, 1, rows, in);
        struct tensor src = tensor_1d(turned, DTYPE_F32, n);
        struct tensor dst = tensor_1d((char *)*out + dtype_bytes(t->dtype, e * n), t->dtype, n);
        backend_cpu()->convert(backend_cpu(), &dst, &src);
    }
    free(w);
    free(turned);
    return 0;
}

/* One output tensor that is not the base's as it is: made when the writer reaches it, so that
 * merging holds one such tensor at a time rather than the model (about the bf16 model's size
 * for gpt-oss-120b's experts). */
struct merge_job {
    const struct st_tensor *t;            /* the base tensor, or (MXFP4 experts) floats's source */
    const struct st_tensor *A, *B;        /* the adapter's factors of it, or NULL */
    const struct st_tensor *blocks, *scales; /* MXFP4 experts written in floats, or NULL */
    struct st_tensor floats;              /* their float parameter's description */
    char stem[256];                       /* its name */
    float scale;
};

static int make_merged(void *ctx, void **data, tune_err *err)
{
    struct merge_job *j = ctx;
    const struct st_tensor *t = j->t;
    void *dequantized = NULL;
    if (j->blocks) {
        if (dequantize_experts(j->blocks, j->scales, &j->floats, &dequantized, err))
            return -1;
        j->floats.data = dequantized;
        t = &j->floats;
    }
    if (!j->A) {
        *data = dequantized;
        return 0;
    }
    /* the factors in fp32 (a half-precision adapter's converted); dequantized experts merged in place */
    struct st_tensor A = *j->A, B = *j->B;
    float *a32 = NULL, *b32 = NULL;
    void *merged = dequantized ? dequantized : malloc((size_t)t->nbytes);
    int rc = merged ? -1 : err_set(err, "out of memory merging '%s'", t->name);
    if (merged && (A.data = peft_factor_f32(j->A, &a32, err)) && (B.data = peft_factor_f32(j->B, &b32, err)))
        rc = t->rank == 3 ? merge_experts(t, &A, &B, j->scale, merged, err)
                          : merge_one(t, &A, &B, j->scale, merged, err);
    free(a32);
    free(b32);
    if (rc)
        free(merged);
    else
        *data = merged;
    return rc;
}

/* config.json in dir without its quantization_config: the experts are written in floats. */
static int drop_quantization_config(const char *dir, tune_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    size_t len = 0;
    char *text = io_read_file(path, 16 << 20, &len, err), *without = NULL;
    cJSON *config = text ? json_parse_text(text, path, err) : NULL; /* valid JSON, as the text surgery needs */
    int rc = config ? 0 : -1;
    cJSON_Delete(config);
    if (!rc && !(without = json_text_without_member(text, "quantization_config")))
        rc = err_set(err, "out of memory");
    if (!rc)
        rc = atomic_file_save(path, without, strlen(without), err);
    free(text);
    free(without);
    return rc;
}

/* The adapter's factors of base tensor `name` (rc: the adapter's run), named as PEFT saves them: a
 * Linear's "<module>.lora_A.weight"; an expert parameter's ("model.layers.7.mlp.experts.down_proj")
 * under the experts module, gate_up_proj's one "base_layer." deeper when the layer's down_proj is
 * adapted too (PEFT nests a wrapper per parameter, gate_up_proj's inside). Empty names where the
 * adapter does not adapt the expert parameter: the module's factors are then the other one's. */
static void factor_names(const char *name, const struct run_config *rc, char *a, char *b, size_t len)
{
    bool gate_up = str_ends_with(name, ".mlp.experts.gate_up_proj");
    bool down = str_ends_with(name, ".mlp.experts.down_proj");
    long long layer = -1;
    if ((gate_up || down) && (sscanf(name, "model.layers.%lld.", &layer) != 1 || layer < 0 ||
                              !run_layer_targeted(rc, layer, gate_up ? "gate_up" : "down"))) {
        *a = *b = 0;
        return;
    }
    if (gate_up || down) {
        int module = (int)(strstr(name, ".mlp.experts.") - name) + (int)strlen(".mlp.experts");
        const char *deeper = gate_up && run_layer_targeted(rc, layer, "down") ? ".base_layer" : "";
        snprintf(a, len, "base_model.model.%.*s%s.lora_A.weight", module, name, deeper);
        snprintf(b, len, "base_model.model.%.*s%s.lora_B.weight", module, name, deeper);
        return;
    }
    int stem = (int)strlen(name) - (str_ends_with(name, ".weight") ? 7 : 0);
    snprintf(a, len, "base_model.model.%.*s.lora_A.weight", stem, name);
    snprintf(b, len, "base_model.model.%.*s.lora_B.weight", stem, name);
}

int merge_lora(const char *base_dir, const char *adapter_dir, const char *out_dir, int64_t max_shard_bytes,
               tune_err *err)
{
    struct model_spec spec;
    struct run_config rc;
    if (spec_load(&spec, base_dir, err))
        return -1;
    run_config_default(&rc, &spec);
    if (peft_read_config(adapter_dir, &spec, &rc, err))
        return -1;
    /* PEFT's scaling: alpha / r, or alpha / sqrt(r) for rsLoRA */
    float scale = (float)(rc.lora_alpha / (rc.use_rslora ? sqrt((double)rc.lora_r) : (double)rc.lora_r));
    char path[4096];
    struct st_model base;
    struct st_file ad;
    if (st_model_open(&base, base_dir, err))
        return -1;
    if (peft_open_weights(adapter_dir, &ad, path, sizeof path, err)) {
        st_model_close(&base);
        return -1;
    }
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        st_file_close(&ad);
        st_model_close(&base);
        return err_set(err, "%s: cannot create: %s", out_dir, strerror(errno));
    }
    char real_out[PATH_MAX], real_base[PATH_MAX];
    if (realpath(out_dir, real_out) && realpath(base_dir, real_base) && !strcmp(real_out, real_base)) {
        st_file_close(&ad);
        st_model_close(&base);
        return err_set(err, "%s is the base model's folder: the merged model would replace it", out_dir);
    }
    struct st_writer w;
    st_writer_init(&w);
    struct merge_job *jobs = calloc((size_t)base.n_tensors + 1, sizeof *jobs);
    int status = jobs ? 0 : err_set(err, "out of memory");
    int64_t used = 0;
    /* LoRA on experts kept in MXFP4: every expert is written dequantized (as transformers dequantizes
     * them), in the dtype of the model's other weights, and the config loses its quantization_config */
    const struct st_tensor *embed = st_model_find(&base, "model.embed_tokens.weight", NULL);
    bool dequantize = rc.targets & (1u << TARGET_GATE_UP | 1u << TARGET_DOWN);
    enum dtype float_dtype = embed ? embed->dtype : DTYPE_BF16;
    bool dequantized_any = false;
    /* Every output tensor named, shaped and checked before any is made (so a misfit writes nothing). */
    for (int i = 0; !status && i < base.n_tensors; i++) {
        struct merge_job *j = &jobs[i];
        j->t = base.tensors[i].tensor;
        j->scale = scale;
        const struct st_tensor *out = j->t;
        char a[512], b[512], *stem = j->stem;
        /* experts kept in MXFP4 ("..._blocks" and "..._scales"): the factors of the parameter they store */
        bool blocks = str_ends_with(j->t->name, "_proj_blocks");
        snprintf(stem, sizeof j->stem, "%.*s", (int)strlen(j->t->name) - (blocks ? 7 : 0), j->t->name);
        if (dequantize && str_ends_with(j->t->name, "_proj_scales"))
            continue; /* read with its blocks */
        if (dequantize && blocks) {
            if ((status = experts_float_shape(&base, stem, float_dtype, &j->blocks, &j->scales, &j->floats, err)))
                break;
            out = &j->floats;
            dequantized_any = true;
        }
        factor_names(stem, &rc, a, b, sizeof a);
        const struct st_tensor *A = st_file_find(&ad, a), *B = st_file_find(&ad, b);
        if (A && B && !strncmp(j->t->name, "model.", 6)) {
            if ((status = factors_fit(out->name, out->rank, out->shape, A, B, err)))
                break;
            j->A = A, j->B = B;
            used += 2;
        }
        status = j->A || j->blocks ? st_writer_add_made(&w, out->name, out->dtype, out->rank, out->shape, make_merged,
                                                        j, err)
                                   : st_writer_add(&w, out->name, out->dtype, out->rank, out->shape, out->data, err);
    }
    int64_t lora_tensors = 0;
    for (int i = 0; i < ad.n_tensors; i++)
        lora_tensors += strstr(ad.tensors[i].name, ".lora_") != NULL;
    if (!status && used != lora_tensors)
        status = err_set(err, "%s: %lld of its %lld LoRA tensors name no weight of %s", path,
                         (long long)(lora_tensors - used), (long long)lora_tensors, base_dir);
    if (!status)
        status = st_writer_set_metadata(&w, "format", "pt", err) ||
                 st_writer_write_sharded(&w, out_dir, max_shard_bytes, err);
    if (!status)
        status = atomic_file_copy_model_files(base_dir, out_dir, err);
    if (!status && dequantized_any)
        status = drop_quantization_config(out_dir, err);
    st_writer_free(&w);
    free(jobs);
    st_file_close(&ad);
    st_model_close(&base);
    return status ? -1 : 0;
}
