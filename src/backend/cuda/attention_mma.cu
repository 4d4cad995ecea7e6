/* Attention on tensor cores: bf16 q, k, v (and out, dout, dq, dk, dv), head
 * dims 64 and 128, fp32 accumulation through mma.sync m16n8k16 (the Ampere
 * instruction, which Hopper runs too; wgmma would be the next step), in the
 * flash-attention-2 arrangement:
 *  - forward: a block is 128 queries of one head, 32 per warp (two blocks of
 *    16 rows sharing each K and V fragment read from shared memory); key
 *    tiles of 64 pass through shared memory; scores, the online softmax
 *    (base 2) and the output accumulator stay in registers, the
 *    probabilities turned into the A operand of P V without leaving them;
 *  - backward: a pass that stores D_i = dout_i . out_i of every (head,
 *    query) and each query's first key in the backend's conversion scratch,
 *    then two kernels, as attention.cu's, so that no element is added to by
 *    two blocks (deterministic, no atomics): dq by 64-query blocks over their
 *    keys, dk and dv by 64-key blocks over every query of the kv group's heads
 *    that sees them, in tiles of 32 queries (the accumulators of dk and dv
 *    fill the registers) that cp.async brings in while the previous one is
 *    multiplied.
 * Causal blocks differ in work up to the sequence length: grids put the
 * heads on x and number the tiles so that the longest blocks start first.
 * Semantics are attention.cu's (the masks, GQA, windows, sinks in the
 * denominator, lse [H, T] in natural log); its dsinks kernel runs after these.
 * Operands reach the registers through ldmatrix (plain and transposed);
 * shared rows are padded by 8 bf16 (16 bytes) so that the eight rows of each
 * 8x8 matrix fall in distinct banks. */
#include <stdint.h>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/mma.cuh"

#define MMA_THREADS 128 /* 4 warps */
#define TILE 64         /* queries per dq block, keys per tile and per dk/dv block */
#define FWD_M 2         /* blocks of 16 query rows per warp in forward, sharing each K and V fragment */
#define FWD_BQ (4 * 16 * FWD_M) /* queries per forward block */
#define DKDV_BQ 32      /* queries per tile of the dk/dv kernel */
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

/* Rows [0, rows) of a [rows][D] tile whose row r is src + r * stride, into
 * dst [rows][D + PAD]; rows from `valid` on are zeros. 16-byte copies by the
 * `threads` threads numbered `tid` (a block, or one warp group of it). */
template <int D>
static __device__ __forceinline__ void load_tile(bf16 *dst, const bf16 *src, int64_t stride, int rows, int valid,
                                                 int tid = threadIdx.x, int threads = MMA_THREADS)
{
    constexpr int V = D / 8;
    for (int e = tid; e < rows * V; e += threads) {
        int r = e / V, c = e % V;
        uint4 x = make_uint4(0, 0, 0, 0);
        if (r < valid)
            x = *(const uint4 *)(src + (int64_t)r * stride + c * 8);
        *(uint4 *)(dst + r * (D + PAD) + c * 8) = x;
    }
}

/* load_tile through cp.async: issued, not landed (commit and wait). */
template <int D>
static __device__ __forceinline__ void load_tile_async(bf16 *dst, const bf16 *src, int64_t stride, int rows, int valid,
                                                       int tid, int threads)
{
    constexpr int V = D / 8;
    for (int e = tid; e < rows * V; e += threads) {
        int r = e / V, c = e % V;
        cp_async16(dst + r * (D + PAD) + c * 8, r < valid ? src + (int64_t)r * stride + c * 8 : src, r < valid);
    }
}

/* acc[p * M + m] = A_p B_p^T for p < P over the warp's rows [row0 + 16 m,
 * row0 + 16 m + 16) for m < M: A_p rows of a [.][D + PAD] tile, B_p the first
 * NT * 8 rows of another, over all D columns (Q K^T with dO V^T, K Q^T with V
 * dO^T). The P products share one pass over the head dim, as one loop keeps
 * fewer registers live; the M row blocks share each B fragment, which halves
 * the shared-memory reads per product at M = 2. */
