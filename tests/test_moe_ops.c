/* Tests of the CPU backend's mixture-of-experts ops, run from the repository
 * root:
 *  - golden: moe_topk (+ backward), swiglu_oai (+ backward) and a whole
 *    gpt-oss MoE block, forward and backward, composed from the ops, against
 *    transformers' GptOssTopKRouter / GptOssExperts run by autograd in fp64
 *    (tests/fixtures/ops/moe.safetensors, from tools/ref/make_moe_op_fixtures.py),
 *    by relative L2 error ||got - want|| / ||want|| < 1e-5; NaN never passes;
 *  - hand cases: moe_group's order, position and offsets with an expert that
 *    gets no token, gather / scatter / weights_backward on them, ties in
 *    moe_topk (the lower index first), the clamps' gradient at the limits;
 *  - moe_matmul against a plain loop with groups of 0 to 300 rows, both
 *    weight layouts, bias, and beta 1 (which adds no bias);
 *  - determinism: the block and moe_matmul bit for bit the same on 1, 2 and
 *    3 threads and from one run to the next.
 * Size letters: T tokens, E experts, k experts per token, N = T * k, C
 * hidden, I intermediate. Each check prints its error. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "io/safetensors.h"
#include "op_ctx.h"

#define GOLDEN_TOL 1e-5

static struct backend *be;

/* ---- tensors, comparisons (the per-test state is op_ctx.h) ---- */

/* A tensor [d0] / [d0, d1] (d1 == 0 drops it) of F32 or I32, every element
 * `fill` (NaN or -1 for outputs that must be written). */
static struct tensor mk(struct ctx *c, enum dtype dt, float fill, int64_t d0, int64_t d1)
{
    struct tensor t = {.dtype = dt, .rank = d1 ? 2 : 1, .shape = {d0, d1}};
    t.data = ctx_alloc(c, (size_t)tensor_numel(&t) * 4);
    for (int64_t i = 0; i < tensor_numel(&t); i++) {
        if (dt == DTYPE_F32)
            ((float *)t.data)[i] = fill;
        else
            ((int32_t *)t.data)[i] = (int32_t)fill;
    }
    return t;
}

/* Uniform in [-amp, amp) from a fixed LCG: the same inputs on every run. */
static void fill_random(struct tensor *t, uint64_t seed, float amp)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (int64_t i = 0; i < tensor_numel(t); i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ((float *)t->data)[i] = amp * ((float)(s >> 40) * 0x1p-23f - 1.0f);
    }
}

/* ||got - want|| / ||want||; infinity if got holds a NaN. */
static void check_n(const char *what, const float *got, const double *want, int64_t n)
{
    double diff = 0, ref = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i])) {
            diff = INFINITY;
            break;
        }
        diff += (got[i] - want[i]) * (got[i] - want[i]);
        ref += want[i] * want[i];
    }
    double e = ref > 0 ? sqrt(diff / ref) : sqrt(diff);
    print_message("  %-40s rel err %.2e\n", what, e);
    if (!(e < GOLDEN_TOL))
        fail_msg("%s: relative error %.3e, bound %.1e", what, e, GOLDEN_TOL);
}

/* Compares got with the fixture's tensor `name`. */
static void expect(struct ctx *c, const struct tensor *got, const char *name)
{
    struct tensor want = fx(c, name);
    int64_t n = tensor_numel(&want);
    assert_int_equal(tensor_numel(got), n);
    if (want.dtype == DTYPE_I32) {
        assert_int_equal(got->dtype, DTYPE_I32);
        assert_memory_equal(got->data, want.data, (size_t)n * 4);
        print_message("  %-40s equal\n", name);
        return;
    }
    double *w = ctx_alloc(c, (size_t)n * sizeof *w);
    for (int64_t i = 0; i < n; i++)
        w[i] = ((float *)want.data)[i];
    check_n(name, got->data, w, n);
}

static void expect_i32(const struct tensor *got, const int32_t *want, int64_t n, const char *what)
{
    assert_int_equal(tensor_numel(got), n);
    for (int64_t i = 0; i < n; i++)
        if (((int32_t *)got->data)[i] != want[i])
            fail_msg("%s[%lld] = %d, want %d", what, (long long)i, ((int32_t *)got->data)[i], want[i]);
}

