/* The CUDA backend's internals, shared by its op files (one file per op
 * family, as in cpu/): the backend struct, the check macros, dtype-generic
 * loads and stores, block reductions, and the op entry points gathered into
 * the table by backend_cuda.cu. CUDA C only (it includes the CUDA headers).
 *
 * First version: correctness over speed. Kernels read any float dtype
 * through cuda_load / cuda_store (a branch on a run-time dtype, uniform across
 * a warp), one thread per element or one block per row; reductions are fixed
 * trees and fixed splits, so results do not depend on the GPU or the run.
 * Size letters as in backend.h. */
#ifndef TUNE_BACKEND_CUDA_CUDA_OPS_CUH
#define TUNE_BACKEND_CUDA_CUDA_OPS_CUH

#include <assert.h>
#include <stdint.h>

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

extern "C" {
#include "backend/backend.h"
#include "backend/cuda/backend_cuda.h"
}

/* A live block of alloc's. */
struct cuda_block {
    void *p;
    size_t bytes;
};

struct cuda_backend {
    struct backend base; /* first: the ops cast their struct backend * back */
    int device;
    cudaStream_t stream; /* every op, copy and GEMM, in call order */
    cublasLtHandle_t lt;
    void *lt_workspace; /* [CUDA_LT_WORKSPACE_BYTES] */
    size_t lt_workspace_bytes;
    void *convert; /* two halves: bf16 copies of matmul's a and b operands */
    size_t convert_bytes;
    void *reduce; /* partial sums (double) of bias/norm/sum-of-squares reductions */
    size_t reduce_bytes;
    struct lt_plan *lt_plans; /* [n_lt_plans] cuBLASLt descriptors and algorithm per GEMM shape (matmul.cu) */
    int n_lt_plans, cap_lt_plans;
    int *lt_slots; /* [2 * cap_lt_plans]: their hash index, plan + 1 (0: empty) */
    struct cuda_block *blocks; /* [n_blocks] what alloc handed out, for bytes_in_use on free */
    int n_blocks, cap_blocks;
    int failed;      /* set by the first failure */
    char error[512]; /* what it was */
};

static inline struct cuda_backend *cuda_of(struct backend *b) { return (struct cuda_backend *)b; }

/* Releases the GEMM plans (backend_cuda_free). */
void cuda_lt_plans_free(struct cuda_backend *cb);

/* Keeps the first failure: "<statement> failed: <why> (in <func> at file:line, device d)". */
void cuda_record_error(struct cuda_backend *cb, const char *statement, const char *why, const char *func,
                       const char *file, int line);

/* Each CUDA / cuBLASLt call and each launch goes through these. */
#define CUDA_CHECK(cb, call)                                                                 \
    do {                                                                                     \
        cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess)                                                               \
            cuda_record_error((cb), #call, cudaGetErrorString(e_), __func__, __FILE__, __LINE__); \
    } while (0)

#define CUBLAS_CHECK(cb, call)                                                               \
    do {                                                                                     \
        cublasStatus_t s_ = (call);                                                          \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                     \
            cuda_record_error((cb), #call, cublasLtGetStatusString(s_), __func__, __FILE__, __LINE__); \
    } while (0)

/* Launches kernel on the backend's stream and checks the launch. */
#define CUDA_LAUNCH(cb, kernel, grid, block, smem, ...)                                      \
    do {                                                                                     \
        kernel<<<(grid), (block), (smem), (cb)->stream>>>(__VA_ARGS__);                      \
        cudaError_t e_ = cudaGetLastError();                                                 \
        if (e_ != cudaSuccess)                                                               \
            cuda_record_error((cb), #kernel "<<<...>>>", cudaGetErrorString(e_), __func__, __FILE__, \
                              __LINE__);                                                     \
    } while (0)

/* Threads of the one-dimensional launches. */
#define CUDA_THREADS 256

/* Blocks for n elements, one per thread, capped (the kernels loop with a grid stride). */
static inline unsigned cuda_blocks(int64_t n)
{
    int64_t b = (n + CUDA_THREADS - 1) / CUDA_THREADS;
    return (unsigned)(b < 1 ? 1 : b > 65535 * 16 ? 65535 * 16 : b);
}

/* A tensor as a matrix, as the CPU backend reads it: [numel / last, last]. */
static inline int64_t cuda_cols(const struct tensor *t) { return t->shape[t->rank - 1]; }
static inline int64_t cuda_rows(const struct tensor *t) { return tensor_numel(t) / cuda_cols(t); }

/* Float dtypes every op takes. */
static inline bool cuda_is_float(enum dtype d) { return d == DTYPE_F32 || d == DTYPE_BF16 || d == DTYPE_F16; }

/* Element i of p, of float dtype dt, as fp32. */
static __device__ __forceinline__ float cuda_load(const void *p, int dt, int64_t i)
{
    if (dt == DTYPE_BF16)
        return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    if (dt == DTYPE_F16)
        return __half2float(((const __half *)p)[i]);
    return ((const float *)p)[i];
}

/* Stores v as element i of p, rounding to nearest even. */
static __device__ __forceinline__ void cuda_store(void *p, int dt, int64_t i, float v)
{
    if (dt == DTYPE_BF16)
        ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);
    else if (dt == DTYPE_F16)
        ((__half *)p)[i] = __float2half_rn(v);
    else
        ((float *)p)[i] = v;
}

