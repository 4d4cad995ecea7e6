/* Tests of the CPU reference backend (backend/cpu/), run from the repository
 * root:
 *  - golden: every op against PyTorch/transformers on the fixtures of
 *    tools/ref/make_op_fixtures.py (fp64 references), by relative L2 error
 *    ||got - want|| / ||want|| < 1e-5 (DESIGN.md's fp32 bound); NaN never passes;
 *  - finite differences: each backward op against central differences of
 *    L = <dout, forward(x)> (ggml's test-backend-ops mode), in fp32 with a
 *    step of 1e-3, so the bound is loose (FD_TOL);
 *  - accumulate vs overwrite: outputs that overwrite start as NaN, those that
 *    accumulate are run twice and must hold twice the answer;
 *  - dropout: Random123's known answers, the drop rate, determinism;
 *  - the backend's own parts: matmul's thread slices, the vector exp;
 *  - convert: bf16 and f16 rounding on edge values and every bit pattern.
 * Each check prints its error, so a run lists the measured margins. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "backend/backend.h"
#include "backend/cpu/vec_math.h"
#include "backend/philox.h"
#include "io/safetensors.h"
#include "op_ctx.h"

#define GOLDEN_TOL 1e-5
#define FD_EPS 1e-3f
#define FD_TOL 5e-3

static struct backend *be;

/* ---- tensors, comparisons (the per-test state is op_ctx.h) ---- */

/* An F32 tensor [d0] / [d0, d1] / [d0, d1, d2] (zero sizes drop trailing
 * dimensions), every element `fill`: NaN for outputs that must be written. */
static struct tensor mk(struct ctx *c, float fill, int64_t d0, int64_t d1, int64_t d2)
{
    struct tensor t = {.dtype = DTYPE_F32, .rank = d2 ? 3 : d1 ? 2 : 1, .shape = {d0, d1, d2}};
    t.data = ctx_alloc(c, (size_t)tensor_numel(&t) * sizeof(float));
    for (int64_t i = 0; i < tensor_numel(&t); i++)
        ((float *)t.data)[i] = fill;
    return t;
}

/* Uniform in [-amp, amp), from the Philox stream `seed`. */
static void fill_random(struct tensor *t, uint64_t seed, float amp)
{
    for (int64_t i = 0; i < tensor_numel(t); i++)
        ((float *)t->data)[i] = amp * ((float)(philox_draw(seed, (uint64_t)i) >> 8) * 0x1p-23f - 1.0f);
}

static struct tensor copy_of(struct ctx *c, const struct tensor *t)
{
    struct tensor r = *t;
    size_t bytes = (size_t)dtype_bytes(t->dtype, tensor_numel(t));
    r.data = ctx_alloc(c, bytes);
    memcpy(r.data, t->data, bytes);
    return r;
}

/* The packed layout stored as `starts` [S + 1] and `positions` [T]. */
static struct seq_layout fx_layout(struct ctx *c)
{
    struct tensor starts = fx(c, "starts"), pos = fx(c, "positions");
    struct seq_layout sl = {starts.data, pos.data, tensor_numel(&starts) - 1, 0, tensor_numel(&starts) - 1};
    for (int64_t s = 0; s < sl.sequences; s++)
        if (sl.starts[s + 1] - sl.starts[s] > sl.max_len)
            sl.max_len = sl.starts[s + 1] - sl.starts[s];
    return sl;
}

/* ||got - factor * want|| / ||factor * want||; infinity if got holds a NaN. */
static double rel_err(const float *got, const float *want, int64_t n, double factor)
{
    double diff = 0, ref = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]))
            return INFINITY;
        double w = factor * want[i];
        diff += (got[i] - w) * (got[i] - w);
        ref += w * w;
    }
    return ref > 0 ? sqrt(diff / ref) : sqrt(diff);
}

static void check_n(const char *what, const float *got, const float *want, int64_t n, double factor,
                    double tol)
{
    double e = rel_err(got, want, n, factor);
    print_message("  %-40s rel err %.2e\n", what, e);
    if (!(e < tol))
        fail_msg("%s: relative error %.3e, bound %.1e", what, e, tol);
}

static void check(const char *what, const struct tensor *got, const struct tensor *want, double factor)
{
    assert_int_equal(tensor_numel(got), tensor_numel(want));
    check_n(what, got->data, want->data, tensor_numel(got), factor, GOLDEN_TOL);
}