/* ---- golden tests against transformers ---- */

static void test_topk(void **state)
{
    struct ctx *c = *state;
    struct tensor logits = fx(c, "topk.logits"), dweights = fx(c, "topk.dweights");
    int64_t t_n = logits.shape[0], e_n = logits.shape[1], k = dweights.shape[1];
    struct tensor experts = mk(c, DTYPE_I32, -1, t_n, k), weights = mk(c, DTYPE_F32, NAN, t_n, k);
    be->moe_topk(be, &experts, &weights, &logits);
    expect(c, &experts, "topk.experts");
    expect(c, &weights, "topk.weights");
    struct tensor dlogits = mk(c, DTYPE_F32, NAN, t_n, e_n);
    be->moe_topk_backward(be, &dlogits, &dweights, &experts, &weights);
    expect(c, &dlogits, "topk.dlogits");
}

static void test_swiglu_oai(void **state)
{
    struct ctx *c = *state;
    struct tensor x = fx(c, "act.x"), dh = fx(c, "act.dh"), al = fx(c, "act.alpha_limit");
    float alpha = ((float *)al.data)[0], limit = ((float *)al.data)[1];
    int64_t n = x.shape[0], i_n = x.shape[1] / 2;
    struct tensor h = mk(c, DTYPE_F32, NAN, n, i_n), dx = mk(c, DTYPE_F32, NAN, n, 2 * i_n);
    be->swiglu_oai(be, &h, &x, alpha, limit);
    expect(c, &h, "act.h");
    be->swiglu_oai_backward(be, &dx, &dh, &x, alpha, limit);
    expect(c, &dx, "act.dx");
    /* The fixture sets x[0,0] (gate) and x[1,1] (up) to +limit, x[2,3] (up)
     * and x[3,0] (gate) to -limit: torch.clamp passes the gradient only
     * strictly inside, and the gate has no lower clamp. */
    const float *x_ = x.data, *d = dx.data;
    assert_true(x_[0] == limit && x_[2 * i_n + 1] == limit && x_[4 * i_n + 3] == -limit && x_[6 * i_n] == -limit);
    assert_true(d[0] == 0 && d[2 * i_n + 1] == 0 && d[4 * i_n + 3] == 0 && d[6 * i_n] != 0);
}

/* The tensors of one MoE block run, forward and backward. */
struct block {
    struct tensor logits, experts, weights, order, position, offsets;
    struct tensor rows, gate_up, h, out, y;         /* [N, C], [N, 2I], [N, I], [N, C], [T, C] */
    struct tensor dweights, dlogits, drows, dh, dgate_up, dxrows, dx;
};

/* The block from the ops, as a model layer would compose it: router linear,
 * top-k, grouping, the experts' linears on the grouped rows, the weighted
 * scatter; backward through the same chain in reverse. */
