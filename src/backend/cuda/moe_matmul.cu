/* The experts' grouped GEMMs, as cpu/moe.c's: moe_matmul (each expert's
 * linear over its rows) and moe_weight_grad (each expert's weight gradient
 * over its rows). Sizes: E experts, N grouped rows, K and O a linear's in and
 * out; expert e's rows are [offsets[e], offsets[e + 1]).
 *
 * The choice: one launch for all the experts, whatever the split, and no
 * host synchronisation: offsets stay on the device. moe_matmul's blocks each
 * take a tile of rows of one expert; a one-thread kernel first turns offsets
 * into each expert's first tile (a prefix over E, in the backend's reduce
 * scratch), and the grid is sized for the most tiles any split can have
 * (N / BM + E; the blocks past the last tile return). moe_weight_grad needs
 * no prefix: a block owns one tile of one expert's dw and walks that
 * expert's rows in order, adding into dw once at the end. Every output
 * element is made by one thread in a fixed order, so results are the same
 * from run to run (no atomics).
 * bf16 a and w (dc and a for the gradient) with K and O multiples of 8 take
 * tensor cores (mma.sync m16n8k16, fp32 accumulation; tiles through
 * cp.async: a ring of MM_STAGES for the matmul, two for the weight gradient);
 * any other float dtypes (fp32 as the CPU's, f16) a scalar
 * 16 x 16 tiled kernel. c and bias may be any float dtype, dw is fp32.
 * Offsets are expected as moe_group makes them (ascending, offsets[E] = N);
 * they are clamped to [0, N], and rows of no expert are left untouched. */
#include "backend/cuda/cuda_ops.cuh"
#include "backend/cuda/mma.cuh"
#include "base/mxfp4.h"

/* Tensor-core tiles: a block of 4 warps makes [MM_ROWS, MM_BN] of c (2 x 2
 * warps of [64, 64]: each fragment read from shared memory feeds 4 or 8
 * products, which keeps the tensor cores rather than the shared memory the
 * limit) over K in steps of MM_BK, or [MM_BM, MM_BN] of one expert's dw (O by
 * K; 2 x 2 warps of [32, 64]) over rows in steps of MM_BK. */
#define MM_THREADS 128
#define MM_ROWS 128
#define MM_BM 64
#define MM_BN 128
#define MM_BK 32
/* The scalar kernels' square tile (threads per side). */
#define SIMT_TILE 16

/* Expert e's rows [*r0, *r1), clamped to [0, N] (and r1 >= r0), the same in every kernel. */
static __device__ __forceinline__ void group_rows(const int32_t *offsets, int e, int64_t N, int64_t *r0,
                                                  int64_t *r1)
{
    int64_t a = offsets[e], b = offsets[e + 1];
    a = a < 0 ? 0 : a > N ? N : a;
    b = b < a ? a : b > N ? N : b;
    *r0 = a, *r1 = b;
}

/* tiles [E + 1]: tiles[e] = the row tiles of bm rows of the experts before e.
 * One thread: E (32 or 128 in gpt-oss) steps, nothing next to the GEMM. */
static __global__ void moe_tile_prefix_kernel(int32_t *tiles, const int32_t *offsets, int E, int64_t N, int bm)
{
    int32_t t = 0;
    for (int e = 0; e < E; e++) {
        int64_t r0, r1;
        group_rows(offsets, e, N, &r0, &r1);
        tiles[e] = t;
        t += (int32_t)((r1 - r0 + bm - 1) / bm);
    }
    tiles[E] = t;
}

/* Row tile `tile` (blockIdx.x) as expert *e's rows [*row0, *row0 + *rows),
 * *rows in [1, bm]; false past the last tile. The last e with
 * tiles[e] <= tile: empty experts (tiles[e] == tiles[e + 1]) come before. */
