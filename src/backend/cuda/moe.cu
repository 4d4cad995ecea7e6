/* Mixture of experts, gpt-oss's, as cpu/moe.c: the router's top-k and its
 * softmax, the grouping of (token, slot) pairs by expert, the gather into and
 * the scatter out of the grouped rows, the weights' gradient, and the clamped
 * gated activation. Sizes: T tokens, E experts, k experts per token,
 * N = T * k pairs, C hidden, I intermediate.
 *
 * The choice: every output element has one owning thread (or one block, for
 * a dot over C) that does the CPU's operations in the CPU's order, so results
 * are the same from run to run, with no float atomics. moe_group is the
 * CPU's stable counting sort in two kernels: one block counts the experts
 * (integer adds, whose total does not depend on their order) and scans the
 * counts into offsets; then block e walks the pairs in p order, ranking its
 * expert's pairs by warp ballots, so pairs stay ascending within an expert.
 * O(N E) reads for that walk (E blocks each read the N ids), small next to
 * the experts' GEMMs. The router's tensors (logits, weights and their
 * gradients) are fp32 as on the CPU; activations (x, rows, y, h) may be any
 * float dtype. An id or position out of range (the CPU asserts) gives NaN
 * outputs in gather, scatter and weights_backward; moe_group leaves its pair
 * out and moe_topk_backward ignores it. */
#include "backend/cuda/cuda_ops.cuh"
#include "backend/moe_topk_row.h"

/* Threads of moe_group's counting block and of a weights_backward dot. */
#define MOE_COUNT_THREADS 1024
#define MOE_DOT_THREADS 128
/* Experts moe_group counts in shared memory (int32 each). */
#define MOE_MAX_EXPERTS 8192

/* ---- moe_topk ---- */

/* Thread t: experts[t, :], weights[t, :] (both [T, k]) from logits [T, E],
 * by the CPU's selection, reading back the ids already chosen. */
static __global__ void moe_topk_kernel(int32_t *experts, float *weights, const float *logits, int64_t T, int64_t E,
                                       int64_t k)
{
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < T; t += (int64_t)gridDim.x * blockDim.x)
        moe_topk_row(logits + t * E, E, k, experts + t * k, weights + t * k);
}

extern "C" void cuda_moe_topk(struct backend *b, struct tensor *experts, struct tensor *weights,
                              const struct tensor *logits)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(experts->dtype == DTYPE_I32 && weights->dtype == DTYPE_F32 && logits->dtype == DTYPE_F32);
    int64_t T = cuda_rows(logits), E = cuda_cols(logits), k = cuda_cols(experts);
    assert(k >= 1 && k <= E && cuda_rows(experts) == T);
    assert(cuda_rows(weights) == T && cuda_cols(weights) == k);
    if (T == 0)
        return;
    CUDA_LAUNCH(cb, moe_topk_kernel, cuda_blocks(T), CUDA_THREADS, 0, (int32_t *)experts->data,
                (float *)weights->data, (const float *)logits->data, T, E, k);
}

/* dlogits [T, E] as T * E elements: w_j (dw_j - sum_i w_i dw_i) where e is
 * e_j (the last such j, as the CPU's writes in j order), else 0; experts,
 * weights, dweights [T, k]. */
static __global__ void moe_topk_backward_kernel(float *dlogits, const float *dweights, const int32_t *experts,
                                                const float *weights, int64_t T, int64_t E, int64_t k)
{
    int64_t n = T * E;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / E, e = i % E;
        const float *w = weights + t * k, *g = dweights + t * k;
        const int32_t *et = experts + t * k;
        float wg = 0; /* sum_i w_i dw_i */
        for (int64_t j = 0; j < k; j++)
            wg += w[j] * g[j];
        float d = 0;
        for (int64_t j = 0; j < k; j++)
            if (et[j] == e)
                d = w[j] * (g[j] - wg);
        dlogits[i] = d;
    }
}