/* Compares got with factor x the fixture's tensor named by fmt. */
static void expect(struct ctx *c, const struct tensor *got, double factor, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void expect(struct ctx *c, const struct tensor *got, double factor, const char *fmt, ...)
{
    char name[128], what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    struct tensor want = fx(c, "%s", name);
    snprintf(what, sizeof what, "%s %s%s", c->op, name, factor == 2 ? " (accumulated twice)" : "");
    check(what, got, &want, factor);
}

static double dot(const struct tensor *a, const struct tensor *b)
{
    double s = 0;
    for (int64_t i = 0; i < tensor_numel(a); i++)
        s += (double)((float *)a->data)[i] * ((float *)b->data)[i];
    return s;
}

/* ---- golden tests against PyTorch ---- */

static void test_matmul(void **state)
{
    struct ctx *c = *state;
    struct tensor a = fx(c, "a"), at = fx(c, "at"), b = fx(c, "b"), bt = fx(c, "bt"), c0 = fx(c, "c0");
    struct tensor want = fx(c, "expected");
    static const char *names[] = {"matmul a @ b", "matmul a @ bt^T", "matmul at^T @ b", "matmul at^T @ bt^T"};
    for (int combo = 0; combo < 4; combo++) {
        bool ta = combo & 2, tb = combo & 1;
        struct tensor y = copy_of(c, &c0);
        be->matmul(be, &y, ta ? &at : &a, ta, tb ? &bt : &b, tb, 1.5f, 0.5f);
        check(names[combo], &y, &want, 1);
    }
    /* beta = 0 must not read c: NaN there must not leak into the product. */
    struct tensor y = mk(c, NAN, c0.shape[0], c0.shape[1], 0);
    be->matmul(be, &y, &a, false, &b, false, 1.5f, 0);
    be->axpy(be, &y, 0.5f, &c0);
    check("matmul beta 0 over NaN", &y, &want, 1);
}

char *openblas_get_corename(void);

static bool slice_stable_blas(void)
{
    const char *core = openblas_get_corename();
    return strcmp(core, "Haswell") && strcmp(core, "Zen");
}

/* The slices of matmul.c (rows when M >= N, columns when N > M): for every
 * transpose, the product against double loops, and the same bits with one
 * thread as with three (each element is one sgemm's whatever the split),
 * except under OpenBLAS's Haswell / Zen kernels, whose bits depend on where
 * an element lies in the product (matmul.c). */
static void test_matmul_slices(void **state)
{
    struct ctx *c = *state;
    /* M, N, K: rows cut, columns cut, and a product just over OpenBLAS's
     * small-matrix bound (100^3), whose slices would fall under it. */
    static const int64_t shapes[][3] = {{200, 70, 300}, {70, 300, 200}, {256, 16, 512}};
    for (int sh = 0; sh < 3; sh++)
        for (int combo = 0; combo < 4; combo++) {
            int64_t M = shapes[sh][0], N = shapes[sh][1], K = shapes[sh][2];
            bool ta = combo & 2, tb = combo & 1;
            struct tensor a = ta ? mk(c, 0, K, M, 0) : mk(c, 0, M, K, 0), b = tb ? mk(c, 0, N, K, 0) : mk(c, 0, K, N, 0);
            struct tensor c0 = mk(c, 0, M, N, 0), want = mk(c, 0, M, N, 0);
            fill_random(&a, 60, 1);
            fill_random(&b, 61, 1);
            fill_random(&c0, 62, 1);
            const float *ad = a.data, *bd = b.data, *cd = c0.data;
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    double sum = 0;
                    for (int64_t k = 0; k < K; k++)
                        sum += (double)(ta ? ad[k * M + i] : ad[i * K + k]) * (tb ? bd[j * K + k] : bd[k * N + j]);
                    ((float *)want.data)[i * N + j] = (float)(1.5 * sum + 0.5 * cd[i * N + j]);
                }
            struct tensor y1 = copy_of(c, &c0), y3 = copy_of(c, &c0);
            int threads = omp_get_max_threads();
            omp_set_num_threads(1);
            be->matmul(be, &y1, &a, ta, &b, tb, 1.5f, 0.5f);
            omp_set_num_threads(3);
            be->matmul(be, &y3, &a, ta, &b, tb, 1.5f, 0.5f);
            omp_set_num_threads(threads);
            char what[64];
            snprintf(what, sizeof what, "matmul %lldx%lldx%lld%s%s", (long long)M, (long long)N, (long long)K,
                     ta ? " a^T" : "", tb ? " b^T" : "");
            check(what, &y3, &want, 1);
            if (!slice_stable_blas())
                continue;
            assert_memory_equal(y1.data, y3.data, (size_t)(M * N) * sizeof(float));
        }
    if (!slice_stable_blas())
        print_message("  matmul slices: OpenBLAS %s kernels, one thread and three not compared\n",
                      openblas_get_corename());
}

static void test_rmsnorm(void **state)
{
    struct ctx *c = *state;
    struct tensor x = fx(c, "x"), w = fx(c, "w"), dout = fx(c, "dout");
    int64_t T = x.shape[0], C = x.shape[1];
    struct tensor out = mk(c, NAN, T, C, 0), rstd = mk(c, NAN, T, 0, 0);
    be->rmsnorm(be, &out, &rstd, &x, &w, 1e-5f);
    expect(c, &out, 1, "out");
    expect(c, &rstd, 1, "rstd");
    struct tensor dx = mk(c, 0, T, C, 0), dw = mk(c, 0, C, 0, 0), dx1 = mk(c, 0, T, C, 0);
    for (int pass = 1; pass <= 2; pass++) /* both accumulate */
        be->rmsnorm_backward(be, &dx, &dw, &dout, &x, &w, &rstd);
    expect(c, &dx, 2, "dx");
    expect(c, &dw, 2, "dw");
    be->rmsnorm_backward(be, &dx1, NULL, &dout, &x, &w, &rstd);
    expect(c, &dx1, 1, "dx");
}

