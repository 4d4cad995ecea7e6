/* Times the CPU backend's attention (src/backend/cpu/attention.c, linked from libtune.a)
 * at one layer of the benchmark model (T 512 tokens in one sequence, H 12 query heads,
 * KV 4 key/value heads, D 64) against a prototype of the change suggested in
 * bench/cpu/PROFILE.md: the same math (causal, GQA, lse kept, no [T, T] buffer beyond
 * one tile of query rows per thread) done as cblas_sgemm calls on tiles of 64 query
 * rows, with D_i = dout_i . out_i computed once per (token, head) instead of once per
 * (query, key) pair. The prototype handles what Llama needs here (one or more packed
 * sequences, no sliding window, no sinks); it is a measurement, not a patch.
 *
 *   sh bench/cpu/attn_bench.sh            (builds tune from HEAD's sources if needed, then this)
 *
 * Prints the median of 5 repetitions of each op and the largest relative difference
 * of the prototype's outputs from the backend's. */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/cpu_ops.h"

void openblas_set_num_threads(int num_threads);

#define TILE 64

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *randn(int64_t n, unsigned *seed)
{
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++)
        p[i] = ((float)rand_r(seed) / (float)RAND_MAX - 0.5f) * 2.0f;
    return p;
}

static struct tensor t3(float *p, int64_t a, int64_t b, int64_t c)
{
    return (struct tensor){p, DTYPE_F32, 3, {a, b, c, 0}};
}

/* Forward: per (sequence, head, query tile) S = scale Q K^T, causal softmax, O = P V. */
static void proto_attention(float *o, float *lse, const float *q, const float *k, const float *v, int64_t T,
                            int64_t H, int64_t KV, int64_t D, const int32_t *starts, int64_t S, float scale,
                            float *scratch /* [threads, TILE, T] */)
{
    int64_t group = H / KV, tiles = 0;
    for (int64_t s = 0; s < S; s++)
        tiles += (starts[s + 1] - starts[s] + TILE - 1) / TILE;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t h = 0; h < H; h++)
        for (int64_t w = 0; w < tiles; w++) {
            int64_t s = 0, x = w; /* tile w of all sequences -> (sequence s, tile x) */
            while (x >= (starts[s + 1] - starts[s] + TILE - 1) / TILE)
                x -= (starts[s + 1] - starts[s] + TILE - 1) / TILE, s++;
            int64_t s0 = starts[s], i0 = s0 + x * TILE, i1 = i0 + TILE < starts[s + 1] ? i0 + TILE : starts[s + 1];
            int64_t rows = i1 - i0, keys = i1 - s0, g = h / group;
            float *sc = scratch + (int64_t)omp_get_thread_num() * TILE * T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)keys, (int)D, scale,
                        q + (i0 * H + h) * D, (int)(H * D), k + (s0 * KV + g) * D, (int)(KV * D), 0.0f, sc,
                        (int)keys);
            for (int64_t r = 0; r < rows; r++) {
                float *p = sc + r * keys, m = -INFINITY, l = 0;
                int64_t n = i0 + r - s0 + 1; /* keys seen by this query */
                for (int64_t j = 0; j < n; j++)
                    m = fmaxf(m, p[j]);
                for (int64_t j = 0; j < n; j++)
                    l += p[j] = expf(p[j] - m);
                for (int64_t j = 0; j < n; j++)
                    p[j] /= l;
                for (int64_t j = n; j < keys; j++)
                    p[j] = 0;
                lse[h * T + i0 + r] = m + logf(l);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)D, (int)keys, 1.0f, sc, (int)keys,
                        v + (s0 * KV + g) * D, (int)(KV * D), 0.0f, o + (i0 * H + h) * D, (int)(H * D));
        }
}

/* Backward: one task per kv head g (it owns dK, dV of g; its query heads' dQ rows):
 * per (sequence, head of g, query tile): P from S and lse, dP = dO V^T,
 * dS = P (dP - D), dQ = scale dS K, dK += scale dS^T Q, dV += P^T dO. */
static void proto_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                     const float *k, const float *v, const float *out, const float *lse, int64_t T,
                                     int64_t H, int64_t KV, int64_t D, const int32_t *starts, int64_t S,
                                     float scale, float *scratch /* [threads, 2, TILE, T] */, float *Dd /* [T, H] */)
{
    int64_t group = H / KV;
#pragma omp parallel for
    for (int64_t t = 0; t < T * H; t++) {
        float s = 0;
        for (int64_t c = 0; c < D; c++)
            s += dout[t * D + c] * out[t * D + c];
        Dd[t] = s;
    }
    memset(dk, 0, (size_t)(T * KV * D) * sizeof *dk);
    memset(dv, 0, (size_t)(T * KV * D) * sizeof *dv);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t g = 0; g < KV; g++) {
        float *p = scratch + (int64_t)omp_get_thread_num() * 2 * TILE * T, *dp = p + TILE * T;
        for (int64_t s = 0; s < S; s++)
            for (int64_t h = g * group; h < (g + 1) * group; h++)
                for (int64_t i0 = starts[s]; i0 < starts[s + 1]; i0 += TILE) {
                    int64_t s0 = starts[s], i1 = i0 + TILE < starts[s + 1] ? i0 + TILE : starts[s + 1];
                    int rows = (int)(i1 - i0), keys = (int)(i1 - s0), ldq = (int)(H * D), ldk = (int)(KV * D);
                    const float *qt = q + (i0 * H + h) * D, *gt = dout + (i0 * H + h) * D;
                    const float *kg = k + (s0 * KV + g) * D, *vg = v + (s0 * KV + g) * D;
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, (int)D, scale, qt, ldq, kg, ldk,
                                0.0f, p, keys);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, (int)D, 1.0f, gt, ldq, vg, ldk,
                                0.0f, dp, keys);
                    for (int64_t r = 0; r < rows; r++) {
                        int64_t n = i0 + r - s0 + 1;
                        float l = lse[h * T + i0 + r], di = Dd[(i0 + r) * H + h];
                        float *pr = p + r * keys, *dpr = dp + r * keys;
                        for (int64_t j = 0; j < n; j++) {
                            pr[j] = expf(pr[j] - l);
                            dpr[j] = pr[j] * (dpr[j] - di);
                        }
                        for (int64_t j = n; j < keys; j++)
                            pr[j] = dpr[j] = 0;
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, (int)D, keys, scale, dp, keys, kg, ldk,
                                0.0f, dq + (i0 * H + h) * D, ldq);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, keys, (int)D, rows, scale, dp, keys, qt, ldq,
                                1.0f, dk + (s0 * KV + g) * D, ldk);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, keys, (int)D, rows, 1.0f, p, keys, gt, ldq,
                                1.0f, dv + (s0 * KV + g) * D, ldk);
                }
    }
}