extern "C" void cuda_moe_topk_backward(struct backend *b, struct tensor *dlogits, const struct tensor *dweights,
                                       const struct tensor *experts, const struct tensor *weights)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(dlogits->dtype == DTYPE_F32 && dweights->dtype == DTYPE_F32 && experts->dtype == DTYPE_I32 &&
           weights->dtype == DTYPE_F32);
    int64_t T = cuda_rows(dlogits), E = cuda_cols(dlogits), k = cuda_cols(experts);
    assert(cuda_rows(experts) == T && k <= E);
    assert(cuda_rows(weights) == T && cuda_cols(weights) == k);
    assert(cuda_rows(dweights) == T && cuda_cols(dweights) == k);
    if (T * E == 0)
        return;
    CUDA_LAUNCH(cb, moe_topk_backward_kernel, cuda_blocks(T * E), CUDA_THREADS, 0, (float *)dlogits->data,
                (const float *)dweights->data, (const int32_t *)experts->data, (const float *)weights->data, T, E,
                k);
}

/* ---- moe_group ---- */

/* One block: offsets [E + 1], offsets[e] = the pairs of the experts below e,
 * from experts [N]. Ids out of [0, E) are not counted. */
static __global__ void moe_group_offsets_kernel(int32_t *offsets, const int32_t *experts, int64_t N, int E)
{
    extern __shared__ int32_t count[]; /* [E] */
    for (int e = threadIdx.x; e < E; e += blockDim.x)
        count[e] = 0;
    __syncthreads();
    for (int64_t p = threadIdx.x; p < N; p += blockDim.x) {
        int32_t e = experts[p];
        if (e >= 0 && e < E)
            atomicAdd(&count[e], 1); /* integers: the counts do not depend on the order of the adds */
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int32_t sum = 0;
        for (int e = 0; e < E; e++) {
            offsets[e] = sum;
            sum += count[e];
        }
        offsets[E] = sum;
    }
}

/* Block e: expert e's pairs p, ascending, into order[offsets[e] ...] and
 * their slots into position[p] (order, position [N]). The block reads the ids
 * in chunks of blockDim (a multiple of 32) pairs; a pair's slot is the
 * expert's pairs in earlier chunks, then in earlier warps of its chunk, then
 * in earlier lanes of its warp. Stops once the expert's count is placed. */
static __global__ void moe_group_rows_kernel(int32_t *order, int32_t *position, const int32_t *offsets,
                                             const int32_t *experts, int64_t N)
{
    __shared__ int32_t warp_count[32];
    const int32_t e = blockIdx.x, first = offsets[e], count = offsets[e + 1] - first;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    int32_t done = 0; /* pairs of e in the chunks before: the same in every thread, so the loop is uniform */
    for (int64_t p0 = 0; p0 < N && done < count; p0 += blockDim.x) {
        int64_t p = p0 + threadIdx.x;
        bool mine = p < N && experts[p] == e;
        unsigned ballot = __ballot_sync(0xffffffffu, mine);
        if (lane == 0)
            warp_count[warp] = __popc(ballot);
        __syncthreads();
        int32_t before = done, chunk = 0;
        for (int w = 0; w < warps; w++) {
            before += w < warp ? warp_count[w] : 0;
            chunk += warp_count[w];
        }
        if (mine) {
            int32_t slot = first + before + __popc(ballot & ((1u << lane) - 1u));
            order[slot] = (int32_t)p;
            position[p] = slot;
        }
        done += chunk;
        __syncthreads(); /* warp_count is rewritten by the next chunk */
    }
}

extern "C" void cuda_moe_group(struct backend *b, struct tensor *order, struct tensor *position,
                               struct tensor *offsets, const struct tensor *experts)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(order->dtype == DTYPE_I32 && position->dtype == DTYPE_I32 && offsets->dtype == DTYPE_I32 &&
           experts->dtype == DTYPE_I32);
    int64_t N = tensor_numel(experts), E = tensor_numel(offsets) - 1;
    assert(E >= 1 && E <= MOE_MAX_EXPERTS && N <= INT32_MAX);
    assert(tensor_numel(order) == N && tensor_numel(position) == N);
    CUDA_LAUNCH(cb, moe_group_offsets_kernel, 1, MOE_COUNT_THREADS, (size_t)E * sizeof(int32_t),
                (int32_t *)offsets->data, (const int32_t *)experts->data, N, (int)E);
    if (N == 0)
        return;
    CUDA_LAUNCH(cb, moe_group_rows_kernel, (unsigned)E, CUDA_THREADS, 0, (int32_t *)order->data,
                (int32_t *)position->data, (const int32_t *)offsets->data, (const int32_t *)experts->data, N);
}

/* ---- gather, scatter and the weights' gradient ---- */

/* rows [N, C] as N * C elements: rows[r] = x[order[r] / k] (x [T, C]), times
 * weights[order[r]] (fp32 [N]) unless weights is NULL. */