template <int D, int NT, int P, int M = 1>
static __device__ __forceinline__ void mma_rows_by_rows(float (*acc)[NT][4], const bf16 *const *a_tiles,
                                                        const bf16 *const *b_tiles, int row0)
{
    #pragma unroll
    for (int p = 0; p < P * M; p++)
        #pragma unroll
        for (int n = 0; n < NT; n++)
            acc[p][n][0] = acc[p][n][1] = acc[p][n][2] = acc[p][n][3] = 0;
    #pragma unroll
    for (int kc = 0; kc < D / 16; kc++) {
        uint32_t a[P][M][4];
        #pragma unroll
        for (int p = 0; p < P; p++)
            #pragma unroll
            for (int m = 0; m < M; m++)
                frag_a<D>(a[p][m], a_tiles[p], row0 + 16 * m, kc * 16);
        #pragma unroll
        for (int n = 0; n < NT; n += 2)
            #pragma unroll
            for (int p = 0; p < P; p++) {
                uint32_t b[4];
                frag_b2<D>(b, b_tiles[p], n * 8, kc * 16);
                #pragma unroll
                for (int m = 0; m < M; m++) {
                    mma16816(acc[p * M + m][n], a[p][m], b[0], b[1]);
                    mma16816(acc[p * M + m][n + 1], a[p][m], b[2], b[3]);
                }
            }
    }
}

/* The A operand (16 rows, columns [16 kc, 16 kc + 16)) of a warp's fp32
 * accumulator s, held as n-tiles of 8 columns, rounded to bf16: scores or
 * their gradients go from one product into the next without leaving the
 * registers. */
static __device__ __forceinline__ void frag_from_acc(uint32_t a[4], const float (*s)[4], int kc)
{
    a[0] = pack2(s[2 * kc][0], s[2 * kc][1]);
    a[1] = pack2(s[2 * kc][2], s[2 * kc][3]);
    a[2] = pack2(s[2 * kc + 1][0], s[2 * kc + 1][1]);
    a[3] = pack2(s[2 * kc + 1][2], s[2 * kc + 1][3]);
}

/* acc[m * D / 8 ..][D / 8] += S_m T for the warp's M blocks of 16 rows: S_m
 * its accumulator over K columns (s[m * K / 8 ..]), T a [K][D + PAD] tile
 * (P V, dS K, P^T dO, dS^T Q), each fragment of T serving the M blocks. */
template <int D, int K, int M = 1>
static __device__ __forceinline__ void mma_acc_tile(float (*acc)[4], const float (*s)[4], const bf16 *tile)
{
    #pragma unroll
    for (int kc = 0; kc < K / 16; kc++) {
        uint32_t a[M][4];
        #pragma unroll
        for (int m = 0; m < M; m++)
            frag_from_acc(a[m], s + m * (K / 8), kc);
        #pragma unroll
        for (int n = 0; n < D / 8; n += 2) {
            uint32_t b[4];
            frag_b2_trans<D>(b, tile, kc * 16, n * 8);
            #pragma unroll
            for (int m = 0; m < M; m++) {
                mma16816(acc[m * (D / 8) + n], a[m], b[0], b[1]);
                mma16816(acc[m * (D / 8) + n + 1], a[m], b[2], b[3]);
            }
        }
    }
}

/* Row r (0: the thread's first, 1: its second) of a warp's [16][D] accumulator,
 * times scale, into bf16 at row (the row's first element of this thread's columns). */
template <int D>
static __device__ __forceinline__ void store_acc_row(bf16 *row, const float (*acc)[4], int r, float scale)
{
    #pragma unroll
    for (int n = 0; n < D / 8; n++)
        *(uint32_t *)(row + n * 8) = pack2(acc[n][2 * r] * scale, acc[n][2 * r + 1] * scale);
}

