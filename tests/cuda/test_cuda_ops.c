/* Every op of the CUDA backend against the CPU reference (backend_cpu()), on
 * fresh random inputs drawn for each check (seed printed; TUNE_TEST_SEED
 * repeats a run). Each tensor lives on both backends: the GPU holds it in the
 * dtype the model uses there (bf16 activations, fp32 statistics, factors and
 * gradients), the CPU holds the same values in fp32 (the GPU dtype's rounding
 * of them), so both compute on identical inputs.
 *
 * Outputs that an op overwrites start as NaN on both sides; outputs that it
 * accumulates into start from the same random values. A check downloads the
 * GPU result, widens it to fp32 and compares by relative L2 error
 * ||gpu - cpu|| / ||cpu||: < 1e-5 where the op is fp32 throughout, < 1e-2
 * where bf16 storage or a bf16 GEMM is involved (DESIGN.md's bounds). NaN
 * never passes. Dropout masks and convert's roundings must be bit-equal,
 * integer outputs (the MoE ops' expert ids, order, position, offsets) equal.
 * Prints one line per check with its error, and exits non-zero on any
 * failure. Needs a CUDA GPU. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/cuda/backend_cuda.h"

#define TOL_F32 1e-5
#define TOL_BF16 1e-2
#define MAX_ALLOCS 512

static struct backend *cpu, *gpu, *gpu_sliced; /* gpu_sliced: a tiny conversion scratch */
static int checks, failures;
static uint64_t rng;

/* ---- random numbers (splitmix64) ---- */

static uint64_t rand_u64(void)
{
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float rand_uniform(float lo, float hi) { return lo + (hi - lo) * (float)((rand_u64() >> 40) * 0x1p-24); }

static int64_t rand_int(int64_t n) { return (int64_t)(rand_u64() % (uint64_t)n); }

/* ---- allocations, released after each case ---- */

static struct {
    struct backend *b;
    void *p;
} allocs[MAX_ALLOCS];
static int n_allocs;

static void *track(struct backend *b, size_t bytes)
{
    void *p = b->alloc(b, bytes);
    if (!p || n_allocs == MAX_ALLOCS) {
        fprintf(stderr, "test: allocation of %zu bytes on %s failed\n", bytes, b->name);
        exit(2);
    }
    allocs[n_allocs].b = b;
    allocs[n_allocs++].p = p;
    return p;
}

static void *host_alloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "test: out of host memory\n");
        exit(2);
    }
    return p;
}

static void gpu_check(const char *where)
{
    tune_err err = {{0}};
    if (backend_cuda_check(gpu, &err) || backend_cuda_check(gpu_sliced, &err)) {
        fprintf(stderr, "test: CUDA error after %s: %s\n", where, err.msg);
        exit(1);
    }
}

static void case_end(void)
{
    gpu_check("the case");
    while (n_allocs) {
        n_allocs--;
        allocs[n_allocs].b->free(allocs[n_allocs].b, allocs[n_allocs].p);
    }
}

/* ---- tensors on both backends ---- */

/* c: on the CPU, F32 (I32 for ids); g: on the GPU, in dtype. */
struct pair {
    struct tensor c, g;
};

static struct pair pair_new(enum dtype dt, int rank, int64_t d0, int64_t d1, int64_t d2)
{
    int64_t shape[3] = {d0, d1, d2};
    struct pair p = {{0}, {0}};
    p.c.rank = p.g.rank = rank;
    for (int i = 0; i < rank; i++)
        p.c.shape[i] = p.g.shape[i] = shape[i];
    int64_t n = tensor_numel(&p.c);
    p.c.dtype = dt == DTYPE_I32 ? DTYPE_I32 : DTYPE_F32;
    p.g.dtype = dt;
    p.c.data = track(cpu, (size_t)n * 4);
    p.g.data = track(gpu, (size_t)dtype_bytes(dt, n));
    return p;
}

static struct pair P1(enum dtype dt, int64_t n) { return pair_new(dt, 1, n, 0, 0); }
static struct pair P2(enum dtype dt, int64_t r, int64_t c) { return pair_new(dt, 2, r, c, 0); }
static struct pair P3(enum dtype dt, int64_t a, int64_t b, int64_t c) { return pair_new(dt, 3, a, b, c); }

/* Uploads the CPU side's fp32 values to the GPU in its dtype, replacing the
 * CPU values by their rounding to it. */
static void pair_sync(struct pair *p)
{
    int64_t n = tensor_numel(&p->c);
    if (p->g.dtype == DTYPE_F32 || p->g.dtype == DTYPE_I32) {
        gpu->upload(gpu, p->g.data, p->c.data, (size_t)n * 4);
        return;
    }
    void *tmp = host_alloc((size_t)dtype_bytes(p->g.dtype, n));
    struct tensor t = tensor_1d(tmp, p->g.dtype, n), f = tensor_1d(p->c.data, DTYPE_F32, n);
    cpu->convert(cpu, &t, &f);
    cpu->convert(cpu, &f, &t);
    gpu->upload(gpu, p->g.data, tmp, (size_t)dtype_bytes(p->g.dtype, n));
    free(tmp);
}

static void fill_random(struct pair *p, float lo, float hi)
{
    float *x = p->c.data;
    for (int64_t i = 0; i < tensor_numel(&p->c); i++)
        x[i] = rand_uniform(lo, hi);
    pair_sync(p);
}

/* Overwritten outputs start as NaN on both sides. */
static void fill_nan(struct pair *p)
{
    float *x = p->c.data;
    for (int64_t i = 0; i < tensor_numel(&p->c); i++)
        x[i] = NAN;
    pair_sync(p);
}

static void fill_i32(struct pair *p, const int32_t *v)
{
    memcpy(p->c.data, v, (size_t)tensor_numel(&p->c) * 4);
    pair_sync(p);
}

/* The GPU side widened to fp32, into host memory the caller frees. */
static float *gpu_values(const struct pair *p)
{
    int64_t n = tensor_numel(&p->g);
    float *out = host_alloc((size_t)n * 4);
    if (p->g.dtype == DTYPE_F32) {
        gpu->download(gpu, out, p->g.data, (size_t)n * 4);
        return out;
    }
    void *tmp = host_alloc((size_t)dtype_bytes(p->g.dtype, n));
    gpu->download(gpu, tmp, p->g.data, (size_t)dtype_bytes(p->g.dtype, n));
    struct tensor t = tensor_1d(tmp, p->g.dtype, n), f = tensor_1d(out, DTYPE_F32, n);
    cpu->convert(cpu, &f, &t);
    free(tmp);
    return out;
}

static const char *dt_name(enum dtype d) { return d == DTYPE_F32 ? "f32" : d == DTYPE_BF16 ? "bf16" : "f16"; }

static void report(const char *what, double err, double tol, long nans, const char *note)
{
    /* note: extra words after the numbers, or NULL. */
    bool ok = nans == 0 && err < tol && !isnan(err);
    checks++;
    failures += !ok;
    printf("  %-4s %-62s rel %.2e  tol %.0e%s%s\n", ok ? "ok" : "FAIL", what, err, tol, nans ? "  NaN" : "",
           note ? note : "");
}

/* Relative L2 error of n values against the reference; NaN on either side fails. */
static double rel_l2(const float *got, const float *ref, int64_t n, long *nans)
{
    double num = 0, den = 0;
    *nans = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]) || isnan(ref[i])) {
            (*nans)++;
            continue;
        }
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* A bf16 output's error against the fp32 reference is mostly its own final
 * rounding (about 1.5e-3); the note adds the error against the reference
 * rounded to bf16 too, which shows what the op's arithmetic adds. */
static void compare(const char *what, const struct pair *p, double tol)
{
    gpu_check(what);
    int64_t n = tensor_numel(&p->c);
    float *got = gpu_values(p);
    long nans;
    double err = rel_l2(got, p->c.data, n, &nans);
    char note[64] = "";
    if (p->g.dtype != DTYPE_F32) {
        float *ref = host_alloc((size_t)n * 4);
        void *tmp = host_alloc((size_t)dtype_bytes(p->g.dtype, n));
        struct tensor f = tensor_1d(p->c.data, DTYPE_F32, n), t = tensor_1d(tmp, p->g.dtype, n);
        struct tensor r = tensor_1d(ref, DTYPE_F32, n);
        cpu->convert(cpu, &t, &f);
        cpu->convert(cpu, &r, &t);
        long nans2;
        snprintf(note, sizeof note, "  (vs ref rounded to %s: %.1e)", dt_name(p->g.dtype), rel_l2(got, ref, n, &nans2));
        free(ref), free(tmp);
    }
    report(what, err, tol, nans, note);
    free(got);
}

static void compare_scalar(const char *what, double got, double ref, double tol)
{
    gpu_check(what);
    double err = fabs(got - ref) / (fabs(ref) > 0 ? fabs(ref) : 1);
    report(what, err, tol, isnan(got) || isnan(ref), NULL);
}

/* ---- memory ---- */

static void test_memory(void)
{
    printf("memory\n");
    enum { N = 1000 };
    float host[N], back[N];
    for (int i = 0; i < N; i++)
        host[i] = rand_uniform(-1, 1);
    void *d = track(gpu, sizeof host);
    gpu->upload(gpu, d, host, sizeof host);
    gpu->download(gpu, back, d, sizeof back);
    report("upload / download round trip", memcmp(host, back, sizeof host) ? 1.0 : 0.0, TOL_F32, 0, NULL);
    struct tensor t = tensor_1d(d, DTYPE_F32, N);
    gpu->zero(gpu, &t);
    gpu->download(gpu, back, d, sizeof back);
    double nonzero = 0;
    for (int i = 0; i < N; i++)
        nonzero += back[i] != 0.0f;
    report("zero", nonzero, TOL_F32, 0, NULL);
    int64_t in_use = gpu->bytes_in_use;
    void *counted = gpu->alloc(gpu, 12345);
    bool grew = gpu->bytes_in_use == in_use + 12345 && gpu->bytes_peak >= gpu->bytes_in_use;
    gpu->free(gpu, counted);
    report("bytes_in_use / bytes_peak count alloc minus free", grew && gpu->bytes_in_use == in_use ? 0.0 : 1.0,
           TOL_F32, 0, NULL);
    void *huge = gpu->alloc(gpu, (size_t)1 << 50);
    report("alloc of 1 PiB returns NULL", huge ? 1.0 : 0.0, TOL_F32, 0, NULL);
    if (huge)
        gpu->free(gpu, huge);
    gpu_check("memory");
    case_end();
}