static void test_rope(void **state)
{
    struct ctx *c = *state;
    struct seq_layout sl = fx_layout(c);
    static const char *variants[] = {"plain", "llama3"};
    for (int v = 0; v < 2; v++) {
        struct tensor cs = fx(c, "%s.cos_sin", variants[v]), x0 = fx(c, "%s.x", variants[v]);
        struct rope_table rt = {cs.data, cs.shape[0], cs.shape[1], 1.0f};
        struct tensor x = copy_of(c, &x0);
        be->rope(be, &x, &rt, &sl, false);
        expect(c, &x, 1, "%s.out", variants[v]);
        be->rope(be, &x, &rt, &sl, true);
        char what[64];
        snprintf(what, sizeof what, "rope %s backward(forward(x))", variants[v]);
        check(what, &x, &x0, 1);
    }
}

static void test_attention(void **state)
{
    struct ctx *c = *state;
    struct seq_layout sl = fx_layout(c);
    static const char *cases[] = {"causal", "window3", "sinks", "sinks_window4"};
    for (int k = 0; k < 4; k++) {
        const char *n = cases[k];
        struct tensor q = fx(c, "%s.q", n), kt = fx(c, "%s.k", n), v = fx(c, "%s.v", n),
                      dout = fx(c, "%s.dout", n);
        char sinks_name[64];
        snprintf(sinks_name, sizeof sinks_name, "%s.sinks", n);
        bool has_sinks = st_file_find(&c->f, sinks_name);
        struct tensor sinks = has_sinks ? fx(c, "%s", sinks_name) : mk(c, 0, 1, 0, 0);
        const struct tensor *sk = has_sinks ? &sinks : NULL;
        int64_t T = q.shape[0], H = q.shape[1], KV = kt.shape[1], D = q.shape[2];
        int64_t window = *(int32_t *)fx(c, "%s.window", n).data;
        float scale = 1.0f / sqrtf((float)D);
        struct tensor out = mk(c, NAN, T, H, D), lse = mk(c, NAN, H, T, 0);
        be->attention(be, &out, &lse, &q, &kt, &v, sk, &sl, window, scale);
        expect(c, &out, 1, "%s.out", n);
        expect(c, &lse, 1, "%s.lse", n);
        struct tensor dq = mk(c, NAN, T, H, D), dk = mk(c, NAN, T, KV, D), dv = mk(c, NAN, T, KV, D);
        struct tensor dsinks = mk(c, 0, H, 0, 0);
        for (int pass = 1; pass <= 2; pass++) /* dq, dk, dv overwrite; dsinks accumulates */
            be->attention_backward(be, &dq, &dk, &dv, has_sinks ? &dsinks : NULL, &dout, &q, &kt, &v, sk,
                                   &out, &lse, &sl, window, scale);
        expect(c, &dq, 1, "%s.dq", n);
        expect(c, &dk, 1, "%s.dk", n);
        expect(c, &dv, 1, "%s.dv", n);
        if (has_sinks)
            expect(c, &dsinks, 2, "%s.dsinks", n);
    }
}

static void test_swiglu(void **state)
{
    struct ctx *c = *state;
    struct tensor gate = fx(c, "gate"), up = fx(c, "up"), dh = fx(c, "dh");
    int64_t T = gate.shape[0], I = gate.shape[1];
    struct tensor h = mk(c, NAN, T, I, 0), dgate = mk(c, NAN, T, I, 0), dup = mk(c, NAN, T, I, 0);
    be->swiglu(be, &h, &gate, &up);
    expect(c, &h, 1, "h");
    be->swiglu_backward(be, &dgate, &dup, &dh, &gate, &up);
    expect(c, &dgate, 1, "dgate");
    expect(c, &dup, 1, "dup");
}

static void test_cross_entropy(void **state)
{
    struct ctx *c = *state;
    struct tensor logits = fx(c, "logits"), labels = fx(c, "labels"), lse = mk(c, NAN, logits.shape[0], 0, 0);
    int counted = 0;
    for (int64_t t = 0; t < tensor_numel(&labels); t++)
        counted += ((int32_t *)labels.data)[t] != -100;
    double sum = 0;
    be->cross_entropy(be, &lse, &logits, &labels, &sum);
    float mean = (float)(sum / counted), scale = 1.0f / (float)counted;
    struct tensor mean_t = tensor_1d(&mean, DTYPE_F32, 1);
    expect(c, &mean_t, 1, "loss");
    expect(c, &lse, 1, "lse");
    be->cross_entropy_backward(be, &logits, &lse, &labels, &scale);
    expect(c, &logits, 1, "dlogits");
}

