/* Attention over packed sequences, forward and backward, as cblas_sgemm
 * (OpenBLAS, single-threaded, as in matmul.c) on tiles of up to TILE query
 * rows of one head and one sequence, parallelized with OpenMP.
 *
 * Visibility: query token i sees key token j iff both lie in the same
 * sequence of the layout, j <= i, and, with a sliding window w > 0,
 * j > i - w (w tokens, itself included). Positions are counted by index in
 * the packed row; layout.positions is not read here. GQA: query head h reads
 * key/value head h / (H / KV). Sinks (gpt-oss): one logit per head joins
 * every softmax's denominator with a value of zero, so
 *   P_ij = exp(s_ij - lse_i),  lse_i = log(sum_j exp(s_ij) + exp(sink_h)),
 * and a row's probabilities sum to 1 - P_sink_i.
 *
 * Backward (s_ij = scale * q_i.k_j, D_i = dout_i . out_i = sum_j P_ij dP_ij):
 *   dP_ij = dout_i . v_j,  dS_ij = P_ij * (dP_ij - D_i)
 *   dq_i = scale * sum_j dS_ij k_j,  dk_j = scale * sum_i dS_ij q_i,
 *   dv_j = sum_i P_ij dout_i,  dsink_h = -sum_i P_sink_i * D_i
 * (the sink logit moves every P_ij by -P_ij * P_sink_i).
 *
 * Tiles. A tile is rows [i0, i1) (at most TILE) of one sequence starting at
 * s0, and one head h; its keys are [k0, i1), k0 = the first key row i0 sees
 * (s0, or i0 - w + 1 with a window), so at most min(longest sequence,
 * TILE + w - 1) keys. Forward, per tile: S = scale Q_t K^T (one sgemm reading
 * q and k in place: lda = H*D, ldb = KV*D), the row's mask (keys a row does
 * not see get P = 0), max (the sink's logit included), exp, sum, lse, P /= sum,
 * then O_t = P V (one sgemm writing out in place). Backward, per tile:
 * P = exp(S - lse) from S again, dP = dO_t V^T, dS = P (dP - D) with D_i
 * computed per row, dQ_t = scale dS K (written), dK += scale dS^T Q_t and
 * dV += P^T dO_t (accumulated into the kv head's rows): five sgemm.
 *
 * Threads. Forward: one OpenMP task per (head, tile); each out row and lse
 * entry is made by one task. Backward: one task per (sequence, kv head); it
 * alone writes dK and dV of that kv head's rows of that sequence, and the dQ
 * rows of its query heads, going over its heads and tiles in a fixed order.
 * Every sum is thus done in the same order by one sgemm or loop whatever the
 * thread count: no atomics, the same bits for any OMP_NUM_THREADS.
 *
 * exp and the row maxima and sums are vec_math.h's (vectorized, the same
 * bits at any ISA level).
 *
 * Scratch: the op allocates, once per call (malloc at entry, free at exit),
 * one [TILE, max keys] fp32 tile per thread forward and two backward (at
 * T 2048 without a window: 0.5 / 1 MiB per thread); no [T, T] buffer. */
#include <assert.h>
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/vec_math.h"

/* OpenBLAS's own entry point (cblas.h declares it in OpenBLAS builds). */
void openblas_set_num_threads(int num_threads);

#define TILE 64

/* Sizes shared by the passes. */
struct attn_dims {
    int64_t T, H, KV, D, group; /* group = H / KV query heads per kv head */
    int64_t tiles;              /* query tiles over all sequences */
    int64_t max_keys;           /* most keys one tile sees */
};

static struct attn_dims attn_dims_check(const struct tensor *q, const struct tensor *k,
                                        const struct tensor *v, const struct tensor *sinks,
                                        const struct seq_layout *sl, int64_t window)
{
    assert(q->rank == 3 && k->rank == 3 && v->rank == 3);
    assert(q->dtype == DTYPE_F32 && k->dtype == DTYPE_F32 && v->dtype == DTYPE_F32);
    struct attn_dims d = {q->shape[0], q->shape[1], k->shape[1], q->shape[2], 0, 0, 0};
    assert(d.KV > 0 && d.H % d.KV == 0);
    d.group = d.H / d.KV;
    assert(k->shape[0] == d.T && k->shape[2] == d.D);
    assert(v->shape[0] == d.T && v->shape[1] == d.KV && v->shape[2] == d.D);
    assert(!sinks || (sinks->dtype == DTYPE_F32 && tensor_numel(sinks) == d.H));
    assert(sl->sequences >= 1 && sl->starts[0] == 0 && sl->starts[sl->sequences] == d.T);
    (void)v, (void)sinks; /* read only by the asserts */
    int64_t longest = 0;
    for (int64_t s = 0; s < sl->sequences; s++) {
        int64_t len = sl->starts[s + 1] - sl->starts[s];
        assert(len >= 0);
        d.tiles += (len + TILE - 1) / TILE;
        longest = len > longest ? len : longest;
    }
    d.max_keys = window > 0 && TILE + window - 1 < longest ? TILE + window - 1 : longest;
    assert(d.H * d.D <= INT_MAX && d.KV * d.D <= INT_MAX && d.max_keys * TILE <= INT_MAX);
    return d;
}