/* ---- convert: bit-equal to the CPU's rounding ---- */

static void test_convert(void)
{
    printf("convert\n");
    static const enum dtype kinds[3] = {DTYPE_F32, DTYPE_BF16, DTYPE_F16};
    enum { N = 20000 };
    for (int s = 0; s < 3; s++)
        for (int t = 0; t < 3; t++) {
            enum dtype sd = kinds[s], td = kinds[t];
            /* Wide range: f16 overflow and subnormals, bf16 ties. */
            float *src = host_alloc(N * 4);
            for (int i = 0; i < N; i++) {
                float mag = ldexpf(rand_uniform(1, 2), (int)rand_int(60) - 30);
                src[i] = rand_u64() & 1 ? -mag : mag;
            }
            src[0] = 65520.0f, src[1] = 1e-8f, src[2] = INFINITY, src[3] = -0.0f;
            void *hs = host_alloc((size_t)dtype_bytes(sd, N)), *hd = host_alloc((size_t)dtype_bytes(td, N));
            void *hg = host_alloc((size_t)dtype_bytes(td, N));
            struct tensor fs = tensor_1d(src, DTYPE_F32, N), ts = tensor_1d(hs, sd, N), td_ = tensor_1d(hd, td, N);
            cpu->convert(cpu, &ts, &fs); /* the source in its dtype */
            cpu->convert(cpu, &td_, &ts);
            void *gs = track(gpu, (size_t)dtype_bytes(sd, N)), *gd = track(gpu, (size_t)dtype_bytes(td, N));
            gpu->upload(gpu, gs, hs, (size_t)dtype_bytes(sd, N));
            struct tensor gts = tensor_1d(gs, sd, N), gtd = tensor_1d(gd, td, N);
            gpu->convert(gpu, &gtd, &gts);
            gpu_check("convert");
            gpu->download(gpu, hg, gd, (size_t)dtype_bytes(td, N));
            long diff = 0;
            int w = (int)dtype_bytes(td, 1);
            for (int i = 0; i < N; i++)
                diff += memcmp((char *)hg + i * w, (char *)hd + i * w, (size_t)w) != 0;
            char what[96];
            snprintf(what, sizeof what, "convert %s -> %s: elements not bit-equal (%ld)", dt_name(sd), dt_name(td),
                     diff);
            report(what, (double)diff, 0.5, 0, NULL);
            free(src), free(hs), free(hd), free(hg);
        }
    case_end();
}

/* ---- matmul ---- */

struct mm_case {
    int64_t M, N, K;
    bool ta, tb;
    enum dtype at, bt, ct;
    float alpha, beta;
    const char *use;
};

/* matmul on both backends, or with `separate` matmul_add: d = alpha op(a)
 * op(b) + c, the addend c apart from d, which starts poisoned (m->beta is
 * then unused). */
static void run_matmul(const struct mm_case *m, struct backend *g, const char *tag, bool separate)
{
    struct pair a = m->ta ? P2(m->at, m->K, m->M) : P2(m->at, m->M, m->K);
    struct pair b = m->tb ? P2(m->bt, m->N, m->K) : P2(m->bt, m->K, m->N);
    struct pair c = P2(m->ct, m->M, m->N), d = separate ? P2(m->ct, m->M, m->N) : c;
    fill_random(&a, -1, 1);
    fill_random(&b, -1, 1);
    if (m->beta != 0 || separate)
        fill_random(&c, -1, 1);
    else
        fill_nan(&c);
    if (separate) {
        fill_nan(&d);
        cpu->matmul_add(cpu, &d.c, &c.c, &a.c, m->ta, &b.c, m->tb, m->alpha);
        g->matmul_add(g, &d.g, &c.g, &a.g, m->ta, &b.g, m->tb, m->alpha);
    } else {
        cpu->matmul(cpu, &c.c, &a.c, m->ta, &b.c, m->tb, m->alpha, m->beta);
        g->matmul(g, &c.g, &a.g, m->ta, &b.g, m->tb, m->alpha, m->beta);
    }
    bool all_f32 = m->at == DTYPE_F32 && m->bt == DTYPE_F32 && m->ct == DTYPE_F32;
    char what[128];
    snprintf(what, sizeof what, "%s%s %s%s x %s%s -> %s [%lld,%lld,%lld] b=%g (%s)", separate ? "matmul_add" : "matmul",
             tag, dt_name(m->at), m->ta ? "^T" : "", dt_name(m->bt), m->tb ? "^T" : "", dt_name(m->ct),
             (long long)m->M, (long long)m->N, (long long)m->K, separate ? 1.0f : m->beta, m->use);
    compare(what, &d, all_f32 ? TOL_F32 : TOL_BF16);
}

/* A packed run's batches differ in token count, so its GEMMs come in many shapes: 150 of them, more than
 * the plan index starts with (64, then grown twice), each against the CPU, then the first 20 again (found
 * in the grown index). One check: the worst of the 170. */
static void test_matmul_many_shapes(void)
{
    double worst = 0;
    long nans_total = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < (pass ? 20 : 150); i++) {
            int64_t M = 100 + i, N = 48, K = 64;
            struct pair a = P2(DTYPE_BF16, M, K), b = P2(DTYPE_BF16, N, K), c = P2(DTYPE_BF16, M, N);
            fill_random(&a, -1, 1);
            fill_random(&b, -1, 1);
            fill_nan(&c);
            cpu->matmul(cpu, &c.c, &a.c, false, &b.c, true, 1.0f, 0.0f);
            gpu->matmul(gpu, &c.g, &a.g, false, &b.g, true, 1.0f, 0.0f);
            float *got = gpu_values(&c);
            long nans;
            double e = rel_l2(got, c.c.data, M * N, &nans);
            free(got);
            worst = e > worst || isnan(e) ? e : worst;
            nans_total += nans;
            case_end();
        }
    report("matmul bf16 x bf16^T [100..249, 48, 64]: 170 calls of 150 shapes, the worst", worst, TOL_BF16,
           nans_total, NULL);
}

