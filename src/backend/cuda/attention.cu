/* Attention over packed sequences, forward and backward, flash-attention
 * style: tiles of BQ queries and BK keys in shared memory (fp32, whatever the
 * tensors' dtype), an online softmax, and never more of the [T, T] scores
 * than one BQ x BK tile. Semantics are cpu/attention.c's: query i sees key j
 * iff both lie in the same sequence, j <= i and, with a window w > 0,
 * j > i - w; GQA reads kv head h / (H / KV); sinks join each softmax's
 * denominator with a value of zero; lse [H, T] keeps each row's
 * log-sum-exp, sinks included.
 *
 * The general path, simple and deterministic rather than fast: scalar fp32
 * dot products, one thread per row for the softmax update. bf16 tensors of
 * head dim 64 or 128 (every Llama and gpt-oss) take attention_mma.cu's
 * tensor-core kernels instead; this path serves the rest and decoding.
 * Measured on an H200 (T = 2048, H = 32, KV = 8, D = 128, causal, bf16):
 * forward 9.9 ms (3.5 TFLOP/s), backward 49 ms (1.8 TFLOP/s), against
 * cuBLASLt's 708 TFLOP/s on a 4096^3 bf16 GEMM: wgmma tiles are the next step.
 * Backward is two kernels, as the CPU's two passes, so no output element is
 * ever added to by two blocks: dq by query tiles over their keys, dk and dv
 * by key tiles over the queries (all heads of the kv group) that see them;
 * D_i = dout_i . out_i is recomputed per tile rather than stored. A third,
 * small kernel adds the sinks' gradient. attention_cached (decoding) is the
 * forward kernel with the queries offset into a cache of one sequence and no
 * lse. Shared rows are padded by one float
 * so the key tile's columns fall in distinct banks. */
#include <limits.h>

#include "backend/cuda/attention.cuh"

#define ATT_BQ 16       /* queries per tile */
#define ATT_BK 32       /* keys per tile */
#define ATT_THREADS 128
#define ATT_MAX_D 256   /* head dims up to this fit the shared memory of sm_90 */

/* ---- forward ---- */

static size_t fwd_smem(int64_t D)
{
    return sizeof(float) * ((2 * ATT_BQ + 2 * ATT_BK) * (D + 1) + ATT_BQ * ATT_BK + 3 * ATT_BQ) + sizeof(int) * ATT_BQ;
}

/* Block (query tile, head h): out [T, H, D] rows i0 .. i0 + BQ of head h,
 * lse [H, T] unless NULL (decoding). k, v [pos0 + T, KV, D] at least. */
static __global__ void attention_fwd_kernel(void *out, int out_dtype, float *lse, const void *q, int q_dtype,
                                            const void *k, int k_dtype, const void *v, int v_dtype,
                                            const void *sinks, int sinks_dtype, const int32_t *starts,
                                            struct att_dims d)
{
    extern __shared__ float smem[];
    const int64_t D = d.D, DP = D + 1;
    float *Qs = smem;                 /* [BQ][DP] */
    float *Os = Qs + ATT_BQ * DP;     /* [BQ][DP] */
    float *Ks = Os + ATT_BQ * DP;     /* [BK][DP] */
    float *Vs = Ks + ATT_BK * DP;     /* [BK][DP] */
    float *Ss = Vs + ATT_BK * DP;     /* [BQ][BK]: scores, then probabilities */
    float *row_m = Ss + ATT_BQ * ATT_BK, *row_l = row_m + ATT_BQ, *row_a = row_l + ATT_BQ; /* [BQ] */
    int *row_k0 = (int *)(row_a + ATT_BQ);                                                 /* [BQ] */
    const int64_t i0 = (int64_t)blockIdx.x * ATT_BQ, h = blockIdx.y, g = h / d.group;
    const int rows = (int)(d.T - i0 < ATT_BQ ? d.T - i0 : ATT_BQ);
    const int tid = threadIdx.x;

    for (int64_t e = tid; e < ATT_BQ * D; e += blockDim.x) {
        int64_t r = e / D, c = e % D;
        Qs[r * DP + c] = r < rows ? cuda_load(q, q_dtype, ((i0 + r) * d.H + h) * D + c) : 0.0f;
        Os[r * DP + c] = 0.0f;
    }
    if (tid < ATT_BQ) {
        row_k0[tid] = tid < rows ? (int)first_key(starts, d.S, d.window, d.pos0 + i0 + tid) : INT_MAX;
        row_m[tid] = sinks ? cuda_load(sinks, sinks_dtype, h) : -INFINITY;
        row_l[tid] = sinks ? 1.0f : 0.0f; /* exp(sink - m) with m = sink */
    }
    __syncthreads();

