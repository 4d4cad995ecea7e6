/* Cross-entropy over a block of logits [T, V], fp32 or bf16 (the model's
 * compute dtype: bf16 logits, as transformers' LM head gives, half the bytes
 * of the chunk and no conversion before the backward GEMM), as
 * cpu/cross_entropy.c: one block per row finds the max and sums exp(logit -
 * max) into the row's log-sum-exp (each exp in fp32, as accurate as expf,
 * the sums in double, as the CPU's; a double exp per logit made this the
 * slowest kernel of the loss); then one block adds the counted rows' losses
 * (lse - logit[label]) in a fixed order to the caller's sum in device memory
 * (nothing waits: a step's loss is read once, at its end). Backward
 * writes scale * (softmax - onehot) over the logits, in their dtype, zero rows
 * for ignored tokens (label -100). Rows are read 16 bytes at a time when
 * they are 16-byte aligned. */
#include "backend/cuda/cuda_ops.cuh"

#define CROSS_ENTROPY_IGNORE (-100)
#define CE_THREADS 512

static __device__ __forceinline__ float to_float(float x) { return x; }
static __device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> static __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16(x); }

/* Calls f on every element of row z [V] this thread takes, as floats. */
template <typename T, typename F> static __device__ __forceinline__ void each_logit(const T *z, int64_t V, F f)
{
    constexpr int N = 16 / sizeof(T);
    if (V % N == 0 && ((uintptr_t)z & 15) == 0) {
        for (int64_t j = threadIdx.x; j < V / N; j += blockDim.x) {
            union {
                uint4 u;
                T v[N];
            } x;
            x.u = ((const uint4 *)z)[j];
            for (int k = 0; k < N; k++)
                f(to_float(x.v[k]));
        }
    } else {
        for (int64_t j = threadIdx.x; j < V; j += blockDim.x)
            f(to_float(z[j]));
    }
}

/* Block t: lse[t] of logits[t, :]. */
template <typename T> static __global__ void cross_entropy_lse_kernel(float *lse, const T *logits, int64_t V)
{
    __shared__ float shared_f[32];
    __shared__ double shared_d[32];
    const T *z = logits + (int64_t)blockIdx.x * V;
    float m = -INFINITY;
    each_logit(z, V, [&](float x) { m = fmaxf(m, x); });
    m = cuda_block_max_float(m, shared_f);
    double s = 0;
    each_logit(z, V, [&](float x) { s += (double)expf(x - m); });
    s = cuda_block_sum_double(s, shared_d);
    if (threadIdx.x == 0)
        lse[blockIdx.x] = (float)(m + log(s));
}

/* *loss += sum over counted rows t of lse[t] - logits[t, labels[t]]; one block. */
static __global__ void cross_entropy_loss_kernel(double *loss, const float *lse, const void *logits, int dtype,
                                                 const int32_t *labels, int64_t T, int64_t V)
{
    __shared__ double shared[32];
    double s = 0;
    for (int64_t t = threadIdx.x; t < T; t += blockDim.x) {
        int32_t y = labels[t];
        if (y == CROSS_ENTROPY_IGNORE)
            continue;
        s += y >= 0 && y < V ? (double)lse[t] - cuda_load(logits, dtype, t * V + y) : NAN;
    }
    s = cuda_block_sum_double(s, shared);
    if (threadIdx.x == 0)
        *loss += s;
}

extern "C" void cuda_cross_entropy(struct backend *b, struct tensor *lse, const struct tensor *logits,
                                   const struct tensor *labels, double *loss_sum)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(lse->dtype == DTYPE_F32 && (logits->dtype == DTYPE_F32 || logits->dtype == DTYPE_BF16) &&
           labels->dtype == DTYPE_I32);
    int64_t T = cuda_rows(logits), V = cuda_cols(logits);
    assert(tensor_numel(lse) == T && tensor_numel(labels) == T);
    if (T == 0)
        return;
    if (logits->dtype == DTYPE_BF16)
        CUDA_LAUNCH(cb, cross_entropy_lse_kernel<__nv_bfloat16>, (unsigned)T, CE_THREADS, 0, (float *)lse->data,
                    (const __nv_bfloat16 *)logits->data, V);
    else
        CUDA_LAUNCH(cb, cross_entropy_lse_kernel<float>, (unsigned)T, CE_THREADS, 0, (float *)lse->data,
                    (const float *)logits->data, V);
    CUDA_LAUNCH(cb, cross_entropy_loss_kernel, 1, 1024, 0, loss_sum, (const float *)lse->data, logits->data,
                logits->dtype, (const int32_t *)labels->data, T, V);
}

/* Rows blockIdx.y, + gridDim.y, ...: logits[t, j] = scale * (exp(logits[t, j] - lse[t]) - (j == labels[t])), or 0
 * for an ignored row. */
template <typename T>
static __global__ void cross_entropy_backward_kernel(T *logits, const float *lse, const int32_t *labels, int64_t rows,
                                                     int64_t V, const float *scale_at)
{
    const float scale = *scale_at;
    for (int64_t t = blockIdx.y; t < rows; t += gridDim.y) {
        const int32_t y = labels[t];
        const float l = lse[t];
        T *z = logits + t * V;
        for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < V; j += (int64_t)gridDim.x * blockDim.x)
            z[j] = from_float<T>(y != CROSS_ENTROPY_IGNORE ? scale * (expf(to_float(z[j]) - l) - (float)(j == y))
                                                           : 0.0f);
    }
}

extern "C" void cuda_cross_entropy_backward(struct backend *b, struct tensor *logits, const struct tensor *lse,
                                            const struct tensor *labels, const float *scale)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(lse->dtype == DTYPE_F32 && (logits->dtype == DTYPE_F32 || logits->dtype == DTYPE_BF16) &&
           labels->dtype == DTYPE_I32);
    int64_t T = cuda_rows(logits), V = cuda_cols(logits);
    assert(tensor_numel(lse) == T && tensor_numel(labels) == T);
    if (T * V == 0)
        return;
    int64_t across = (V + CUDA_THREADS - 1) / CUDA_THREADS; /* blocks per row, each thread 8 logits at most */
    dim3 grid((unsigned)((across + 7) / 8), (unsigned)(T < 65535 ? T : 65535));
    if (logits->dtype == DTYPE_BF16)
        CUDA_LAUNCH(cb, cross_entropy_backward_kernel<__nv_bfloat16>, grid, CUDA_THREADS, 0,
                    (__nv_bfloat16 *)logits->data, (const float *)lse->data, (const int32_t *)labels->data, T, V,
                    scale);
    else
        CUDA_LAUNCH(cb, cross_entropy_backward_kernel<float>, grid, CUDA_THREADS, 0, (float *)logits->data,
                    (const float *)lse->data, (const int32_t *)labels->data, T, V, scale);
}
