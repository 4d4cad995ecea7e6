/* Cross-entropy over a block of logits [T, V], the loss summed over counted
 * tokens (label != -100); the caller divides by the token count of the whole
 * accumulated batch, which one block cannot know. Each row's log-sum-exp is
 * the stable one (max first, the sum of exp(logit - max) in double) and is
 * kept, so the backward pass is one exp per logit:
 *   dlogits = scale * (exp(logit - lse) - onehot(label)),
 * written over the logits, zero rows for ignored tokens. */
#include <assert.h>
#include <math.h>

#include "backend/cpu/cpu_ops.h"

#define CROSS_ENTROPY_IGNORE (-100)

double cpu_cross_entropy(struct backend *b, struct tensor *lse, const struct tensor *logits,
                         const struct tensor *labels)
{
    (void)b;
    assert(lse->dtype == DTYPE_F32 && logits->dtype == DTYPE_F32 && labels->dtype == DTYPE_I32);
    int64_t T = cpu_rows(logits), V = cpu_cols(logits);
    assert(tensor_numel(lse) == T && tensor_numel(labels) == T);
    const float *z = logits->data;   /* [T, V] */
    const int32_t *y = labels->data; /* [T] */
    float *ld = lse->data;           /* [T] */
    double loss = 0;
#pragma omp parallel for reduction(+ : loss)
    for (int64_t t = 0; t < T; t++) {
        const float *zt = z + t * V;
        float m = -INFINITY;
        for (int64_t j = 0; j < V; j++)
            m = fmaxf(m, zt[j]);
        double sum = 0;
        for (int64_t j = 0; j < V; j++)
            sum += exp((double)zt[j] - m);
        double row_lse = m + log(sum);
        ld[t] = (float)row_lse;
        if (y[t] == CROSS_ENTROPY_IGNORE)
            continue;
        assert(y[t] >= 0 && y[t] < V);
        loss += row_lse - zt[y[t]];
    }
    return loss;
}

void cpu_cross_entropy_backward(struct backend *b, struct tensor *logits, const struct tensor *lse,
                                const struct tensor *labels, float scale)
{
    (void)b;
    assert(lse->dtype == DTYPE_F32 && logits->dtype == DTYPE_F32 && labels->dtype == DTYPE_I32);
    int64_t T = cpu_rows(logits), V = cpu_cols(logits);
    assert(tensor_numel(lse) == T && tensor_numel(labels) == T);
    float *z = logits->data;         /* [T, V], logits in, gradients out */
    const int32_t *y = labels->data; /* [T] */
    const float *ld = lse->data;     /* [T] */
#pragma omp parallel for
    for (int64_t t = 0; t < T; t++) {
        float *zt = z + t * V;
        bool counted = y[t] != CROSS_ENTROPY_IGNORE;
        for (int64_t j = 0; j < V; j++)
            zt[j] = counted ? scale * (expf(zt[j] - ld[t]) - (j == y[t])) : 0.0f;
    }
}
