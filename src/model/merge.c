/* See merge.h. Each targeted weight is merged in fp32 on the CPU backend
 * (convert, one GEMM, convert back) and every other tensor is copied as it
 * is; the writer borrows the data until the shards are written. */
#include "model/merge.h"

#include <errno.h>
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

/* W[out, in] += scale * B[out, r] A[r, in], in W's dtype. */
static int merge_one(const struct st_tensor *w, const struct st_tensor *A, const struct st_tensor *B, float scale,
                     void **merged, tune_err *err)
{
    struct backend *be = backend_cpu();
    int64_t out = w->shape[0], in = w->shape[1], r = A->shape[0];
    if (A->rank != 2 || B->rank != 2 || A->shape[1] != in || B->shape[0] != out || B->shape[1] != r ||
        A->dtype != DTYPE_F32 || B->dtype != DTYPE_F32)
        return err_set(err, "adapter factors for '%s' do not fit its [%lld, %lld] weight", w->name, (long long)out,
                       (long long)in);
    float *w32 = malloc(sizeof(float) * (size_t)(out * in));
    *merged = malloc((size_t)w->nbytes);
    if (!w32 || !*merged) {
        free(w32);
        return err_set(err, "out of memory merging '%s'", w->name);
    }
    struct tensor src = tensor_2d((void *)w->data, w->dtype, out, in), f = tensor_2d(w32, DTYPE_F32, out, in);
    struct tensor a = tensor_2d((void *)A->data, DTYPE_F32, r, in), b = tensor_2d((void *)B->data, DTYPE_F32, out, r);
    struct tensor dst = tensor_2d(*merged, w->dtype, out, in);
    be->convert(be, &f, &src);
    be->matmul(be, &f, &b, false, &a, false, scale, 1.0f);
    be->convert(be, &dst, &f);
    free(w32);
    return 0;
}

/* gpt-oss's experts, transformers' [E, in, out] weight w: w[e] += scale *
 * A_e^T B_e^T, with PEFT's layout of the stacked factors: A [E * r, in] (rows
 * of expert e together), B [out, r * E] (column j * E + e). */
static int merge_experts(const struct st_tensor *w, const struct st_tensor *A, const struct st_tensor *B,
                         float scale, void **merged, tune_err *err)
{
    struct backend *be = backend_cpu();
    int64_t E = w->shape[0], in = w->shape[1], out = w->shape[2], r = A->shape[0] / (E ? E : 1);
    if (w->rank != 3 || A->rank != 2 || B->rank != 2 || A->shape[0] != E * r || A->shape[1] != in ||
        B->shape[0] != out || B->shape[1] != r * E || A->dtype != DTYPE_F32 || B->dtype != DTYPE_F32)
        return err_set(err, "adapter factors for '%s' do not fit its [%lld, %lld, %lld] experts", w->name,
                       (long long)E, (long long)in, (long long)out);
    float *w32 = malloc(sizeof(float) * (size_t)(E * in * out)), *bt = malloc(sizeof(float) * (size_t)(r * out));
    *merged = malloc((size_t)w->nbytes);
    if (!w32 || !bt || !*merged) {
        free(w32);
        free(bt);
        return err_set(err, "out of memory merging '%s'", w->name);
    }
    struct tensor src = tensor_1d((void *)w->data, w->dtype, E * in * out), f = tensor_1d(w32, DTYPE_F32, E * in * out);
    be->convert(be, &f, &src);
    const float *b = B->data;
    for (int64_t e = 0; e < E; e++) {
        for (int64_t j = 0; j < r; j++) /* B_e^T [r, out] */
            for (int64_t o = 0; o < out; o++)
                bt[j * out + o] = b[o * r * E + j * E + e];
        struct tensor we = tensor_2d(w32 + e * in * out, DTYPE_F32, in, out);
        struct tensor ae = tensor_2d((float *)A->data + e * r * in, DTYPE_F32, r, in), be_t = tensor_2d(bt, DTYPE_F32, r, out);
        be->matmul(be, &we, &ae, true, &be_t, false, scale, 1.0f);
    }
    struct tensor dst = tensor_1d(*merged, w->dtype, E * in * out);
    be->convert(be, &dst, &f);
    free(w32);
    free(bt);
    return 0;
}

/* The MXFP4 experts `stem` (<stem>_blocks [E, out, in / 32, 16] and <stem>_scales) as the float
 * parameter transformers makes of them, [E, in, out] in dtype: *out malloc'd, *t its description. */