/* Sum over the four threads of a quad (the threads holding one row). */
static __device__ __forceinline__ float quad_sum(float x)
{
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

static __device__ __forceinline__ float quad_max(float x)
{
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

/* Whether every key of [j0, j0 + TILE) is seen by both of a thread's rows
 * i[0] < i[1] (first keys f[0] <= f[1]): then that tile needs no mask, and
 * the 64-bit index arithmetic of one is skipped for all but the tiles on the
 * diagonal or a sequence's start. */
static __device__ __forceinline__ bool tile_unmasked(int64_t j0, const int64_t i[2], const int64_t f[2])
{
    return j0 + TILE - 1 <= i[0] && j0 >= f[1];
}

/* Issues the cp.async copies of key tile [j0, min(j0 + TILE, kend)) of kv
 * head g: K into kv[0 .. TILE), V after it (rows past kend zero). */
template <int D>
static __device__ __forceinline__ void load_kv_async(bf16 *kv, const bf16 *k, const bf16 *v, int64_t j0, int64_t kend,
                                                     int64_t g, const struct att_dims &d)
{
    const int valid = (int)min((int64_t)TILE, kend - j0);
    load_tile_async<D>(kv, k + (j0 * d.KV + g) * D, d.KV * D, TILE, valid, threadIdx.x, MMA_THREADS);
    load_tile_async<D>(kv + TILE * (D + PAD), v + (j0 * d.KV + g) * D, d.KV * D, TILE, valid, threadIdx.x,
                       MMA_THREADS);
}

/* Walks the key tiles [jfirst, kend) of kv head g through the two slots at
 * kv (each K then V): the next tile's copies are issued before body(j0, K, V)
 * multiplies this one. Every thread of the block calls it. */
template <int D, typename F>
static __device__ __forceinline__ void each_key_tile(bf16 *kv, const bf16 *k, const bf16 *v, int64_t jfirst,
                                                     int64_t kend, int64_t g, const struct att_dims &d, F body)
{
    constexpr int SLOT = 2 * TILE * (D + PAD);
    if (jfirst < kend)
        load_kv_async<D>(kv, k, v, jfirst, kend, g, d);
    cp_async_commit();
    #pragma unroll
    for (int64_t j0 = jfirst, slot = 0; j0 < kend; j0 += TILE, slot ^= 1) {
        if (j0 + TILE < kend)
            load_kv_async<D>(kv + (slot ^ 1) * SLOT, k, v, j0 + TILE, kend, g, d);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads(); /* this slot has landed for every thread */
        const bf16 *K = kv + slot * SLOT;
        body(j0, K, K + TILE * (D + PAD));
        __syncthreads(); /* the slot is read before the next turn's copies overwrite it */
    }
}

/* ---- forward ---- */

/* One key tile [j0, j0 + TILE) of the online softmax, for a thread's rows
 * i[0], i[1] (first keys f): the raw scores s become the probabilities
 * exp2(s * sl2 - m) under the running max m, whose rise rescales the running
 * sum l and the output accumulator o. */
template <int D>
static __device__ __forceinline__ void online_softmax_tile(float (*s)[4], float (*o)[4], float m[2], float l[2],
                                                           int64_t j0, const int64_t i[2], const int64_t f[2],
                                                           float sl2, int t4)
{
    const bool all = tile_unmasked(j0, i, f);
    float mx[2] = {m[0], m[1]};
    #pragma unroll
    for (int n = 0; n < 8; n++)
        #pragma unroll
        for (int e = 0; e < 4; e++) {
            int r = e / 2;
            float x = s[n][e] * sl2;
            if (!all) {
                int64_t j = j0 + n * 8 + 2 * t4 + (e & 1);
                x = j >= f[r] && j <= i[r] ? x : -INFINITY;
            }
            s[n][e] = x;
            mx[r] = fmaxf(mx[r], x);
        }
    float alpha[2];
    #pragma unroll
    for (int r = 0; r < 2; r++) {
        mx[r] = quad_max(mx[r]);
        alpha[r] = mx[r] == -INFINITY ? 1.0f : exp2f(m[r] - mx[r]);
        m[r] = mx[r];
        l[r] *= alpha[r];
    }
    #pragma unroll
    for (int n = 0; n < 8; n++)
        #pragma unroll
        for (int e = 0; e < 4; e++) {
            int r = e / 2;
            float p = s[n][e] == -INFINITY ? 0.0f : exp2f(s[n][e] - m[r]);
            s[n][e] = p;
            l[r] += p;
        }
    #pragma unroll
    for (int n = 0; n < D / 8; n++) {
        o[n][0] *= alpha[0], o[n][1] *= alpha[0];
        o[n][2] *= alpha[1], o[n][3] *= alpha[1];
    }
}

template <int D>
static __global__ void __launch_bounds__(MMA_THREADS, 2)
    attention_fwd_mma(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, const void *sinks,
                      int sinks_dtype, const int32_t *starts, struct att_dims d)
{
    constexpr int LD = D + PAD, DT = D / 8, M = FWD_M;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *Qs = (bf16 *)smem_raw, *KV = Qs + FWD_BQ * LD; /* then [slot][K, V] */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gr = lane / 4, t4 = lane % 4;
    const int64_t T = d.T, i0 = (int64_t)(gridDim.y - 1 - blockIdx.y) * FWD_BQ, h = blockIdx.x, g = h / d.group;
    const int rows = (int)min((int64_t)FWD_BQ, T - i0), row0 = warp * 16 * M;

    load_tile<D>(Qs, q + (i0 * d.H + h) * D, d.H * D, FWD_BQ, rows);
    /* This thread's rows in row block b: i[b][0] and i[b][1] = i[b][0] + 8, with their first keys. */
    int64_t i[M][2], f[M][2];
    #pragma unroll
    for (int b = 0; b < M; b++)
        #pragma unroll
        for (int r = 0; r < 2; r++) {
            i[b][r] = i0 + row0 + 16 * b + gr + 8 * r;
            f[b][r] = i[b][r] < T ? first_key(starts, d.S, d.window, i[b][r]) : INT64_MAX;
        }
    const float sink = sinks ? cuda_load(sinks, sinks_dtype, h) * LOG2E : -INFINITY, sl2 = d.scale * LOG2E;
    float m[M][2], l[M][2], o[M][DT][4];
    #pragma unroll
    for (int b = 0; b < M; b++) {
        m[b][0] = m[b][1] = sink, l[b][0] = l[b][1] = 0;
        #pragma unroll
        for (int n = 0; n < DT; n++)
            o[b][n][0] = o[b][n][1] = o[b][n][2] = o[b][n][3] = 0;
    }

    const int64_t kend = i0 + rows, warp_last = i0 + row0 + 16 * M - 1;
    each_key_tile<D>(KV, k, v, first_key(starts, d.S, d.window, i0), kend, g, d,
                     [&](int64_t j0, const bf16 *Ks, const bf16 *Vs) {
                         if (warp_last < j0)
                             return; /* every key of the tile is after this warp's rows */
                         float s[M][8][4];
                         const bf16 *as[1] = {Qs}, *bs[1] = {Ks};
                         mma_rows_by_rows<D, 8, 1, M>(s, as, bs, row0);
                         #pragma unroll
                         for (int b = 0; b < M; b++)
                             online_softmax_tile<D>(s[b], o[b], m[b], l[b], j0, i[b], f[b], sl2, t4);
                         mma_acc_tile<D, TILE, M>(o[0], s[0], Vs);
                     });
    #pragma unroll
    for (int b = 0; b < M; b++)
        #pragma unroll
        for (int r = 0; r < 2; r++) {
            if (i[b][r] >= T)
                continue;
            float L = quad_sum(l[b][r]) + (sinks ? exp2f(sink - m[b][r]) : 0.0f);
            store_acc_row<D>(out + (i[b][r] * d.H + h) * D + 2 * t4, o[b], r, 1.0f / L);
            if (t4 == 0)
                lse[h * T + i[b][r]] = (m[b][r] + log2f(L)) * LN2;
        }
}

/* ---- backward: the per-query terms ---- */

/* What both backward kernels read per query, in the conversion scratch:
 * delta[h * T + i] = dout_i . out_i of head h, first[i] = query i's first key. */
struct bwd_terms {
    float *delta;
    int32_t *first;
};

/* One warp per (query, head), four elements a lane. */
template <int D>
static __global__ void attention_bwd_terms(struct bwd_terms t, struct att_bwd_args a, struct att_dims d)
{
    const int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32, i = w / d.H, h = w % d.H;
    const int lane = threadIdx.x % 32;
    if (w >= d.T * d.H)
        return;
    const bf16 *o = (const bf16 *)a.out + w * D, *g = (const bf16 *)a.dout + w * D; /* row i, head h */
    float s = 0;
    for (int x = lane * 4; x < D; x += 128) {
        uint2 ov = *(const uint2 *)(o + x), gv = *(const uint2 *)(g + x);
        const __nv_bfloat162 *o2 = (const __nv_bfloat162 *)&ov, *g2 = (const __nv_bfloat162 *)&gv;
        for (int k = 0; k < 2; k++) {
            float2 of = __bfloat1622float2(o2[k]), gf = __bfloat1622float2(g2[k]);
            s += of.x * gf.x + of.y * gf.y;
        }
    }
    for (int off = 16; off > 0; off /= 2)
        s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) {
        t.delta[h * d.T + i] = s;
        if (h == 0)
            t.first[i] = (int32_t)first_key(a.starts, d.S, d.window, i);
    }
}

/* ---- backward: dq ---- */

/* One key tile of the dq kernel for a warp's 16 rows: dS from the recomputed
 * probabilities and dO V^T, then dq += dS K. */
template <int D>
static __device__ __forceinline__ void dq_tile(float (*dq)[4], const bf16 *Qs, const bf16 *dOs, const bf16 *Ks,
                                               const bf16 *Vs, int64_t j0, const int64_t i[2], const int64_t f[2],
                                               const float la[2], const float da[2], float sl2, int warp, int t4)
{
    float sd[2][8][4], (&s)[8][4] = sd[0], (&dp)[8][4] = sd[1];
    const bf16 *as[2] = {Qs, dOs}, *bs[2] = {Ks, Vs};
    mma_rows_by_rows<D, 8, 2>(sd, as, bs, warp * 16);
    const bool all = tile_unmasked(j0, i, f);
    for (int n = 0; n < 8; n++)
        for (int e = 0; e < 4; e++) {
            int r = e / 2;
            float p = exp2f(s[n][e] * sl2 - la[r]);
            if (!all) {
                int64_t j = j0 + n * 8 + 2 * t4 + (e & 1);
                p = j >= f[r] && j <= i[r] ? p : 0.0f;
            }
            s[n][e] = p * (dp[n][e] - da[r]); /* dS */
        }
    mma_acc_tile<D, TILE>(dq, s, Ks);
}

/* Two blocks per SM: what its 104 KB of shared memory (Q, dO, two slots of K and V) allow, so registers are
 * capped to match. */
template <int D>
static __global__ void __launch_bounds__(MMA_THREADS, 2)
    attention_dq_mma(struct att_bwd_args a, struct bwd_terms t, struct att_dims d)
{
    constexpr int LD = D + PAD, DT = D / 8;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *Qs = (bf16 *)smem_raw, *dOs = Qs + TILE * LD, *KV = dOs + TILE * LD; /* then [slot][K, V] */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gr = lane / 4, t4 = lane % 4;
    const int64_t T = d.T, H = d.H, i0 = (int64_t)(gridDim.y - 1 - blockIdx.y) * TILE, h = blockIdx.x;
    const int64_t g = h / d.group;
    const int rows = (int)min((int64_t)TILE, T - i0);
    const int64_t at = (i0 * H + h) * D;

    load_tile<D>(Qs, (const bf16 *)a.q + at, H * D, TILE, rows);
    load_tile<D>(dOs, (const bf16 *)a.dout + at, H * D, TILE, rows);
    /* This thread's rows i[0] and i[1] = i[0] + 8: first keys, lse (base 2) and D_i. */
    int64_t i[2], f[2];
    float la[2], da[2];
    for (int r = 0; r < 2; r++) {
        i[r] = i0 + warp * 16 + gr + 8 * r;
        bool in = i[r] < T;
        f[r] = in ? t.first[i[r]] : INT64_MAX;
        la[r] = in ? a.lse[h * T + i[r]] * LOG2E : 0.0f;
        da[r] = in ? t.delta[h * T + i[r]] : 0.0f;
    }
    const float sl2 = d.scale * LOG2E;
    float dq[DT][4];
    for (int n = 0; n < DT; n++)
        dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0;

    const int64_t kend = i0 + rows, warp_last = i0 + warp * 16 + 15;
    each_key_tile<D>(KV, (const bf16 *)a.k, (const bf16 *)a.v, first_key(a.starts, d.S, d.window, i0), kend, g, d,
                     [&](int64_t j0, const bf16 *Ks, const bf16 *Vs) {
                         if (warp_last >= j0)
                             dq_tile<D>(dq, Qs, dOs, Ks, Vs, j0, i, f, la, da, sl2, warp, t4);
                     });
    for (int r = 0; r < 2; r++) {
        if (i[r] >= T)
            continue;
        store_acc_row<D>((bf16 *)a.dq + (i[r] * H + h) * D + 2 * t4, dq, r, d.scale);
    }
}

/* ---- backward: dk, dv ---- */

/* Waits for the 128 threads of warp group wg only (named barrier 1 + wg). */
static __device__ __forceinline__ void group_sync(int wg)
{
    asm volatile("bar.sync %0, %1;\n" ::"r"(1 + wg), "r"(MMA_THREADS));
}

/* Block (kv head g, 64-key tile) of WG warp groups: group wg takes the
 * query heads g * group + wg, + WG, ... of the kv group, so a causal key tile
 * near the start, which every later query sees, is not one group's long
 * serial walk over all the heads; at the end group 0 adds the others'
 * accumulators, in order, through shared memory. Each group walks its
 * (head, query tile) pairs with two slots: the next pair's Q, dO, lse, D and
 * first keys come in by cp.async while the current one is multiplied. */
template <int D, int WG>
static __global__ void __launch_bounds__(MMA_THREADS *WG)
    attention_dkdv_mma(struct att_bwd_args a, struct bwd_terms t, struct att_dims d)
{
    constexpr int LD = D + PAD, DT = D / 8, NQ = DKDV_BQ / 8, QT = DKDV_BQ * LD, BQ = DKDV_BQ;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const int warp = threadIdx.x / 32 % 4, wg = threadIdx.x / MMA_THREADS, tid = threadIdx.x % MMA_THREADS;
    const int lane = threadIdx.x % 32, gr = lane / 4, t4 = lane % 4;
    bf16 *Ks = (bf16 *)smem_raw, *Vs = Ks + TILE * LD;
    bf16 *tiles = Vs + TILE * LD + wg * 4 * QT;                              /* [slot][Q, dO] of this group */
    float *terms = (float *)(Vs + TILE * LD + WG * 4 * QT) + wg * 2 * 3 * BQ; /* [slot][lse, D, first] */
    const int64_t T = d.T, H = d.H, g = blockIdx.x, k0 = (int64_t)blockIdx.y * TILE;
    const int keys = (int)min((int64_t)TILE, T - k0);

    load_tile<D>(Ks, (const bf16 *)a.k + (k0 * d.KV + g) * D, d.KV * D, TILE, keys, threadIdx.x, MMA_THREADS * WG);
    load_tile<D>(Vs, (const bf16 *)a.v + (k0 * d.KV + g) * D, d.KV * D, TILE, keys, threadIdx.x, MMA_THREADS * WG);
    __syncthreads();
    const int64_t j[2] = {k0 + warp * 16 + gr, k0 + warp * 16 + gr + 8}, warp_first = k0 + warp * 16;
    const int64_t qend = end_query(a.starts, d.S, d.window, k0 + keys - 1);
    const float sl2 = d.scale * LOG2E;
    float dk[DT][4], dv[DT][4];
    for (int n = 0; n < DT; n++)
        for (int e = 0; e < 4; e++)
            dk[n][e] = dv[n][e] = 0;

    /* Issues the copies of pair (head hh of the group, queries from i0) into slot. */
    auto issue = [&](int slot, int64_t hh, int64_t i0) {
        const int64_t h = g * d.group + hh, at = (i0 * H + h) * D;
        const int nq = (int)min((int64_t)BQ, qend - i0);
        bf16 *Q = tiles + slot * 2 * QT;
        load_tile_async<D>(Q, (const bf16 *)a.q + at, H * D, BQ, nq, tid, MMA_THREADS);
        load_tile_async<D>(Q + QT, (const bf16 *)a.dout + at, H * D, BQ, nq, tid, MMA_THREADS);
        float *r = terms + slot * 3 * BQ;
        for (int c = tid; c < BQ; c += MMA_THREADS) {
            bool ok = c < nq;
            cp_async4(r + c, ok ? a.lse + h * T + i0 + c : a.lse, ok);
            cp_async4(r + BQ + c, ok ? t.delta + h * T + i0 + c : t.delta, ok);
            cp_async4(r + 2 * BQ + c, ok ? t.first + i0 + c : t.first, ok);
        }
    };
    int64_t hh = wg, i0 = k0;
    bool more = hh < d.group;
    if (more)
        issue(0, hh, i0);
    cp_async_commit();
    for (int slot = 0; more; slot ^= 1) {
        int64_t nh = hh, ni = i0 + BQ;
        if (ni >= qend)
            nh += WG, ni = k0;
        const bool next = nh < d.group;
        if (next)
            issue(slot ^ 1, nh, ni);
        cp_async_commit();
        cp_async_wait<1>(); /* this slot's copies have landed */
        group_sync(wg);
        const int nq = (int)min((int64_t)BQ, qend - i0);
        if (warp_first <= i0 + nq - 1) { /* else this warp's keys come after every query of the tile */
            const bf16 *Qs = tiles + slot * 2 * QT, *dOs = Qs + QT;
            const float *lse = terms + slot * 3 * BQ, *delta = lse + BQ;
            const int32_t *first = (const int32_t *)(delta + BQ);
            float sd[2][NQ][4], (&s)[NQ][4] = sd[0], (&dp)[NQ][4] = sd[1];
            const bf16 *as[2] = {Ks, Vs}, *bs[2] = {Qs, dOs};
            mma_rows_by_rows<D, NQ, 2>(sd, as, bs, warp * 16);
            /* No mask when the tile is full, both keys precede its first query and its last query's first key
             * (first[] is nondecreasing) precedes them. */
            const bool all = nq == BQ && j[1] <= i0 && first[BQ - 1] <= j[0];
            for (int n = 0; n < NQ; n++)
                for (int e = 0; e < 4; e++) {
                    int c = n * 8 + 2 * t4 + (e & 1);
                    float p = exp2f(s[n][e] * sl2 - lse[c] * LOG2E);
                    if (!all) {
                        int64_t key = j[e / 2], i = i0 + c;
                        p = c < nq && key < T && key <= i && key >= first[c] ? p : 0.0f;
                    }
                    s[n][e] = p;
                    dp[n][e] = p * (dp[n][e] - delta[c]); /* dS */
                }
            mma_acc_tile<D, BQ>(dv, s, dOs);
            mma_acc_tile<D, BQ>(dk, dp, Qs);
        }
        group_sync(wg); /* the slot is read before the next turn's copies overwrite it */
        hh = nh, i0 = ni, more = next;
    }
    if (WG > 1) {
        /* Groups 1.. hand their sums to group 0 through the (now free) shared memory, element e of
         * thread tid at e * 128 + tid: consecutive threads, consecutive banks. */
        float *sums = (float *)smem_raw;
        for (int w = 1; w < WG; w++) {
            __syncthreads();
            if (wg == w)
                for (int n = 0; n < DT; n++)
                    for (int e = 0; e < 4; e++) {
                        sums[((n * 4 + e) * 2) * MMA_THREADS + tid] = dk[n][e];
                        sums[((n * 4 + e) * 2 + 1) * MMA_THREADS + tid] = dv[n][e];
                    }
            __syncthreads();
            if (wg == 0)
                for (int n = 0; n < DT; n++)
                    for (int e = 0; e < 4; e++) {
                        dk[n][e] += sums[((n * 4 + e) * 2) * MMA_THREADS + tid];
                        dv[n][e] += sums[((n * 4 + e) * 2 + 1) * MMA_THREADS + tid];
                    }
        }
        if (wg != 0)
            return;
    }
    for (int r = 0; r < 2; r++) {
        if (j[r] >= T)
            continue;
        int64_t at = (j[r] * d.KV + g) * D + 2 * t4;
        store_acc_row<D>((bf16 *)a.dk + at, dk, r, d.scale);
        store_acc_row<D>((bf16 *)a.dv + at, dv, r, 1.0f);
    }
}

/* ---- launches ---- */

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

template <int D>
static void launch_forward(struct cuda_backend *cb, void *out, float *lse, const void *q, const void *k,
                           const void *v, const void *sinks, int sinks_dtype, const int32_t *starts,
                           const struct att_dims *d)
{
    size_t smem = sizeof(bf16) * (FWD_BQ + 4 * TILE) * (D + PAD); /* Q, then K and V in two slots */
    CUDA_CHECK(cb, cudaFuncSetAttribute(attention_fwd_mma<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((unsigned)d->H, (unsigned)((d->T + FWD_BQ - 1) / FWD_BQ));
    CUDA_LAUNCH(cb, attention_fwd_mma<D>, grid, MMA_THREADS, smem, (bf16 *)out, lse, (const bf16 *)q,
                (const bf16 *)k, (const bf16 *)v, sinks, sinks_dtype, starts, *d);
}

bool attention_mma_forward(struct cuda_backend *cb, void *out, float *lse, const void *q, const void *k, const void *v,
                           const void *sinks, int sinks_dtype, const int32_t *starts, const struct att_dims *d,
                           bool all_bf16)
{
    if (!all_bf16 || !lse || !starts || d->pos0 != 0 || (d->D != 64 && d->D != 128) || !aligned16(out) ||
        !aligned16(q) || !aligned16(k) || !aligned16(v))
        return false;
    if (d->D == 64)
        launch_forward<64>(cb, out, lse, q, k, v, sinks, sinks_dtype, starts, d);
    else
        launch_forward<128>(cb, out, lse, q, k, v, sinks, sinks_dtype, starts, d);
    return true;
}

template <int D, int WG>
static void launch_dkdv(struct cuda_backend *cb, const struct att_bwd_args *a, const struct bwd_terms *t,
                        const struct att_dims *d, dim3 grid)
{
    size_t smem = sizeof(bf16) * (2 * TILE + WG * 4 * DKDV_BQ) * (D + PAD) + sizeof(float) * WG * 2 * 3 * DKDV_BQ;
    /* Group 0 gathers the others' sums in the same memory: 8 D floats per thread. */
    size_t gather = WG > 1 ? sizeof(float) * 8 * (D / 8) * MMA_THREADS : 0;
    smem = smem > gather ? smem : gather;
    CUDA_CHECK(cb, cudaFuncSetAttribute(attention_dkdv_mma<D, WG>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)smem));
    CUDA_LAUNCH(cb, (attention_dkdv_mma<D, WG>), grid, MMA_THREADS * WG, smem, *a, *t, *d);
}

template <int D>
static void launch_backward(struct cuda_backend *cb, const struct att_bwd_args *a, const struct bwd_terms *t,
                            const struct att_dims *d)
{
    const int64_t warps = d->T * d->H, tiles = (d->T + TILE - 1) / TILE;
    CUDA_LAUNCH(cb, attention_bwd_terms<D>, (unsigned)((warps + 7) / 8), 256, 0, *t, *a, *d);
    size_t smem = sizeof(bf16) * 6 * TILE * (D + PAD);
    CUDA_CHECK(cb, cudaFuncSetAttribute(attention_dq_mma<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    CUDA_LAUNCH(cb, attention_dq_mma<D>, dim3((unsigned)d->H, (unsigned)tiles), MMA_THREADS, smem, *a, *t, *d);
    dim3 grid_k((unsigned)d->KV, (unsigned)tiles);
    if (d->group % 2 == 0)
        launch_dkdv<D, 2>(cb, a, t, d, grid_k);
    else
        launch_dkdv<D, 1>(cb, a, t, d, grid_k);
}

bool attention_mma_backward(struct cuda_backend *cb, const struct att_bwd_args *a, const struct att_dims *d,
                            bool all_bf16)
{
    /* The per-query terms live in the conversion scratch (no GEMM runs meanwhile). */
    size_t terms = sizeof(float) * (size_t)(d->T * d->H) + sizeof(int32_t) * (size_t)d->T;
    if (!all_bf16 || !a->starts || d->pos0 != 0 || (d->D != 64 && d->D != 128) || terms > cb->convert_bytes)
        return false;
    const void *p[] = {a->dq, a->dk, a->dv, a->dout, a->q, a->k, a->v, a->out};
    for (const void *x : p)
        if (!aligned16(x))
            return false;
    struct bwd_terms t = {(float *)cb->convert, (int32_t *)((float *)cb->convert + d->T * d->H)};
    if (d->D == 64)
        launch_backward<64>(cb, a, &t, d);
    else
        launch_backward<128>(cb, a, &t, d);
    return true;
}