static void block_run(struct ctx *c, struct block *s, float alpha, float limit)
{
    struct tensor x = fx(c, "block.x"), rw = fx(c, "block.router_w"), rb = fx(c, "block.router_b");
    struct tensor gu_w = fx(c, "block.gate_up"), gu_b = fx(c, "block.gate_up_bias");
    struct tensor dn_w = fx(c, "block.down"), dn_b = fx(c, "block.down_bias"), dy = fx(c, "block.dy");
    int64_t t_n = x.shape[0], c_n = x.shape[1], e_n = rw.shape[0], i_n = dn_w.shape[1];
    int64_t k = fx(c, "block.experts").shape[1], n = t_n * k;

    s->logits = mk(c, DTYPE_F32, NAN, t_n, e_n);
    be->matmul(be, &s->logits, &x, false, &rw, true, 1, 0);
    be->add_bias(be, &s->logits, &rb);
    s->experts = mk(c, DTYPE_I32, -1, t_n, k);
    s->weights = mk(c, DTYPE_F32, NAN, t_n, k);
    be->moe_topk(be, &s->experts, &s->weights, &s->logits);
    s->order = mk(c, DTYPE_I32, -1, n, 0);
    s->position = mk(c, DTYPE_I32, -1, n, 0);
    s->offsets = mk(c, DTYPE_I32, -1, e_n + 1, 0);
    be->moe_group(be, &s->order, &s->position, &s->offsets, &s->experts);
    s->rows = mk(c, DTYPE_F32, NAN, n, c_n);
    be->moe_gather(be, &s->rows, &x, &s->order, NULL, k);
    s->gate_up = mk(c, DTYPE_F32, NAN, n, 2 * i_n);
    be->moe_matmul(be, &s->gate_up, &s->rows, &gu_w, false, &gu_b, &s->offsets, 0);
    s->h = mk(c, DTYPE_F32, NAN, n, i_n);
    be->swiglu_oai(be, &s->h, &s->gate_up, alpha, limit);
    s->out = mk(c, DTYPE_F32, NAN, n, c_n);
    be->moe_matmul(be, &s->out, &s->h, &dn_w, false, &dn_b, &s->offsets, 0);
    s->y = mk(c, DTYPE_F32, 0, t_n, c_n);
    be->moe_scatter(be, &s->y, &s->out, &s->position, &s->weights, k);

    s->dweights = mk(c, DTYPE_F32, NAN, t_n, k);
    be->moe_weights_backward(be, &s->dweights, &dy, &s->out, &s->position, k);
    s->dlogits = mk(c, DTYPE_F32, NAN, t_n, e_n);
    be->moe_topk_backward(be, &s->dlogits, &s->dweights, &s->experts, &s->weights);
    s->dx = mk(c, DTYPE_F32, NAN, t_n, c_n);
    be->matmul(be, &s->dx, &s->dlogits, false, &rw, false, 1, 0);
    s->drows = mk(c, DTYPE_F32, NAN, n, c_n);
    be->moe_gather(be, &s->drows, &dy, &s->order, &s->weights, k);
    /* back through the linears: the same weights, the other op(w) */
    s->dh = mk(c, DTYPE_F32, NAN, n, i_n);
    be->moe_matmul(be, &s->dh, &s->drows, &dn_w, true, NULL, &s->offsets, 0);
    s->dgate_up = mk(c, DTYPE_F32, NAN, n, 2 * i_n);
    be->swiglu_oai_backward(be, &s->dgate_up, &s->dh, &s->gate_up, alpha, limit);
    s->dxrows = mk(c, DTYPE_F32, NAN, n, c_n);
    be->moe_matmul(be, &s->dxrows, &s->dgate_up, &gu_w, true, NULL, &s->offsets, 0);
    be->moe_scatter(be, &s->dx, &s->dxrows, &s->position, NULL, k);
}

static void test_block(void **state)
{
    struct ctx *c = *state;
    struct tensor al = fx(c, "act.alpha_limit");
    float alpha = ((float *)al.data)[0], limit = ((float *)al.data)[1];
    struct block s;
    block_run(c, &s, alpha, limit);
    expect(c, &s.logits, "block.logits");
    expect(c, &s.experts, "block.experts");
    expect(c, &s.weights, "block.weights");
    expect(c, &s.y, "block.y");
    expect(c, &s.dweights, "block.dweights");
    expect(c, &s.dlogits, "block.dlogits");
    expect(c, &s.dx, "block.dx");
    /* the fixture's router never picks expert 2: an empty group mid-table */
    const int32_t *off = s.offsets.data;
    assert_int_equal(off[2], off[3]);

    /* the same bits on 1, 2 and 3 threads, and again on a second run */
    int threads = omp_get_max_threads();
    static const int counts[] = {1, 2, 3, 0};
    for (int i = 0; i < 4; i++) {
        omp_set_num_threads(counts[i] ? counts[i] : threads);
        struct block r;
        block_run(c, &r, alpha, limit);
        const struct tensor *got[] = {&r.y, &r.dx, &r.dweights, &r.dlogits};
        const struct tensor *want[] = {&s.y, &s.dx, &s.dweights, &s.dlogits};
        for (int j = 0; j < 4; j++)
            assert_memory_equal(got[j]->data, want[j]->data, (size_t)tensor_numel(want[j]) * 4);
    }
    omp_set_num_threads(threads);
    print_message("  %-40s bit-identical on 1, 2, 3 threads\n", "block y, dx, dweights, dlogits");
}

/* ---- hand cases ---- */