static __device__ __forceinline__ bool tile_rows(const int32_t *tiles, const int32_t *offsets, int E, int64_t N,
                                                 int bm, int64_t tile, int *e, int64_t *row0, int *rows)
{
    if (tile >= tiles[E])
        return false;
    int lo = 0, hi = E - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (tiles[mid] <= tile)
            lo = mid;
        else
            hi = mid - 1;
    }
    int64_t r0, r1;
    group_rows(offsets, lo, N, &r0, &r1);
    *e = lo;
    *row0 = r0 + (tile - tiles[lo]) * bm;
    *rows = (int)min((int64_t)bm, r1 - *row0);
    return true;
}

/* c[row, col] = acc (+ beta c, or + bias[e, col] where beta is 0), in c's dtype: the CPU's order. */
static __device__ __forceinline__ void store_c(void *c, int c_dtype, const void *bias, int bias_dtype, float beta,
                                               int64_t O, int e, int64_t row, int64_t col, float acc)
{
    int64_t i = row * O + col;
    if (beta != 0)
        acc += beta * cuda_load(c, c_dtype, i);
    else if (bias)
        acc += cuda_load(bias, bias_dtype, e * O + col);
    cuda_store(c, c_dtype, i, acc);
}

/* ---- tensor cores ---- */

/* Rows [0, ROWS) by columns [0, COLS) of dst [ROWS][COLS + PAD] from row r at
 * src + r * ld: rows from `rows` on and columns from `cols` on (a multiple of
 * 8) zeros. 16-byte cp.async copies by the block's threads: issued, not landed. */
template <int ROWS, int COLS>
static __device__ __forceinline__ void tile_async(bf16 *dst, const bf16 *src, int64_t ld, int rows, int cols)
{
    constexpr int V = COLS / 8;
    for (int i = threadIdx.x; i < ROWS * V; i += MM_THREADS) {
        int r = i / V, c = i % V * 8;
        bool ok = r < rows && c < cols;
        cp_async16(dst + r * (COLS + PAD) + c, ok ? src + r * ld + c : src, ok);
    }
}

/* frag_a (the A operand's rows row0.., k = col0..col0+15) of a tile stored
 * transposed, [k][m] (dc's rows as the A operand of dc^T a): ldmatrix.trans
 * of the tile's rows col0.., columns row0.. */
template <int D>
static __device__ __forceinline__ void frag_a_trans(uint32_t a[4], const bf16 *tile, int row0, int col0)
{
    const int lane = threadIdx.x % 32, mi = lane / 8;
    ldsm4_trans(a, tile + (col0 + (mi >> 1) * 8 + lane % 8) * (D + PAD) + row0 + (mi & 1) * 8);
}

/* The shared tiles of one pipeline stage: A [MM_ROWS rows], B as stored. */
#define MM_A_ELEMS (MM_ROWS * (MM_BK + PAD))
#define MM_B_ELEMS (MM_BN * (MM_BK + PAD) > MM_BK * (MM_BN + PAD) ? MM_BN * (MM_BK + PAD) : MM_BK * (MM_BN + PAD))
#define MM_DC_ELEMS (MM_BK * (MM_BM + PAD))

/* moe_matmul's pipeline depth: a ring of A tiles (and of bf16 w tiles) in
 * flight through cp.async, one barrier a step. MXFP4 w goes through two bf16
 * tiles instead: its codes come into registers a step ahead and are turned to
 * bf16 behind the products. On an H100 at gpt-oss-20b's gate_up (tests/cuda
 * timing) 4 stages against the 2 before: MXFP4 193 -> 207 TFLOP/s forward,
 * 188 -> 206 input gradient (3 stages: 209, 202); bf16 216 -> 217, 234 -> 232:
 * the bf16 loop is not waiting on its loads. */
#define MM_STAGES 4

/* moe_matmul's shared memory (dynamic: more than the static 48 KiB): the
 * stages while multiplying, then half the block's c tile at a time in fp32,
 * so that the stores (a branch on c's dtype, bias, beta) are one loop over
 * consecutive elements rather than 128 unrolled ones a thread. */
