/* Cross-entropy over a block of fp32 logits [T, V], as cpu/cross_entropy.c:
 * one block per row finds the max and sums exp(logit - max) in double into
 * the row's log-sum-exp; then one block adds the counted rows' losses
 * (lse - logit[label]) in a fixed order and the sum is read back. Backward
 * writes scale * (softmax - onehot) over the logits, zero rows for ignored
 * tokens (label -100). */
#include "backend/cuda/cuda_ops.cuh"

#define CROSS_ENTROPY_IGNORE (-100)
#define CE_THREADS 512

/* Block t: lse[t] of logits[t, :]. */
static __global__ void cross_entropy_lse_kernel(float *lse, const float *logits, int64_t V)
{
    __shared__ float shared_f[32];
    __shared__ double shared_d[32];
    const float *z = logits + (int64_t)blockIdx.x * V;
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x)
        m = fmaxf(m, z[j]);
    m = cuda_block_max_float(m, shared_f);
    double s = 0;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x)
        s += exp((double)z[j] - m);
    s = cuda_block_sum_double(s, shared_d);
    if (threadIdx.x == 0)
        lse[blockIdx.x] = (float)(m + log(s));
}

/* *loss = sum over counted rows t of lse[t] - logits[t, labels[t]]; one block. */
static __global__ void cross_entropy_loss_kernel(double *loss, const float *lse, const float *logits,
                                                 const int32_t *labels, int64_t T, int64_t V)
{
    __shared__ double shared[32];
    double s = 0;
    for (int64_t t = threadIdx.x; t < T; t += blockDim.x) {
        int32_t y = labels[t];
        if (y == CROSS_ENTROPY_IGNORE)
            continue;
        s += y >= 0 && y < V ? (double)lse[t] - logits[t * V + y] : NAN;
    }
    s = cuda_block_sum_double(s, shared);
    if (threadIdx.x == 0)
        *loss = s;
}

extern "C" double cuda_cross_entropy(struct backend *b, struct tensor *lse, const struct tensor *logits,
                                     const struct tensor *labels)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(lse->dtype == DTYPE_F32 && logits->dtype == DTYPE_F32 && labels->dtype == DTYPE_I32);
    int64_t T = cuda_rows(logits), V = cuda_cols(logits);
    assert(tensor_numel(lse) == T && tensor_numel(labels) == T);
    if (T == 0)
        return 0;
    double *dev = (double *)cb->reduce, host = 0;
    CUDA_LAUNCH(cb, cross_entropy_lse_kernel, (unsigned)T, CE_THREADS, 0, (float *)lse->data,
                (const float *)logits->data, V);
    CUDA_LAUNCH(cb, cross_entropy_loss_kernel, 1, 1024, 0, dev, (const float *)lse->data, (const float *)logits->data,
                (const int32_t *)labels->data, T, V);
    CUDA_CHECK(cb, cudaMemcpyAsync(&host, dev, sizeof host, cudaMemcpyDeviceToHost, cb->stream));
    CUDA_CHECK(cb, cudaStreamSynchronize(cb->stream));
    return host;
}

/* logits[t, j] = scale * (exp(logits[t, j] - lse[t]) - (j == labels[t])), or 0 for ignored rows. */
static __global__ void cross_entropy_backward_kernel(float *logits, const float *lse, const int32_t *labels,
                                                     int64_t T, int64_t V, float scale)
{
    int64_t n = T * V;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / V, j = i % V;
        int32_t y = labels[t];
        logits[i] = y != CROSS_ENTROPY_IGNORE ? scale * (expf(logits[i] - lse[t]) - (float)(j == y)) : 0.0f;
    }
}

extern "C" void cuda_cross_entropy_backward(struct backend *b, struct tensor *logits, const struct tensor *lse,
                                            const struct tensor *labels, float scale)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(lse->dtype == DTYPE_F32 && logits->dtype == DTYPE_F32 && labels->dtype == DTYPE_I32);
    int64_t T = cuda_rows(logits), V = cuda_cols(logits);
    assert(tensor_numel(lse) == T && tensor_numel(labels) == T);
    if (T * V == 0)
        return;
    CUDA_LAUNCH(cb, cross_entropy_backward_kernel, cuda_blocks(T * V), CUDA_THREADS, 0, (float *)logits->data,
                (const float *)lse->data, (const int32_t *)labels->data, T, V, scale);
}
