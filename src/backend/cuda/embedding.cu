/* Token embedding lookup and its gradient. The backward pass scatters rows
 * into the table and ids repeat, so, as on the CPU, a thread owns one column
 * and adds the tokens in order: no atomics, and the same bits as the CPU's
 * fp32 adds. Only C threads: slow for long batches, and used only when the
 * embedding trains (full fine-tuning); a sort by id is the later fix. Ids
 * are checked by the model on the host; one out of range here gives NaN. */
#include "backend/cuda/cuda_ops.cuh"

/* out[t, c] = table[ids[t], c]. */
static __global__ void embedding_kernel(void *out, int out_dtype, const void *table, int table_dtype,
                                        const int32_t *ids, int64_t T, int64_t C, int64_t V)
{
    int64_t n = T * C;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / C, c = i % C, id = ids[t];
        float v = id >= 0 && id < V ? cuda_load(table, table_dtype, id * C + c) : NAN;
        cuda_store(out, out_dtype, i, v);
    }
}

extern "C" void cuda_embedding(struct backend *b, struct tensor *out, const struct tensor *table,
                               const struct tensor *ids)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(cuda_is_float(out->dtype) && cuda_is_float(table->dtype) && ids->dtype == DTYPE_I32);
    int64_t T = tensor_numel(ids), C = cuda_cols(table);
    assert(cuda_rows(out) == T && cuda_cols(out) == C);
    if (T * C == 0)
        return;
    CUDA_LAUNCH(cb, embedding_kernel, cuda_blocks(T * C), CUDA_THREADS, 0, out->data, out->dtype, table->data,
                table->dtype, (const int32_t *)ids->data, T, C, cuda_rows(table));
}

/* dtable[ids[t], c] += dout[t, c] for t in order; thread c. */
static __global__ void embedding_backward_kernel(void *dtable, int dtable_dtype, const void *dout, int dout_dtype,
                                                 const int32_t *ids, int64_t T, int64_t C, int64_t V)
{
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c >= C)
        return;
    for (int64_t t = 0; t < T; t++) {
        int64_t id = ids[t];
        if (id < 0 || id >= V)
            continue;
        int64_t at = id * C + c;
        cuda_store(dtable, dtable_dtype, at, cuda_load(dtable, dtable_dtype, at) + cuda_load(dout, dout_dtype, t * C + c));
    }
}

extern "C" void cuda_embedding_backward(struct backend *b, struct tensor *dtable, const struct tensor *dout,
                                        const struct tensor *ids)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(cuda_is_float(dtable->dtype) && cuda_is_float(dout->dtype) && ids->dtype == DTYPE_I32);
    int64_t T = tensor_numel(ids), C = cuda_cols(dtable);
    assert(cuda_rows(dout) == T && cuda_cols(dout) == C);
    if (T * C == 0)
        return;
    CUDA_LAUNCH(cb, embedding_backward_kernel, (unsigned)((C + CUDA_THREADS - 1) / CUDA_THREADS), CUDA_THREADS, 0,
                dtable->data, dtable->dtype, dout->data, dout->dtype, (const int32_t *)ids->data, T, C,
                cuda_rows(dtable));
}