/* Eight bf16 as one 16-byte load or store. */
union bf16x8 {
    uint4 u;
    __nv_bfloat16 h[8];
};

/* Whether every tensor is bf16 with n a multiple of 8 and 16-byte aligned data. */
static inline bool wide_bf16(const struct tensor *const *t, int count, int64_t n)
{
    for (int i = 0; i < count; i++)
        if (t[i]->dtype != DTYPE_BF16 || ((uintptr_t)t[i]->data & 15))
            return false;
    return n % 8 == 0;
}

/* Block-wide sum and max over blockDim.x (a multiple of 32, at most 1024)
 * threads: a fixed shuffle tree per warp, then warp 0 over the warps' results.
 * Every thread gets the answer. `shared` holds 32 slots; the call begins and
 * ends with a barrier, so it may be reused at once. */
template <typename T, typename Op>
static __device__ __forceinline__ T cuda_block_reduce(T v, T *shared, T identity, Op op)
{
    for (int o = 16; o > 0; o >>= 1)
        v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    __syncthreads();
    if (lane == 0)
        shared[warp] = v;
    __syncthreads();
    v = lane < warps ? shared[lane] : identity;
    for (int o = 16; o > 0; o >>= 1)
        v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    return v;
}

static __device__ __forceinline__ double cuda_block_sum_double(double v, double *shared)
{
    return cuda_block_reduce(v, shared, 0.0, [](double a, double b) { return a + b; });
}

static __device__ __forceinline__ float cuda_block_sum_float(float v, float *shared)
{
    return cuda_block_reduce(v, shared, 0.0f, [](float a, float b) { return a + b; });
}

static __device__ __forceinline__ float cuda_block_max_float(float v, float *shared)
{
    return cuda_block_reduce(v, shared, -INFINITY, [](float a, float b) { return fmaxf(a, b); });
}

/* Deterministic column sums (bias and norm-weight gradients): stage one
 * writes partial[chunk][col] (double) over fixed row chunks, stage two adds
 * the chunks in order into dst (dst[c] += sum, in dst's dtype). The split
 * depends on (rows, cols) only. */
int64_t cuda_column_chunks(const struct cuda_backend *cb, int64_t rows, int64_t cols);
void cuda_column_sums_finish(struct cuda_backend *cb, struct tensor *dst, int64_t chunks, int64_t cols);

/* dst[rows, cols] (bf16, contiguous) = src's block at (r0, c0) with row stride ld. */
void cuda_convert_block_bf16(struct cuda_backend *cb, void *dst, const void *src, enum dtype src_dtype,
                             int64_t ld, int64_t r0, int64_t c0, int64_t rows, int64_t cols);