    const int64_t kend = d.pos0 + i0 + rows; /* one past the last key any row sees */
    for (int64_t j0 = row_k0[0]; j0 < kend; j0 += ATT_BK) {
        const int cols = (int)(kend - j0 < ATT_BK ? kend - j0 : ATT_BK);
        for (int64_t e = tid; e < ATT_BK * D; e += blockDim.x) {
            int64_t c = e / D, x = e % D, at = ((j0 + c) * d.KV + g) * D + x;
            Ks[c * DP + x] = c < cols ? cuda_load(k, k_dtype, at) : 0.0f;
            Vs[c * DP + x] = c < cols ? cuda_load(v, v_dtype, at) : 0.0f;
        }
        __syncthreads();
        for (int e = tid; e < ATT_BQ * ATT_BK; e += blockDim.x) {
            int r = e / ATT_BK, c = e % ATT_BK;
            int64_t i = d.pos0 + i0 + r, j = j0 + c;
            float s = -INFINITY;
            if (r < rows && c < cols && j >= row_k0[r] && j <= i) {
                float dot = 0;
                for (int64_t x = 0; x < D; x++)
                    dot += Qs[r * DP + x] * Ks[c * DP + x];
                s = d.scale * dot;
            }
            Ss[e] = s;
        }
        __syncthreads();
        if (tid < rows) {
            float *sr = Ss + tid * ATT_BK, m_old = row_m[tid], m = m_old;
            for (int c = 0; c < ATT_BK; c++)
                m = fmaxf(m, sr[c]);
            float alpha = m == -INFINITY ? 1.0f : expf(m_old - m), l = row_l[tid] * alpha;
            for (int c = 0; c < ATT_BK; c++) {
                float p = sr[c] == -INFINITY ? 0.0f : expf(sr[c] - m);
                sr[c] = p;
                l += p;
            }
            row_m[tid] = m;
            row_l[tid] = l;
            row_a[tid] = alpha;
        }
        __syncthreads();
        for (int64_t e = tid; e < ATT_BQ * D; e += blockDim.x) {
            int64_t r = e / D, x = e % D;
            if (r >= rows)
                continue;
            float acc = Os[r * DP + x] * row_a[r];
            for (int c = 0; c < cols; c++)
                acc += Ss[r * ATT_BK + c] * Vs[c * DP + x];
            Os[r * DP + x] = acc;
        }
        __syncthreads();
    }
    for (int64_t e = tid; e < ATT_BQ * D; e += blockDim.x) {
        int64_t r = e / D, x = e % D;
        if (r < rows)
            cuda_store(out, out_dtype, ((i0 + r) * d.H + h) * D + x, Os[r * DP + x] / row_l[r]);
    }
    if (lse && tid < rows)
        lse[h * d.T + i0 + tid] = row_m[tid] + logf(row_l[tid]);
}

/* Checks shapes and dtypes shared by forward and backward. */
static struct att_dims att_dims_check(const struct tensor *q, const struct tensor *k, const struct tensor *v,
                                      const struct tensor *sinks, const struct seq_layout *sl, int64_t window,
                                      float scale)
{
    assert(q->rank == 3 && k->rank == 3 && v->rank == 3);
    assert(cuda_is_float(q->dtype) && cuda_is_float(k->dtype) && cuda_is_float(v->dtype));
    /* Every entry of starts is searched, empty sequences past S too: the kernels' arguments are then the same for
     * every packing of T tokens (a recorded step replays with them). */
    struct att_dims d = {q->shape[0], q->shape[1], k->shape[1], q->shape[2], 0, sl->capacity, window, scale, 0};
    assert(d.KV > 0 && d.H % d.KV == 0 && d.D >= 1 && d.D <= ATT_MAX_D && d.T < INT_MAX);
    d.group = d.H / d.KV;
    assert(k->shape[0] == d.T && k->shape[2] == d.D);
    assert(v->shape[0] == d.T && v->shape[1] == d.KV && v->shape[2] == d.D);
    assert(!sinks || (cuda_is_float(sinks->dtype) && tensor_numel(sinks) == d.H));
    assert(sl->sequences >= 1 && sl->capacity >= sl->sequences);
    (void)v, (void)sinks;
    return d;
}