static void test_embedding(void **state)
{
    struct ctx *c = *state;
    struct tensor table = fx(c, "table"), ids = fx(c, "ids"), dout = fx(c, "dout");
    struct tensor out = mk(c, NAN, ids.shape[0], table.shape[1], 0);
    struct tensor dtable = mk(c, 0, table.shape[0], table.shape[1], 0);
    be->embedding(be, &out, &table, &ids);
    expect(c, &out, 1, "out");
    for (int pass = 1; pass <= 2; pass++)
        be->embedding_backward(be, &dtable, &dout, &ids);
    expect(c, &dtable, 2, "dtable");
}

static void test_adamw(void **state)
{
    struct ctx *c = *state;
    struct tensor p0 = fx(c, "p0"), p = copy_of(c, &p0), want = fx(c, "p");
    int64_t n = tensor_numel(&p);
    struct tensor m = mk(c, 0, n, 0, 0), v = mk(c, 0, n, 0, 0);
    for (int step = 1; step <= 3; step++) {
        struct tensor g = fx(c, "g%d", step);
        be->adamw(be, &p, &g, &m, &v, 1e-3, 0.9, 0.999, 1e-8, 0.01, step);
    }
    expect(c, &p, 1, "p");
    expect(c, &m, 1, "m");
    expect(c, &v, 1, "v");
    /* The update alone, which the parameters' magnitude could hide. */
    struct tensor got_d = copy_of(c, &p), want_d = copy_of(c, &want);
    be->axpy(be, &got_d, -1, &p0);
    be->axpy(be, &want_d, -1, &p0);
    check("adamw update p - p0", &got_d, &want_d, 1);
}

/* ---- finite differences ---- */

/* The case an FD loss runs: in[] are the op's inputs, out[] its outputs, dout
 * the weights of L = <dout, out[0]>. */
struct fd_case {
    struct tensor in[4], out[2], dout;
    struct seq_layout sl;
    struct rope_table rt;
    int64_t window;
    float scale;
    bool sinks;
};

typedef double (*fd_loss)(struct fd_case *f);

/* Central differences of loss over every element of x, against grad. */
static void fd_check(struct ctx *c, const char *what, struct tensor *x, const struct tensor *grad,
                     fd_loss loss, struct fd_case *f)
{
    int64_t n = tensor_numel(x);
    float *xd = x->data, *num = ctx_alloc(c, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        float x0 = xd[i], hi = x0 + FD_EPS, lo = x0 - FD_EPS;
        xd[i] = hi;
        double lp = loss(f);
        xd[i] = lo;
        double lm = loss(f);
        xd[i] = x0;
        num[i] = (float)((lp - lm) / ((double)hi - lo));
    }
    check_n(what, grad->data, num, n, 1, FD_TOL);
}

static double loss_rmsnorm(struct fd_case *f)
{
    be->rmsnorm(be, &f->out[0], &f->out[1], &f->in[0], &f->in[1], 1e-5f);
    return dot(&f->dout, &f->out[0]);
}

static double loss_swiglu(struct fd_case *f)
{
    be->swiglu(be, &f->out[0], &f->in[0], &f->in[1]);
    return dot(&f->dout, &f->out[0]);
}

static double loss_rope(struct fd_case *f)
{
    memcpy(f->out[0].data, f->in[0].data, (size_t)tensor_numel(&f->in[0]) * sizeof(float));
    be->rope(be, &f->out[0], &f->rt, &f->sl, false);
    return dot(&f->dout, &f->out[0]);
}

static double loss_attention(struct fd_case *f)
{
    be->attention(be, &f->out[0], &f->out[1], &f->in[0], &f->in[1], &f->in[2], f->sinks ? &f->in[3] : NULL,
                  &f->sl, f->window, f->scale);
    return dot(&f->dout, &f->out[0]);
}

/* L = scale * summed loss; in[1] holds the labels. */
static double loss_cross_entropy(struct fd_case *f)
{
    double sum = 0;
    be->cross_entropy(be, &f->out[1], &f->in[0], &f->in[1], &sum);
    return f->scale * sum;
}

static void test_fd_rmsnorm_swiglu(void **state)
{
    struct ctx *c = *state;
    struct fd_case f = {.in = {mk(c, 0, 5, 12, 0), mk(c, 0, 12, 0, 0)}};
    fill_random(&f.in[0], 1, 2);
    fill_random(&f.in[1], 2, 1.5f);
    f.out[0] = mk(c, 0, 5, 12, 0), f.out[1] = mk(c, 0, 5, 0, 0), f.dout = mk(c, 0, 5, 12, 0);
    fill_random(&f.dout, 3, 1);
    loss_rmsnorm(&f);
    struct tensor dx = mk(c, 0, 5, 12, 0), dw = mk(c, 0, 12, 0, 0);
    be->rmsnorm_backward(be, &dx, &dw, &f.dout, &f.in[0], &f.in[1], &f.out[1]);
    fd_check(c, "fd rmsnorm dx", &f.in[0], &dx, loss_rmsnorm, &f);
    fd_check(c, "fd rmsnorm dw", &f.in[1], &dw, loss_rmsnorm, &f);

    fill_random(&f.in[0], 4, 5); /* gate over silu's curved range */
    f.in[1] = mk(c, 0, 5, 12, 0);
    fill_random(&f.in[1], 5, 1);
    struct tensor dgate = mk(c, 0, 5, 12, 0), dup = mk(c, 0, 5, 12, 0);
    be->swiglu_backward(be, &dgate, &dup, &f.dout, &f.in[0], &f.in[1]);
    fd_check(c, "fd swiglu dgate", &f.in[0], &dgate, loss_swiglu, &f);
    fd_check(c, "fd swiglu dup", &f.in[1], &dup, loss_swiglu, &f);
}