static void test_matmul(void)
{
    printf("matmul\n");
    const enum dtype F = DTYPE_F32, B = DTYPE_BF16;
    const struct mm_case cases[] = {
        {67, 45, 83, false, false, F, F, F, 1.0f, 0.0f, "fp32"},
        {67, 45, 83, true, false, F, F, F, 0.5f, 1.0f, "fp32"},
        {67, 45, 83, false, true, F, F, F, 1.0f, 1.0f, "fp32"},
        {67, 45, 83, true, true, F, F, F, -2.0f, 0.0f, "fp32"},
        {256, 384, 512, false, true, B, B, B, 1.0f, 0.0f, "linear"},
        {256, 384, 512, false, true, B, B, B, 1.0f, 1.0f, "linear into residual"},
        {96, 1000, 256, false, true, B, B, F, 1.0f, 0.0f, "logits"},
        {200, 16, 384, false, true, B, F, B, 1.0f, 0.0f, "lora x A^T"},
        /* LoRA's skinny products with both factors bf16 (the compute twin): ranks 16, 8, odd widths */
        {200, 16, 384, false, true, B, B, B, 1.0f, 0.0f, "lora x A^T, bf16 A"},
        {2053, 16, 4104, false, true, B, B, F, 0.5f, 1.0f, "x A^T into fp32"},
        {300, 8, 2048, false, true, B, B, B, 1.0f, 0.0f, "x A^T, rank 8"},
        {37, 5, 64, false, true, B, B, B, -1.0f, 1.0f, "5 columns"},
        {64, 17, 64, false, true, B, B, B, 1.0f, 0.0f, "17 columns"},
        {200, 384, 16, false, true, B, F, B, 0.5f, 1.0f, "lora y += s xa B^T"},
        {200, 384, 512, false, false, F, B, B, 1.0f, 0.0f, "dx = dres W"},
        {200, 384, 512, false, false, B, B, B, 1.0f, 1.0f, "dx += dy W"},
        {200, 16, 384, false, false, F, F, F, 0.5f, 0.0f, "dxa = s dres B (fp32)"},
        {200, 16, 384, false, false, B, F, F, 0.5f, 0.0f, "dxa = s dy B"},
        {384, 16, 200, true, false, F, B, F, 0.5f, 1.0f, "dB += s dres^T xa"},
        {384, 16, 200, true, false, B, B, F, 0.5f, 1.0f, "dB += s dy^T xa"},
        {16, 512, 200, true, false, F, B, F, 1.0f, 1.0f, "dA += dxa^T x"},
        {200, 512, 16, false, false, F, F, B, 1.0f, 1.0f, "dx += dxa A"},
        {64, 512, 8192, false, false, F, B, B, 1.0f, 0.0f, "dx = dlogits head"},
        {33, 70, 45, true, true, F, F, B, 1.0f, 0.0f, "both fp32, both transposed"},
        {33, 70, 45, true, true, B, B, F, 1.0f, 1.0f, "bf16, both transposed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_matmul(&cases[i], gpu, "", false);
        case_end();
    }
    /* The residual stream's next value from its input, and the sliced path. */
    const struct mm_case adds[] = {
        {256, 384, 512, false, true, B, B, B, 1.0f, 1.0f, "next = input + x W^T"},
        {200, 384, 16, false, true, B, F, B, 0.5f, 1.0f, "next = input + s xa B^T"},
        {200, 16, 2048, false, true, B, B, B, 0.5f, 1.0f, "x A^T, c apart from d"},
        {67, 45, 83, true, false, F, F, F, -2.0f, 1.0f, "fp32"},
    };
    for (size_t i = 0; i < sizeof adds / sizeof adds[0]; i++) {
        run_matmul(&adds[i], gpu, "", true);
        case_end();
    }
    run_matmul(&adds[1], gpu_sliced, " sliced", true);
    case_end();
    test_matmul_many_shapes();
    /* The sliced paths: a conversion scratch of 8 KiB (2048 bf16 per operand). */
    const struct mm_case sliced[] = {
        {150, 90, 96, false, false, F, F, B, 1.0f, 0.0f, "slices of M and N"},
        {150, 90, 96, true, true, F, F, B, 1.0f, 1.0f, "slices of M and N"},
        {150, 90, 96, true, false, F, B, F, 1.0f, 1.0f, "slices of M"},
        {150, 90, 96, false, true, B, F, B, 0.5f, 1.0f, "slices of N"},
        {150, 90, 96, false, false, B, F, F, 1.0f, 0.0f, "slices of N"},
    };
    for (size_t i = 0; i < sizeof sliced / sizeof sliced[0]; i++) {
        run_matmul(&sliced[i], gpu_sliced, " sliced", false);
        case_end();
    }
}

/* ---- small whole-tensor ops ---- */

static void test_elementwise(void)
{
    printf("add_bias, bias_backward, axpy, scale, sum_squares\n");
    const enum dtype kinds[2] = {DTYPE_F32, DTYPE_BF16};
    char what[128];
    for (int k = 0; k < 2; k++) {
        enum dtype dt = kinds[k];
        double tol = dt == DTYPE_F32 ? TOL_F32 : TOL_BF16;
        struct pair y = P2(dt, 300, 257), bias = P1(dt, 257);
        fill_random(&y, -1, 1), fill_random(&bias, -1, 1);
        cpu->add_bias(cpu, &y.c, &bias.c);
        gpu->add_bias(gpu, &y.g, &bias.g);
        snprintf(what, sizeof what, "add_bias %s [300, 257]", dt_name(dt));
        compare(what, &y, tol);

        struct pair db = P1(DTYPE_F32, 257), dy = P2(dt, 1500, 257);
        fill_random(&db, -1, 1), fill_random(&dy, -1, 1);
        cpu->bias_backward(cpu, &db.c, &dy.c);
        gpu->bias_backward(gpu, &db.g, &dy.g);
        snprintf(what, sizeof what, "bias_backward dy %s [1500, 257] -> f32 (accumulate)", dt_name(dt));
        compare(what, &db, TOL_F32);

        struct pair ay = P2(dt, 100, 301), ax = P2(dt, 100, 301);
        fill_random(&ay, -1, 1), fill_random(&ax, -1, 1);
        cpu->axpy(cpu, &ay.c, -0.75f, &ax.c);
        gpu->axpy(gpu, &ay.g, -0.75f, &ax.g);
        snprintf(what, sizeof what, "axpy %s", dt_name(dt));
        compare(what, &ay, tol);

        struct pair sx = P1(dt, 12345);
        fill_random(&sx, -3, 3);
        cpu->scale(cpu, &sx.c, 0.3f);
        gpu->scale(gpu, &sx.g, 0.3f);
        snprintf(what, sizeof what, "scale %s", dt_name(dt));
        compare(what, &sx, tol);

        const int64_t sizes[3] = {1, 4097, 3000001};
        for (int i = 0; i < 3; i++) {
            struct pair x = P1(dt, sizes[i]);
            fill_random(&x, -2, 2);
            double ref = cpu->sum_squares(cpu, &x.c), got = gpu->sum_squares(gpu, &x.g);
            double again = gpu->sum_squares(gpu, &x.g);
            snprintf(what, sizeof what, "sum_squares %s n=%lld", dt_name(dt), (long long)sizes[i]);
            compare_scalar(what, got, ref, TOL_F32);
            snprintf(what, sizeof what, "sum_squares %s n=%lld: same bits twice", dt_name(dt), (long long)sizes[i]);
            report(what, memcmp(&got, &again, sizeof got) ? 1.0 : 0.0, 0.5, 0, NULL);
        }
        case_end();
    }
}

/* ---- embedding ---- */

static void test_embedding(void)
{
    printf("embedding\n");
    const enum dtype kinds[2] = {DTYPE_F32, DTYPE_BF16};
    char what[128];
    for (int k = 0; k < 2; k++) {
        enum dtype dt = kinds[k];
        int64_t V = 50, C = 300, T = 400;
        int32_t *idv = host_alloc((size_t)T * 4);
        for (int64_t t = 0; t < T; t++)
            idv[t] = (int32_t)rand_int(V); /* repeats: 400 tokens over 50 ids */
        struct pair ids = P1(DTYPE_I32, T), table = P2(dt, V, C), out = P2(dt, T, C);
        fill_i32(&ids, idv);
        fill_random(&table, -1, 1), fill_nan(&out);
        cpu->embedding(cpu, &out.c, &table.c, &ids.c);
        gpu->embedding(gpu, &out.g, &table.g, &ids.g);
        snprintf(what, sizeof what, "embedding %s", dt_name(dt));
        compare(what, &out, dt == DTYPE_F32 ? TOL_F32 : TOL_BF16);

        struct pair dtable = P2(DTYPE_F32, V, C), dout = P2(dt, T, C);
        fill_random(&dtable, -1, 1), fill_random(&dout, -1, 1);
        cpu->embedding_backward(cpu, &dtable.c, &dout.c, &ids.c);
        gpu->embedding_backward(gpu, &dtable.g, &dout.g, &ids.g);
        snprintf(what, sizeof what, "embedding_backward dout %s -> f32 (accumulate, repeated ids)", dt_name(dt));
        compare(what, &dtable, TOL_F32);
        free(idv);
        case_end();
    }
}

/* ---- rmsnorm ---- */

static void test_rmsnorm(void)
{
    printf("rmsnorm\n");
    const enum dtype kinds[2] = {DTYPE_F32, DTYPE_BF16};
    char what[128];
    for (int k = 0; k < 2; k++) {
        enum dtype dt = kinds[k];
        double tol = dt == DTYPE_F32 ? TOL_F32 : TOL_BF16;
        int64_t T = 300, C = 1000;
        struct pair x = P2(dt, T, C), w = P1(dt, C), out = P2(dt, T, C), rstd = P2(DTYPE_F32, T, 1);
        fill_random(&x, -2, 2), fill_random(&w, 0.5f, 1.5f), fill_nan(&out), fill_nan(&rstd);
        cpu->rmsnorm(cpu, &out.c, &rstd.c, &x.c, &w.c, 1e-5f);
        gpu->rmsnorm(gpu, &out.g, &rstd.g, &x.g, &w.g, 1e-5f);
        snprintf(what, sizeof what, "rmsnorm %s: out", dt_name(dt));
        compare(what, &out, tol);
        snprintf(what, sizeof what, "rmsnorm %s: rstd (f32)", dt_name(dt));
        compare(what, &rstd, TOL_F32);

        /* Backward from the CPU's rstd on both sides: into the fp32 residual
         * gradient (as the model does) and into dx of dtype dt. */
        gpu->upload(gpu, rstd.g.data, rstd.c.data, (size_t)T * 4);
        const enum dtype dx_kinds[2] = {DTYPE_F32, dt};
        for (int j = 0; j < (dt == DTYPE_F32 ? 1 : 2); j++) {
            struct pair dx = P2(dx_kinds[j], T, C), dw = P1(DTYPE_F32, C), dout = P2(dt, T, C);
            fill_random(&dx, -1, 1), fill_random(&dw, -1, 1), fill_random(&dout, -1, 1);
            cpu->rmsnorm_backward(cpu, &dx.c, &dw.c, &dout.c, &x.c, &w.c, &rstd.c);
            gpu->rmsnorm_backward(gpu, &dx.g, &dw.g, &dout.g, &x.g, &w.g, &rstd.g);
            snprintf(what, sizeof what, "rmsnorm_backward %s: dx %s (accumulate)", dt_name(dt), dt_name(dx_kinds[j]));
            compare(what, &dx, dx_kinds[j] == DTYPE_F32 && dt == DTYPE_F32 ? TOL_F32 : TOL_BF16);
            snprintf(what, sizeof what, "rmsnorm_backward %s: dw f32 (accumulate)", dt_name(dt));
            compare(what, &dw, TOL_F32);
        }
        struct pair dx = P2(DTYPE_F32, T, C), dout = P2(dt, T, C);
        fill_random(&dx, -1, 1), fill_random(&dout, -1, 1);
        cpu->rmsnorm_backward(cpu, &dx.c, NULL, &dout.c, &x.c, &w.c, &rstd.c);
        gpu->rmsnorm_backward(gpu, &dx.g, NULL, &dout.g, &x.g, &w.g, &rstd.g);
        snprintf(what, sizeof what, "rmsnorm_backward %s: dx f32, no dw", dt_name(dt));
        compare(what, &dx, dt == DTYPE_F32 ? TOL_F32 : TOL_BF16);
        case_end();
    }
}

/* ---- packed layouts ---- */

/* positions [T] and starts on both sides: [T + 1], empty sequences at T
 * after the S real ones, as a training step lays them out; the CPU is told
 * of the S, the GPU searches all T (seq_layout's capacity). */
struct layout {
    struct pair starts, positions;
    int64_t S, T, max_len;
};

static struct layout layout_new(const int32_t *starts, int64_t S)
{
    int64_t T = starts[S];
    struct layout l = {P1(DTYPE_I32, T + 1), P1(DTYPE_I32, T), S, T, 0};
    int32_t *pos = host_alloc((size_t)T * 4), *padded = host_alloc((size_t)(T + 1) * 4);
    for (int64_t s = 0; s < S; s++) {
        for (int32_t t = starts[s]; t < starts[s + 1]; t++)
            pos[t] = t - starts[s];
        l.max_len = starts[s + 1] - starts[s] > l.max_len ? starts[s + 1] - starts[s] : l.max_len;
    }
    for (int64_t s = 0; s <= T; s++)
        padded[s] = s <= S ? starts[s] : (int32_t)T;
    fill_i32(&l.starts, padded);
    fill_i32(&l.positions, pos);
    free(pos);
    free(padded);
    return l;
}

static struct seq_layout layout_cpu(const struct layout *l)
{
    return (struct seq_layout){l->starts.c.data, l->positions.c.data, l->S, l->max_len, l->S};
}

static struct seq_layout layout_gpu(const struct layout *l)
{
    return (struct seq_layout){l->starts.g.data, l->positions.g.data, l->S, l->max_len, l->T};
}

/* ---- rope ---- */

static void test_rope(void)
{
    printf("rope\n");
    const enum dtype kinds[2] = {DTYPE_F32, DTYPE_BF16};
    const int32_t starts[4] = {0, 50, 51, 120};
    char what[128];
    for (int k = 0; k < 2; k++) {
        enum dtype dt = kinds[k];
        int64_t half = 32, P = 128, T = starts[3], heads = 3;
        struct layout l = layout_new(starts, 3);
        struct pair table = P3(DTYPE_F32, P, half, 2);
        float *cs = table.c.data;
        for (int64_t p = 0; p < P; p++)
            for (int64_t i = 0; i < half; i++) {
                double ang = p * pow(10000.0, -(double)i / (double)half);
                cs[(p * half + i) * 2] = (float)cos(ang);
                cs[(p * half + i) * 2 + 1] = (float)sin(ang);
            }
        pair_sync(&table);
        struct rope_table rc = {table.c.data, P, half, 1.0f}, rg = {table.g.data, P, half, 1.0f};
        struct seq_layout sc = layout_cpu(&l), sg = layout_gpu(&l);
        for (int bwd = 0; bwd < 2; bwd++) {
            struct pair x = P3(dt, T, heads, 2 * half);
            fill_random(&x, -1, 1);
            cpu->rope(cpu, &x.c, &rc, &sc, bwd);
            gpu->rope(gpu, &x.g, &rg, &sg, bwd);
            snprintf(what, sizeof what, "rope %s %s (in place)", dt_name(dt), bwd ? "backward" : "forward");
            compare(what, &x, dt == DTYPE_F32 ? TOL_F32 : TOL_BF16);
        }
        case_end();
    }
}

/* ---- attention ---- */

struct att_case {
    enum dtype dt;
    int64_t H, KV, D, window;
    bool sinks;
    int64_t S;
    int32_t starts[6];
};

static void test_attention_case(const struct att_case *a)
{
    int64_t T = a->starts[a->S], H = a->H, KV = a->KV, D = a->D;
    enum dtype dt = a->dt;
    double tol = dt == DTYPE_F32 ? TOL_F32 : TOL_BF16;
    float scale = 1.0f / sqrtf((float)D);
    struct layout l = layout_new(a->starts, a->S);
    struct seq_layout sc = layout_cpu(&l), sg = layout_gpu(&l);
    struct pair q = P3(dt, T, H, D), k = P3(dt, T, KV, D), v = P3(dt, T, KV, D);
    struct pair sinks = P1(DTYPE_F32, H), out = P3(dt, T, H, D), lse = P2(DTYPE_F32, H, T);
    fill_random(&q, -2, 2), fill_random(&k, -2, 2), fill_random(&v, -1, 1), fill_random(&sinks, -1, 2);
    fill_nan(&out), fill_nan(&lse);
    const struct tensor *skc = a->sinks ? &sinks.c : NULL, *skg = a->sinks ? &sinks.g : NULL;
    cpu->attention(cpu, &out.c, &lse.c, &q.c, &k.c, &v.c, skc, &sc, a->window, scale);
    gpu->attention(gpu, &out.g, &lse.g, &q.g, &k.g, &v.g, skg, &sg, a->window, scale);
    char tag[128], what[160];
    snprintf(tag, sizeof tag, "%s T=%lld S=%lld H=%lld KV=%lld D=%lld w=%lld%s", dt_name(dt), (long long)T,
             (long long)a->S, (long long)H, (long long)KV, (long long)D, (long long)a->window,
             a->sinks ? " sinks" : "");
    snprintf(what, sizeof what, "attention %s: out", tag);
    compare(what, &out, tol);
    snprintf(what, sizeof what, "attention %s: lse", tag);
    compare(what, &lse, TOL_F32);

    /* Backward from the CPU's out and lse, given to both sides. */
    pair_sync(&out);
    gpu->upload(gpu, lse.g.data, lse.c.data, (size_t)(H * T * 4));
    struct pair dout = P3(dt, T, H, D), dq = P3(dt, T, H, D), dk = P3(dt, T, KV, D), dv = P3(dt, T, KV, D);
    struct pair dsinks = P1(DTYPE_F32, H);
    fill_random(&dout, -1, 1), fill_nan(&dq), fill_nan(&dk), fill_nan(&dv), fill_random(&dsinks, -1, 1);
    cpu->attention_backward(cpu, &dq.c, &dk.c, &dv.c, a->sinks ? &dsinks.c : NULL, &dout.c, &q.c, &k.c, &v.c, skc,
                            &out.c, &lse.c, &sc, a->window, scale);
    gpu->attention_backward(gpu, &dq.g, &dk.g, &dv.g, a->sinks ? &dsinks.g : NULL, &dout.g, &q.g, &k.g, &v.g, skg,
                            &out.g, &lse.g, &sg, a->window, scale);
    snprintf(what, sizeof what, "attention_backward %s: dq", tag);
    compare(what, &dq, tol);
    snprintf(what, sizeof what, "attention_backward %s: dk", tag);
    compare(what, &dk, tol);
    snprintf(what, sizeof what, "attention_backward %s: dv", tag);
    compare(what, &dv, tol);
    if (a->sinks) {
        snprintf(what, sizeof what, "attention_backward %s: dsinks (accumulate)", tag);
        compare(what, &dsinks, TOL_F32);
    }
    case_end();
}

static void test_attention(void)
{
    printf("attention\n");
    const enum dtype F = DTYPE_F32, B = DTYPE_BF16;
    const struct att_case cases[] = {
        {F, 4, 4, 64, 0, false, 1, {0, 100}},
        {F, 4, 2, 8, 0, false, 2, {0, 20, 33}},
        {F, 2, 1, 16, 5, true, 3, {0, 17, 18, 45}},
        {F, 8, 2, 128, 40, true, 3, {0, 70, 71, 150}},
        {B, 8, 2, 128, 0, true, 3, {0, 70, 71, 150}},
        {B, 8, 2, 128, 33, false, 3, {0, 70, 71, 150}},
        {B, 8, 8, 64, 0, false, 1, {0, 333}},
        {B, 16, 4, 64, 64, true, 4, {0, 100, 230, 231, 300}},
        {B, 8, 2, 128, 0, false, 2, {0, 700, 1024}},
        {B, 8, 1, 64, 128, true, 3, {0, 300, 301, 777}}, /* gpt-oss: sliding window 128, head dim 64 */
        {B, 6, 2, 64, 0, false, 2, {0, 100, 260}},         /* an odd group of 3 heads */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        test_attention_case(&cases[i]);
}

static void test_attention_cached(void)
{
    printf("attention_cached\n");
    const enum dtype kinds[2] = {DTYPE_F32, DTYPE_BF16};
    char what[160];
    for (int k = 0; k < 2; k++)
        for (int c = 0; c < 2; c++) {
            enum dtype dt = kinds[k];
            int64_t H = 8, KV = 2, D = 64, P = 90, n = c ? 1 : 5, pos0 = c ? 88 : 40, window = c ? 16 : 0;
            struct pair q = P3(dt, n, H, D), kc = P3(dt, P, KV, D), vc = P3(dt, P, KV, D), sinks = P1(DTYPE_F32, H);
            struct pair out = P3(dt, n, H, D);
            fill_random(&q, -2, 2), fill_random(&kc, -2, 2), fill_random(&vc, -1, 1), fill_random(&sinks, -1, 1);
            fill_nan(&out);
            float scale = 0.125f;
            cpu->attention_cached(cpu, &out.c, &q.c, &kc.c, &vc.c, c ? &sinks.c : NULL, pos0, window, scale);
            gpu->attention_cached(gpu, &out.g, &q.g, &kc.g, &vc.g, c ? &sinks.g : NULL, pos0, window, scale);
            snprintf(what, sizeof what, "attention_cached %s n=%lld pos0=%lld w=%lld%s", dt_name(dt), (long long)n,
                     (long long)pos0, (long long)window, c ? " sinks" : "");
            compare(what, &out, dt == DTYPE_F32 ? TOL_F32 : TOL_BF16);
            case_end();
        }
}

/* ---- swiglu ---- */

static void test_swiglu(void)
{
    printf("swiglu\n");
    /* bf16 twice: 8-element words (64 x 1000) and the element-wise path (3 x 7). */
    const enum dtype kinds[3] = {DTYPE_F32, DTYPE_BF16, DTYPE_BF16};
    const int64_t rows[3] = {64, 64, 3}, cols[3] = {1001, 1000, 7};
    char what[128];
    for (int k = 0; k < 3; k++) {
        enum dtype dt = kinds[k];
        double tol = dt == DTYPE_F32 ? TOL_F32 : TOL_BF16;
        int64_t R = rows[k], C = cols[k];
        struct pair gate = P2(dt, R, C), up = P2(dt, R, C), h = P2(dt, R, C);
        fill_random(&gate, -12, 12), fill_random(&up, -2, 2), fill_nan(&h);
        cpu->swiglu(cpu, &h.c, &gate.c, &up.c);
        gpu->swiglu(gpu, &h.g, &gate.g, &up.g);
        snprintf(what, sizeof what, "swiglu %s %lldx%lld", dt_name(dt), (long long)R, (long long)C);
        compare(what, &h, tol);
        struct pair dh = P2(dt, R, C), dgate = P2(dt, R, C), dup = P2(dt, R, C);
        fill_random(&dh, -1, 1), fill_nan(&dgate), fill_nan(&dup);
        cpu->swiglu_backward(cpu, &dgate.c, &dup.c, &dh.c, &gate.c, &up.c);
        gpu->swiglu_backward(gpu, &dgate.g, &dup.g, &dh.g, &gate.g, &up.g);
        snprintf(what, sizeof what, "swiglu_backward %s %lldx%lld: dgate", dt_name(dt), (long long)R, (long long)C);
        compare(what, &dgate, tol);
        snprintf(what, sizeof what, "swiglu_backward %s %lldx%lld: dup", dt_name(dt), (long long)R, (long long)C);
        compare(what, &dup, tol);
        case_end();
    }
}

/* ---- mixture of experts ---- */

/* Overwritten int32 outputs start as -1 on both sides. */
static void fill_i32_unset(struct pair *p)
{
    memset(p->c.data, 0xff, (size_t)tensor_numel(&p->c) * 4);
    pair_sync(p);
}

/* Integer outputs (expert ids, permutations, offsets) must be equal element for element. */
static void compare_i32(const char *what, const struct pair *p)
{
    gpu_check(what);
    int64_t n = tensor_numel(&p->c);
    int32_t *got = host_alloc((size_t)n * 4);
    gpu->download(gpu, got, p->g.data, (size_t)n * 4);
    long diff = 0;
    for (int64_t i = 0; i < n; i++)
        diff += got[i] != ((const int32_t *)p->c.data)[i];
    char line[160];
    snprintf(line, sizeof line, "%s: elements not equal (%ld)", what, diff);
    report(line, (double)diff, 0.5, 0, NULL);
    free(got);
}

/* T tokens, E experts, k per token, C columns of x (not a multiple of 8). */
struct moe_case {
    int64_t T, E, k, C;
};

/* gpt-oss's E and k, an odd E, experts left without tokens (128 for 256
 * pairs), N = 4000 pairs (moe_group's several chunks), and one expert. */
static const struct moe_case moe_cases[] = {
    {37, 32, 4, 45}, {100, 7, 2, 99}, {64, 128, 4, 301}, {1000, 32, 4, 70}, {50, 1, 1, 13},
};
#define MOE_CASES (sizeof moe_cases / sizeof moe_cases[0])

/* Router logits [T, E] with ties: every third row takes four values (-0 and
 * +0 among them), every third is constant, so the lower index must come
 * first among equals; the rest are random. */
static void fill_logits(struct pair *logits)
{
    static const float ties[4] = {-0.0f, 0.0f, 0.5f, 1.0f};
    int64_t T = logits->c.shape[0], E = logits->c.shape[1];
    float *l = logits->c.data;
    for (int64_t t = 0; t < T; t++)
        for (int64_t e = 0; e < E; e++)
            l[t * E + e] = t % 3 == 0 ? ties[rand_int(4)] : t % 3 == 1 ? 0.25f : rand_uniform(-4, 4);
    pair_sync(logits);
}

/* The CPU's routing of fresh logits, the same on both sides. */
struct moe_routing {
    struct pair experts, weights; /* [T, k] int32, fp32 */
    struct pair order, position;  /* [N] int32 */
    struct pair offsets;          /* [E + 1] int32 */
};

static struct moe_routing moe_route(const struct moe_case *mc)
{
    struct pair logits = P2(DTYPE_F32, mc->T, mc->E);
    fill_logits(&logits);
    struct moe_routing r = {P2(DTYPE_I32, mc->T, mc->k), P2(DTYPE_F32, mc->T, mc->k), P1(DTYPE_I32, mc->T * mc->k),
                            P1(DTYPE_I32, mc->T * mc->k), P1(DTYPE_I32, mc->E + 1)};
    cpu->moe_topk(cpu, &r.experts.c, &r.weights.c, &logits.c);
    cpu->moe_group(cpu, &r.order.c, &r.position.c, &r.offsets.c, &r.experts.c);
    pair_sync(&r.experts), pair_sync(&r.weights), pair_sync(&r.order), pair_sync(&r.position);
    pair_sync(&r.offsets);
    return r;
}

static void test_moe_topk(void)
{
    printf("moe_topk, moe_topk_backward\n");
    char what[128];
    for (size_t i = 0; i < MOE_CASES; i++) {
        const struct moe_case *mc = &moe_cases[i];
        struct pair logits = P2(DTYPE_F32, mc->T, mc->E);
        struct pair experts = P2(DTYPE_I32, mc->T, mc->k), weights = P2(DTYPE_F32, mc->T, mc->k);
        fill_logits(&logits), fill_i32_unset(&experts), fill_nan(&weights);
        cpu->moe_topk(cpu, &experts.c, &weights.c, &logits.c);
        gpu->moe_topk(gpu, &experts.g, &weights.g, &logits.g);
        snprintf(what, sizeof what, "moe_topk T=%lld E=%lld k=%lld (ties): experts", (long long)mc->T,
                 (long long)mc->E, (long long)mc->k);
        compare_i32(what, &experts);
        snprintf(what, sizeof what, "moe_topk T=%lld E=%lld k=%lld (ties): weights f32", (long long)mc->T,
                 (long long)mc->E, (long long)mc->k);
        compare(what, &weights, TOL_F32);

        pair_sync(&experts), pair_sync(&weights); /* backward from the CPU's routing on both sides */
        struct pair dweights = P2(DTYPE_F32, mc->T, mc->k), dlogits = P2(DTYPE_F32, mc->T, mc->E);
        fill_random(&dweights, -1, 1), fill_nan(&dlogits);
        cpu->moe_topk_backward(cpu, &dlogits.c, &dweights.c, &experts.c, &weights.c);
        gpu->moe_topk_backward(gpu, &dlogits.g, &dweights.g, &experts.g, &weights.g);
        snprintf(what, sizeof what, "moe_topk_backward T=%lld E=%lld k=%lld: dlogits f32", (long long)mc->T,
                 (long long)mc->E, (long long)mc->k);
        compare(what, &dlogits, TOL_F32);
        case_end();
    }
}

static void test_moe_group(void)
{
    printf("moe_group\n");
    static const char *const names[3] = {"order", "position", "offsets"};
    char what[128];
    for (size_t i = 0; i < MOE_CASES; i++) {
        const struct moe_case *mc = &moe_cases[i];
        struct moe_routing r = moe_route(mc);
        struct pair out[3] = {P1(DTYPE_I32, mc->T * mc->k), P1(DTYPE_I32, mc->T * mc->k), P1(DTYPE_I32, mc->E + 1)};
        for (int j = 0; j < 3; j++)
            fill_i32_unset(&out[j]);
        cpu->moe_group(cpu, &out[0].c, &out[1].c, &out[2].c, &r.experts.c);
        gpu->moe_group(gpu, &out[0].g, &out[1].g, &out[2].g, &r.experts.g);
        for (int j = 0; j < 3; j++) {
            snprintf(what, sizeof what, "moe_group T=%lld E=%lld k=%lld: %s", (long long)mc->T, (long long)mc->E,
                     (long long)mc->k, names[j]);
            compare_i32(what, &out[j]);
        }
        case_end();
    }
}

/* moe_gather, moe_scatter and moe_weights_backward on the CPU's routing, with
 * x, rows, y and dy in fp32 and bf16, with the routing weights and without. */
static void test_moe_gather_scatter(void)
{
    printf("moe_gather, moe_scatter, moe_weights_backward\n");
    const enum dtype kinds[2] = {DTYPE_F32, DTYPE_BF16};
    char what[160];
    for (size_t i = 0; i < MOE_CASES; i++) {
        const struct moe_case *mc = &moe_cases[i];
        int64_t T = mc->T, C = mc->C, k = mc->k, N = T * k;
        for (int d = 0; d < 2; d++) {
            enum dtype dt = kinds[d];
            double tol = dt == DTYPE_F32 ? TOL_F32 : TOL_BF16;
            struct moe_routing r = moe_route(mc);
            for (int weighted = 0; weighted < 2; weighted++) {
                const struct tensor *wc = weighted ? &r.weights.c : NULL, *wg = weighted ? &r.weights.g : NULL;
                struct pair x = P2(dt, T, C), rows = P2(dt, N, C);
                fill_random(&x, -1, 1), fill_nan(&rows);
                cpu->moe_gather(cpu, &rows.c, &x.c, &r.order.c, wc, k);
                gpu->moe_gather(gpu, &rows.g, &x.g, &r.order.g, wg, k);
                snprintf(what, sizeof what, "moe_gather %s T=%lld E=%lld k=%lld C=%lld%s", dt_name(dt),
                         (long long)T, (long long)mc->E, (long long)k, (long long)C, weighted ? " weighted" : "");
                compare(what, &rows, tol);

                struct pair y = P2(dt, T, C), src = P2(dt, N, C);
                fill_random(&y, -1, 1), fill_random(&src, -1, 1);
                cpu->moe_scatter(cpu, &y.c, &src.c, &r.position.c, wc, k);
                gpu->moe_scatter(gpu, &y.g, &src.g, &r.position.g, wg, k);
                snprintf(what, sizeof what, "moe_scatter %s T=%lld E=%lld k=%lld C=%lld%s (accumulate)",
                         dt_name(dt), (long long)T, (long long)mc->E, (long long)k, (long long)C,
                         weighted ? " weighted" : "");
                compare(what, &y, tol);
            }
            struct pair dweights = P1(DTYPE_F32, N), dy = P2(dt, T, C), rows = P2(dt, N, C);
            fill_nan(&dweights), fill_random(&dy, -1, 1), fill_random(&rows, -1, 1);
            cpu->moe_weights_backward(cpu, &dweights.c, &dy.c, &rows.c, &r.position.c, k);
            gpu->moe_weights_backward(gpu, &dweights.g, &dy.g, &rows.g, &r.position.g, k);
            snprintf(what, sizeof what, "moe_weights_backward %s T=%lld E=%lld k=%lld C=%lld: dweights f32",
                     dt_name(dt), (long long)T, (long long)mc->E, (long long)k, (long long)C);
            compare(what, &dweights, TOL_F32);
            case_end();
        }
    }
}

/* Random groups for the grouped GEMMs into offsets [E + 1]: 0 to 2 mean rows
 * an expert, with experts 1, 4, 7, ... and the last left empty (but a lone
 * expert, of 1 to 2 mean rows). Returns N = offsets[E]. */
static int64_t moe_offsets(struct pair *offsets, int64_t E, int64_t mean)
{
    int32_t *o = offsets->c.data;
    o[0] = 0;
    for (int64_t e = 0; e < E; e++) {
        int64_t rows = E == 1 ? 1 + rand_int(2 * mean) : e % 3 == 1 || e == E - 1 ? 0 : rand_int(2 * mean + 1);
        o[e + 1] = o[e] + (int32_t)rows;
    }
    pair_sync(offsets);
    return o[E];
}

/* E experts of about `mean` rows, K in, O out. */
struct moe_mm_case {
    int64_t E, mean, K, O;
    const char *use;
};

/* K and O not multiples of 8 (the scalar kernels for bf16 too); the tensor
 * cores' tiles whole in K and cut in O, then cut in both (a last K step of 8
 * columns, a last O tile of 8); one expert. */
static const struct moe_mm_case moe_mm_cases[] = {
    {32, 20, 45, 70, "scalar"},
    {7, 150, 192, 96, "mma for bf16"},
    {32, 30, 200, 136, "mma for bf16, partial tiles"},
    {1, 300, 64, 24, "one expert"},
};
#define MOE_MM_CASES (sizeof moe_mm_cases / sizeof moe_mm_cases[0])

/* moe_matmul with w stored both ways, with and without bias, overwriting c
 * and adding into it (where the bias is not added), for fp32 operands (as the
 * CPU's) and bf16 a, w and bias into bf16 or fp32 c; moe_weight_grad adding
 * into a random dw, for fp32 and bf16 dc and a. */
static void test_moe_matmul(void)
{
    printf("moe_matmul, moe_weight_grad\n");
    const enum dtype F = DTYPE_F32, B = DTYPE_BF16;
    const enum dtype kinds[3][2] = {{F, F}, {B, B}, {B, F}}; /* a, w and bias; c */
    char what[160];
    for (size_t i = 0; i < MOE_MM_CASES; i++) {
        const struct moe_mm_case *mc = &moe_mm_cases[i];
        int64_t E = mc->E, K = mc->K, O = mc->O;
        struct pair offsets = P1(DTYPE_I32, E + 1);
        int64_t N = moe_offsets(&offsets, E, mc->mean);
        for (int d = 0; d < 3; d++) {
            enum dtype wt = kinds[d][0], ct = kinds[d][1];
            double tol = wt == F && ct == F ? TOL_F32 : TOL_BF16;
            struct pair a = P2(wt, N, K), w = P3(wt, E, O, K), bias = P2(wt, E, O);
            fill_random(&a, -1, 1), fill_random(&w, -1, 1), fill_random(&bias, -1, 1);
            for (int tw = 0; tw < 2; tw++)
                for (int v = 0; v < 3; v++) {
                    struct pair wv = w; /* without tw, the same numbers read as [E, K, O] */
                    if (!tw) {
                        wv.c.shape[1] = wv.g.shape[1] = K;
                        wv.c.shape[2] = wv.g.shape[2] = O;
                    }
                    float beta = v == 2 ? 1.0f : 0.0f;
                    bool with_bias = v != 1;
                    struct pair c = P2(ct, N, O);
                    if (beta != 0)
                        fill_random(&c, -1, 1);
                    else
                        fill_nan(&c);
                    cpu->moe_matmul(cpu, &c.c, &a.c, &wv.c, tw, with_bias ? &bias.c : NULL, &offsets.c, beta);
                    gpu->moe_matmul(gpu, &c.g, &a.g, &wv.g, tw, with_bias ? &bias.g : NULL, &offsets.g, beta);
                    snprintf(what, sizeof what, "moe_matmul %s x %s%s -> %s E=%lld N=%lld K=%lld O=%lld b=%g%s (%s)",
                             dt_name(wt), dt_name(wt), tw ? "^T" : "", dt_name(ct), (long long)E, (long long)N,
                             (long long)K, (long long)O, beta, !with_bias ? "" : beta != 0 ? " bias unused" : " bias",
                             mc->use);
                    compare(what, &c, tol);
                }
        }
        for (int d = 0; d < 2; d++) {
            enum dtype dt = d ? B : F;
            struct pair dc = P2(dt, N, O), a = P2(dt, N, K), dw = P3(F, E, O, K);
            fill_random(&dc, -1, 1), fill_random(&a, -1, 1), fill_random(&dw, -1, 1);
            cpu->moe_weight_grad(cpu, &dw.c, &dc.c, &a.c, &offsets.c);
            gpu->moe_weight_grad(gpu, &dw.g, &dc.g, &a.g, &offsets.g);
            snprintf(what, sizeof what, "moe_weight_grad %s E=%lld N=%lld K=%lld O=%lld (accumulate): dw f32 (%s)",
                     dt_name(dt), (long long)E, (long long)N, (long long)K, (long long)O, mc->use);
            compare(what, &dw, dt == F ? TOL_F32 : TOL_BF16);
        }
        case_end();
    }
}

/* moe_matmul with MXFP4 weights [E, O, K] (random codes; scales 116..124,
 * so values up to 6 * 2^-3; every scale's decoding is test_mxfp4's), the
 * GPU turning each tile to bf16 against the CPU dequantizing whole experts:
 * forward (tw: c [N, O] = a [N, K] w^T + bias) and input gradient (c [N, K]
 * = a [N, O] w, added into c or not), bf16 a, bf16 and fp32 c. The products
 * are the same on both sides (a is bf16 there too, the weights exact): what
 * differs is the order of the fp32 sums. K and O multiples of 32, whole and
 * partial tiles. */
static void test_moe_matmul_mxfp4(void)
{
    printf("moe_matmul, MXFP4 weights\n");
    static const struct moe_mm_case cases[] = {
        {7, 150, 192, 96, "whole K steps"}, {32, 30, 224, 160, "partial O tiles"}, {1, 300, 64, 32, "one expert"}};
    const enum dtype F = DTYPE_F32, B = DTYPE_BF16;
    char what[160];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct moe_mm_case *mc = &cases[i];
        int64_t E = mc->E, K = mc->K, O = mc->O, n = E * O * K;
        struct pair offsets = P1(DTYPE_I32, E + 1);
        int64_t N = moe_offsets(&offsets, E, mc->mean);
        uint8_t *codes = host_alloc((size_t)(n / 2)), *scales = host_alloc((size_t)(n / 32));
        for (int64_t j = 0; j < n / 2; j++)
            codes[j] = (uint8_t)rand_int(256);
        for (int64_t j = 0; j < n / 32; j++)
            scales[j] = (uint8_t)(116 + rand_int(9));
        struct tensor wc = {.data = codes, .dtype = DTYPE_MXFP4, .rank = 3, .shape = {E, O, K}, .scales = scales};
        struct tensor wg = wc;
        wg.data = track(gpu, (size_t)(n / 2)), wg.scales = track(gpu, (size_t)(n / 32));
        gpu->upload(gpu, wg.data, codes, (size_t)(n / 2));
        gpu->upload(gpu, wg.scales, scales, (size_t)(n / 32));
        struct pair bias = P2(B, E, O);
        fill_random(&bias, -1, 1);
        for (int tw = 0; tw < 2; tw++)
            for (int d = 0; d < 2; d++)
                for (int beta = 0; beta < 2 - tw; beta++) { /* forward: with its bias; dX: overwriting and adding */
                    enum dtype ct = d ? F : B;
                    int64_t in = tw ? K : O, out = tw ? O : K;
                    struct pair a = P2(B, N, in), c = P2(ct, N, out);
                    fill_random(&a, -1, 1);
                    if (beta)
                        fill_random(&c, -1, 1);
                    else
                        fill_nan(&c);
                    cpu->moe_matmul(cpu, &c.c, &a.c, &wc, tw, tw ? &bias.c : NULL, &offsets.c, (float)beta);
                    gpu->moe_matmul(gpu, &c.g, &a.g, &wg, tw, tw ? &bias.g : NULL, &offsets.g, (float)beta);
                    snprintf(what, sizeof what, "moe_matmul bf16 x mxfp4%s -> %s E=%lld N=%lld K=%lld O=%lld%s (%s)",
                             tw ? "^T" : "", dt_name(ct), (long long)E, (long long)N, (long long)K, (long long)O,
                             tw ? " bias" : beta ? " b=1" : "", mc->use);
                    compare(what, &c, ct == F ? TOL_F32 : TOL_BF16);
                }
        free(codes), free(scales);
        case_end();
    }
    /* Every decoded value itself: one-hot rows of a pick w's columns, exactly,
     * with the scales decoding takes other routes for (0, 1, 2, 252 next to
     * 127; 255 overflows and 253, 254 can: test_mxfp4 has them). */
    enum { E = 2, K = 64, O = 32, N = E * K, n = E * O * K };
    const uint8_t edge[5] = {0, 1, 2, 127, 252};
    uint8_t codes[n / 2], scales[n / 32];
    for (int64_t j = 0; j < n / 2; j++)
        codes[j] = (uint8_t)rand_int(256);
    for (int64_t j = 0; j < n / 32; j++)
        scales[j] = edge[j % 5];
    struct tensor wc = {.data = codes, .dtype = DTYPE_MXFP4, .rank = 3, .shape = {E, O, K}, .scales = scales};
    struct tensor wg = wc;
    wg.data = track(gpu, sizeof codes), wg.scales = track(gpu, sizeof scales);
    gpu->upload(gpu, wg.data, codes, sizeof codes);
    gpu->upload(gpu, wg.scales, scales, sizeof scales);
    struct pair offsets = P1(DTYPE_I32, E + 1), a = P2(B, N, K), c = P2(F, N, O);
    int32_t *off = offsets.c.data;
    for (int64_t e = 0; e <= E; e++)
        off[e] = (int32_t)(e * K);
    pair_sync(&offsets);
    float *x = a.c.data;
    for (int64_t r = 0; r < N; r++)
        for (int64_t k = 0; k < K; k++)
            x[r * K + k] = r % K == k;
    pair_sync(&a);
    fill_nan(&c);
    cpu->moe_matmul(cpu, &c.c, &a.c, &wc, true, NULL, &offsets.c, 0.0f);
    gpu->moe_matmul(gpu, &c.g, &a.g, &wg, true, NULL, &offsets.g, 0.0f);
    compare("moe_matmul one-hot rows x mxfp4^T: every value decoded, scales 0, 1, 2, 127, 252", &c, 1e-12);
    case_end();
}

/* gpt-oss's activation on N rows of 2I interleaved columns, inputs past the
 * limit (7) both ways and some exactly at +-limit (the clamps' edges). */
static void test_swiglu_oai(void)
{
    printf("swiglu_oai\n");
    const enum dtype kinds[2] = {DTYPE_F32, DTYPE_BF16};
    const int64_t rows[3] = {148, 200, 33}, cols[3] = {45, 99, 8};
    const float alpha = 1.702f, limit = 7.0f;
    char what[128];
    for (int s = 0; s < 3; s++)
        for (int d = 0; d < 2; d++) {
            enum dtype dt = kinds[d];
            double tol = dt == DTYPE_F32 ? TOL_F32 : TOL_BF16;
            int64_t N = rows[s], I = cols[s];
            struct pair x = P2(dt, N, 2 * I), h = P2(dt, N, I);
            float *xv = x.c.data;
            for (int64_t j = 0; j < N * 2 * I; j++)
                xv[j] = rand_int(10) ? rand_uniform(-10, 10) : rand_u64() & 1 ? limit : -limit;
            pair_sync(&x);
            fill_nan(&h);
            cpu->swiglu_oai(cpu, &h.c, &x.c, alpha, limit);
            gpu->swiglu_oai(gpu, &h.g, &x.g, alpha, limit);
            snprintf(what, sizeof what, "swiglu_oai %s %lldx%lld", dt_name(dt), (long long)N, (long long)(2 * I));
            compare(what, &h, tol);
            struct pair dh = P2(dt, N, I), dx = P2(dt, N, 2 * I);
            fill_random(&dh, -1, 1), fill_nan(&dx);
            cpu->swiglu_oai_backward(cpu, &dx.c, &dh.c, &x.c, alpha, limit);
            gpu->swiglu_oai_backward(gpu, &dx.g, &dh.g, &x.g, alpha, limit);
            snprintf(what, sizeof what, "swiglu_oai_backward %s %lldx%lld: dx", dt_name(dt), (long long)N,
                     (long long)(2 * I));
            compare(what, &dx, tol);
            case_end();
        }
}

/* ---- cross-entropy ---- */

static void test_cross_entropy(void)
{
    printf("cross_entropy\n");
    char what[128];
    /* fp32 and bf16 logits (the CPU gets the same rounded values in fp32), each
     * with a vocabulary of rows read 16 bytes at a time (32000) and one not. */
    for (int k = 0; k < 4; k++) {
        enum dtype dt = k < 2 ? DTYPE_F32 : DTYPE_BF16;
        int64_t T = 37, V = k % 2 ? 32000 : 32003;
        float span = k % 2 ? 80 : 5;
        int32_t *lab = host_alloc((size_t)T * 4);
        for (int64_t t = 0; t < T; t++)
            lab[t] = t % 5 == 3 ? -100 : (int32_t)rand_int(V);
        struct pair logits = P2(dt, T, V), labels = P1(DTYPE_I32, T), lse = P2(DTYPE_F32, T, 1);
        fill_random(&logits, -span, span), fill_i32(&labels, lab), fill_nan(&lse);
        /* Both add to a sum that starts at 1 (the GPU's in its memory, read back once). */
        struct pair sum = P1(DTYPE_F32, 2), scale = P1(DTYPE_F32, 1);
        double ref = 1, got = 1;
        float s29 = 1.0f / 29;
        gpu->upload(gpu, sum.g.data, &got, sizeof got);
        gpu->upload(gpu, scale.g.data, &s29, sizeof s29);
        cpu->cross_entropy(cpu, &lse.c, &logits.c, &labels.c, &ref);
        gpu->cross_entropy(gpu, &lse.g, &logits.g, &labels.g, sum.g.data);
        gpu->download(gpu, &got, sum.g.data, sizeof got);
        snprintf(what, sizeof what, "cross_entropy %s [%lld, %lld] logits in +-%g: loss", dt_name(dt), (long long)T,
                 (long long)V, span);
        compare_scalar(what, got, ref, TOL_F32);
        snprintf(what, sizeof what, "cross_entropy %s [%lld, %lld] logits in +-%g: lse", dt_name(dt), (long long)T,
                 (long long)V, span);
        compare(what, &lse, TOL_F32);
        cpu->cross_entropy_backward(cpu, &logits.c, &lse.c, &labels.c, &s29);
        gpu->upload(gpu, lse.g.data, lse.c.data, (size_t)T * 4); /* the same lse on both sides */
        gpu->cross_entropy_backward(gpu, &logits.g, &lse.g, &labels.g, scale.g.data);
        snprintf(what, sizeof what, "cross_entropy_backward %s [%lld, %lld] logits in +-%g", dt_name(dt),
                 (long long)T, (long long)V, span);
        compare(what, &logits, dt == DTYPE_F32 ? TOL_F32 : TOL_BF16);
        free(lab);
        case_end();
    }
}

/* ---- dropout: the CPU's mask bit for bit ---- */

static void test_dropout(void)
{
    printf("dropout\n");
    const float ps[4] = {0.1f, 0.5f, 1.0f, 0.0f};
    char what[160];
    for (int i = 0; i < 4; i++)
        for (int in_place = 0; in_place < 2; in_place++) {
            int64_t n = 10007;
            uint64_t seed = rand_u64(), offset = rand_u64() >> 20 | 1; /* odd: not at a Philox block's start */
            struct pair seed_at = P1(DTYPE_F32, 2); /* the seed in each side's memory */
            memcpy(seed_at.c.data, &seed, sizeof seed);
            pair_sync(&seed_at);
            /* f32: every output bit equal. */
            struct pair x = P1(DTYPE_F32, n), y = P1(DTYPE_F32, n);
            float *xv = x.c.data;
            for (int64_t j = 0; j < n; j++)
                xv[j] = (rand_u64() & 1 ? 1 : -1) * rand_uniform(0.5f, 1.5f); /* no zeros: a zero is a drop */
            pair_sync(&x);
            fill_nan(&y);
            struct pair *dst = in_place ? &x : &y;
            cpu->dropout(cpu, &dst->c, &x.c, ps[i], seed_at.c.data, offset);
            gpu->dropout(gpu, &dst->g, &x.g, ps[i], seed_at.g.data, offset);
            gpu_check("dropout");
            float *got = gpu_values(dst);
            long diff = 0, dropped = 0;
            for (int64_t j = 0; j < n; j++) {
                diff += memcmp(&got[j], &((float *)dst->c.data)[j], 4) != 0;
                dropped += ((float *)dst->c.data)[j] == 0.0f;
            }
            snprintf(what, sizeof what, "dropout f32 p=%.1f%s: elements not bit-equal (%ld; %ld of %lld dropped)",
                     ps[i], in_place ? " in place" : "", diff, dropped, (long long)n);
            report(what, (double)diff, 0.5, 0, NULL);
            free(got);

            /* bf16: the same mask (zeros at the same places) and values. */
            struct pair xb = P1(DTYPE_BF16, n), yb = P1(DTYPE_BF16, n);
            memcpy(xb.c.data, x.c.data, (size_t)n * 4);
            if (in_place) /* x was overwritten: draw again */
                for (int64_t j = 0; j < n; j++)
                    ((float *)xb.c.data)[j] = (rand_u64() & 1 ? 1 : -1) * rand_uniform(0.5f, 1.5f);
            pair_sync(&xb);
            fill_nan(&yb);
            dst = in_place ? &xb : &yb;
            cpu->dropout(cpu, &dst->c, &xb.c, ps[i], seed_at.c.data, offset);
            gpu->dropout(gpu, &dst->g, &xb.g, ps[i], seed_at.g.data, offset);
            gpu_check("dropout");
            got = gpu_values(dst);
            long mask_diff = 0, nans;
            for (int64_t j = 0; j < n; j++)
                mask_diff += (got[j] == 0.0f) != (((float *)dst->c.data)[j] == 0.0f);
            double err = rel_l2(got, dst->c.data, n, &nans);
            snprintf(what, sizeof what, "dropout bf16 p=%.1f%s: mask differs at %ld", ps[i], in_place ? " in place" : "",
                     mask_diff);
            report(what, mask_diff ? 1.0 : err, TOL_BF16, nans, NULL);
            free(got);
            case_end();
        }
}

/* ---- adamw ---- */

static void test_adamw(void)
{
    printf("adamw\n");
    const int64_t steps[3] = {1, 2, 1000};
    char what[128];
    for (int i = 0; i < 3; i++) {
        int64_t n = 100003;
        struct pair p = P1(DTYPE_F32, n), g = P1(DTYPE_F32, n), m = P1(DTYPE_F32, n), v = P1(DTYPE_F32, n);
        fill_random(&p, -1, 1), fill_random(&g, -1e-2f, 1e-2f), fill_random(&m, -1e-2f, 1e-2f);
        fill_random(&v, 0, 1e-4f);
        cpu->adamw(cpu, &p.c, &g.c, &m.c, &v.c, 1e-3, 0.9, 0.999, 1e-8, 0.01, steps[i]);
        gpu->adamw(gpu, &p.g, &g.g, &m.g, &v.g, 1e-3, 0.9, 0.999, 1e-8, 0.01, steps[i]);
        snprintf(what, sizeof what, "adamw step %lld: param", (long long)steps[i]);
        compare(what, &p, TOL_F32);
        snprintf(what, sizeof what, "adamw step %lld: exp_avg", (long long)steps[i]);
        compare(what, &m, TOL_F32);
        snprintf(what, sizeof what, "adamw step %lld: exp_avg_sq", (long long)steps[i]);
        compare(what, &v, TOL_F32);
        case_end();
    }
}

/* ---- timing (not a check; run only when named) ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Median seconds of `reps` runs of fn on the GPU, after one warm-up. */
static double time_gpu(void (*fn)(void *), void *arg, int reps)
{
    double t[16];
    fn(arg);
    gpu_check("timing");
    for (int i = 0; i < reps; i++) {
        double t0 = now_s();
        fn(arg);
        gpu_check("timing");
        t[i] = now_s() - t0;
    }
    for (int i = 1; i < reps; i++) /* insertion sort */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1], t[j - 1] = x;
        }
    return t[reps / 2];
}