extern "C" void cuda_attention(struct backend *b, struct tensor *out, struct tensor *lse, const struct tensor *q,
                               const struct tensor *k, const struct tensor *v, const struct tensor *sinks,
                               const struct seq_layout *sl, int64_t window, float scale)
{
    struct cuda_backend *cb = cuda_of(b);
    struct att_dims d = att_dims_check(q, k, v, sinks, sl, window, scale);
    assert(cuda_is_float(out->dtype) && tensor_numel(out) == d.T * d.H * d.D);
    assert(lse->dtype == DTYPE_F32 && tensor_numel(lse) == d.H * d.T);
    if (d.T == 0 || d.H == 0)
        return;
    bool bf16 = out->dtype == DTYPE_BF16 && q->dtype == DTYPE_BF16 && k->dtype == DTYPE_BF16 && v->dtype == DTYPE_BF16;
    if (attention_mma_forward(cb, out->data, (float *)lse->data, q->data, k->data, v->data, sinks ? sinks->data : NULL,
                              sinks ? sinks->dtype : DTYPE_F32, sl->starts, &d, bf16))
        return;
    size_t smem = fwd_smem(d.D);
    CUDA_CHECK(cb, cudaFuncSetAttribute(attention_fwd_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((unsigned)((d.T + ATT_BQ - 1) / ATT_BQ), (unsigned)d.H);
    CUDA_LAUNCH(cb, attention_fwd_kernel, grid, ATT_THREADS, smem, out->data, out->dtype, (float *)lse->data, q->data,
                q->dtype, k->data, k->dtype, v->data, v->dtype, sinks ? sinks->data : NULL,
                sinks ? sinks->dtype : DTYPE_F32, sl->starts, d);
}

extern "C" void cuda_attention_cached(struct backend *b, struct tensor *out, const struct tensor *q,
                                      const struct tensor *kcache, const struct tensor *vcache,
                                      const struct tensor *sinks, int64_t pos0, int64_t window, float scale)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(q->rank == 3 && kcache->rank == 3 && vcache->rank == 3 && out->rank == 3);
    assert(cuda_is_float(q->dtype) && cuda_is_float(kcache->dtype) && cuda_is_float(vcache->dtype) &&
           cuda_is_float(out->dtype));
    struct att_dims d = {q->shape[0], q->shape[1], kcache->shape[1], q->shape[2], 0, 1, window, scale, pos0};
    assert(d.KV > 0 && d.H % d.KV == 0 && d.D >= 1 && d.D <= ATT_MAX_D && pos0 >= 0);
    d.group = d.H / d.KV;
    assert(kcache->shape[0] >= pos0 + d.T && kcache->shape[0] < INT_MAX && kcache->shape[2] == d.D);
    assert(vcache->shape[0] == kcache->shape[0] && vcache->shape[1] == d.KV && vcache->shape[2] == d.D);
    assert(tensor_numel(out) == d.T * d.H * d.D);
    assert(!sinks || (cuda_is_float(sinks->dtype) && tensor_numel(sinks) == d.H));
    if (d.T == 0 || d.H == 0)
        return;
    size_t smem = fwd_smem(d.D);
    CUDA_CHECK(cb, cudaFuncSetAttribute(attention_fwd_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((unsigned)((d.T + ATT_BQ - 1) / ATT_BQ), (unsigned)d.H);
    CUDA_LAUNCH(cb, attention_fwd_kernel, grid, ATT_THREADS, smem, out->data, out->dtype, (float *)NULL, q->data,
                q->dtype, kcache->data, kcache->dtype, vcache->data, vcache->dtype, sinks ? sinks->data : NULL,
                sinks ? sinks->dtype : DTYPE_F32, (const int32_t *)NULL, d);
}

/* ---- backward ---- */

static size_t dq_smem(int64_t D)
{
    return sizeof(float) * ((3 * ATT_BQ + 2 * ATT_BK) * (D + 1) + ATT_BQ * ATT_BK + 2 * ATT_BQ) + sizeof(int) * ATT_BQ;
}

/* D_i = dout_i . out_i of row i, head h, in order over the head dim (the CPU's dot). */
static __device__ float row_delta(const struct att_bwd_args *a, const struct att_dims *d, int64_t i, int64_t h)
{
    int64_t base = (i * d->H + h) * d->D;
    float s = 0;
    for (int64_t x = 0; x < d->D; x++)
        s += cuda_load(a->dout, a->dout_dtype, base + x) * cuda_load(a->out, a->out_dtype, base + x);
    return s;
}

/* Block (query tile, head h): dq rows i0 .. i0 + BQ of head h, over the keys they see. */
static __global__ void attention_dq_kernel(struct att_bwd_args a, struct att_dims d)
{
    extern __shared__ float smem[];
    const int64_t D = d.D, DP = D + 1;
    float *Qs = smem;               /* [BQ][DP] */
    float *dOs = Qs + ATT_BQ * DP;  /* [BQ][DP] */
    float *dQs = dOs + ATT_BQ * DP; /* [BQ][DP] */
    float *Ks = dQs + ATT_BQ * DP;  /* [BK][DP] */
    float *Vs = Ks + ATT_BK * DP;   /* [BK][DP] */
    float *Ss = Vs + ATT_BK * DP;   /* [BQ][BK]: dS */
    float *row_d = Ss + ATT_BQ * ATT_BK, *row_lse = row_d + ATT_BQ; /* [BQ] */
    int *row_k0 = (int *)(row_lse + ATT_BQ);                        /* [BQ] */
    const int64_t i0 = (int64_t)blockIdx.x * ATT_BQ, h = blockIdx.y, g = h / d.group;
    const int rows = (int)(d.T - i0 < ATT_BQ ? d.T - i0 : ATT_BQ);
    const int tid = threadIdx.x;

    for (int64_t e = tid; e < ATT_BQ * D; e += blockDim.x) {
        int64_t r = e / D, x = e % D, at = ((i0 + r) * d.H + h) * D + x;
        Qs[r * DP + x] = r < rows ? cuda_load(a.q, a.q_dtype, at) : 0.0f;
        dOs[r * DP + x] = r < rows ? cuda_load(a.dout, a.dout_dtype, at) : 0.0f;
        dQs[r * DP + x] = 0.0f;
    }
    if (tid < ATT_BQ) {
        bool in = tid < rows;
        row_k0[tid] = in ? (int)first_key(a.starts, d.S, d.window, i0 + tid) : INT_MAX;
        row_d[tid] = in ? row_delta(&a, &d, i0 + tid, h) : 0.0f;
        row_lse[tid] = in ? a.lse[h * d.T + i0 + tid] : 0.0f;
    }
    __syncthreads();

    const int64_t kend = i0 + rows;
    for (int64_t j0 = row_k0[0]; j0 < kend; j0 += ATT_BK) {
        const int cols = (int)(kend - j0 < ATT_BK ? kend - j0 : ATT_BK);
        for (int64_t e = tid; e < ATT_BK * D; e += blockDim.x) {
            int64_t c = e / D, x = e % D, at = ((j0 + c) * d.KV + g) * D + x;
            Ks[c * DP + x] = c < cols ? cuda_load(a.k, a.k_dtype, at) : 0.0f;
            Vs[c * DP + x] = c < cols ? cuda_load(a.v, a.v_dtype, at) : 0.0f;
        }
        __syncthreads();
        for (int e = tid; e < ATT_BQ * ATT_BK; e += blockDim.x) {
            int r = e / ATT_BK, c = e % ATT_BK;
            int64_t i = i0 + r, j = j0 + c;
            float ds = 0;
            if (r < rows && c < cols && j >= row_k0[r] && j <= i) {
                float qk = 0, dp = 0;
                for (int64_t x = 0; x < D; x++) {
                    qk += Qs[r * DP + x] * Ks[c * DP + x];
                    dp += dOs[r * DP + x] * Vs[c * DP + x];
                }
                float p = expf(d.scale * qk - row_lse[r]);
                ds = p * (dp - row_d[r]);
            }
            Ss[e] = ds;
        }
        __syncthreads();
        for (int64_t e = tid; e < ATT_BQ * D; e += blockDim.x) {
            int64_t r = e / D, x = e % D;
            float acc = 0;
            for (int c = 0; c < cols; c++)
                acc += Ss[r * ATT_BK + c] * Ks[c * DP + x];
            dQs[r * DP + x] += d.scale * acc;
        }
        __syncthreads();
    }
    for (int64_t e = tid; e < ATT_BQ * D; e += blockDim.x) {
        int64_t r = e / D, x = e % D;
        if (r < rows)
            cuda_store(a.dq, a.dq_dtype, ((i0 + r) * d.H + h) * D + x, dQs[r * DP + x]);
    }
}

static size_t dkdv_smem(int64_t D)
{
    return sizeof(float) * ((4 * ATT_BK + 2 * ATT_BQ) * (D + 1) + 2 * ATT_BQ * ATT_BK + 2 * ATT_BQ) +
           sizeof(int) * ATT_BQ;
}

/* Block (key tile, kv head g): dk, dv rows j0 .. j0 + BK of kv head g, over
 * every query of the group's heads that sees them. */
static __global__ void attention_dkdv_kernel(struct att_bwd_args a, struct att_dims d)
{
    extern __shared__ float smem[];
    const int64_t D = d.D, DP = D + 1;
    float *Ks = smem;               /* [BK][DP] */
    float *Vs = Ks + ATT_BK * DP;   /* [BK][DP] */
    float *dKs = Vs + ATT_BK * DP;  /* [BK][DP] */
    float *dVs = dKs + ATT_BK * DP; /* [BK][DP] */
    float *Qs = dVs + ATT_BK * DP;  /* [BQ][DP] */
    float *dOs = Qs + ATT_BQ * DP;  /* [BQ][DP] */
    float *Ps = dOs + ATT_BQ * DP;  /* [BQ][BK] */
    float *dSs = Ps + ATT_BQ * ATT_BK; /* [BQ][BK] */
    float *row_d = dSs + ATT_BQ * ATT_BK, *row_lse = row_d + ATT_BQ; /* [BQ] */
    int *row_k0 = (int *)(row_lse + ATT_BQ);                         /* [BQ] */
    const int64_t j0 = (int64_t)blockIdx.x * ATT_BK, g = blockIdx.y;
    const int cols = (int)(d.T - j0 < ATT_BK ? d.T - j0 : ATT_BK);
    const int tid = threadIdx.x;

    for (int64_t e = tid; e < ATT_BK * D; e += blockDim.x) {
        int64_t c = e / D, x = e % D, at = ((j0 + c) * d.KV + g) * D + x;
        Ks[c * DP + x] = c < cols ? cuda_load(a.k, a.k_dtype, at) : 0.0f;
        Vs[c * DP + x] = c < cols ? cuda_load(a.v, a.v_dtype, at) : 0.0f;
        dKs[c * DP + x] = dVs[c * DP + x] = 0.0f;
    }
    /* Queries [j0, iend) can see some key of the tile. */
    const int64_t iend = end_query(a.starts, d.S, d.window, j0 + cols - 1);
    __syncthreads();

    for (int64_t h = g * d.group; h < (g + 1) * d.group; h++)
        for (int64_t i0 = j0; i0 < iend; i0 += ATT_BQ) {
            const int rows = (int)(iend - i0 < ATT_BQ ? iend - i0 : ATT_BQ);
            for (int64_t e = tid; e < ATT_BQ * D; e += blockDim.x) {
                int64_t r = e / D, x = e % D, at = ((i0 + r) * d.H + h) * D + x;
                Qs[r * DP + x] = r < rows ? cuda_load(a.q, a.q_dtype, at) : 0.0f;
                dOs[r * DP + x] = r < rows ? cuda_load(a.dout, a.dout_dtype, at) : 0.0f;
            }
            if (tid < ATT_BQ) {
                bool in = tid < rows;
                row_k0[tid] = in ? (int)first_key(a.starts, d.S, d.window, i0 + tid) : INT_MAX;
                row_d[tid] = in ? row_delta(&a, &d, i0 + tid, h) : 0.0f;
                row_lse[tid] = in ? a.lse[h * d.T + i0 + tid] : 0.0f;
            }
            __syncthreads();
            for (int e = tid; e < ATT_BQ * ATT_BK; e += blockDim.x) {
                int r = e / ATT_BK, c = e % ATT_BK;
                int64_t i = i0 + r, j = j0 + c;
                float p = 0, ds = 0;
                if (r < rows && c < cols && j >= row_k0[r] && j <= i) {
                    float qk = 0, dp = 0;
                    for (int64_t x = 0; x < D; x++) {
                        qk += Qs[r * DP + x] * Ks[c * DP + x];
                        dp += dOs[r * DP + x] * Vs[c * DP + x];
                    }
                    p = expf(d.scale * qk - row_lse[r]);
                    ds = p * (dp - row_d[r]);
                }
                Ps[e] = p;
                dSs[e] = ds;
            }
            __syncthreads();
            for (int64_t e = tid; e < ATT_BK * D; e += blockDim.x) {
                int64_t c = e / D, x = e % D;
                float acc_v = 0, acc_k = 0;
                for (int r = 0; r < rows; r++) {
                    acc_v += Ps[r * ATT_BK + c] * dOs[r * DP + x];
                    acc_k += dSs[r * ATT_BK + c] * Qs[r * DP + x];
                }
                dVs[c * DP + x] += acc_v;
                dKs[c * DP + x] += d.scale * acc_k;
            }
            __syncthreads();
        }
    for (int64_t e = tid; e < ATT_BK * D; e += blockDim.x) {
        int64_t c = e / D, x = e % D, at = ((j0 + c) * d.KV + g) * D + x;
        if (c < cols) {
            cuda_store(a.dk, a.dk_dtype, at, dKs[c * DP + x]);
            cuda_store(a.dv, a.dv_dtype, at, dVs[c * DP + x]);
        }
    }
}

/* Block h: dsinks[h] += -sum_i exp(sink_h - lse[h, i]) * D_i, a fixed tree. */
static __global__ void attention_dsinks_kernel(void *dsinks, int dsinks_dtype, const void *sinks, int sinks_dtype,
                                               struct att_bwd_args a, struct att_dims d)
{
    __shared__ double shared[32];
    const int64_t h = blockIdx.x;
    float sink = cuda_load(sinks, sinks_dtype, h);
    double s = 0;
    for (int64_t i = threadIdx.x; i < d.T; i += blockDim.x)
        s -= (double)expf(sink - a.lse[h * d.T + i]) * row_delta(&a, &d, i, h);
    s = cuda_block_sum_double(s, shared);
    if (threadIdx.x == 0)
        cuda_store(dsinks, dsinks_dtype, h, cuda_load(dsinks, dsinks_dtype, h) + (float)s);
}

extern "C" void cuda_attention_backward(struct backend *b, struct tensor *dq, struct tensor *dk, struct tensor *dv,
                                        struct tensor *dsinks, const struct tensor *dout, const struct tensor *q,
                                        const struct tensor *k, const struct tensor *v, const struct tensor *sinks,
                                        const struct tensor *out, const struct tensor *lse,
                                        const struct seq_layout *sl, int64_t window, float scale)
{
    struct cuda_backend *cb = cuda_of(b);
    struct att_dims d = att_dims_check(q, k, v, sinks, sl, window, scale);
    int64_t T = d.T, H = d.H, KV = d.KV, D = d.D;
    assert(cuda_is_float(dq->dtype) && tensor_numel(dq) == T * H * D);
    assert(cuda_is_float(dk->dtype) && tensor_numel(dk) == T * KV * D);
    assert(cuda_is_float(dv->dtype) && tensor_numel(dv) == T * KV * D);
    assert(cuda_is_float(dout->dtype) && tensor_numel(dout) == T * H * D);
    assert(cuda_is_float(out->dtype) && tensor_numel(out) == T * H * D);
    assert(lse->dtype == DTYPE_F32 && tensor_numel(lse) == H * T);
    if (T == 0 || H == 0)
        return;
    struct att_bwd_args a = {dq->data,   dk->data,    dv->data,    dq->dtype,   dk->dtype,
                             dv->dtype,  dout->data,  q->data,     k->data,     v->data,
                             out->data,  dout->dtype, q->dtype,    k->dtype,    v->dtype,
                             out->dtype, (const float *)lse->data, sl->starts};
    bool bf16 = true;
    for (enum dtype t : {dq->dtype, dk->dtype, dv->dtype, dout->dtype, q->dtype, k->dtype, v->dtype, out->dtype})
        bf16 = bf16 && t == DTYPE_BF16;
    if (!attention_mma_backward(cb, &a, &d, bf16)) {
        size_t smem = dq_smem(D);
        CUDA_CHECK(cb, cudaFuncSetAttribute(attention_dq_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        dim3 grid_q((unsigned)((T + ATT_BQ - 1) / ATT_BQ), (unsigned)H);
        CUDA_LAUNCH(cb, attention_dq_kernel, grid_q, ATT_THREADS, smem, a, d);
        smem = dkdv_smem(D);
        CUDA_CHECK(cb,
                   cudaFuncSetAttribute(attention_dkdv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        dim3 grid_k((unsigned)((T + ATT_BK - 1) / ATT_BK), (unsigned)KV);
        CUDA_LAUNCH(cb, attention_dkdv_kernel, grid_k, ATT_THREADS, smem, a, d);
    }
    if (!dsinks || !sinks)
        return;
    assert(cuda_is_float(dsinks->dtype) && tensor_numel(dsinks) == H);
    CUDA_LAUNCH(cb, attention_dsinks_kernel, (unsigned)H, CUDA_THREADS, 0, dsinks->data, dsinks->dtype, sinks->data,
                sinks->dtype, a, d);
}