static void test_fd_rope(void **state)
{
    struct ctx *c = *state;
    static const int32_t starts[] = {0, 4, 7}, positions[] = {0, 1, 2, 3, 0, 1, 2};
    struct tensor table = mk(c, 0, 4, 4, 2); /* [positions, D/2, (cos, sin)], theta 10000, D 8 */
    for (int p = 0; p < 4; p++)
        for (int i = 0; i < 4; i++) {
            double angle = p * pow(10000.0, -2.0 * i / 8);
            ((float *)table.data)[(p * 4 + i) * 2] = (float)cos(angle);
            ((float *)table.data)[(p * 4 + i) * 2 + 1] = (float)sin(angle);
        }
    struct fd_case f = {.in = {mk(c, 0, 7, 2, 8)},
                        .out = {mk(c, 0, 7, 2, 8)},
                        .dout = mk(c, 0, 7, 2, 8),
                        .sl = {starts, positions, 2, 4},
                        .rt = {table.data, 4, 4, 1}};
    fill_random(&f.in[0], 6, 1);
    fill_random(&f.dout, 7, 1);
    struct tensor g = copy_of(c, &f.dout);
    be->rope(be, &g, &f.rt, &f.sl, true);
    fd_check(c, "fd rope backward", &f.in[0], &g, loss_rope, &f);
}

static void test_fd_attention(void **state)
{
    struct ctx *c = *state;
    static const int32_t starts[] = {0, 7, 12}, positions[] = {0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4};
    enum { T = 12, H = 4, KV = 2, D = 8 };
    static const struct {
        const char *name;
        int64_t window;
        bool sinks;
    } cases[] = {{"causal", 0, false}, {"window 3 + sinks", 3, true}};
    for (int k = 0; k < 2; k++) {
        struct fd_case f = {
            .in = {mk(c, 0, T, H, D), mk(c, 0, T, KV, D), mk(c, 0, T, KV, D), mk(c, 0, H, 0, 0)},
            .out = {mk(c, 0, T, H, D), mk(c, 0, H, T, 0)},
            .dout = mk(c, 0, T, H, D),
            .sl = {starts, positions, 2, 7},
            .window = cases[k].window,
            .scale = 0.5f,
            .sinks = cases[k].sinks};
        for (int i = 0; i < 4; i++)
            fill_random(&f.in[i], 10 + (uint64_t)i, 2);
        fill_random(&f.dout, 20, 1);
        loss_attention(&f);
        struct tensor grads[4] = {mk(c, 0, T, H, D), mk(c, 0, T, KV, D), mk(c, 0, T, KV, D),
                                  mk(c, 0, H, 0, 0)};
        be->attention_backward(be, &grads[0], &grads[1], &grads[2], &grads[3], &f.dout, &f.in[0], &f.in[1],
                               &f.in[2], f.sinks ? &f.in[3] : NULL, &f.out[0], &f.out[1], &f.sl, f.window,
                               f.scale);
        static const char *names[] = {"dq", "dk", "dv", "dsinks"};
        for (int i = 0; i < (f.sinks ? 4 : 3); i++) {
            char what[64];
            snprintf(what, sizeof what, "fd attention %s %s", cases[k].name, names[i]);
            fd_check(c, what, &f.in[i], &grads[i], loss_attention, &f);
        }
    }
}

static void test_fd_cross_entropy(void **state)
{
    struct ctx *c = *state;
    int32_t labels[6] = {3, -100, 0, 9, 5, 5};
    struct fd_case f = {.in = {mk(c, 0, 6, 10, 0), tensor_1d(labels, DTYPE_I32, 6)},
                        .out = {{0}, mk(c, 0, 6, 0, 0)},
                        .scale = 0.5f};
    fill_random(&f.in[0], 30, 3);
    struct tensor g = copy_of(c, &f.in[0]);
    loss_cross_entropy(&f);
    be->cross_entropy_backward(be, &g, &f.out[1], &f.in[1], &f.scale);
    fd_check(c, "fd cross_entropy dlogits", &f.in[0], &g, loss_cross_entropy, &f);
}

/* ---- dropout ---- */