static __global__ void moe_gather_kernel(void *rows, int rows_dtype, const void *x, int x_dtype,
                                         const int32_t *order, const float *weights, int64_t N, int64_t C, int64_t k)
{
    int64_t n = N * C;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / C, c = i % C, p = order[r];
        float v = NAN;
        if (p >= 0 && p < N) {
            v = cuda_load(x, x_dtype, p / k * C + c);
            if (weights)
                v *= weights[p];
        }
        cuda_store(rows, rows_dtype, i, v);
    }
}

extern "C" void cuda_moe_gather(struct backend *b, struct tensor *rows, const struct tensor *x,
                                const struct tensor *order, const struct tensor *weights, int64_t k)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(cuda_is_float(rows->dtype) && cuda_is_float(x->dtype) && order->dtype == DTYPE_I32);
    assert(!weights || weights->dtype == DTYPE_F32);
    int64_t T = cuda_rows(x), C = cuda_cols(x), N = cuda_rows(rows);
    assert(k >= 1 && N == T * k && cuda_cols(rows) == C && tensor_numel(order) == N);
    assert(!weights || tensor_numel(weights) == N);
    if (N * C == 0)
        return;
    CUDA_LAUNCH(cb, moe_gather_kernel, cuda_blocks(N * C), CUDA_THREADS, 0, rows->data, rows->dtype, x->data,
                x->dtype, (const int32_t *)order->data, weights ? (const float *)weights->data : NULL, N, C, k);
}

/* y [T, C] as T * C elements: y[t] += the sum over j < k, in j order, of
 * weights[t * k + j] (1 if NULL) times rows[position[t * k + j]] (rows
 * [N, C]): the sum first, then the add, as the CPU's. */
static __global__ void moe_scatter_kernel(void *y, int y_dtype, const void *rows, int rows_dtype,
                                          const int32_t *position, const float *weights, int64_t T, int64_t C,
                                          int64_t k)
{
    int64_t n = T * C, N = T * k;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / C, c = i % C;
        float sum = 0;
        for (int64_t j = 0; j < k; j++) {
            int64_t slot = position[t * k + j];
            float w = weights ? weights[t * k + j] : 1.0f;
            sum += w * (slot >= 0 && slot < N ? cuda_load(rows, rows_dtype, slot * C + c) : NAN);
        }
        cuda_store(y, y_dtype, i, cuda_load(y, y_dtype, i) + sum);
    }
}

extern "C" void cuda_moe_scatter(struct backend *b, struct tensor *y, const struct tensor *rows,
                                 const struct tensor *position, const struct tensor *weights, int64_t k)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(cuda_is_float(y->dtype) && cuda_is_float(rows->dtype) && position->dtype == DTYPE_I32);
    assert(!weights || weights->dtype == DTYPE_F32);
    int64_t T = cuda_rows(y), C = cuda_cols(y), N = cuda_rows(rows);
    assert(k >= 1 && N == T * k && cuda_cols(rows) == C && tensor_numel(position) == N);
    assert(!weights || tensor_numel(weights) == N);
    if (T * C == 0)
        return;
    CUDA_LAUNCH(cb, moe_scatter_kernel, cuda_blocks(T * C), CUDA_THREADS, 0, y->data, y->dtype, rows->data,
                rows->dtype, (const int32_t *)position->data, weights ? (const float *)weights->data : NULL, T, C,
                k);
}

/* Block p: dweights[p] (fp32 [N]) = dy[p / k] . rows[position[p]] (dy
 * [T, C], rows [N, C]), summed in double as the CPU's, by a fixed tree. */
static __global__ void moe_weights_backward_kernel(float *dweights, const void *dy, int dy_dtype, const void *rows,
                                                   int rows_dtype, const int32_t *position, int64_t N, int64_t C,
                                                   int64_t k)
{
    __shared__ double shared[32];
    const int64_t p = blockIdx.x, slot = position[p];
    const bool valid = slot >= 0 && slot < N;
    double s = 0;
    if (valid)
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
            s += (double)cuda_load(dy, dy_dtype, p / k * C + c) * (double)cuda_load(rows, rows_dtype, slot * C + c);
    s = cuda_block_sum_double(s, shared);
    if (threadIdx.x == 0)
        dweights[p] = valid ? (float)s : NAN;
}