struct timing_args {
    struct tensor a, b, c, q, k, v, o, lse, dq, dk, dv, dout;
    struct seq_layout sl;
    float scale;
};

static void time_matmul(void *p)
{
    struct timing_args *t = p;
    gpu->matmul(gpu, &t->c, &t->a, false, &t->b, true, 1.0f, 0.0f);
}

static void time_attention(void *p)
{
    struct timing_args *t = p;
    gpu->attention(gpu, &t->o, &t->lse, &t->q, &t->k, &t->v, NULL, &t->sl, 0, t->scale);
}

static void time_attention_backward(void *p)
{
    struct timing_args *t = p;
    gpu->attention_backward(gpu, &t->dq, &t->dk, &t->dv, NULL, &t->dout, &t->q, &t->k, &t->v, NULL, &t->o, &t->lse,
                            &t->sl, 0, t->scale);
}

/* Where the first version stands, at llama-3.1-8b's shapes (T = 2048). */
/* One grouped GEMM of gpt-oss-20b's experts at a 2048-token step: 32 experts
 * of 256 routed rows each, gate_up's shape (K 2880 in, O 5760 out); then
 * split as routing splits them, unevenly (240 and 272 rows in turn: every
 * other expert's last row tile holds 16 rows). */
struct moe_timing {
    struct tensor a, c, w, offsets;
    bool tw;
};