union mm_smem {
    struct {
        bf16 a[MM_STAGES][MM_A_ELEMS];
        bf16 w[MM_STAGES][MM_B_ELEMS];
    } stage;
    float c[MM_ROWS / 2][MM_BN + 1];
};

/* ---- MXFP4 weights (base/mxfp4.h), dequantized tile by tile ---- */

/* One thread's MXFP4 block of a w tile: 16 bytes of codes and the scale. */
struct fp4_block {
    uint4 codes;
    uint32_t scale;
    bool valid;
};

/* The block this thread turns into bf16 for the w tile at (k0, o0). The
 * blocks run along the stored rows' last dimension: K when TW (a tile row of
 * MM_BK = 32 inputs is one block, one row a thread), else O (a tile row of
 * MM_BN = 128 outputs is four blocks, 32 rows of four threads). */
template <bool TW>
static __device__ __forceinline__ fp4_block fp4_fetch(const uint8_t *codes, const uint8_t *scales, int e, int64_t K,
                                                      int64_t O, int64_t k0, int64_t o0, int kn, int on)
{
    const int t = threadIdx.x;
    int64_t row = TW ? o0 + t : k0 + t / 4, col = TW ? k0 : o0 + 32 * (t % 4);
    fp4_block b;
    b.valid = TW ? t < on && kn > 0 : t / 4 < kn && 32 * (t % 4) < on;
    if (b.valid) {
        int64_t first = (int64_t)e * O * K + row * (TW ? K : O) + col; /* the block's first value */
        b.codes = *(const uint4 *)(codes + first / 2);
        b.scale = scales[first / MXFP4_BLOCK];
    }
    return b;
}

/* FP4 code c times m1 m2 as bf16 bits: exact (at most 2 significant bits, bf16
 * has fp32's exponents) or +-inf, as the CPU's dequantization. */
static __device__ __forceinline__ uint32_t fp4_bf16(uint32_t c, float m1, float m2)
{
    uint32_t mag = c & 7; /* 0, .5, 1, 1.5, 2, 3, 4, 6: exponent mag / 2 - 1, mantissa bit where mag > 1 */
    uint32_t bits = (c & 8) << 28 | (mag ? ((mag >> 1) + 126) << 23 | ((mag > 1) & mag) << 22 : 0);
    return __float_as_uint(__uint_as_float(bits) * m1 * m2) >> 16;
}

/* Every code byte's two FP4 values as bf16x2 (the low nibble in the low
 * half), unscaled: a kernel's shared table, filled by its threads. */
static __device__ __forceinline__ void fp4_table_fill(uint32_t *table)
{
    for (int i = threadIdx.x; i < 256; i += blockDim.x)
        table[i] = fp4_bf16(i & 15, 1.0f, 1.0f) | fp4_bf16(i >> 4, 1.0f, 1.0f) << 16;
}

/* b's 32 values as bf16 into dst (16-byte aligned), zeros where b is not
 * valid. A scale whose 2^(scale - 127) is a normal bf16 (1..254, every real
 * checkpoint's) multiplies the table's pairs by it, one bf16x2 product per
 * byte, exact as the products have at most 2 significant bits and bf16 keeps
 * subnormals; 0 and 255 take the float route. */
static __device__ __forceinline__ void fp4_store(bf16 *dst, const fp4_block &b, const uint32_t *table)
{
    uint32_t w[16] = {0};
    const uint32_t q[4] = {b.codes.x, b.codes.y, b.codes.z, b.codes.w};
    if (b.valid && b.scale >= 1 && b.scale <= 254) {
        uint32_t pow2 = b.scale << 7 | b.scale << 23;
        __nv_bfloat162 m = *(const __nv_bfloat162 *)&pow2;
        for (int i = 0; i < 16; i++) {
            uint32_t pair = table[q[i / 4] >> (8 * (i % 4)) & 0xff];
            __nv_bfloat162 v = __hmul2(*(const __nv_bfloat162 *)&pair, m);
            w[i] = *(const uint32_t *)&v;
        }
    } else if (b.valid) {
        /* 2^(scale - 127): 0 is a subnormal, 255 (2^128) is 2^127 * 2 */
        float m1 = b.scale == 0 ? __uint_as_float(0x00400000u) : __uint_as_float(254u << 23);
        float m2 = b.scale ? 2.0f : 1.0f;
        for (int i = 0; i < 16; i++) {
            uint32_t byte = q[i / 4] >> (8 * (i % 4)) & 0xff;
            w[i] = fp4_bf16(byte & 15, m1, m2) | fp4_bf16(byte >> 4, m1, m2) << 16;
        }
    }
    uint4 *d = (uint4 *)dst;
    for (int i = 0; i < 4; i++)
        d[i] = make_uint4(w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]);
}

