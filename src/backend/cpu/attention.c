/* Attention over packed sequences, forward and backward, one (token, head) row
 * at a time and without any scratch memory: scores are recomputed rather
 * than stored, which costs a second pass of dot products and keeps the op
 * free of [T, T] buffers and of allocation, like the fused CUDA kernels.
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
 * (the sink logit moves every P_ij by -P_ij * P_sink_i). dq is a sum over
 * keys and dk, dv over queries, so each gets its own pass in which every
 * output row has one owner thread: no atomics, and the same bits for any
 * thread count. */
#include <assert.h>
#include <math.h>

#include "backend/cpu/cpu_ops.h"

/* Sizes shared by the passes. */
struct attn_dims {
    int64_t T, H, KV, D, group; /* group = H / KV query heads per kv head */
};

static struct attn_dims attn_dims_check(const struct tensor *q, const struct tensor *k,
                                        const struct tensor *v, const struct tensor *sinks,
                                        const struct seq_layout *sl)
{
    assert(q->rank == 3 && k->rank == 3 && v->rank == 3);
    assert(q->dtype == DTYPE_F32 && k->dtype == DTYPE_F32 && v->dtype == DTYPE_F32);
    struct attn_dims d = {q->shape[0], q->shape[1], k->shape[1], q->shape[2], 0};
    assert(d.KV > 0 && d.H % d.KV == 0);
    d.group = d.H / d.KV;
    assert(k->shape[0] == d.T && k->shape[2] == d.D);
    assert(v->shape[0] == d.T && v->shape[1] == d.KV && v->shape[2] == d.D);
    assert(!sinks || (sinks->dtype == DTYPE_F32 && tensor_numel(sinks) == d.H));
    assert(sl->sequences >= 1 && sl->starts[0] == 0 && sl->starts[sl->sequences] == d.T);
    (void)v, (void)sinks, (void)sl; /* read only by the asserts */
    return d;
}