static double rel(const float *a, const float *ref, int64_t n)
{
    double d = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        d += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        r += (double)ref[i] * ref[i];
    }
    return sqrt(d / r);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define REPS 5
#define TIME(var, stmt)                                                                                              \
    do {                                                                                                             \
        double ts_[REPS];                                                                                            \
        for (int r_ = 0; r_ < REPS; r_++) {                                                                          \
            double t0_ = now();                                                                                      \
            stmt;                                                                                                    \
            ts_[r_] = now() - t0_;                                                                                   \
        }                                                                                                            \
        qsort(ts_, REPS, sizeof ts_[0], cmp);                                                                        \
        var = ts_[REPS / 2];                                                                                         \
    } while (0)

int main(int argc, char **argv)
{
    int64_t T = argc > 1 ? atoll(argv[1]) : 512, H = 12, KV = 4, D = 64, layers = 12;
    openblas_set_num_threads(1); /* as the backend does: OpenMP threads around single-threaded sgemm */
    unsigned seed = 1;
    float scale = 1.0f / sqrtf((float)D);
    float *q = randn(T * H * D, &seed), *k = randn(T * KV * D, &seed), *v = randn(T * KV * D, &seed);
    float *g = randn(T * H * D, &seed);
    float *o = calloc((size_t)(T * H * D), 4), *l = calloc((size_t)(H * T), 4);
    float *o2 = calloc((size_t)(T * H * D), 4), *l2 = calloc((size_t)(H * T), 4);
    float *dq = calloc((size_t)(T * H * D), 4), *dk = calloc((size_t)(T * KV * D), 4), *dv = calloc((size_t)(T * KV * D), 4);
    float *dq2 = calloc((size_t)(T * H * D), 4), *dk2 = calloc((size_t)(T * KV * D), 4), *dv2 = calloc((size_t)(T * KV * D), 4);
    float *scratch = calloc((size_t)(omp_get_max_threads() * 2 * TILE * T), 4), *Dd = calloc((size_t)(T * H), 4);
    int32_t starts[2] = {0, (int32_t)T};
    struct seq_layout sl = {starts, NULL, 1, T, 1};
    struct tensor tq = t3(q, T, H, D), tk = t3(k, T, KV, D), tv = t3(v, T, KV, D), tg = t3(g, T, H, D);
    struct tensor to = t3(o, T, H, D), tl = tensor_2d(l, DTYPE_F32, H, T);
    struct tensor tdq = t3(dq, T, H, D), tdk = t3(dk, T, KV, D), tdv = t3(dv, T, KV, D);
    double f0, b0, f1, b1;
    TIME(f0, cpu_attention(NULL, &to, &tl, &tq, &tk, &tv, NULL, &sl, 0, scale));
    TIME(b0, cpu_attention_backward(NULL, &tdq, &tdk, &tdv, NULL, &tg, &tq, &tk, &tv, NULL, &to, &tl, &sl, 0, scale));
    TIME(f1, proto_attention(o2, l2, q, k, v, T, H, KV, D, starts, 1, scale, scratch));
    TIME(b1, proto_attention_backward(dq2, dk2, dv2, g, q, k, v, o, l, T, H, KV, D, starts, 1, scale, scratch, Dd));
    printf("attention at T %lld, H %lld, KV %lld, D %lld, %d OpenMP threads (one layer; x%lld layers per step)\n",
           (long long)T, (long long)H, (long long)KV, (long long)D, omp_get_max_threads(), (long long)layers);
    printf("%-34s %10s %10s %12s\n", "", "forward s", "backward s", "per step s");
    printf("%-34s %10.4f %10.4f %12.3f\n", "backend (src/backend/cpu)", f0, b0, layers * (f0 + b0));
    printf("%-34s %10.4f %10.4f %12.3f\n", "prototype (sgemm tiles)", f1, b1, layers * (f1 + b1));
    printf("speedup %.1fx forward, %.1fx backward\n", f0 / f1, b0 / b1);
    printf("relative difference: out %.2e, lse %.2e, dq %.2e, dk %.2e, dv %.2e\n", rel(o2, o, T * H * D),
           rel(l2, l, H * T), rel(dq2, dq, T * H * D), rel(dk2, dk, T * KV * D), rel(dv2, dv, T * KV * D));
    return 0;
}
