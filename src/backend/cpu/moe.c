/* Mixture of experts, gpt-oss's: the router's top-k and its softmax, the
 * grouping of (token, slot) pairs by expert, the gather into and the scatter
 * out of the grouped rows, the experts' linears over those rows, and the
 * clamped gated activation. Sizes: T tokens, E experts, k experts per token,
 * N = T * k pairs, C hidden, I intermediate, K and O a linear's in and out.
 *
 * The choice: tokens are sorted once (moe_group, a stable counting sort), so
 * each expert's rows are contiguous and its linear is one GEMM on a row slice
 * (moe_matmul calls cpu_matmul, no GEMM of its own). Every other output
 * element has one owner and a fixed order of operations, so those results do
 * not depend on the thread count (moe_scatter sums a token's k rows in slot
 * order, not in the experts' order); moe_matmul's are as cpu_matmul's.
 *
 * The clamps' gradients are torch.clamp's (torch 2.15): the gradient passes
 * only strictly inside the limits, so zero at x == limit, and zero at NaN. */
#include <assert.h>
#include <math.h>
#include <stdlib.h>

#include "backend/cpu/cpu_ops.h"
#include "backend/moe_topk_row.h"
#include "base/mxfp4.h"

void cpu_moe_topk(struct backend *b, struct tensor *experts, struct tensor *weights, const struct tensor *logits)
{
    (void)b;
    assert(experts->dtype == DTYPE_I32 && weights->dtype == DTYPE_F32 && logits->dtype == DTYPE_F32);
    int64_t t_n = cpu_rows(logits), e_n = cpu_cols(logits), k = cpu_cols(experts);
    assert(k >= 1 && k <= e_n && cpu_rows(experts) == t_n);
    assert(cpu_rows(weights) == t_n && cpu_cols(weights) == k);
    const float *ld = logits->data; /* [T, E] */
    int32_t *ed = experts->data;    /* [T, k] */
    float *wd = weights->data;      /* [T, k] */
#pragma omp parallel for
    for (int64_t t = 0; t < t_n; t++)
        moe_topk_row(ld + t * e_n, e_n, k, ed + t * k, wd + t * k);
}

void cpu_moe_topk_backward(struct backend *b, struct tensor *dlogits, const struct tensor *dweights,
                           const struct tensor *experts, const struct tensor *weights)
{
    (void)b;
    assert(dlogits->dtype == DTYPE_F32 && dweights->dtype == DTYPE_F32 && experts->dtype == DTYPE_I32 &&
           weights->dtype == DTYPE_F32);
    int64_t t_n = cpu_rows(dlogits), e_n = cpu_cols(dlogits), k = cpu_cols(experts);
    assert(cpu_rows(experts) == t_n && k <= e_n);
    assert(cpu_rows(weights) == t_n && cpu_cols(weights) == k);
    assert(cpu_rows(dweights) == t_n && cpu_cols(dweights) == k);
    float *dl = dlogits->data;                             /* [T, E] */
    const float *dw = dweights->data, *wd = weights->data; /* [T, k] */
    const int32_t *ed = experts->data;                     /* [T, k] */
#pragma omp parallel for
    for (int64_t t = 0; t < t_n; t++) {
        float *d = dl + t * e_n;
        const float *w = wd + t * k, *g = dw + t * k;
        float wg = 0; /* sum_i w_i dw_i */
        for (int64_t j = 0; j < k; j++)
            wg += w[j] * g[j];
        for (int64_t e = 0; e < e_n; e++)
            d[e] = 0;
        for (int64_t j = 0; j < k; j++) {
            int32_t e = ed[t * k + j];
            assert(e >= 0 && e < e_n);
            d[e] = w[j] * (g[j] - wg);
        }
    }
}

/* A counting sort, stable, so pairs stay ascending within an expert. Serial:
 * O(N + E) integer work, nothing next to the GEMMs it feeds. */