/* The sequence holding token t: the last s with starts[s] <= t. */
static int64_t seq_of(const struct seq_layout *sl, int64_t t)
{
    int64_t lo = 0, hi = sl->sequences - 1;
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (sl->starts[mid] <= t)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* First key seen by query i (the last is i itself). */
static int64_t first_key(const struct seq_layout *sl, int64_t window, int64_t i)
{
    int64_t start = sl->starts[seq_of(sl, i)];
    return window > 0 && i - window + 1 > start ? i - window + 1 : start;
}

/* One past the last query that sees key j (the first is j itself). */
static int64_t end_query(const struct seq_layout *sl, int64_t window, int64_t j)
{
    int64_t end = sl->starts[seq_of(sl, j) + 1];
    return window > 0 && j + window < end ? j + window : end;
}

static float dot(const float *a, const float *b, int64_t n)
{
    float s = 0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

void cpu_attention(struct backend *b, struct tensor *out, struct tensor *lse, const struct tensor *q,
                   const struct tensor *k, const struct tensor *v, const struct tensor *sinks,
                   const struct seq_layout *sl, int64_t window, float scale)
{
    (void)b;
    struct attn_dims d = attn_dims_check(q, k, v, sinks, sl);
    assert(out->dtype == DTYPE_F32 && tensor_numel(out) == d.T * d.H * d.D);
    assert(lse->dtype == DTYPE_F32 && tensor_numel(lse) == d.H * d.T);
    const float *qd = q->data, *kd = k->data, *vd = v->data; /* [T, H, D], [T, KV, D] x2 */
    const float *sk = sinks ? sinks->data : NULL;            /* [H] */
    float *od = out->data, *ld = lse->data;                  /* [T, H, D], [H, T] */
    int64_t T = d.T, H = d.H, KV = d.KV, D = d.D;
#pragma omp parallel for collapse(2) schedule(dynamic, 8)
    for (int64_t i = 0; i < T; i++)
        for (int64_t h = 0; h < H; h++) {
            const float *qi = qd + (i * H + h) * D;
            const float *kh = kd + (h / d.group) * D, *vh = vd + (h / d.group) * D; /* row j at j * KV * D */
            float *oi = od + (i * H + h) * D;
            int64_t j0 = first_key(sl, window, i);
            /* Pass 1: the row's max, for a stable exp. */
            float m = sk ? sk[h] : -INFINITY;
            for (int64_t j = j0; j <= i; j++)
                m = fmaxf(m, scale * dot(qi, kh + j * KV * D, D));
            /* Pass 2: the softmax's denominator and the weighted sum of values. */
            float l = sk ? expf(sk[h] - m) : 0;
            for (int64_t c = 0; c < D; c++)
                oi[c] = 0;
            for (int64_t j = j0; j <= i; j++) {
                float p = expf(scale * dot(qi, kh + j * KV * D, D) - m);
                l += p;
                for (int64_t c = 0; c < D; c++)
                    oi[c] += p * vh[j * KV * D + c];
            }
            for (int64_t c = 0; c < D; c++)
                oi[c] /= l;
            ld[h * T + i] = m + logf(l);
        }
}

void cpu_attention_backward(struct backend *b, struct tensor *dq, struct tensor *dk, struct tensor *dv,
                            struct tensor *dsinks, const struct tensor *dout, const struct tensor *q,
                            const struct tensor *k, const struct tensor *v, const struct tensor *sinks,
                            const struct tensor *out, const struct tensor *lse, const struct seq_layout *sl,
                            int64_t window, float scale)
{
    (void)b;
    struct attn_dims d = attn_dims_check(q, k, v, sinks, sl);
    int64_t T = d.T, H = d.H, KV = d.KV, D = d.D;
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

    /* dq: row (i, h) sums over the keys it sees. */
#pragma omp parallel for collapse(2) schedule(dynamic, 8)
    for (int64_t i = 0; i < T; i++)
        for (int64_t h = 0; h < H; h++) {
            const float *qi = qd + (i * H + h) * D, *gi = gd + (i * H + h) * D;
            const float *kh = kd + (h / d.group) * D, *vh = vd + (h / d.group) * D;
            float *dqi = dqd + (i * H + h) * D;
            float Di = dot(gi, od + (i * H + h) * D, D), lse_i = ld[h * T + i];
            for (int64_t c = 0; c < D; c++)
                dqi[c] = 0;
            for (int64_t j = first_key(sl, window, i); j <= i; j++) {
                const float *kj = kh + j * KV * D;
                float p = expf(scale * dot(qi, kj, D) - lse_i);
                float ds = p * (dot(gi, vh + j * KV * D, D) - Di);
                for (int64_t c = 0; c < D; c++)
                    dqi[c] += scale * ds * kj[c];
            }
        }

    /* dk, dv: row (j, kv head) sums over the queries of its group that see it. */
#pragma omp parallel for collapse(2) schedule(dynamic, 8)
    for (int64_t j = 0; j < T; j++)
        for (int64_t g = 0; g < KV; g++) {
            const float *kj = kd + (j * KV + g) * D, *vj = vd + (j * KV + g) * D;
            float *dkj = dkd + (j * KV + g) * D, *dvj = dvd + (j * KV + g) * D;
            for (int64_t c = 0; c < D; c++)
                dkj[c] = dvj[c] = 0;
            int64_t i1 = end_query(sl, window, j);
            for (int64_t h = g * d.group; h < (g + 1) * d.group; h++)
                for (int64_t i = j; i < i1; i++) {
                    const float *qi = qd + (i * H + h) * D, *gi = gd + (i * H + h) * D;
                    float Di = dot(gi, od + (i * H + h) * D, D);
                    float p = expf(scale * dot(qi, kj, D) - ld[h * T + i]);
                    float ds = p * (dot(gi, vj, D) - Di);
                    for (int64_t c = 0; c < D; c++) {
                        dvj[c] += p * gi[c];
                        dkj[c] += scale * ds * qi[c];
                    }
                }
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
            sum -= (double)expf(sk[h] - ld[h * T + i]) * Di;
        }
        dsk[h] += (float)sum;
    }
}