static void test_topk_ties(void **state)
{
    struct ctx *c = *state;
    /* T = 4, E = 4, k = 2: ties pick the lower index first (torch.topk leaves
     * their order unspecified: on the CPU it returns 2, 3 for row 1) */
    static const float l[] = {1, 2, 2, 0.5f, 3, 3, 3, 3, -INFINITY, -INFINITY, -INFINITY, 2, 0, 5, -1, 5};
    static const int32_t want[] = {1, 2, 0, 1, 3, 0, 1, 3};
    struct tensor logits = mk(c, DTYPE_F32, 0, 4, 4);
    memcpy(logits.data, l, sizeof l);
    struct tensor experts = mk(c, DTYPE_I32, -1, 4, 2), weights = mk(c, DTYPE_F32, NAN, 4, 2);
    be->moe_topk(be, &experts, &weights, &logits);
    expect_i32(&experts, want, 8, "experts");
    const float *w = weights.data;
    assert_true(w[0] == 0.5f && w[1] == 0.5f && w[2] == 0.5f && w[3] == 0.5f);
    assert_true(w[4] == 1.0f && w[5] == 0.0f && w[6] == 0.5f && w[7] == 0.5f);
}

static void test_group_gather_scatter(void **state)
{
    struct ctx *c = *state;
    enum { T = 5, K = 2, N = T * K, E = 4, C = 3 };
    /* expert 2 gets no token */
    static const int32_t ex[N] = {3, 0, 0, 3, 1, 0, 3, 1, 0, 1};
    static const int32_t want_order[N] = {1, 2, 5, 8, 4, 7, 9, 0, 3, 6};
    static const int32_t want_position[N] = {7, 0, 1, 8, 4, 2, 9, 5, 3, 6};
    static const int32_t want_offsets[E + 1] = {0, 4, 7, 7, 10};
    struct tensor experts = mk(c, DTYPE_I32, 0, T, K);
    memcpy(experts.data, ex, sizeof ex);
    struct tensor order = mk(c, DTYPE_I32, -1, N, 0), position = mk(c, DTYPE_I32, -1, N, 0);
    struct tensor offsets = mk(c, DTYPE_I32, -1, E + 1, 0);
    be->moe_group(be, &order, &position, &offsets, &experts);
    expect_i32(&order, want_order, N, "order");
    expect_i32(&position, want_position, N, "position");
    expect_i32(&offsets, want_offsets, E + 1, "offsets");

    struct tensor x = mk(c, DTYPE_F32, 0, T, C), w = mk(c, DTYPE_F32, 0, T, K);
    fill_random(&x, 1, 2);
    fill_random(&w, 2, 1);
    const float *xd = x.data, *wd = w.data;
    /* gather, weighted and not */
    struct tensor rows = mk(c, DTYPE_F32, NAN, N, C), wrows = mk(c, DTYPE_F32, NAN, N, C);
    be->moe_gather(be, &rows, &x, &order, NULL, K);
    be->moe_gather(be, &wrows, &x, &order, &w, K);
    for (int r = 0; r < N; r++)
        for (int j = 0; j < C; j++) {
            int p = want_order[r];
            assert_true(((float *)rows.data)[r * C + j] == xd[p / K * C + j]);
            assert_true(((float *)wrows.data)[r * C + j] == xd[p / K * C + j] * wd[p]);
        }
    /* scatter accumulates: y = 1 + sum_j w_j rows[position[t k + j]], j in order */
    struct tensor y = mk(c, DTYPE_F32, 1, T, C);
    be->moe_scatter(be, &y, &wrows, &position, &w, K);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < C; j++) {
            float s = 0;
            for (int i = 0; i < K; i++)
                s += wd[t * K + i] * (xd[t * C + j] * wd[t * K + i]);
            assert_true(((float *)y.data)[t * C + j] == 1 + s);
        }
    /* unweighted scatter of the unweighted gather: k copies of x */
    struct tensor y2 = mk(c, DTYPE_F32, 0, T, C);
    be->moe_scatter(be, &y2, &rows, &position, NULL, K);
    for (int i = 0; i < T * C; i++)
        assert_true(((float *)y2.data)[i] == (float)K * xd[i]);
    /* dweights[p] = dy[p / k] . rows[position[p]] */
    struct tensor dy = mk(c, DTYPE_F32, 0, T, C), dw = mk(c, DTYPE_F32, NAN, T, K);
    fill_random(&dy, 3, 1);
    be->moe_weights_backward(be, &dw, &dy, &wrows, &position, K);
    double want_dw[N];
    for (int p = 0; p < N; p++) {
        want_dw[p] = 0;
        for (int j = 0; j < C; j++)
            want_dw[p] += (double)((float *)dy.data)[p / K * C + j] * ((float *)wrows.data)[want_position[p] * C + j];
    }
    check_n("moe_weights_backward (hand case)", dw.data, want_dw, N);
}