static void test_philox_known_answers(void **state)
{
    (void)state;
    /* Random123 tests/kat_vectors, the three "philox4x32 10" lines: ctr, key -> out. */
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {~0u, ~0u, ~0u, ~0u, ~0u, ~0u, 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb,
         0x5001e420, 0x24126ea1},
    };
    for (int i = 0; i < 3; i++) {
        struct philox4x32 r = philox4x32_10((struct philox4x32){{kat[i][0], kat[i][1], kat[i][2], kat[i][3]}},
                                            kat[i][4], kat[i][5]);
        for (int w = 0; w < 4; w++)
            assert_int_equal(r.v[w], kat[i][6 + w]);
    }
    /* The element stream: index n is word n % 4 of counter n / 4 (both halves). */
    uint64_t seed = 0x299f31d0a4093822ull, n = 0x0370734413198a2eull * 4 + 3;
    struct philox4x32 r =
        philox4x32_10((struct philox4x32){{0x13198a2e, 0x03707344, 0, 0}}, 0xa4093822, 0x299f31d0);
    assert_int_equal(philox_draw(seed, n), r.v[3]);
    assert_int_equal(philox_keep_threshold(0), 0);
    assert_int_equal(philox_keep_threshold(0.5f), 0x80000000u);
    assert_int_equal(philox_keep_threshold(1), UINT32_MAX);
}

static void test_dropout(void **state)
{
    struct ctx *c = *state;
    enum { N = 1000000 };
    struct tensor x = mk(c, 0, N, 0, 0), y = mk(c, NAN, N, 0, 0), y2 = mk(c, NAN, N, 0, 0);
    fill_random(&x, 40, 1);
    static const float ps[] = {0.1f, 0.5f};
    const uint64_t seed = 1234, other_seed = 1235;
    for (int k = 0; k < 2; k++) {
        float p = ps[k], s = 1.0f / (1.0f - p);
        be->dropout(be, &y, &x, p, &seed, 77);
        int64_t dropped = 0;
        for (int64_t i = 0; i < N; i++) {
            float xi = ((float *)x.data)[i], yi = ((float *)y.data)[i];
            if (yi == 0 && xi != 0)
                dropped++;
            else if (yi != xi * s)
                fail_msg("dropout p %.1f: y[%lld] = %g, x * 1/(1-p) = %g", p, (long long)i, yi, xi * s);
        }
        double sigma = sqrt(N * p * (1 - p));
        print_message("  dropout p %.1f: %lld of %d dropped (%.2f sigma from N p)\n", p, (long long)dropped,
                      N, (dropped - N * p) / sigma);
        assert_true(fabs(dropped - N * p) < 5 * sigma);
        /* Same (seed, offset): the same mask, also when split in two calls. */
        be->dropout(be, &y2, &x, p, &seed, 77);
        assert_memory_equal(y.data, y2.data, N * sizeof(float));
        struct tensor lo = tensor_rows(&y2, 0, 1000), hi = tensor_rows(&y2, 1000, N - 1000);
        struct tensor xlo = tensor_rows(&x, 0, 1000), xhi = tensor_rows(&x, 1000, N - 1000);
        be->dropout(be, &lo, &xlo, p, &seed, 77);
        be->dropout(be, &hi, &xhi, p, &seed, 77 + 1000);
        assert_memory_equal(y.data, y2.data, N * sizeof(float));
        be->dropout(be, &y2, &x, p, &other_seed, 77);
        assert_memory_not_equal(y.data, y2.data, N * sizeof(float));
    }
    be->dropout(be, &y, &x, 0, &seed, 0);
    assert_memory_equal(y.data, x.data, N * sizeof(float));
}

/* ---- vector exp ---- */

/* cpu_vec_expf against exp in double on every 97th float of [-87.5, 88.7]
 * (within 2 ulp), its edges; the row functions, compiled per ISA level, give
 * the scalar function's bits, and their sums equal a double sum. */
