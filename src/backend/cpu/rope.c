/* Rotary embedding in place, Llama's rotate_half layout: for i < D/2 the pair
 * (x[i], x[i + D/2]) turns by the angle of (position, i), whose cos and sin the
 * model tabulated (frequency scaling such as llama3's or YaRN's lives in the
 * table, not here; so does YaRN's attention_scale, which the caller applies):
 *   x'[i]       = x[i] * cos - x[i + D/2] * sin
 *   x'[i + D/2] = x[i + D/2] * cos + x[i] * sin
 * The rotation is orthogonal, so its backward pass is the rotation by -angle
 * (sin negated), applied to the gradient in place. */
#include <assert.h>

#include "backend/cpu/cpu_ops.h"

void cpu_rope(struct backend *b, struct tensor *x, const struct rope_table *rt, const struct seq_layout *sl,
              bool backward)
{
    (void)b;
    assert(x->dtype == DTYPE_F32);
    int64_t half = rt->half_dim, D = 2 * half, T = x->shape[0];
    int64_t heads = T ? tensor_numel(x) / (T * D) : 0;
    assert(tensor_numel(x) == T * heads * D);
    float *xd = x->data;                /* [T, heads, D] */
    const float *cs = rt->cos_sin;      /* [positions, D/2, 2] */
    const int32_t *pos = sl->positions; /* [T] */
    float sign = backward ? -1.0f : 1.0f;
#pragma omp parallel for
    for (int64_t t = 0; t < T; t++) {
        assert(pos[t] >= 0 && pos[t] < rt->positions);
        const float *row = cs + (int64_t)pos[t] * half * 2;
        for (int64_t h = 0; h < heads; h++) {
            float *v = xd + (t * heads + h) * D;
            for (int64_t i = 0; i < half; i++) {
                float c = row[2 * i], s = sign * row[2 * i + 1];
                float x1 = v[i], x2 = v[i + half];
                v[i] = x1 * c - x2 * s;
                v[i + half] = x2 * c + x1 * s;
            }
        }
    }
}