void cpu_moe_group(struct backend *b, struct tensor *order, struct tensor *position, struct tensor *offsets,
                   const struct tensor *experts)
{
    (void)b;
    assert(order->dtype == DTYPE_I32 && position->dtype == DTYPE_I32 && offsets->dtype == DTYPE_I32 &&
           experts->dtype == DTYPE_I32);
    int64_t n = tensor_numel(experts), e_n = tensor_numel(offsets) - 1;
    assert(e_n >= 1 && n <= INT32_MAX);
    assert(tensor_numel(order) == n && tensor_numel(position) == n);
    const int32_t *ed = experts->data;               /* [T * k] */
    int32_t *od = order->data, *pd = position->data; /* [N] */
    int32_t *off = offsets->data;                    /* [E + 1] */
    for (int64_t e = 0; e <= e_n; e++)
        off[e] = 0;
    for (int64_t p = 0; p < n; p++) {
        assert(ed[p] >= 0 && ed[p] < e_n);
        off[ed[p] + 1]++;
    }
    for (int64_t e = 0; e < e_n; e++)
        off[e + 1] += off[e];
    /* off[e] serves as expert e's cursor (ops allocate nothing), so it ends
     * at off[e + 1]'s value: shifted back after */
    for (int64_t p = 0; p < n; p++) {
        int32_t slot = off[ed[p]]++;
        od[slot] = (int32_t)p;
        pd[p] = slot;
    }
    for (int64_t e = e_n; e > 0; e--)
        off[e] = off[e - 1];
    off[0] = 0;
}

void cpu_moe_gather(struct backend *b, struct tensor *rows, const struct tensor *x, const struct tensor *order,
                    const struct tensor *weights, int64_t k)
{
    (void)b;
    assert(rows->dtype == DTYPE_F32 && x->dtype == DTYPE_F32 && order->dtype == DTYPE_I32);
    assert(!weights || weights->dtype == DTYPE_F32);
    int64_t t_n = cpu_rows(x), c_n = cpu_cols(x), n = cpu_rows(rows);
    assert(k >= 1 && n == t_n * k && cpu_cols(rows) == c_n && tensor_numel(order) == n);
    assert(!weights || tensor_numel(weights) == n);
    float *rd = rows->data;                        /* [N, C] */
    const float *xd = x->data;                     /* [T, C] */
    const int32_t *od = order->data;               /* [N] */
    const float *wd = weights ? weights->data : 0; /* [T * k] */
#pragma omp parallel for
    for (int64_t r = 0; r < n; r++) {
        int32_t p = od[r];
        assert(p >= 0 && p < n);
        const float *src = xd + p / k * c_n;
        float *dst = rd + r * c_n;
        if (wd) {
            float w = wd[p];
            for (int64_t c = 0; c < c_n; c++)
                dst[c] = src[c] * w;
        } else {
            for (int64_t c = 0; c < c_n; c++)
                dst[c] = src[c];
        }
    }
}

/* A token's k rows are summed first, in slot order, then added to y: the sum
 * is the MoE output, y may hold the residual stream. */
void cpu_moe_scatter(struct backend *b, struct tensor *y, const struct tensor *rows, const struct tensor *position,
                     const struct tensor *weights, int64_t k)
{
    (void)b;
    assert(y->dtype == DTYPE_F32 && rows->dtype == DTYPE_F32 && position->dtype == DTYPE_I32);
    assert(!weights || weights->dtype == DTYPE_F32);
    int64_t t_n = cpu_rows(y), c_n = cpu_cols(y), n = cpu_rows(rows);
    assert(k >= 1 && n == t_n * k && cpu_cols(rows) == c_n && tensor_numel(position) == n);
    assert(!weights || tensor_numel(weights) == n);
    float *yd = y->data;                           /* [T, C] */
    const float *rd = rows->data;                  /* [N, C] */
    const int32_t *pd = position->data;            /* [N] */
    const float *wd = weights ? weights->data : 0; /* [T * k] */
#pragma omp parallel for
    for (int64_t t = 0; t < t_n; t++) {
        float *dst = yd + t * c_n;
        for (int64_t c0 = 0; c0 < c_n; c0 += CPU_COLS_PER_TASK) {
            int64_t c1 = c0 + CPU_COLS_PER_TASK < c_n ? c0 + CPU_COLS_PER_TASK : c_n;
            float sum[CPU_COLS_PER_TASK] = {0};
            for (int64_t j = 0; j < k; j++) {
                int32_t slot = pd[t * k + j];
                assert(slot >= 0 && slot < n);
                const float *src = rd + slot * c_n;
                float w = wd ? wd[t * k + j] : 1.0f;
                for (int64_t c = c0; c < c1; c++)
                    sum[c - c0] += w * src[c];
            }
            for (int64_t c = c0; c < c1; c++)
                dst[c] += sum[c - c0];
        }
    }
}

