/* What the attention kernels share (attention.cu: any dtype and head dim,
 * scalar; attention_mma.cu: bf16 on tensor cores for head dims 64 and 128):
 * the sizes of a call, the tensors of backward, and where each query's keys
 * begin and each key's queries end in packed sequences. */
#ifndef TUNE_BACKEND_CUDA_ATTENTION_CUH
#define TUNE_BACKEND_CUDA_ATTENTION_CUH

#include "backend/cuda/cuda_ops.cuh"

/* The sequence holding token t: the last s with starts[s] <= t. */
static __device__ inline int64_t seq_of(const int32_t *starts, int64_t S, int64_t t)
{
    int64_t lo = 0, hi = S - 1;
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (starts[mid] <= t)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* First key seen by query i (the last is i itself); nondecreasing in i.
 * Without starts (a KV cache) one sequence begins at 0. */
static __device__ inline int64_t first_key(const int32_t *starts, int64_t S, int64_t window, int64_t i)
{
    int64_t start = starts ? starts[seq_of(starts, S, i)] : 0;
    return window > 0 && i - window + 1 > start ? i - window + 1 : start;
}

/* One past the last query that sees key j (the first is j itself); nondecreasing in j. */
static __device__ inline int64_t end_query(const int32_t *starts, int64_t S, int64_t window, int64_t j)
{
    int64_t end = starts[seq_of(starts, S, j) + 1];
    return window > 0 && j + window < end ? j + window : end;
}

/* Sizes of one call. Query row r of q sits at key index pos0 + r: 0 in
 * training, where q, k and v have the same T rows; the cache length before
 * the new tokens when decoding. */
struct att_dims {
    int64_t T, H, KV, D, group, S, window;
    float scale;
    int64_t pos0;
};

/* Tensors of the backward kernels, with their dtypes. */
struct att_bwd_args {
    void *dq, *dk, *dv;
    int dq_dtype, dk_dtype, dv_dtype;
    const void *dout, *q, *k, *v, *out;
    int dout_dtype, q_dtype, k_dtype, v_dtype, out_dtype;
    const float *lse; /* [H, T] */
    const int32_t *starts;
};

/* The tensor-core path (attention_mma.cu): true when it took the call (all
 * tensors bf16, head dim 64 or 128, training rather than decoding), false to
 * leave it to the scalar kernels. */
bool attention_mma_forward(struct cuda_backend *cb, void *out, float *lse, const void *q, const void *k, const void *v,
                           const void *sinks, int sinks_dtype, const int32_t *starts, const struct att_dims *d,
                           bool all_bf16);
bool attention_mma_backward(struct cuda_backend *cb, const struct att_bwd_args *a, const struct att_dims *d,
                            bool all_bf16);

#endif