static void time_moe_matmul(void *arg)
{
    struct moe_timing *t = arg;
    gpu->moe_matmul(gpu, &t->c, &t->a, &t->w, t->tw, NULL, &t->offsets, 0.0f);
}

static void time_moe(const float *random)
{
    const int64_t E = 32, rows = 256, N = E * rows, K = 2880, O = 5760, n = E * O * K;
    struct moe_timing t;
    int32_t off[2][33];
    for (int64_t e = 0; e <= E; e++) {
        off[0][e] = (int32_t)(e * rows);
        off[1][e] = (int32_t)(e * rows + (e % 2 ? -16 : 0));
    }
    struct tensor offsets[2];
    for (int split = 0; split < 2; split++) {
        offsets[split] = tensor_1d(track(gpu, sizeof off[split]), DTYPE_I32, E + 1);
        gpu->upload(gpu, offsets[split].data, off[split], sizeof off[split]);
    }
    struct tensor f = tensor_1d(track(gpu, (size_t)N * O * 4), DTYPE_F32, N * O);
    gpu->upload(gpu, f.data, random, (size_t)N * O * 4);
    struct tensor a = tensor_2d(track(gpu, (size_t)N * O * 2), DTYPE_BF16, N, O);
    struct tensor fa = tensor_1d(f.data, DTYPE_F32, N * O);
    struct tensor a1 = tensor_1d(a.data, DTYPE_BF16, N * O);
    gpu->convert(gpu, &a1, &fa);
    struct tensor c = tensor_2d(track(gpu, (size_t)N * O * 2), DTYPE_BF16, N, O);
    struct tensor wb = {.data = track(gpu, (size_t)n * 2), .dtype = DTYPE_BF16, .rank = 3, .shape = {E, O, K}};
    struct tensor wq = {.data = track(gpu, (size_t)n / 2), .dtype = DTYPE_MXFP4, .rank = 3, .shape = {E, O, K},
                        .scales = track(gpu, (size_t)n / 32)};
    uint8_t *codes = host_alloc((size_t)n / 2);
    for (int64_t i = 0; i < n / 2; i++)
        codes[i] = (uint8_t)rand_int(256);
    gpu->upload(gpu, wq.data, codes, (size_t)n / 2);
    memset(codes, 120, (size_t)n / 32);
    gpu->upload(gpu, wq.scales, codes, (size_t)n / 32);
    free(codes);
    for (int64_t i = 0; i < n; i += N * O) { /* bf16 weights from the random floats, chunk by chunk */
        int64_t m = n - i < N * O ? n - i : N * O;
        struct tensor dst = tensor_1d((uint16_t *)wb.data + i, DTYPE_BF16, m), src = tensor_1d(f.data, DTYPE_F32, m);
        gpu->convert(gpu, &dst, &src);
    }
    double flop = 2.0 * N * K * O;
    for (int q = 0; q < 2; q++)
        for (int tw = 1; tw >= 0; tw--)
            for (int split = 0; split < 2; split++) {
                t.offsets = offsets[split];
                t.w = q ? wq : wb;
                t.tw = tw;
                t.a = tw ? tensor_2d(a.data, DTYPE_BF16, N, K) : a;
                t.c = tw ? c : tensor_2d(c.data, DTYPE_BF16, N, K);
                if (!tw) { /* dX: a [N, O] w [O, K] */
                    t.w.shape[1] = O, t.w.shape[2] = K;
                }
                double sec = time_gpu(time_moe_matmul, &t, 5);
                printf("  moe_matmul %s E=%lld N=%lld K=%lld O=%lld %s, %s rows: %.3f ms, %.0f TFLOP/s\n",
                       q ? "mxfp4" : "bf16", (long long)E, (long long)N, (long long)K, (long long)O,
                       tw ? "forward" : "input gradient", split ? "240/272" : "256", sec * 1e3, flop / sec * 1e-12);
            }
}