static void test_vec_exp(void **state)
{
    struct ctx *c = *state;
    enum { N = 1 << 16 };
    float *x = ctx_alloc(c, N * sizeof *x), *y = ctx_alloc(c, N * sizeof *y);
    double worst = 0;
    float at = 0;
    int64_t n = 0;
    for (float v = -87.5f; v < 88.7f;) {
        x[n++] = v;
        for (int k = 0; k < 97; k++)
            v = nextafterf(v, INFINITY);
        if (n == N || !(v < 88.7f)) {
            cpu_vec_exp_scale(y, x, n, 0.0f, 1.0f);
            for (int64_t i = 0; i < n; i++) {
                float s = cpu_vec_expf(x[i]);
                if (memcmp(&s, &y[i], sizeof s))
                    fail_msg("exp(%a): row function %a, scalar %a", x[i], y[i], s);
                double want = exp((double)x[i]);
                if (want >= 0x1p-126 && fabs(y[i] - want) / want > worst)
                    worst = fabs(y[i] - want) / want, at = x[i];
            }
            n = 0;
        }
    }
    print_message("  %-40s rel err %.2e (at %g)\n", "vec expf", worst, at);
    assert_true(worst < 2 * 0x1p-24 * 2);
    assert_true(cpu_vec_expf(0) == 1 && cpu_vec_expf(-INFINITY) == 0 && cpu_vec_expf(-100) == 0);
    assert_true(isinf(cpu_vec_expf(88.73f)) && isinf(cpu_vec_expf(INFINITY)) && isnan(cpu_vec_expf(NAN)));
    assert_true(cpu_vec_expf(88.72f) > 3e38f);

    /* Rows of 1..40 elements: max, the sum of exp(x - max) and what it writes. */
    for (int len = 1; len <= 40; len++) {
        struct tensor r = mk(c, 0, len, 0, 0);
        fill_random(&r, 70 + (uint64_t)len, 20);
        const float *rd = r.data;
        float m = cpu_vec_max(rd, len), want_m = -INFINITY;
        for (int i = 0; i < len; i++)
            want_m = fmaxf(want_m, rd[i]);
        assert_true(m == want_m);
        double want = 0;
        for (int i = 0; i < len; i++)
            want += exp((double)rd[i] - m);
        double got = cpu_vec_exp_sum(y, rd, len, m), got_null = cpu_vec_exp_sum(NULL, rd, len, m);
        assert_true(got == got_null && fabs(got - want) / want < 1e-6);
        for (int i = 0; i < len; i++)
            assert_true(y[i] == cpu_vec_expf(rd[i] - m));
    }
    assert_true(cpu_vec_max(x, 0) == -INFINITY && cpu_vec_exp_sum(NULL, x, 0, 0) == 0);
}

/* ---- convert ---- */

static uint16_t to_half(enum dtype dt, uint32_t f32_bits)
{
    uint16_t h;
    struct tensor d = tensor_1d(&h, dt, 1), s = tensor_1d(&f32_bits, DTYPE_F32, 1);
    be->convert(be, &d, &s);
    return h;
}

static uint32_t from_half(enum dtype dt, uint16_t h)
{
    uint32_t u;
    struct tensor d = tensor_1d(&u, DTYPE_F32, 1), s = tensor_1d(&h, dt, 1);
    be->convert(be, &d, &s);
    return u;
}

static bool is_nan32(uint32_t u) { return (u & 0x7fffffffu) > 0x7f800000u; }
static bool is_nan16(enum dtype dt, uint32_t h)
{
    return (h & 0x7fffu) > (dt == DTYPE_BF16 ? 0x7f80u : 0x7c00u);
}

static void test_convert(void **state)
{
    (void)state;
    static const struct {
        uint32_t f32;
        uint16_t bf16, f16;
    } cases[] = {
        {0x3f800000, 0x3f80, 0x3c00}, {0xc0000000, 0xc000, 0xc000}, /* 1, -2 */
        {0x80000000, 0x8000, 0x8000},                               /* -0 */
        {0x7f7f0000, 0x7f7f, 0x7c00},                               /* bf16 max; f16 overflow */
        {0x7f7fffff, 0x7f80, 0x7c00},                               /* fp32 max rounds up to inf in bf16 */
        {0x477fe000, 0x4780, 0x7bff}, {0x477fefff, 0x4780, 0x7bff}, /* 65504 (f16 max) and just below 65520 */
        {0x477ff000, 0x4780, 0x7c00}, /* 65520: tie between f16 max (odd) and 2^16, so inf */
        {0x00800000, 0x0080, 0x0000}, {0x38800000, 0x3880, 0x0400}, /* fp32 and f16 min normals */
        {0x33800000, 0x3380, 0x0001},                               /* 2^-24: smallest f16 subnormal */
        {0x33000000, 0x3300, 0x0000}, {0x33000001, 0x3300, 0x0001}, /* 2^-25: tie to even 0; just above */
        {0x33c00000, 0x33c0, 0x0002},                               /* 1.5 * 2^-24: tie, to even 2 */
        {0x00010000, 0x0001, 0x0000},                               /* smallest bf16 subnormal */
        {0x00008000, 0x0000, 0x0000}, {0x00018000, 0x0002, 0x0000}, /* bf16 subnormal ties to even */
        {0x3f808000, 0x3f80, 0x3c04}, {0x3f818000, 0x3f82, 0x3c0c}, /* 1 + 2^-8, 1 + 3 * 2^-8: bf16 ties */
        {0x3f808001, 0x3f81, 0x3c04},                               /* just above a bf16 tie */
        {0x3f801000, 0x3f80, 0x3c00}, {0x3f803000, 0x3f80, 0x3c02}, /* 1 + 2^-11, 1 + 3 * 2^-11: f16 ties */
        {0x7f800000, 0x7f80, 0x7c00}, {0xff800000, 0xff80, 0xfc00}, /* +-inf */
        {0x7fc00000, 0x7fc0, 0x7e00}, {0xffc00001, 0xffc0, 0xfe00}, /* NaNs keep their sign */
        {0x7f800001, 0x7fc0, 0x7e00}, /* NaN with only low payload bits: must not round to inf */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t bf = to_half(DTYPE_BF16, cases[i].f32), h = to_half(DTYPE_F16, cases[i].f32);
        if (bf != cases[i].bf16 || h != cases[i].f16)
            fail_msg("f32 %08x: bf16 %04x (want %04x), f16 %04x (want %04x)", cases[i].f32, bf, cases[i].bf16,
                     h, cases[i].f16);
    }
    /* Every 16-bit pattern survives a round trip through fp32; NaNs stay NaN. */
    static const enum dtype halves[] = {DTYPE_BF16, DTYPE_F16};
    for (int k = 0; k < 2; k++)
        for (uint32_t u = 0; u <= 0xffff; u++) {
            uint32_t f = from_half(halves[k], (uint16_t)u);
            uint16_t back = to_half(halves[k], f);
            if (is_nan16(halves[k], u) ? !is_nan32(f) || !is_nan16(halves[k], back) : back != u)
                fail_msg("%s %04x -> f32 %08x -> %04x", dtype_name(halves[k]), u, f, back);
        }
    /* bf16 -> f16 directly: 1.0078125 is exact in both. */
    uint16_t bf = 0x3f81, h;
    struct tensor d = tensor_1d(&h, DTYPE_F16, 1), s = tensor_1d(&bf, DTYPE_BF16, 1);
    be->convert(be, &d, &s);
    assert_int_equal(h, 0x3c08);
}