static int dequantize_experts(const struct st_model *base, const char *stem, enum dtype dtype, void **out,
                              struct st_tensor *t, tune_err *err)
{
    const struct st_tensor *blocks, *scales;
    if (st_model_find_mxfp4(base, stem, &blocks, &scales, err))
        return -1;
    if (blocks->rank != 4)
        return err_set(err, "'%s': MXFP4 experts are [E, out, in / 32, 16]", blocks->name);
    int64_t E = blocks->shape[0], rows = blocks->shape[1], nb = blocks->shape[2], in = nb * MXFP4_BLOCK;
    int64_t n = E * rows * in;
    float *w = malloc(sizeof(float) * (size_t)n), *turned = malloc(sizeof(float) * (size_t)n);
    *out = malloc((size_t)dtype_bytes(dtype, n));
    if (!w || !turned || !*out) {
        free(w);
        free(turned);
        return err_set(err, "out of memory dequantizing '%s'", blocks->name);
    }
    mxfp4_dequantize(blocks->data, scales->data, E * rows * nb, w); /* [E, out, in] */
    experts_transpose(turned, w, E, rows, in);
    struct tensor src = tensor_1d(turned, DTYPE_F32, n), dst = tensor_1d(*out, dtype, n);
    backend_cpu()->convert(backend_cpu(), &dst, &src);
    free(w);
    free(turned);
    *t = (struct st_tensor){.name = stem, .dtype = dtype, .rank = 3, .shape = {E, in, rows},
                            .nbytes = dtype_bytes(dtype, n), .data = *out};
    return 0;
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
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", adapter_dir);
    struct st_model base;
    struct st_file ad;
    if (st_model_open(&base, base_dir, err))
        return -1;
    if (st_file_open(&ad, path, err)) {
        st_model_close(&base);
        return -1;
    }
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        st_file_close(&ad);
        st_model_close(&base);
        return err_set(err, "%s: cannot create: %s", out_dir, strerror(errno));
    }
    struct st_writer w;
    st_writer_init(&w);
    void **merged = calloc((size_t)base.n_tensors + 1, sizeof *merged);
    int status = merged ? 0 : err_set(err, "out of memory");
    int64_t used = 0;
    /* LoRA on experts kept in MXFP4: every expert is written dequantized (as transformers dequantizes
     * them), in the dtype of the model's other weights, and the config loses its quantization_config */
    const struct st_tensor *embed = st_model_find(&base, "model.embed_tokens.weight", NULL);
    bool dequantize = rc.targets & (1u << TARGET_GATE_UP | 1u << TARGET_DOWN);
    enum dtype float_dtype = embed ? embed->dtype : DTYPE_BF16;
    bool dequantized_any = false;
    for (int i = 0; !status && i < base.n_tensors; i++) {
        const struct st_tensor *t = base.tensors[i].tensor;
        const void *data = t->data;
        char a[512], b[512], stem[256];
        /* experts kept in MXFP4 ("..._blocks" and "..._scales"): the factors of the parameter they store */
        bool blocks = str_ends_with(t->name, "_proj_blocks");
        snprintf(stem, sizeof stem, "%.*s", (int)strlen(t->name) - (blocks ? 7 : 0), t->name); /* less "_blocks" */
        if (dequantize && str_ends_with(t->name, "_proj_scales"))
            continue; /* read with its blocks */
        struct st_tensor floats;
        if (dequantize && blocks) {
            if ((status = dequantize_experts(&base, stem, float_dtype, &merged[i], &floats, err)))
                break;
            t = &floats;
            data = merged[i];
            dequantized_any = true;
        }
        factor_names(stem, &rc, a, b, sizeof a);
        const struct st_tensor *A = st_file_find(&ad, a), *B = st_file_find(&ad, b);
        if (A && B && !strncmp(t->name, "model.", 6)) {
            void *dequantized = t == &floats ? merged[i] : NULL;
            status = t->rank == 3 ? merge_experts(t, A, B, scale, &merged[i], err)
                                  : merge_one(t, A, B, scale, &merged[i], err);
            free(dequantized); /* merged[i] is the merged copy now */
            data = merged[i];
            used += 2;
        }
        if (!status)
            status = st_writer_add(&w, t->name, t->dtype, t->rank, t->shape, data, err);
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
    for (int i = 0; merged && i < base.n_tensors; i++)
        free(merged[i]);
    free(merged);
    st_file_close(&ad);
    st_model_close(&base);
    return status ? -1 : 0;
}