static void test_timing(void)
{
    printf("timing (median of 5; GPU idle otherwise)\n");
    const int64_t n = 4096, T = 2048, H = 32, KV = 8, D = 128;
    struct timing_args t;
    t.a = tensor_2d(track(gpu, n * n * 2), DTYPE_BF16, n, n);
    t.b = tensor_2d(track(gpu, n * n * 2), DTYPE_BF16, n, n);
    t.c = tensor_2d(track(gpu, n * n * 2), DTYPE_BF16, n, n);
    /* Random bits would hold NaNs: convert from random fp32 instead. */
    float *h = host_alloc((size_t)n * n * 4);
    for (int64_t i = 0; i < n * n; i++)
        h[i] = rand_uniform(-1, 1);
    struct tensor f = tensor_2d(track(gpu, n * n * 4), DTYPE_F32, n, n);
    gpu->upload(gpu, f.data, h, (size_t)n * n * 4);
    gpu->convert(gpu, &t.a, &f);
    gpu->convert(gpu, &t.b, &f);
    double s = time_gpu(time_matmul, &t, 5);
    printf("  matmul bf16 %lldx%lldx%lld: %.3f ms, %.0f TFLOP/s\n", (long long)n, (long long)n, (long long)n, s * 1e3,
           2.0 * n * n * n / s * 1e-12);
    for (int64_t K = 4096; K <= 8192; K *= 2) { /* LoRA's x A^T, rank 16: reading x is the work */
        struct timing_args lora = t;
        lora.a = tensor_2d(t.a.data, DTYPE_BF16, T, K);
        lora.b = tensor_2d(t.b.data, DTYPE_BF16, 16, K);
        lora.c = tensor_2d(t.c.data, DTYPE_BF16, T, 16);
        s = time_gpu(time_matmul, &lora, 5);
        printf("  matmul bf16 %lldx16x%lld (x A^T): %.1f us, %.0f GB/s reading x\n", (long long)T, (long long)K,
               s * 1e6, 2.0 * T * K / s * 1e-9);
    }
    int32_t starts[2] = {0, (int32_t)T};
    struct layout l = layout_new(starts, 1);
    t.sl = layout_gpu(&l);
    t.scale = 1.0f / sqrtf((float)D);
    struct tensor *bufs[] = {&t.q, &t.o, &t.dq, &t.dout, &t.k, &t.v, &t.dk, &t.dv};
    for (int i = 0; i < 8; i++) {
        int64_t heads = i < 4 ? H : KV;
        *bufs[i] = (struct tensor){.data = track(gpu, (size_t)(T * heads * D * 2)), .dtype = DTYPE_BF16, .rank = 3,
                                   .shape = {T, heads, D}};
        struct tensor src = tensor_1d(f.data, DTYPE_F32, T * heads * D), dst = tensor_1d(bufs[i]->data, DTYPE_BF16, T * heads * D);
        gpu->convert(gpu, &dst, &src);
    }
    t.lse = tensor_2d(track(gpu, (size_t)(H * T * 4)), DTYPE_F32, H, T);
    double flop = 2.0 * 2.0 * T * T / 2 * H * D; /* causal: half the score matrix, two products */
    s = time_gpu(time_attention, &t, 5);
    printf("  attention forward T=%lld H=%lld KV=%lld D=%lld causal: %.3f ms, %.1f TFLOP/s\n", (long long)T,
           (long long)H, (long long)KV, (long long)D, s * 1e3, flop / s * 1e-12);
    s = time_gpu(time_attention_backward, &t, 5);
    printf("  attention backward, same: %.3f ms, %.1f TFLOP/s (2.5x the forward's FLOP)\n", s * 1e3,
           2.5 * flop / s * 1e-12);
    free(h);
    float *r = host_alloc((size_t)8192 * 5760 * 4);
    for (int64_t i = 0; i < (int64_t)8192 * 5760; i++)
        r[i] = rand_uniform(-1, 1);
    time_moe(r);
    free(r);
    case_end();
}