extern "C" void cuda_moe_weights_backward(struct backend *b, struct tensor *dweights, const struct tensor *dy,
                                          const struct tensor *rows, const struct tensor *position, int64_t k)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(dweights->dtype == DTYPE_F32 && cuda_is_float(dy->dtype) && cuda_is_float(rows->dtype) &&
           position->dtype == DTYPE_I32);
    int64_t T = cuda_rows(dy), C = cuda_cols(dy), N = cuda_rows(rows);
    assert(k >= 1 && N == T * k && cuda_cols(rows) == C && N <= INT32_MAX);
    assert(tensor_numel(position) == N && tensor_numel(dweights) == N);
    if (N == 0)
        return;
    CUDA_LAUNCH(cb, moe_weights_backward_kernel, (unsigned)N, MOE_DOT_THREADS, 0, (float *)dweights->data,
                dy->data, dy->dtype, rows->data, rows->dtype, (const int32_t *)position->data, N, C, k);
}

/* ---- swiglu_oai ---- */

static __device__ __forceinline__ float sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

/* Comparisons written so that NaN stays NaN (fminf would return the limit). */
static __device__ __forceinline__ float clamp_gate(float g, float limit) { return g > limit ? limit : g; }
static __device__ __forceinline__ float clamp_up(float u, float limit)
{
    return u > limit ? limit : u < -limit ? -limit : u;
}

/* h [N, I] as n = N * I elements from x [N, 2I]: element i's gate is x's
 * element 2i, its up 2i + 1. */
static __global__ void swiglu_oai_kernel(void *h, int h_dtype, const void *x, int x_dtype, float alpha, float limit,
                                         int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float g = clamp_gate(cuda_load(x, x_dtype, 2 * i), limit);
        float u = clamp_up(cuda_load(x, x_dtype, 2 * i + 1), limit);
        cuda_store(h, h_dtype, i, (u + 1.0f) * (g * sigmoid(g * alpha))); /* transformers' order */
    }
}

extern "C" void cuda_swiglu_oai(struct backend *b, struct tensor *h, const struct tensor *x, float alpha,
                                float limit)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(cuda_is_float(h->dtype) && cuda_is_float(x->dtype));
    int64_t N = cuda_rows(x), I = cuda_cols(h);
    assert(cuda_cols(x) == 2 * I && cuda_rows(h) == N);
    if (N * I == 0)
        return;
    CUDA_LAUNCH(cb, swiglu_oai_kernel, cuda_blocks(N * I), CUDA_THREADS, 0, h->data, h->dtype, x->data, x->dtype,
                alpha, limit, N * I);
}

/* dx [N, 2I] from dh [N, I] (n = N * I elements) and x [N, 2I]: with
 * s = sigmoid(alpha g), dgate = dh (u + 1) s (1 + alpha g (1 - s)) and
 * dup = dh g s, each zero where its clamp held (not strictly inside). */
static __global__ void swiglu_oai_backward_kernel(void *dx, int dx_dtype, const void *dh, int dh_dtype,
                                                  const void *x, int x_dtype, float alpha, float limit, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float xg = cuda_load(x, x_dtype, 2 * i), xu = cuda_load(x, x_dtype, 2 * i + 1);
        float g = clamp_gate(xg, limit), u = clamp_up(xu, limit), d = cuda_load(dh, dh_dtype, i);
        float s = sigmoid(g * alpha);
        cuda_store(dx, dx_dtype, 2 * i, xg < limit ? d * (u + 1.0f) * s * (1.0f + alpha * g * (1.0f - s)) : 0.0f);
        cuda_store(dx, dx_dtype, 2 * i + 1, xu > -limit && xu < limit ? d * g * s : 0.0f);
    }
}

extern "C" void cuda_swiglu_oai_backward(struct backend *b, struct tensor *dx, const struct tensor *dh,
                                         const struct tensor *x, float alpha, float limit)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(cuda_is_float(dx->dtype) && cuda_is_float(dh->dtype) && cuda_is_float(x->dtype));
    int64_t N = cuda_rows(x), I = cuda_cols(dh);
    assert(cuda_cols(x) == 2 * I && cuda_rows(dh) == N && cuda_rows(dx) == N && cuda_cols(dx) == 2 * I);
    if (N * I == 0)
        return;
    CUDA_LAUNCH(cb, swiglu_oai_backward_kernel, cuda_blocks(N * I), CUDA_THREADS, 0, dx->data, dx->dtype, dh->data,
                dh->dtype, x->data, x->dtype, alpha, limit, N * I);
}
