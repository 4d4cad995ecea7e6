/* Attention of new tokens over a KV cache (generation); see backend.h. One
 * (token, head) row per iteration, two passes over the visible keys (max,
 * then the softmax-weighted sum), in double like the training op, so a
 * decoded token sees the numbers the training forward would give it. */
#include <assert.h>
#include <math.h>

#include "backend/cpu/cpu_ops.h"

void cpu_attention_cached(struct backend *b, struct tensor *out, const struct tensor *q, const struct tensor *kcache,
                          const struct tensor *vcache, const struct tensor *sinks, int64_t pos0, int64_t window,
                          float scale)
{
    (void)b;
    assert(q->rank == 3 && kcache->rank == 3 && vcache->rank == 3 && out->rank == 3);
    int64_t n = q->shape[0], H = q->shape[1], D = q->shape[2], KV = kcache->shape[1];
    assert(kcache->shape[0] >= pos0 + n && kcache->shape[2] == D && H % KV == 0);
    const float *qd = q->data, *kd = kcache->data, *vd = vcache->data; /* [n,H,D], [P,KV,D] x2 */
    const float *sk = sinks ? sinks->data : NULL;                      /* [H] */
    float *od = out->data;                                             /* [n,H,D] */
    int64_t group = H / KV;
#pragma omp parallel for collapse(2)
    for (int64_t i = 0; i < n; i++)
        for (int64_t h = 0; h < H; h++) {
            int64_t p = pos0 + i, first = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
            const float *qi = qd + (i * H + h) * D;
            int64_t kvh = h / group;
            double mx = sk ? sk[h] : -INFINITY;
            for (int64_t j = first; j <= p; j++) {
                const float *kj = kd + (j * KV + kvh) * D;
                double s = 0;
                for (int64_t d = 0; d < D; d++)
                    s += (double)qi[d] * kj[d];
                mx = fmax(mx, s * scale);
            }
            double denom = sk ? exp(sk[h] - mx) : 0, acc[512];
            assert(D <= 512);
            for (int64_t d = 0; d < D; d++)
                acc[d] = 0;
            for (int64_t j = first; j <= p; j++) {
                const float *kj = kd + (j * KV + kvh) * D, *vj = vd + (j * KV + kvh) * D;
                double s = 0;
                for (int64_t d = 0; d < D; d++)
                    s += (double)qi[d] * kj[d];
                double w = exp(s * scale - mx);
                denom += w;
                for (int64_t d = 0; d < D; d++)
                    acc[d] += w * vj[d];
            }
            float *oi = od + (i * H + h) * D;
            for (int64_t d = 0; d < D; d++)
                oi[d] = (float)(acc[d] / denom);
        }
}