/* c = a op(w[e]) + bias[e] (+ beta c0) by a plain loop in double. */
static void matmul_ref(double *c, const float *a, const float *w, bool tw, const float *bias, const float *c0,
                       float beta, const int32_t *off, int64_t e_n, int64_t k_n, int64_t o_n)
{
    for (int64_t e = 0; e < e_n; e++)
        for (int64_t r = off[e]; r < off[e + 1]; r++)
            for (int64_t o = 0; o < o_n; o++) {
                double s = beta ? beta * (double)c0[r * o_n + o] : bias ? bias[e * o_n + o] : 0;
                for (int64_t i = 0; i < k_n; i++)
                    s += (double)a[r * k_n + i] * w[e * o_n * k_n + (tw ? o * k_n + i : i * o_n + o)];
                c[r * o_n + o] = s;
            }
}

static void test_moe_matmul(void **state)
{
    struct ctx *c = *state;
    enum { E = 5, K = 33, O = 17 };
    /* groups of 0, 1, 130, 300 and 0 rows: the two large ones split over the
     * threads by cpu_matmul, empty ones first, mid-table and last */
    static const int32_t off[E + 1] = {0, 0, 1, 131, 431, 431};
    int64_t n = off[E];
    struct tensor offsets = mk(c, DTYPE_I32, 0, E + 1, 0);
    memcpy(offsets.data, off, sizeof off);
    struct tensor a = mk(c, DTYPE_F32, 0, n, K), bias = mk(c, DTYPE_F32, 0, E, O), c0 = mk(c, DTYPE_F32, 0, n, O);
    struct tensor w = {.dtype = DTYPE_F32, .rank = 3, .shape = {E, O, K}};
    w.data = ctx_alloc(c, E * O * K * sizeof(float));
    fill_random(&a, 4, 1);
    fill_random(&bias, 5, 1);
    fill_random(&c0, 6, 1);
    fill_random(&w, 7, 0.5f);
    double *want = ctx_alloc(c, (size_t)n * O * sizeof *want);
    int threads = omp_get_max_threads();
    for (int variant = 0; variant < 4; variant++) {
        bool tw = variant & 1, accumulate = variant & 2;
        struct tensor wv = w;
        if (!tw) { /* the same numbers read as [E, K, O] */
            wv.shape[1] = K;
            wv.shape[2] = O;
        }
        float beta = accumulate ? 1.0f : 0.0f;
        matmul_ref(want, a.data, wv.data, tw, bias.data, c0.data, beta, off, E, K, O);
        struct tensor first = mk(c, DTYPE_F32, 0, n, O);
        static const int counts[] = {1, 2, 3, 0};
        for (int i = 0; i < 4; i++) {
            omp_set_num_threads(counts[i] ? counts[i] : threads);
            struct tensor got = mk(c, DTYPE_F32, NAN, n, O);
            if (accumulate)
                memcpy(got.data, c0.data, (size_t)n * O * sizeof(float));
            be->moe_matmul(be, &got, &a, &wv, tw, &bias, &offsets, beta); /* bias ignored when beta is 1 */
            if (i == 0) {
                char what[64];
                snprintf(what, sizeof what, "moe_matmul tw %d beta %d", tw, accumulate);
                check_n(what, got.data, want, n * O);
                memcpy(first.data, got.data, (size_t)n * O * sizeof(float));
            } else {
                assert_memory_equal(got.data, first.data, (size_t)n * O * sizeof(float));
            }
        }
        omp_set_num_threads(threads);
    }
}

int main(void)
{
    be = backend_cpu();
    const struct CMUnitTest tests[] = {
        TEST(test_topk, "moe"),
        TEST(test_swiglu_oai, "moe"),
        TEST(test_block, "moe"),
        TEST(test_topk_ties, "moe"),
        TEST(test_group_gather_scatter, "moe"),
        TEST(test_moe_matmul, "moe"),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