/* Where this thread's block goes in a w stage (see fp4_fetch). */
template <bool TW> static __device__ __forceinline__ bf16 *fp4_dst(bf16 *stage)
{
    const int t = threadIdx.x;
    return TW ? stage + t * (MM_BK + PAD) : stage + t / 4 * (MM_BN + PAD) + 32 * (t % 4);
}

/* One block: c rows [row0, row0 + rows) of expert e by columns [o0, o0 +
 * MM_BN) (blockIdx.y). a [N, K] bf16, w [E, O, K] (TW) or [E, K, O], bf16,
 * or MXFP4 codes with w_scales (FP4: each stage's tile turned to bf16 in
 * shared memory, its codes fetched into registers while the previous stage
 * multiplies); c [N, O]; bias [E, O] or NULL. */
template <bool TW, bool FP4>
static __global__ void __launch_bounds__(MM_THREADS)
    moe_matmul_mma_kernel(void *c, int c_dtype, const bf16 *a, const void *w, const uint8_t *w_scales,
                          const void *bias, int bias_dtype, const int32_t *offsets, const int32_t *tiles, int E,
                          int64_t N, int64_t K, int64_t O, float beta)
{
    extern __shared__ __align__(16) unsigned char mm_dynamic[];
    union mm_smem &sm = *(union mm_smem *)mm_dynamic;
    __shared__ uint32_t fp4_table[FP4 ? 256 : 1];
    bf16(*sa)[MM_A_ELEMS] = sm.stage.a, (*sw)[MM_B_ELEMS] = sm.stage.w;
    int e, rows;
    int64_t row0;
    if (!tile_rows(tiles, offsets, E, N, MM_ROWS, blockIdx.x, &e, &row0, &rows))
        return;
    const int64_t o0 = (int64_t)blockIdx.y * MM_BN;
    const int on = (int)min((int64_t)MM_BN, O - o0);
    const bf16 *ab = a + row0 * K, *we = (const bf16 *)w + e * O * K;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, wm = warp % 2 * 64, wn = warp / 2 * 64;
    const int64_t nk = (K + MM_BK - 1) / MM_BK;

    /* step kt's tiles (the K columns [kt MM_BK, + MM_BK)) into ring slot kt % MM_STAGES, issued as one
     * cp.async group (empty past the last step, so that every step commits one); w's only where bf16 */
    auto load = [&](int64_t kt) {
        if (kt < nk) {
            int slot = (int)(kt % MM_STAGES), kn = (int)min((int64_t)MM_BK, K - kt * MM_BK);
            tile_async<MM_ROWS, MM_BK>(sa[slot], ab + kt * MM_BK, K, rows, kn);
            if (!FP4 && TW)
                tile_async<MM_BN, MM_BK>(sw[slot], we + o0 * K + kt * MM_BK, K, on, kn);
            else if (!FP4)
                tile_async<MM_BK, MM_BN>(sw[slot], we + kt * MM_BK * O + o0, O, kn, on);
        }
        cp_async_commit();
    };
    auto fetch = [&](int64_t kt) {
        return fp4_fetch<TW>((const uint8_t *)w, w_scales, e, K, O, kt * MM_BK, o0,
                             (int)min((int64_t)MM_BK, K - kt * MM_BK), on);
    };

    float acc[4][8][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 8; j++)
            acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0;
    fp4_block next = {};
    if (FP4) {
        fp4_table_fill(fp4_table);
        __syncthreads();
        if (nk > 0)
            fp4_store(fp4_dst<TW>(sw[0]), fetch(0), fp4_table);
        if (nk > 1)
            next = fetch(1);
    }
    for (int st = 0; st < MM_STAGES - 1; st++)
        load(st);
    for (int64_t kt = 0; kt < nk; kt++) {
        /* step kt's group landed (MM_STAGES - 2 younger ones may not have), for every thread; the slot
         * the previous step read is free: refill it with step kt + MM_STAGES - 1 */
        cp_async_wait<MM_STAGES - 2>();
        __syncthreads();
        load(kt + MM_STAGES - 1);
        const bf16 *tile_a = sa[kt % MM_STAGES], *tile_w = sw[FP4 ? kt & 1 : kt % MM_STAGES];
        for (int kc = 0; kc < MM_BK / 16; kc++) {
            uint32_t af[4][4];
            for (int i = 0; i < 4; i++)
                frag_a<MM_BK>(af[i], tile_a, wm + i * 16, kc * 16);
            for (int j = 0; j < 8; j += 2) {
                uint32_t bf[4];
                if (TW)
                    frag_b2<MM_BK>(bf, tile_w, wn + j * 8, kc * 16);
                else
                    frag_b2_trans<MM_BN>(bf, tile_w, kc * 16, wn + j * 8);
                for (int i = 0; i < 4; i++) {
                    mma16816(acc[i][j], af[i], bf[0], bf[1]);
                    mma16816(acc[i][j + 1], af[i], bf[2], bf[3]);
                }
            }
        }
        if (FP4 && kt + 1 < nk) { /* the other bf16 tile, read by the previous step: free since this one's barrier */
            fp4_store(fp4_dst<TW>(sw[(kt + 1) & 1]), next, fp4_table);
            if (kt + 2 < nk)
                next = fetch(kt + 2);
        }
    }
    cp_async_wait<0>();
    __syncthreads(); /* the stages become the c tile */

    /* accumulator q of n-tile j: row lane / 4 (+ 8 for q >= 2), column 2 (lane % 4) + q % 2. The warps
     * of rows [64 h, 64 h + 64) pass them through shared memory in turn h. */
    for (int h = 0; h < 2; h++) {
        if (wm == 64 * h)
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 8; j++)
                    for (int q = 0; q < 4; q++)
                        sm.c[i * 16 + lane / 4 + (q >> 1) * 8][wn + j * 8 + 2 * (lane % 4) + (q & 1)] = acc[i][j][q];
        __syncthreads();
        for (int i = threadIdx.x; i < MM_ROWS / 2 * MM_BN; i += MM_THREADS) {
            int r = 64 * h + i / MM_BN, col = i % MM_BN;
            if (r < rows && col < on)
                store_c(c, c_dtype, bias, bias_dtype, beta, O, e, row0 + r, o0 + col, sm.c[r - 64 * h][col]);
        }
        __syncthreads();
    }
}