/* ---- memory, views, the small ops ---- */

static void test_memory_views_elementwise(void **state)
{
    struct ctx *c = *state;
    void *p0 = be->alloc(be, 0);
    float host[12], back[12], *dev = be->alloc(be, sizeof host);
    assert_true(p0 && dev && (uintptr_t)dev % 64 == 0);
    for (int i = 0; i < 12; i++)
        host[i] = (float)i;
    be->upload(be, dev, host, sizeof host);
    be->download(be, back, dev, sizeof host);
    assert_memory_equal(host, back, sizeof host);
    struct tensor t = tensor_2d(dev, DTYPE_F32, 3, 4), rows = tensor_rows(&t, 1, 2);
    assert_true(rows.data == dev + 4 && tensor_numel(&rows) == 8);
    assert_int_equal(tensor_reshape(&t, 3, (int64_t[]){3, 2, 2}).shape[2], 2);
    be->zero(be, &t);
    for (int i = 0; i < 12; i++)
        assert_true(dev[i] == 0);
    be->free(be, dev);
    be->free(be, p0);

    /* y = (y + bias) * 0.5 + 2 x and the bias gradient, on [5, 300] (two
     * column tasks), against double loops. */
    enum { R = 5, N = 300 };
    struct tensor y = mk(c, 0, R, N, 0), x = mk(c, 0, R, N, 0), bias = mk(c, 0, N, 0, 0);
    struct tensor dbias = mk(c, 1, N, 0, 0), want = mk(c, 0, R, N, 0), want_db = mk(c, 1, N, 0, 0);
    fill_random(&y, 50, 1);
    fill_random(&x, 51, 1);
    fill_random(&bias, 52, 1);
    const float *yd = y.data, *xd = x.data, *bd = bias.data;
    double ss = 0;
    for (int64_t i = 0; i < R * N; i++) {
        double yb = (double)yd[i] + bd[i % N], w = yb * 0.5 + 2.0 * xd[i];
        ((float *)want_db.data)[i % N] += (float)yb;
        ((float *)want.data)[i] = (float)w;
        ss += w * w;
    }
    be->add_bias(be, &y, &bias);
    be->bias_backward(be, &dbias, &y);
    be->scale(be, &y, 0.5f);
    be->axpy(be, &y, 2, &x);
    check("add_bias, scale, axpy", &y, &want, 1);
    check("bias_backward", &dbias, &want_db, 1);
    float got_ss = (float)be->sum_squares(be, &y), want_ss = (float)ss;
    check_n("sum_squares", &got_ss, &want_ss, 1, 1, GOLDEN_TOL);
}

int main(void)
{
    be = backend_cpu();
    const struct CMUnitTest tests[] = {
        TEST(test_matmul, "matmul"),
        TEST(test_matmul_slices, NULL),
        TEST(test_rmsnorm, "rmsnorm"),
        TEST(test_rope, "rope"),
        TEST(test_attention, "attention"),
        TEST(test_swiglu, "swiglu"),
        TEST(test_cross_entropy, "cross_entropy"),
        TEST(test_embedding, "embedding"),
        TEST(test_adamw, "adamw"),
        TEST(test_fd_rmsnorm_swiglu, NULL),
        TEST(test_fd_rope, NULL),
        TEST(test_fd_attention, NULL),
        TEST(test_fd_cross_entropy, NULL),
        cmocka_unit_test(test_philox_known_answers),
        TEST(test_dropout, NULL),
        TEST(test_vec_exp, NULL),
        cmocka_unit_test(test_convert),
        TEST(test_memory_views_elementwise, NULL),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
