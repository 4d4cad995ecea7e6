/* backend_profiled: see profile.h. Each op of the table gets a wrapper that
 * waits, calls the inner op, waits again and adds the time to a row keyed by
 * the op's name (matmul's by its shape, transposes and dtypes too). */
#include "backend/profile.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROFILE_ROWS 512

struct profile_row {
    char key[96];
    double seconds;
    long calls;
};

struct profiled {
    struct backend base; /* first: the wrappers cast back */
    struct backend *inner;
    struct profile_row rows[PROFILE_ROWS];
    int n;
};

static struct profiled *prof_of(struct backend *b) { return (struct profiled *)b; }

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void wait_device(struct backend *inner)
{
    tune_err err;
    if (inner->check)
        (void)inner->check(inner, &err); /* a failure stays recorded in inner for the caller's own check */
}

static double begin(struct profiled *p)
{
    wait_device(p->inner);
    return now();
}

static void end(struct profiled *p, const char *key, double t0)
{
    wait_device(p->inner);
    double dt = now() - t0;
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->rows[i].key, key)) {
            p->rows[i].seconds += dt;
            p->rows[i].calls++;
            return;
        }
    if (p->n == PROFILE_ROWS)
        return;
    struct profile_row *r = &p->rows[p->n++];
    snprintf(r->key, sizeof r->key, "%s", key);
    r->seconds = dt;
    r->calls = 1;
}

/* A wrapper for op NAME whose parameters after the backend are PARAMS and
 * whose arguments are ARGS; RET is its return type, returned as is. */