/* One block: dw[e] rows [o0, o0 + MM_BM) (blockIdx.y) by columns [k0, k0 +
 * MM_BN) (blockIdx.x), e = blockIdx.z, += dc^T a over the expert's rows in
 * chunks of MM_BK, in order. dc [N, O], a [N, K] bf16; dw [E, O, K] fp32. */
static __global__ void __launch_bounds__(MM_THREADS)
    moe_weight_grad_mma_kernel(float *dw, const bf16 *dc, const bf16 *a, const int32_t *offsets, int64_t N,
                               int64_t K, int64_t O)
{
    __shared__ __align__(16) bf16 sdc[2][MM_DC_ELEMS];              /* [MM_BK rows][MM_BM o] */
    __shared__ __align__(16) bf16 sa[2][MM_BK * (MM_BN + PAD)]; /* [MM_BK rows][MM_BN k] */
    const int e = blockIdx.z;
    int64_t r0, r1;
    group_rows(offsets, e, N, &r0, &r1);
    if (r1 == r0) /* as the CPU's, which skips the expert */
        return;
    const int64_t o0 = (int64_t)blockIdx.y * MM_BM, k0 = (int64_t)blockIdx.x * MM_BN;
    const int on = (int)min((int64_t)MM_BM, O - o0), kn = (int)min((int64_t)MM_BN, K - k0);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, wm = warp % 2 * 32, wn = warp / 2 * 64;

    /* stage s <- rows [r, r + MM_BK) of the expert's */
    auto load = [&](int s, int64_t r) {
        int rn = (int)min((int64_t)MM_BK, r1 - r);
        tile_async<MM_BK, MM_BM>(sdc[s], dc + r * O + o0, O, rn, on);
        tile_async<MM_BK, MM_BN>(sa[s], a + r * K + k0, K, rn, kn);
    };

    float acc[2][8][4];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 8; j++)
            acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0;
    const int64_t nr = (r1 - r0 + MM_BK - 1) / MM_BK;
    load(0, r0);
    cp_async_commit();
    for (int64_t t = 0; t < nr; t++) {
        const int s = (int)(t & 1);
        if (t + 1 < nr)
            load(s ^ 1, r0 + (t + 1) * MM_BK);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        for (int kc = 0; kc < MM_BK / 16; kc++) {
            uint32_t af[2][4];
            for (int i = 0; i < 2; i++)
                frag_a_trans<MM_BM>(af[i], sdc[s], wm + i * 16, kc * 16);
            for (int j = 0; j < 8; j += 2) {
                uint32_t bf[4];
                frag_b2_trans<MM_BN>(bf, sa[s], kc * 16, wn + j * 8);
                for (int i = 0; i < 2; i++) {
                    mma16816(acc[i][j], af[i], bf[0], bf[1]);
                    mma16816(acc[i][j + 1], af[i], bf[2], bf[3]);
                }
            }
        }
        __syncthreads();
    }

    float *dwe = dw + e * O * K;
    for (int i = 0; i < 2; i++)
        for (int q = 0; q < 4; q++) {
            int o = wm + i * 16 + lane / 4 + (q >> 1) * 8;
            if (o >= on)
                continue;
            for (int j = 0; j < 8; j++) {
                int k = wn + j * 8 + 2 * (lane % 4) + (q & 1);
                if (k < kn)
                    dwe[(o0 + o) * K + k0 + k] += acc[i][j][q];
            }
        }
}

