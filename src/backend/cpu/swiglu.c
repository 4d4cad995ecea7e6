/* SwiGLU, the gated MLP activation of Llama: h = silu(gate) * up with
 * silu(g) = g * sigmoid(g). Backward, from the same inputs (nothing saved):
 *   dup   = dh * silu(g)
 *   dgate = dh * up * sigmoid(g) * (1 + g * (1 - sigmoid(g)))
 * sigmoid is written 1 / (1 + exp(-g)), which saturates cleanly to 0 or 1 for
 * large |g| instead of producing inf / inf. exp is vec_math.h's: the loops
 * run over blocks of SWIGLU_BLOCK elements, each block one call of a
 * function compiled per ISA level (CPU_VEC_CLONES). */
#include <assert.h>

#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/vec_math.h"

/* Elements per call of the block functions (and per OpenMP chunk). */
#define SWIGLU_BLOCK 4096

static inline float sigmoid(float g) { return 1.0f / (1.0f + cpu_vec_expf(-g)); }

CPU_VEC_CLONES static void swiglu_block(float *h, const float *gate, const float *up, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        h[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

CPU_VEC_CLONES static void swiglu_backward_block(float *dgate, float *dup, const float *dh, const float *gate,
                                                 const float *up, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i], u = up[i], d = dh[i], s = sigmoid(g); /* read first: dgate, dup may be gate, up */
        dup[i] = d * g * s;
        dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
    }
}

void cpu_swiglu(struct backend *b, struct tensor *h, const struct tensor *gate, const struct tensor *up)
{
    (void)b;
    assert(h->dtype == DTYPE_F32 && gate->dtype == DTYPE_F32 && up->dtype == DTYPE_F32);
    int64_t n = tensor_numel(h);
    assert(tensor_numel(gate) == n && tensor_numel(up) == n);
    float *hd = h->data;                          /* [T, I] */
    const float *gd = gate->data, *ud = up->data; /* [T, I] */
#pragma omp parallel for
    for (int64_t i = 0; i < n; i += SWIGLU_BLOCK)
        swiglu_block(hd + i, gd + i, ud + i, n - i < SWIGLU_BLOCK ? n - i : SWIGLU_BLOCK);
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
    for (int64_t i = 0; i < n; i += SWIGLU_BLOCK)
        swiglu_backward_block(dgd + i, dud + i, g + i, gd + i, ud + i, n - i < SWIGLU_BLOCK ? n - i : SWIGLU_BLOCK);
}