#define TIMED_VOID(name, params, args)                                                                       \
    static void p_##name params                                                                              \
    {                                                                                                        \
        struct profiled *pr_ = prof_of(b);                                                                     \
        double t0 = begin(pr_);                                                                                \
        pr_->inner->name args;                                                                                 \
        end(pr_, #name, t0);                                                                                   \
    }
#define TIMED_DOUBLE(name, params, args)                                                                     \
    static double p_##name params                                                                            \
    {                                                                                                        \
        struct profiled *pr_ = prof_of(b);                                                                     \
        double t0 = begin(pr_);                                                                                \
        double r = pr_->inner->name args;                                                                      \
        end(pr_, #name, t0);                                                                                   \
        return r;                                                                                            \
    }

#define IN prof_of(b)->inner
TIMED_VOID(upload, (struct backend *b, void *dst, const void *host, size_t bytes), (IN, dst, host, bytes))
TIMED_VOID(download, (struct backend *b, void *host, const void *src, size_t bytes), (IN, host, src, bytes))
TIMED_VOID(copy, (struct backend *b, void *dst, const void *src, size_t bytes), (IN, dst, src, bytes))
TIMED_VOID(zero, (struct backend *b, struct tensor *t), (IN, t))
TIMED_VOID(convert, (struct backend *b, struct tensor *dst, const struct tensor *src), (IN, dst, src))
TIMED_VOID(add_bias, (struct backend *b, struct tensor *y, const struct tensor *bias), (IN, y, bias))
TIMED_VOID(bias_backward, (struct backend *b, struct tensor *dbias, const struct tensor *dy), (IN, dbias, dy))
TIMED_VOID(axpy, (struct backend *b, struct tensor *y, float alpha, const struct tensor *x), (IN, y, alpha, x))
TIMED_VOID(embedding, (struct backend *b, struct tensor *out, const struct tensor *table, const struct tensor *ids),
           (IN, out, table, ids))
TIMED_VOID(embedding_backward,
           (struct backend *b, struct tensor *dtable, const struct tensor *dout, const struct tensor *ids),
           (IN, dtable, dout, ids))
TIMED_VOID(rmsnorm,
           (struct backend *b, struct tensor *out, struct tensor *rstd, const struct tensor *x, const struct tensor *w,
            float eps),
           (IN, out, rstd, x, w, eps))
TIMED_VOID(rmsnorm_backward,
           (struct backend *b, struct tensor *dx, struct tensor *dw, const struct tensor *dout, const struct tensor *x,
            const struct tensor *w, const struct tensor *rstd),
           (IN, dx, dw, dout, x, w, rstd))
TIMED_VOID(rope,
           (struct backend *b, struct tensor *x, const struct rope_table *rt, const struct seq_layout *sl,
            bool backward),
           (IN, x, rt, sl, backward))
TIMED_VOID(attention,
           (struct backend *b, struct tensor *out, struct tensor *lse, const struct tensor *q, const struct tensor *k,
            const struct tensor *v, const struct tensor *sinks, const struct seq_layout *sl, int64_t window,
            float scale),
           (IN, out, lse, q, k, v, sinks, sl, window, scale))
TIMED_VOID(attention_backward,
           (struct backend *b, struct tensor *dq, struct tensor *dk, struct tensor *dv, struct tensor *dsinks,
            const struct tensor *dout, const struct tensor *q, const struct tensor *k, const struct tensor *v,
            const struct tensor *sinks, const struct tensor *out, const struct tensor *lse,
            const struct seq_layout *sl, int64_t window, float scale),
           (IN, dq, dk, dv, dsinks, dout, q, k, v, sinks, out, lse, sl, window, scale))
TIMED_VOID(attention_cached,
           (struct backend *b, struct tensor *out, const struct tensor *q, const struct tensor *kcache,
            const struct tensor *vcache, const struct tensor *sinks, int64_t pos0, int64_t window, float scale),
           (IN, out, q, kcache, vcache, sinks, pos0, window, scale))
TIMED_VOID(swiglu, (struct backend *b, struct tensor *h, const struct tensor *gate, const struct tensor *up),
           (IN, h, gate, up))
TIMED_VOID(swiglu_backward,
           (struct backend *b, struct tensor *dgate, struct tensor *dup, const struct tensor *dh,
            const struct tensor *gate, const struct tensor *up),
           (IN, dgate, dup, dh, gate, up))
TIMED_VOID(cross_entropy,
           (struct backend *b, struct tensor *lse, const struct tensor *logits, const struct tensor *labels,
            double *loss_sum),
           (IN, lse, logits, labels, loss_sum))
TIMED_VOID(cross_entropy_backward,
           (struct backend *b, struct tensor *logits, const struct tensor *lse, const struct tensor *labels,
            const float *scale),
           (IN, logits, lse, labels, scale))
TIMED_VOID(dropout,
           (struct backend *b, struct tensor *y, const struct tensor *x, float p, const uint64_t *seed,
            uint64_t offset),
           (IN, y, x, p, seed, offset))
TIMED_VOID(adamw,
           (struct backend *b, struct tensor *param, const struct tensor *grad, struct tensor *m, struct tensor *v,
            double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step),
           (IN, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step))
TIMED_DOUBLE(sum_squares, (struct backend *b, const struct tensor *x), (IN, x))
TIMED_VOID(moe_topk, (struct backend *b, struct tensor *experts, struct tensor *weights, const struct tensor *logits),
           (IN, experts, weights, logits))
TIMED_VOID(moe_topk_backward,
           (struct backend *b, struct tensor *dlogits, const struct tensor *dweights, const struct tensor *experts,
            const struct tensor *weights),
           (IN, dlogits, dweights, experts, weights))
TIMED_VOID(moe_group,
           (struct backend *b, struct tensor *order, struct tensor *position, struct tensor *offsets,
            const struct tensor *experts),
           (IN, order, position, offsets, experts))
TIMED_VOID(moe_gather,
           (struct backend *b, struct tensor *rows, const struct tensor *x, const struct tensor *order,
            const struct tensor *weights, int64_t k),
           (IN, rows, x, order, weights, k))
TIMED_VOID(moe_scatter,
           (struct backend *b, struct tensor *y, const struct tensor *rows, const struct tensor *position,
            const struct tensor *weights, int64_t k),
           (IN, y, rows, position, weights, k))
TIMED_VOID(moe_weights_backward,
           (struct backend *b, struct tensor *dweights, const struct tensor *dy, const struct tensor *rows,
            const struct tensor *position, int64_t k),
           (IN, dweights, dy, rows, position, k))
TIMED_VOID(moe_matmul,
           (struct backend *b, struct tensor *c, const struct tensor *a, const struct tensor *w, bool tw,
            const struct tensor *bias, const struct tensor *offsets, float beta),
           (IN, c, a, w, tw, bias, offsets, beta))
TIMED_VOID(moe_weight_grad,
           (struct backend *b, struct tensor *dw, const struct tensor *dc, const struct tensor *a,
            const struct tensor *offsets),
           (IN, dw, dc, a, offsets))
TIMED_VOID(swiglu_oai, (struct backend *b, struct tensor *h, const struct tensor *x, float alpha, float limit),
           (IN, h, x, alpha, limit))
TIMED_VOID(swiglu_oai_backward,
           (struct backend *b, struct tensor *dx, const struct tensor *dh, const struct tensor *x, float alpha,
            float limit),
           (IN, dx, dh, x, alpha, limit))
TIMED_VOID(scale, (struct backend *b, struct tensor *x, float s), (IN, x, s))
#undef IN

/* matmul is keyed by shape: the GEMMs of a layer differ by an order of magnitude. */
static void matmul_key(char key[96], const char *op, const struct tensor *c, const struct tensor *a, bool ta,
                       const struct tensor *bm, bool tb, bool adds)
{
    int64_t K = ta ? a->shape[0] : a->shape[a->rank - 1];
    snprintf(key, 96, "%s %lldx%lldx%lld %c%c %s.%s->%s%s", op, (long long)c->shape[0],
             (long long)c->shape[c->rank - 1], (long long)K, ta ? 'T' : 'N', tb ? 'T' : 'N', dtype_name(a->dtype),
             dtype_name(bm->dtype), dtype_name(c->dtype), adds ? " +=" : "");
}

static void p_matmul(struct backend *b, struct tensor *c, const struct tensor *a, bool ta, const struct tensor *bm,
                     bool tb, float alpha, float beta)
{
    struct profiled *p = prof_of(b);
    char key[96];
    matmul_key(key, "matmul", c, a, ta, bm, tb, beta != 0);
    double t0 = begin(p);
    p->inner->matmul(p->inner, c, a, ta, bm, tb, alpha, beta);
    end(p, key, t0);
}

static void p_matmul_add(struct backend *b, struct tensor *d, const struct tensor *c, const struct tensor *a, bool ta,
                         const struct tensor *bm, bool tb, float alpha)
{
    struct profiled *p = prof_of(b);
    char key[96];
    matmul_key(key, "matmul_add", d, a, ta, bm, tb, true);
    double t0 = begin(p);
    p->inner->matmul_add(p->inner, d, c, a, ta, bm, tb, alpha);
    end(p, key, t0);
}

static int p_check(struct backend *b, tune_err *err)
{
    struct backend *in = prof_of(b)->inner;
    return in->check ? in->check(in, err) : 0;
}

static void *p_alloc(struct backend *b, size_t bytes)
{
    struct profiled *p = prof_of(b);
    void *r = p->inner->alloc(p->inner, bytes);
    b->bytes_in_use = p->inner->bytes_in_use;
    b->bytes_peak = p->inner->bytes_peak;
    return r;
}

static void p_free(struct backend *b, void *ptr)
{
    struct profiled *p = prof_of(b);
    p->inner->free(p->inner, ptr);
    b->bytes_in_use = p->inner->bytes_in_use;
}

static void *p_alloc_host(struct backend *b, size_t bytes)
{
    struct backend *in = prof_of(b)->inner;
    return in->alloc_host(in, bytes);
}

static void p_free_host(struct backend *b, void *ptr)
{
    struct backend *in = prof_of(b)->inner;
    in->free_host(in, ptr);
}

struct backend *backend_profiled(struct backend *inner)
{
    struct profiled *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->inner = inner;
    p->base = (struct backend){
        .name = inner->name, .bytes_in_use = inner->bytes_in_use, .bytes_peak = inner->bytes_peak,
        .check = p_check, .alloc = p_alloc, .free = p_free, .upload = p_upload, .download = p_download, .copy = p_copy,
        .zero = p_zero, .convert = p_convert, .matmul = p_matmul, .matmul_add = p_matmul_add,
        .add_bias = p_add_bias, .bias_backward = p_bias_backward, .axpy = p_axpy, .embedding = p_embedding,
        .embedding_backward = p_embedding_backward, .rmsnorm = p_rmsnorm, .rmsnorm_backward = p_rmsnorm_backward,
        .rope = p_rope, .attention = p_attention, .attention_backward = p_attention_backward,
        .attention_cached = p_attention_cached, .swiglu = p_swiglu, .swiglu_backward = p_swiglu_backward,
        .cross_entropy = p_cross_entropy, .cross_entropy_backward = p_cross_entropy_backward, .dropout = p_dropout,
        .adamw = p_adamw, .sum_squares = p_sum_squares, .scale = p_scale,
    };
    /* An op the inner backend lacks stays missing, so callers see what it can do. */
    if (inner->alloc_host)
        p->base.alloc_host = p_alloc_host, p->base.free_host = p_free_host;
    if (inner->moe_topk) {
        p->base.moe_topk = p_moe_topk, p->base.moe_topk_backward = p_moe_topk_backward;
        p->base.moe_group = p_moe_group, p->base.moe_gather = p_moe_gather, p->base.moe_scatter = p_moe_scatter;
        p->base.moe_weights_backward = p_moe_weights_backward, p->base.moe_matmul = p_moe_matmul;
        p->base.moe_weight_grad = p_moe_weight_grad, p->base.swiglu_oai = p_swiglu_oai;
        p->base.swiglu_oai_backward = p_swiglu_oai_backward;
    }
    return &p->base;
}

void backend_profile_reset(struct backend *prof) { prof_of(prof)->n = 0; }

static int by_time(const void *x, const void *y)
{
    double a = ((const struct profile_row *)x)->seconds, b = ((const struct profile_row *)y)->seconds;
    return a < b ? 1 : a > b ? -1 : 0;
}

void backend_profile_print(struct backend *prof, FILE *f, int steps)
{
    struct profiled *p = prof_of(prof);
    qsort(p->rows, (size_t)p->n, sizeof p->rows[0], by_time);
    double total = 0;
    for (int i = 0; i < p->n; i++)
        total += p->rows[i].seconds;
    fprintf(f, "%-72s %10s %8s %6s\n", "op (per step)", "ms", "calls", "share");
    for (int i = 0; i < p->n; i++)
        fprintf(f, "%-72s %10.3f %8.1f %5.1f%%\n", p->rows[i].key, 1e3 * p->rows[i].seconds / steps,
                (double)p->rows[i].calls / steps, 100 * p->rows[i].seconds / total);
    fprintf(f, "%-72s %10.3f\n", "total of the timed ops", 1e3 * total / steps);
}

void backend_profile_free(struct backend *prof) { free(prof); }