/* ---- scalar: any float dtypes ---- */

/* One block of SIMT_TILE^2 threads: c[row0 + y, o0 + x], o0 = blockIdx.y
 * tiles, over K in steps of SIMT_TILE staged in shared memory; thread (y, x)
 * sums its k in order. a [N, K], w [E, O, K] (tw) or [E, K, O]. */
static __global__ void moe_matmul_simt_kernel(void *c, int c_dtype, const void *a, int a_dtype, const void *w,
                                              int w_dtype, bool tw, const void *bias, int bias_dtype,
                                              const int32_t *offsets, const int32_t *tiles, int E, int64_t N,
                                              int64_t K, int64_t O, float beta)
{
    __shared__ float sa[SIMT_TILE][SIMT_TILE + 1]; /* [row][k] */
    __shared__ float sw[SIMT_TILE][SIMT_TILE + 1]; /* [k][o] */
    int e, rows;
    int64_t row0;
    if (!tile_rows(tiles, offsets, E, N, SIMT_TILE, blockIdx.x, &e, &row0, &rows))
        return;
    const int x = threadIdx.x, y = threadIdx.y;
    const int64_t o0 = (int64_t)blockIdx.y * SIMT_TILE, we = e * O * K;
    float acc = 0;
    for (int64_t k0 = 0; k0 < K; k0 += SIMT_TILE) {
        sa[y][x] = y < rows && k0 + x < K ? cuda_load(a, a_dtype, (row0 + y) * K + k0 + x) : 0.0f;
        if (tw) /* w[e][o0 + y][k0 + x]: consecutive threads read consecutive k */
            sw[x][y] = o0 + y < O && k0 + x < K ? cuda_load(w, w_dtype, we + (o0 + y) * K + k0 + x) : 0.0f;
        else
            sw[y][x] = k0 + y < K && o0 + x < O ? cuda_load(w, w_dtype, we + (k0 + y) * O + o0 + x) : 0.0f;
        __syncthreads();
        for (int k = 0; k < SIMT_TILE; k++)
            acc += sa[y][k] * sw[k][x];
        __syncthreads();
    }
    if (y < rows && o0 + x < O)
        store_c(c, c_dtype, bias, bias_dtype, beta, O, e, row0 + y, o0 + x, acc);
}