void cpu_moe_weights_backward(struct backend *b, struct tensor *dweights, const struct tensor *dy,
                              const struct tensor *rows, const struct tensor *position, int64_t k)
{
    (void)b;
    assert(dweights->dtype == DTYPE_F32 && dy->dtype == DTYPE_F32 && rows->dtype == DTYPE_F32 &&
           position->dtype == DTYPE_I32);
    int64_t t_n = cpu_rows(dy), c_n = cpu_cols(dy), n = cpu_rows(rows);
    assert(k >= 1 && n == t_n * k && cpu_cols(rows) == c_n);
    assert(tensor_numel(position) == n && tensor_numel(dweights) == n);
    float *dw = dweights->data;         /* [T * k] */
    const float *g = dy->data;          /* [T, C] */
    const float *rd = rows->data;       /* [N, C] */
    const int32_t *pd = position->data; /* [N] */
#pragma omp parallel for
    for (int64_t p = 0; p < n; p++) {
        assert(pd[p] >= 0 && pd[p] < n);
        const float *gt = g + p / k * c_n, *r = rd + pd[p] * c_n;
        double s = 0; /* a dot over C (2880 in gpt-oss): double keeps it exact enough */
        for (int64_t c = 0; c < c_n; c++)
            s += (double)gt[c] * r[c];
        dw[p] = (float)s;
    }
}

/* One cpu_matmul per expert, on its group of rows, experts in turn: each
 * call packs that expert's weight once and spreads over the threads itself
 * (by columns where O is the longer side, as for every expert linear but
 * the longest groups), so no second level of OpenMP here. */
void cpu_moe_matmul(struct backend *b, struct tensor *c, const struct tensor *a, const struct tensor *w, bool tw,
                    const struct tensor *bias, const struct tensor *offsets, float beta)
{
    bool mxfp4 = w->dtype == DTYPE_MXFP4;
    assert(c->dtype == DTYPE_F32 && a->dtype == DTYPE_F32 && (w->dtype == DTYPE_F32 || mxfp4) &&
           offsets->dtype == DTYPE_I32);
    assert(!bias || bias->dtype == DTYPE_F32);
    assert(w->rank == 3);
    int64_t e_n = w->shape[0], n = cpu_rows(a), k_n = cpu_cols(a), o_n = cpu_cols(c);
    assert(cpu_rows(c) == n && tensor_numel(offsets) == e_n + 1);
    assert(w->shape[1] == (tw ? o_n : k_n) && w->shape[2] == (tw ? k_n : o_n));
    assert(!bias || tensor_numel(bias) == e_n * o_n);
    const int32_t *off = offsets->data; /* [E + 1] */
    assert(off[0] == 0 && off[e_n] == n);
    /* MXFP4 experts are dequantized one at a time into fp32 (exactly: base/mxfp4.h) */
    int64_t w_n = o_n * k_n;
    float *deq = mxfp4 ? malloc(sizeof(float) * (size_t)w_n) : NULL;
    assert(!mxfp4 || (deq && w->scales && cpu_cols(w) % MXFP4_BLOCK == 0));
    for (int64_t e = 0; e < e_n; e++) {
        int64_t r0 = off[e], m = off[e + 1] - off[e];
        assert(m >= 0);
        if (m == 0)
            continue;
        struct tensor cs = tensor_rows(c, r0, m), as = tensor_rows(a, r0, m); /* [m, O], [m, K] */
        float *we_data = (float *)w->data + e * w_n;
        if (mxfp4) {
            mxfp4_dequantize((const uint8_t *)w->data + e * w_n / 2, (const uint8_t *)w->scales + e * w_n / MXFP4_BLOCK,
                             w_n / MXFP4_BLOCK, deq);
            we_data = deq;
        }
        struct tensor we = tensor_2d(we_data, DTYPE_F32, w->shape[1], w->shape[2]);
        cpu_matmul(b, &cs, &as, false, &we, tw, 1.0f, beta);
        if (bias && beta == 0) { /* after the product, as a linear layer adds its bias */
            struct tensor be = tensor_1d((float *)bias->data + e * o_n, DTYPE_F32, o_n);
            cpu_add_bias(b, &cs, &be);
        }
    }
    free(deq);
}