/* First key seen by query i of the sequence starting at s0. */
static int64_t first_key(int64_t s0, int64_t window, int64_t i)
{
    return window > 0 && i - window + 1 > s0 ? i - window + 1 : s0;
}

static float dot(const float *a, const float *b, int64_t n)
{
    float s = 0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void blas_single_threaded(void)
{
    static int done;
    if (!done) {
        openblas_set_num_threads(1);
        done = 1;
    }
}

/* Per-thread scratch of `floats` each for at most `tasks` threads: the thread
 * count to run with, and the buffer. */
static float *scratch_alloc(int64_t floats, int64_t tasks, int *threads)
{
    int64_t n = omp_get_max_threads();
    if (n > tasks)
        n = tasks;
    if (n < 1)
        n = 1;
    *threads = (int)n;
    float *p = malloc((size_t)(n * floats) * sizeof *p + 1);
    if (!p) {
        fprintf(stderr, "tune: cpu attention: out of memory for %lld bytes of scratch\n",
                (long long)(n * floats * (int64_t)sizeof *p));
        abort();
    }
    return p;
}

void cpu_attention(struct backend *b, struct tensor *out, struct tensor *lse, const struct tensor *q,
                   const struct tensor *k, const struct tensor *v, const struct tensor *sinks,
                   const struct seq_layout *sl, int64_t window, float scale)
{
    (void)b;
    struct attn_dims d = attn_dims_check(q, k, v, sinks, sl, window);
    assert(out->dtype == DTYPE_F32 && tensor_numel(out) == d.T * d.H * d.D);
    assert(lse->dtype == DTYPE_F32 && tensor_numel(lse) == d.H * d.T);
    const float *qd = q->data, *kd = k->data, *vd = v->data; /* [T, H, D], [T, KV, D] x2 */
    const float *sk = sinks ? sinks->data : NULL;            /* [H] */
    float *od = out->data, *ld = lse->data;                  /* [T, H, D], [H, T] */
    int64_t T = d.T, H = d.H, KV = d.KV, D = d.D, tiles = d.tiles, tile_floats = TILE * d.max_keys;
    const int32_t *starts = sl->starts;
    if (tiles == 0)
        return;
    blas_single_threaded();
    int threads;
    float *scratch = scratch_alloc(tile_floats, H * tiles, &threads);
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(threads)
    for (int64_t h = 0; h < H; h++)
        for (int64_t w = 0; w < tiles; w++) {
            int64_t s = 0, x = w; /* tile w of all sequences -> tile x of sequence s */
            while (x >= (starts[s + 1] - starts[s] + TILE - 1) / TILE)
                x -= (starts[s + 1] - starts[s] + TILE - 1) / TILE, s++;
            int64_t s0 = starts[s], i0 = s0 + x * TILE, i1 = i0 + TILE < starts[s + 1] ? i0 + TILE : starts[s + 1];
            int64_t k0 = first_key(s0, window, i0), rows = i1 - i0, keys = i1 - k0, g = h / d.group;
            float *sc = scratch + (int64_t)omp_get_thread_num() * tile_floats; /* [rows, keys] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)keys, (int)D, scale,
                        qd + (i0 * H + h) * D, (int)(H * D), kd + (k0 * KV + g) * D, (int)(KV * D), 0.0f, sc,
                        (int)keys);
            for (int64_t r = 0; r < rows; r++) {
                int64_t i = i0 + r, j0 = first_key(s0, window, i) - k0, j1 = i - k0 + 1; /* seen: [j0, j1) */
                float *p = sc + r * keys;
                float m = fmaxf(sk ? sk[h] : -INFINITY, cpu_vec_max(p + j0, j1 - j0));
                float l = (float)(cpu_vec_exp_sum(p + j0, p + j0, j1 - j0, m) + (sk ? cpu_vec_expf(sk[h] - m) : 0));
                memset(p, 0, (size_t)j0 * sizeof *p);
#pragma omp simd
                for (int64_t j = j0; j < j1; j++)
                    p[j] /= l;
                memset(p + j1, 0, (size_t)(keys - j1) * sizeof *p);
                ld[h * T + i] = m + logf(l);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)D, (int)keys, 1.0f, sc, (int)keys,
                        vd + (k0 * KV + g) * D, (int)(KV * D), 0.0f, od + (i0 * H + h) * D, (int)(H * D));
        }
    free(scratch);
}

