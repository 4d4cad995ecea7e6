/* SwiGLU, the gated MLP activation of Llama: h = silu(gate) * up with
 * silu(g) = g * sigmoid(g). Backward, from the same inputs (nothing saved):
 *   dup   = dh * silu(g)
 *   dgate = dh * up * sigmoid(g) * (1 + g * (1 - sigmoid(g)))
 * sigmoid is written 1 / (1 + exp(-g)), which saturates cleanly to 0 or 1 for
 * large |g| instead of producing inf / inf. */
#include <assert.h>
#include <math.h>

#include "backend/cpu/cpu_ops.h"

static float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

void cpu_swiglu(struct backend *b, struct tensor *h, const struct tensor *gate, const struct tensor *up)
{
    (void)b;
    assert(h->dtype == DTYPE_F32 && gate->dtype == DTYPE_F32 && up->dtype == DTYPE_F32);
    int64_t n = tensor_numel(h);
    assert(tensor_numel(gate) == n && tensor_numel(up) == n);
    float *hd = h->data;                          /* [T, I] */
    const float *gd = gate->data, *ud = up->data; /* [T, I] */
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        hd[i] = gd[i] * sigmoid(gd[i]) * ud[i];
}

void cpu_swiglu_backward(struct backend *b, struct tensor *dgate, struct tensor *dup, const struct tensor *dh,
                         const struct tensor *gate, const struct tensor *up)
{
    (void)b;
    assert(dgate->dtype == DTYPE_F32 && dup->dtype == DTYPE_F32 && dh->dtype == DTYPE_F32 &&
           gate->dtype == DTYPE_F32 && up->dtype == DTYPE_F32);
    int64_t n = tensor_numel(dh);
    assert(tensor_numel(dgate) == n && tensor_numel(dup) == n && tensor_numel(gate) == n &&
           tensor_numel(up) == n);
    float *dgd = dgate->data, *dud = dup->data;                  /* [T, I] */
    const float *g = dh->data, *gd = gate->data, *ud = up->data; /* [T, I] */
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++) {
        float s = sigmoid(gd[i]);
        dud[i] = g[i] * gd[i] * s;
        dgd[i] = g[i] * ud[i] * s * (1.0f + gd[i] * (1.0f - s));
    }
}