/* Groups of checks, run in this order; `test_cuda_ops NAME...` runs the named ones. */
static const struct {
    const char *name;
    void (*fn)(void);
} groups[] = {
    {"memory", test_memory},       {"convert", test_convert},
    {"matmul", test_matmul},       {"elementwise", test_elementwise},
    {"embedding", test_embedding}, {"rmsnorm", test_rmsnorm},
    {"rope", test_rope},           {"attention", test_attention},
    {"attention_cached", test_attention_cached}, {"swiglu", test_swiglu},
    {"swiglu_oai", test_swiglu_oai}, {"moe_topk", test_moe_topk},
    {"moe_group", test_moe_group}, {"moe_gather_scatter", test_moe_gather_scatter},
    {"moe_matmul", test_moe_matmul}, {"moe_matmul_mxfp4", test_moe_matmul_mxfp4},
    {"cross_entropy", test_cross_entropy}, {"dropout", test_dropout},
    {"adamw", test_adamw},         {"timing", test_timing},
};

/* Named on the command line, or, with no names, any group but timing. */
static bool wanted(const char *name, int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], name))
            return true;
    return argc < 2 && strcmp(name, "timing");
}

int main(int argc, char **argv)
{
    const char *env = getenv("TUNE_TEST_SEED");
    rng = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull;
    uint64_t seed = rng;
    tune_err err = {{0}};
    cpu = backend_cpu();
    gpu = backend_cuda(0, &err);
    if (gpu)
        gpu_sliced = backend_cuda_with_scratch(0, 8192, &err);
    if (!gpu || !gpu_sliced) {
        fprintf(stderr, "test_cuda_ops: %s\n", err.msg);
        return 1;
    }
    printf("test_cuda_ops: seed %llu (TUNE_TEST_SEED repeats it), workspace %zu MiB\n", (unsigned long long)seed,
           backend_cuda_workspace_bytes(gpu) >> 20);
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        if (wanted(groups[i].name, argc, argv))
            groups[i].fn();
    gpu_check("the last op");
    backend_cuda_free(gpu_sliced);
    backend_cuda_free(gpu);
    printf("test_cuda_ops: %d of %d checks passed%s\n", checks - failures, checks, failures ? "  FAILED" : "");
    return failures ? 1 : 0;
}