void cpu_attention_backward(struct backend *b, struct tensor *dq, struct tensor *dk, struct tensor *dv,
                            struct tensor *dsinks, const struct tensor *dout, const struct tensor *q,
                            const struct tensor *k, const struct tensor *v, const struct tensor *sinks,
                            const struct tensor *out, const struct tensor *lse, const struct seq_layout *sl,
                            int64_t window, float scale)
{
    (void)b;
    struct attn_dims d = attn_dims_check(q, k, v, sinks, sl, window);
    int64_t T = d.T, H = d.H, KV = d.KV, D = d.D, S = sl->sequences, tile_floats = TILE * d.max_keys;
    assert(dq->dtype == DTYPE_F32 && tensor_numel(dq) == T * H * D);
    assert(dk->dtype == DTYPE_F32 && tensor_numel(dk) == T * KV * D);
    assert(dv->dtype == DTYPE_F32 && tensor_numel(dv) == T * KV * D);
    assert(dout->dtype == DTYPE_F32 && tensor_numel(dout) == T * H * D);
    assert(out->dtype == DTYPE_F32 && tensor_numel(out) == T * H * D);
    assert(lse->dtype == DTYPE_F32 && tensor_numel(lse) == H * T);
    const float *qd = q->data, *kd = k->data, *vd = v->data; /* [T, H, D], [T, KV, D] x2 */
    const float *gd = dout->data, *od = out->data;           /* [T, H, D] x2 */
    const float *ld = lse->data;                             /* [H, T] */
    float *dqd = dq->data, *dkd = dk->data, *dvd = dv->data; /* [T, H, D], [T, KV, D] x2 */
    const int32_t *starts = sl->starts;

    if (d.tiles > 0) {
        blas_single_threaded();
        int threads;
        float *scratch = scratch_alloc(2 * tile_floats, S * KV, &threads);
        int ldq = (int)(H * D), ldk = (int)(KV * D);
        /* Task (s, g): dk, dv rows of kv head g in sequence s, dq rows of its query heads. */
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(threads)
        for (int64_t s = 0; s < S; s++)
            for (int64_t g = 0; g < KV; g++) {
                int64_t s0 = starts[s], s1 = starts[s + 1];
                float *p = scratch + (int64_t)omp_get_thread_num() * 2 * tile_floats, *dp = p + tile_floats;
                for (int64_t j = s0; j < s1; j++) {
                    memset(dkd + (j * KV + g) * D, 0, (size_t)D * sizeof *dkd);
                    memset(dvd + (j * KV + g) * D, 0, (size_t)D * sizeof *dvd);
                }
                for (int64_t h = g * d.group; h < (g + 1) * d.group; h++)
                    for (int64_t i0 = s0; i0 < s1; i0 += TILE) {
                        int64_t i1 = i0 + TILE < s1 ? i0 + TILE : s1, k0 = first_key(s0, window, i0);
                        int rows = (int)(i1 - i0), keys = (int)(i1 - k0);
                        const float *qt = qd + (i0 * H + h) * D, *gt = gd + (i0 * H + h) * D;
                        const float *kg = kd + (k0 * KV + g) * D, *vg = vd + (k0 * KV + g) * D;
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, (int)D, scale, qt, ldq, kg,
                                    ldk, 0.0f, p, keys);
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, (int)D, 1.0f, gt, ldq, vg,
                                    ldk, 0.0f, dp, keys);
                        for (int64_t r = 0; r < rows; r++) {
                            int64_t i = i0 + r, j0 = first_key(s0, window, i) - k0, j1 = i - k0 + 1;
                            float l = ld[h * T + i], di = dot(gd + (i * H + h) * D, od + (i * H + h) * D, D);
                            float *pr = p + r * keys, *dpr = dp + r * keys;
                            memset(pr, 0, (size_t)j0 * sizeof *pr);
                            memset(dpr, 0, (size_t)j0 * sizeof *dpr);
                            cpu_vec_exp_scale(pr + j0, pr + j0, j1 - j0, l, 1.0f);
#pragma omp simd
                            for (int64_t j = j0; j < j1; j++)
                                dpr[j] = pr[j] * (dpr[j] - di);
                            memset(pr + j1, 0, (size_t)(keys - j1) * sizeof *pr);
                            memset(dpr + j1, 0, (size_t)(keys - j1) * sizeof *dpr);
                        }
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, (int)D, keys, scale, dp, keys,
                                    kg, ldk, 0.0f, dqd + (i0 * H + h) * D, ldq);
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, keys, (int)D, rows, scale, dp, keys, qt,
                                    ldq, 1.0f, dkd + (k0 * KV + g) * D, ldk);
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, keys, (int)D, rows, 1.0f, p, keys, gt,
                                    ldq, 1.0f, dvd + (k0 * KV + g) * D, ldk);
                    }
            }
        free(scratch);
    }

    if (!dsinks || !sinks)
        return;
    assert(dsinks->dtype == DTYPE_F32 && tensor_numel(dsinks) == H);
    const float *sk = sinks->data; /* [H] */
    float *dsk = dsinks->data;     /* [H] */
#pragma omp parallel for
    for (int64_t h = 0; h < H; h++) {
        double sum = 0;
        for (int64_t i = 0; i < T; i++) {
            float Di = dot(gd + (i * H + h) * D, od + (i * H + h) * D, D);
            sum -= (double)cpu_vec_expf(sk[h] - ld[h * T + i]) * Di;
        }
        dsk[h] += (float)sum;
    }
}