/* One block of SIMT_TILE^2 threads: dw[e][o0 + y][k0 + x] (k0 = blockIdx.x
 * tiles, o0 = blockIdx.y tiles, e = blockIdx.z) += the sum over the
 * expert's rows, in order, staged SIMT_TILE rows at a time. */
static __global__ void moe_weight_grad_simt_kernel(float *dw, const void *dc, int dc_dtype, const void *a,
                                                   int a_dtype, const int32_t *offsets, int64_t N, int64_t K,
                                                   int64_t O)
{
    __shared__ float sdc[SIMT_TILE][SIMT_TILE + 1]; /* [row][o] */
    __shared__ float sa[SIMT_TILE][SIMT_TILE + 1];  /* [row][k] */
    const int e = blockIdx.z, x = threadIdx.x, y = threadIdx.y;
    int64_t r0, r1;
    group_rows(offsets, e, N, &r0, &r1);
    if (r1 == r0)
        return;
    const int64_t k0 = (int64_t)blockIdx.x * SIMT_TILE, o0 = (int64_t)blockIdx.y * SIMT_TILE;
    float acc = 0;
    for (int64_t r = r0; r < r1; r += SIMT_TILE) {
        bool row = r + y < r1;
        sdc[y][x] = row && o0 + x < O ? cuda_load(dc, dc_dtype, (r + y) * O + o0 + x) : 0.0f;
        sa[y][x] = row && k0 + x < K ? cuda_load(a, a_dtype, (r + y) * K + k0 + x) : 0.0f;
        __syncthreads();
        for (int i = 0; i < SIMT_TILE; i++)
            acc += sdc[i][y] * sa[i][x];
        __syncthreads();
    }
    if (o0 + y < O && k0 + x < K)
        dw[(e * O + o0 + y) * K + k0 + x] += acc;
}

/* ---- entry points ---- */

/* Whether t is bf16 with 16-byte aligned data (rows of a multiple of 8 then stay aligned). */
static bool mma_operand(const struct tensor *t)
{
    return t->dtype == DTYPE_BF16 && ((uintptr_t)t->data & 15) == 0;
}

