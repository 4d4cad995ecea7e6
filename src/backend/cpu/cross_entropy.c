/* Cross-entropy over a block of logits [T, V], the loss summed over counted
 * tokens (label != -100); the caller divides by the token count of the whole
 * accumulated batch, which one block cannot know. Each row's log-sum-exp is
 * the stable one (max first, then exp(logit - max) in fp32, added in double)
 * and is kept, so the backward pass is one exp per logit:
 *   dlogits = scale * (exp(logit - lse) - onehot(label)),
 * written over the logits, zero rows for ignored tokens. exp, max and the
 * sums are vec_math.h's. The loss adds the rows' (lse - target logit), lse as
 * kept in fp32, in row order after the parallel loop, so it does not depend
 * on the thread count. */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/vec_math.h"

#define CROSS_ENTROPY_IGNORE (-100)

void cpu_cross_entropy(struct backend *b, struct tensor *lse, const struct tensor *logits,
                       const struct tensor *labels, double *loss_sum)
{
    (void)b;
    assert(lse->dtype == DTYPE_F32 && logits->dtype == DTYPE_F32 && labels->dtype == DTYPE_I32);
    int64_t T = cpu_rows(logits), V = cpu_cols(logits);
    assert(tensor_numel(lse) == T && tensor_numel(labels) == T);
    const float *z = logits->data;   /* [T, V] */
    const int32_t *y = labels->data; /* [T] */
    float *ld = lse->data;           /* [T] */
#pragma omp parallel for
    for (int64_t t = 0; t < T; t++) {
        const float *zt = z + t * V;
        float m = cpu_vec_max(zt, V);
        ld[t] = (float)(m + log(cpu_vec_exp_sum(NULL, zt, V, m)));
    }
    double loss = 0;
    for (int64_t t = 0; t < T; t++) {
        if (y[t] == CROSS_ENTROPY_IGNORE)
            continue;
        assert(y[t] >= 0 && y[t] < V);
        loss += (double)ld[t] - z[t * V + y[t]];
    }
    *loss_sum += loss;
}

void cpu_cross_entropy_backward(struct backend *b, struct tensor *logits, const struct tensor *lse,
                                const struct tensor *labels, const float *scale_at)
{
    (void)b;
    const float scale = *scale_at;
    assert(lse->dtype == DTYPE_F32 && logits->dtype == DTYPE_F32 && labels->dtype == DTYPE_I32);
    int64_t T = cpu_rows(logits), V = cpu_cols(logits);
    assert(tensor_numel(lse) == T && tensor_numel(labels) == T);
    float *z = logits->data;         /* [T, V], logits in, gradients out */
    const int32_t *y = labels->data; /* [T] */
    const float *ld = lse->data;     /* [T] */
#pragma omp parallel for
    for (int64_t t = 0; t < T; t++) {
        float *zt = z + t * V;
        if (y[t] == CROSS_ENTROPY_IGNORE) {
            memset(zt, 0, (size_t)V * sizeof *zt);
            continue;
        }
        float target = zt[y[t]];
        cpu_vec_exp_scale(zt, zt, V, ld[t], scale);
        zt[y[t]] = scale * (cpu_vec_expf(target - ld[t]) - 1.0f);
    }
}