void cpu_moe_weight_grad(struct backend *b, struct tensor *dw, const struct tensor *dc, const struct tensor *a,
                         const struct tensor *offsets)
{
    assert(dw->dtype == DTYPE_F32 && dc->dtype == DTYPE_F32 && a->dtype == DTYPE_F32 && offsets->dtype == DTYPE_I32);
    int64_t e_n = tensor_numel(offsets) - 1, n = cpu_rows(a), k_n = cpu_cols(a), o_n = cpu_cols(dc);
    assert(cpu_rows(dc) == n && tensor_numel(dw) == e_n * o_n * k_n);
    const int32_t *off = offsets->data;
    assert(off[0] == 0 && off[e_n] == n);
    for (int64_t e = 0; e < e_n; e++) {
        int64_t r0 = off[e], m = off[e + 1] - off[e];
        if (m == 0)
            continue;
        struct tensor cs = tensor_rows(dc, r0, m), as = tensor_rows(a, r0, m);
        struct tensor we = tensor_2d((float *)dw->data + e * o_n * k_n, DTYPE_F32, o_n, k_n);
        cpu_matmul(b, &we, &cs, true, &as, false, 1.0f, 1.0f);
    }
}

static float sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

/* Comparisons written so that NaN stays NaN (fminf would return the limit). */
static float clamp_gate(float g, float limit) { return g > limit ? limit : g; }
static float clamp_up(float u, float limit) { return u > limit ? limit : u < -limit ? -limit : u; }

void cpu_swiglu_oai(struct backend *b, struct tensor *h, const struct tensor *x, float alpha, float limit)
{
    (void)b;
    assert(h->dtype == DTYPE_F32 && x->dtype == DTYPE_F32);
    int64_t n = cpu_rows(x), i_n = cpu_cols(h);
    assert(cpu_cols(x) == 2 * i_n && cpu_rows(h) == n);
    float *hd = h->data;       /* [N, I] */
    const float *xd = x->data; /* [N, 2I] */
#pragma omp parallel for
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < i_n; i++) {
            float g = clamp_gate(xd[r * 2 * i_n + 2 * i], limit);
            float u = clamp_up(xd[r * 2 * i_n + 2 * i + 1], limit);
            hd[r * i_n + i] = (u + 1.0f) * (g * sigmoid(g * alpha)); /* transformers' order */
        }
}

/* With s = sigmoid(alpha g): dh/dg = (u + 1) s (1 + alpha g (1 - s)),
 * dh/du = g s, each zero where its clamp held (not strictly inside). */
void cpu_swiglu_oai_backward(struct backend *b, struct tensor *dx, const struct tensor *dh, const struct tensor *x,
                             float alpha, float limit)
{
    (void)b;
    assert(dx->dtype == DTYPE_F32 && dh->dtype == DTYPE_F32 && x->dtype == DTYPE_F32);
    int64_t n = cpu_rows(x), i_n = cpu_cols(dh);
    assert(cpu_cols(x) == 2 * i_n && cpu_rows(dh) == n && cpu_rows(dx) == n && cpu_cols(dx) == 2 * i_n);
    float *dxd = dx->data;      /* [N, 2I] */
    const float *gd = dh->data; /* [N, I] */
    const float *xd = x->data;  /* [N, 2I] */
#pragma omp parallel for
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < i_n; i++) {
            float xg = xd[r * 2 * i_n + 2 * i], xu = xd[r * 2 * i_n + 2 * i + 1];
            float g = clamp_gate(xg, limit), u = clamp_up(xu, limit), d = gd[r * i_n + i];
            float s = sigmoid(g * alpha);
            dxd[r * 2 * i_n + 2 * i] = xg < limit ? d * (u + 1.0f) * s * (1.0f + alpha * g * (1.0f - s)) : 0.0f;
            dxd[r * 2 * i_n + 2 * i + 1] = xu > -limit && xu < limit ? d * g * s : 0.0f;
        }
}