extern "C" void cuda_moe_matmul(struct backend *b, struct tensor *c, const struct tensor *a, const struct tensor *w,
                                bool tw, const struct tensor *bias, const struct tensor *offsets, float beta)
{
    struct cuda_backend *cb = cuda_of(b);
    bool fp4 = w->dtype == DTYPE_MXFP4;
    assert(cuda_is_float(c->dtype) && cuda_is_float(a->dtype) && (cuda_is_float(w->dtype) || fp4) &&
           offsets->dtype == DTYPE_I32);
    assert(!bias || cuda_is_float(bias->dtype));
    assert(w->rank == 3);
    int64_t E = w->shape[0], N = cuda_rows(a), K = cuda_cols(a), O = cuda_cols(c);
    assert(cuda_rows(c) == N && tensor_numel(offsets) == E + 1);
    assert(w->shape[1] == (tw ? O : K) && w->shape[2] == (tw ? K : O));
    assert(!bias || tensor_numel(bias) == E * O);
    assert(E >= 1 && E <= INT32_MAX && N <= INT32_MAX);
    assert((size_t)(E + 1) * sizeof(int32_t) <= cb->reduce_bytes); /* the tile prefix */
    if (N == 0 || O == 0)
        return;
    bool mma = mma_operand(a) && (mma_operand(w) || fp4) && K % 8 == 0 && O % 8 == 0;
    /* MXFP4 weights: bf16 activations and whole blocks (gpt-oss's every dimension is a multiple of 32) */
    assert(!fp4 || (mma && w->scales && cuda_cols(w) % MXFP4_BLOCK == 0 && ((uintptr_t)w->data & 15) == 0));
    int bm = mma ? MM_ROWS : SIMT_TILE, bn = mma ? MM_BN : SIMT_TILE;
    assert((O + bn - 1) / bn <= 65535);
    int32_t *tiles = (int32_t *)cb->reduce; /* [E + 1] */
    const int32_t *off = (const int32_t *)offsets->data;
    const void *bd = bias ? bias->data : NULL;
    int bdt = bias ? bias->dtype : DTYPE_F32;
    CUDA_LAUNCH(cb, moe_tile_prefix_kernel, 1, 1, 0, tiles, off, (int)E, N, bm);
    dim3 grid((unsigned)((N + bm - 1) / bm + E), (unsigned)((O + bn - 1) / bn));
    const bf16 *ad = (const bf16 *)a->data;
    const uint8_t *ws = (const uint8_t *)w->scales;
    if (mma) {
        auto kernel = fp4 ? (tw ? moe_matmul_mma_kernel<true, true> : moe_matmul_mma_kernel<false, true>)
                          : (tw ? moe_matmul_mma_kernel<true, false> : moe_matmul_mma_kernel<false, false>);
        const size_t smem = sizeof(union mm_smem);
        CUDA_CHECK(cb, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        CUDA_LAUNCH(cb, kernel, grid, MM_THREADS, smem, c->data, c->dtype, ad, w->data, ws, bd, bdt, off, tiles,
                    (int)E, N, K, O, beta);
    }
    else
        CUDA_LAUNCH(cb, moe_matmul_simt_kernel, grid, dim3(SIMT_TILE, SIMT_TILE), 0, c->data, c->dtype, a->data,
                    a->dtype, w->data, w->dtype, tw, bd, bdt, off, tiles, (int)E, N, K, O, beta);
}

extern "C" void cuda_moe_weight_grad(struct backend *b, struct tensor *dw, const struct tensor *dc,
                                     const struct tensor *a, const struct tensor *offsets)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(dw->dtype == DTYPE_F32 && cuda_is_float(dc->dtype) && cuda_is_float(a->dtype) &&
           offsets->dtype == DTYPE_I32);
    int64_t E = tensor_numel(offsets) - 1, N = cuda_rows(a), K = cuda_cols(a), O = cuda_cols(dc);
    assert(cuda_rows(dc) == N && tensor_numel(dw) == E * O * K);
    assert(E >= 1 && E <= 65535);
    if (N == 0 || O == 0 || K == 0)
        return;
    bool mma = mma_operand(dc) && mma_operand(a) && K % 8 == 0 && O % 8 == 0;
    int bo = mma ? MM_BM : SIMT_TILE, bk = mma ? MM_BN : SIMT_TILE;
    assert((O + bo - 1) / bo <= 65535 && (K + bk - 1) / bk <= INT32_MAX);
    dim3 grid((unsigned)((K + bk - 1) / bk), (unsigned)((O + bo - 1) / bo), (unsigned)E);
    const int32_t *off = (const int32_t *)offsets->data;
    if (mma)
        CUDA_LAUNCH(cb, moe_weight_grad_mma_kernel, grid, MM_THREADS, 0, (float *)dw->data,
                    (const bf16 *)dc->data, (const bf16 *)a->data, off, N, K, O);
    else
        CUDA_LAUNCH(cb, moe_weight_grad_simt_kernel, grid, dim3(SIMT_TILE, SIMT_TILE), 0, (float *)dw->data,
                    dc->data, dc->dtype, a->data, a->dtype, off, N, K, O);
}
