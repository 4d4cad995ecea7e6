/* One token's routing, the same code on the CPU and in a CUDA thread: the k
 * largest of its E router logits in torch.topk's order (larger first, NaN
 * above everything, among equals the lower index: the scan goes up) and the
 * softmax over those k values only (gpt-oss's). The selection rescans the
 * logits k times rather than sorting: E and k are small (32 or 128, 4). */
#ifndef TUNE_BACKEND_MOE_TOPK_ROW_H
#define TUNE_BACKEND_MOE_TOPK_ROW_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __CUDACC__
#define MOE_TOPK_FN static __host__ __device__ inline
#else
#define MOE_TOPK_FN static inline
#endif

MOE_TOPK_FN bool moe_topk_before(float v, float best) { return v > best || (isnan(v) && !isnan(best)); }

/* experts[0..k) and weights[0..k) of the token whose logits are l[0..E). */
MOE_TOPK_FN void moe_topk_row(const float *l, int64_t E, int64_t k, int32_t *experts, float *weights)
{
    for (int64_t j = 0; j < k; j++) {
        int64_t best = -1;
        for (int64_t e = 0; e < E; e++) {
            bool taken = false;
            for (int64_t i = 0; i < j; i++)
                taken |= experts[i] == e;
            if (!taken && (best < 0 || moe_topk_before(l[e], l[best])))
                best = e;
        }
        experts[j] = (int32_t)best;
        weights[j] = l[best];
    }
    float top = weights[0], sum = 0; /* the first is the largest */
    for (int64_t j = 0; j < k; j++) {
        weights[j] = expf(weights[j] - top);
        sum += weights[j];
    }
    for (int64_t j = 0; j < k; j++)
        weights[j] /= sum;
}

#endif
