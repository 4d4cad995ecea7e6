/* AdamW exactly as torch.optim.AdamW (amsgrad off, the single-tensor path),
 * operation for operation so that results agree to fp32 rounding:
 *   p *= 1 - lr * wd                  (decoupled weight decay)
 *   m += (1 - beta1) * (g - m)        (= beta1 * m + (1 - beta1) * g; torch's lerp_)
 *   v  = beta2 * v + (1 - beta2) * g^2
 *   denom = sqrt(v) / sqrt(1 - beta2^t) + eps
 *   p -= (lr / (1 - beta1^t)) * m / denom
 * The hyperparameters arrive in double, as torch holds them (Python floats),
 * and the scalar coefficients are computed in double, then rounded once to
 * fp32 as torch's kernels round their scalar arguments; the per-element
 * arithmetic is fp32. */
#include <assert.h>
#include <math.h>

#include "backend/cpu/cpu_ops.h"

void cpu_adamw(struct backend *b, struct tensor *param, const struct tensor *grad, struct tensor *m,
               struct tensor *v, double lr, double beta1, double beta2, double eps, double weight_decay,
               int64_t step)
{
    (void)b;
    assert(param->dtype == DTYPE_F32 && grad->dtype == DTYPE_F32 && m->dtype == DTYPE_F32 &&
           v->dtype == DTYPE_F32 && step >= 1);
    int64_t n = tensor_numel(param);
    assert(tensor_numel(grad) == n && tensor_numel(m) == n && tensor_numel(v) == n);
    float *p = param->data, *md = m->data, *vd = v->data; /* [n] each */
    const float *g = grad->data;                          /* [n] */
    /* torch's scalars, each rounded once to fp32 where its kernels take them. */
    float decay = (float)(1.0 - lr * weight_decay);
    float w1 = (float)(1.0 - beta1), b2 = (float)beta2, w2 = (float)(1.0 - beta2);
    float step_size = (float)(lr / (1.0 - pow(beta1, (double)step)));
    float bc2_sqrt = (float)sqrt(1.0 - pow(beta2, (double)step)), epsf = (float)eps;
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++) {
        p[i] *= decay;
        md[i] += w1 * (g[i] - md[i]);
        vd[i] = b2 * vd[i] + w2 * g[i] * g[i];
        float denom = sqrtf(vd[i]) / bc2_sqrt + epsf;
        p[i] -= step_size * md[i] / denom;
    }
}
