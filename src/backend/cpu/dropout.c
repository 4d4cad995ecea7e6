/* Dropout with the counter-based stream of philox.h: the mask of element i is
 * a pure function of (seed, offset + i), so forward, backward (the same call
 * on dy) and a recomputed forward agree without storing a mask, and the CUDA
 * backend draws the same bits. Each element computes its whole Philox block
 * and keeps its one word (its three neighbours recompute the same block):
 * simpler than sharing blocks across iterations, and cheap next to the
 * matmuls around it. */
#include <assert.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"
#include "backend/philox.h"

void cpu_dropout(struct backend *b, struct tensor *y, const struct tensor *x, float p, const uint64_t *seed_at,
                 uint64_t offset)
{
    const uint64_t seed = *seed_at;
    (void)b;
    assert(y->dtype == DTYPE_F32 && x->dtype == DTYPE_F32 && p >= 0 && p <= 1);
    int64_t n = tensor_numel(x);
    assert(tensor_numel(y) == n);
    float *yd = y->data;
    const float *xd = x->data;
    if (p == 0) {
        if (yd != xd)
            memcpy(yd, xd, (size_t)n * sizeof(float));
        return;
    }
    uint32_t threshold = philox_keep_threshold(p);
    float keep_scale = p < 1 ? 1.0f / (1.0f - p) : 0.0f; /* p == 1 drops everything */
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        yd[i] = philox_draw(seed, offset + (uint64_t)i) >= threshold ? xd[i] * keep_scale : 0.0f;
}