extern "C" {
void cuda_convert(struct backend *b, struct tensor *dst, const struct tensor *src);

void cuda_matmul_add(struct backend *b, struct tensor *d, const struct tensor *c, const struct tensor *a, bool ta,
                     const struct tensor *bm, bool tb, float alpha);
void cuda_matmul(struct backend *b, struct tensor *c, const struct tensor *a, bool ta, const struct tensor *bm,
                 bool tb, float alpha, float beta);

void cuda_add_bias(struct backend *b, struct tensor *y, const struct tensor *bias);
void cuda_bias_backward(struct backend *b, struct tensor *dbias, const struct tensor *dy);
void cuda_axpy(struct backend *b, struct tensor *y, float alpha, const struct tensor *x);
double cuda_sum_squares(struct backend *b, const struct tensor *x);
void cuda_scale(struct backend *b, struct tensor *x, float s);

void cuda_embedding(struct backend *b, struct tensor *out, const struct tensor *table,
                    const struct tensor *ids);
void cuda_embedding_backward(struct backend *b, struct tensor *dtable, const struct tensor *dout,
                             const struct tensor *ids);

void cuda_rmsnorm(struct backend *b, struct tensor *out, struct tensor *rstd, const struct tensor *x,
                  const struct tensor *w, float eps);
void cuda_rmsnorm_backward(struct backend *b, struct tensor *dx, struct tensor *dw, const struct tensor *dout,
                           const struct tensor *x, const struct tensor *w, const struct tensor *rstd);

void cuda_rope(struct backend *b, struct tensor *x, const struct rope_table *rt, const struct seq_layout *sl,
               bool backward);

void cuda_attention(struct backend *b, struct tensor *out, struct tensor *lse, const struct tensor *q,
                    const struct tensor *k, const struct tensor *v, const struct tensor *sinks,
                    const struct seq_layout *sl, int64_t window, float scale);
void cuda_attention_backward(struct backend *b, struct tensor *dq, struct tensor *dk, struct tensor *dv,
                             struct tensor *dsinks, const struct tensor *dout, const struct tensor *q,
                             const struct tensor *k, const struct tensor *v, const struct tensor *sinks,
                             const struct tensor *out, const struct tensor *lse, const struct seq_layout *sl,
                             int64_t window, float scale);

void cuda_attention_cached(struct backend *b, struct tensor *out, const struct tensor *q, const struct tensor *kcache,
                           const struct tensor *vcache, const struct tensor *sinks, int64_t pos0, int64_t window,
                           float scale);

void cuda_swiglu(struct backend *b, struct tensor *h, const struct tensor *gate, const struct tensor *up);
void cuda_swiglu_backward(struct backend *b, struct tensor *dgate, struct tensor *dup, const struct tensor *dh,
                          const struct tensor *gate, const struct tensor *up);

void cuda_moe_topk(struct backend *b, struct tensor *experts, struct tensor *weights, const struct tensor *logits);
void cuda_moe_topk_backward(struct backend *b, struct tensor *dlogits, const struct tensor *dweights,
                            const struct tensor *experts, const struct tensor *weights);
void cuda_moe_group(struct backend *b, struct tensor *order, struct tensor *position, struct tensor *offsets,
                    const struct tensor *experts);
void cuda_moe_gather(struct backend *b, struct tensor *rows, const struct tensor *x, const struct tensor *order,
                     const struct tensor *weights, int64_t k);
void cuda_moe_scatter(struct backend *b, struct tensor *y, const struct tensor *rows, const struct tensor *position,
                      const struct tensor *weights, int64_t k);
void cuda_moe_weights_backward(struct backend *b, struct tensor *dweights, const struct tensor *dy,
                               const struct tensor *rows, const struct tensor *position, int64_t k);
void cuda_moe_matmul(struct backend *b, struct tensor *c, const struct tensor *a, const struct tensor *w, bool tw,
                     const struct tensor *bias, const struct tensor *offsets, float beta);
void cuda_moe_weight_grad(struct backend *b, struct tensor *dw, const struct tensor *dc, const struct tensor *a,
                          const struct tensor *offsets);
void cuda_swiglu_oai(struct backend *b, struct tensor *h, const struct tensor *x, float alpha, float limit);
void cuda_swiglu_oai_backward(struct backend *b, struct tensor *dx, const struct tensor *dh, const struct tensor *x,
                              float alpha, float limit);

void cuda_cross_entropy(struct backend *b, struct tensor *lse, const struct tensor *logits,
                        const struct tensor *labels, double *loss_sum);
void cuda_cross_entropy_backward(struct backend *b, struct tensor *logits, const struct tensor *lse,
                                 const struct tensor *labels, const float *scale);

void cuda_dropout(struct backend *b, struct tensor *y, const struct tensor *x, float p, const uint64_t *seed,
                  uint64_t offset);

void cuda_adamw(struct backend *b, struct tensor *param, const struct tensor *grad, struct tensor *m,
                struct tensor *v, double lr, double beta1, double beta2, double eps, double weight_decay,
                int64_t step);
}

#endif
