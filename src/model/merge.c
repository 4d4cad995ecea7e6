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
#include "io/atomic_file.h"
#include "io/safetensors.h"
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
    for (int i = 0; !status && i < base.n_tensors; i++) {
        const struct st_tensor *t = base.tensors[i].tensor;
        const void *data = t->data;
        size_t n = strlen(t->name);
        if (n > 7 && !strcmp(t->name + n - 7, ".weight") && !strncmp(t->name, "model.", 6)) {
            char a[512], b[512];
            snprintf(a, sizeof a, "base_model.model.%.*s.lora_A.weight", (int)(n - 7), t->name);
            snprintf(b, sizeof b, "base_model.model.%.*s.lora_B.weight", (int)(n - 7), t->name);
            const struct st_tensor *A = st_file_find(&ad, a), *B = st_file_find(&ad, b);
            if (A && B) {
                status = merge_one(t, A, B, scale, &merged[i], err);
                data = merged[i];
                used += 2;
            }
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
    st_writer_free(&w);
    for (int i = 0; merged && i < base.n_tensors; i++)
        free(merged[i]);
    free(merged);
    st_file_close(&ad);
    st_model_close(&base);
    return status ? -1 : 0;
}
