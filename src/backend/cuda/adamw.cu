/* AdamW as torch.optim.AdamW and cpu/adamw.c, operation for operation: the
 * scalar coefficients computed on the host in double and rounded once to
 * fp32, the per-element arithmetic in fp32 (IEEE sqrt and division: the
 * build does not use fast math). One thread per element, one tensor per
 * call; a multi-tensor launch is later work. */
#include <math.h>

#include "backend/cuda/cuda_ops.cuh"

/* p, g, m, v [n] fp32. */
static __global__ void adamw_kernel(float *p, const float *g, float *m, float *v, int64_t n, float decay,
                                    float w1, float b2, float w2, float step_size, float bc2_sqrt, float eps)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float gi = g[i], pi = p[i] * decay, mi = m[i], vi = v[i];
        mi += w1 * (gi - mi);
        vi = b2 * vi + w2 * gi * gi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi - step_size * mi / denom;
        m[i] = mi;
        v[i] = vi;
    }
}

extern "C" void cuda_adamw(struct backend *b, struct tensor *param, const struct tensor *grad, struct tensor *m,
                           struct tensor *v, double lr, double beta1, double beta2, double eps, double weight_decay,
                           int64_t step)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(param->dtype == DTYPE_F32 && grad->dtype == DTYPE_F32 && m->dtype == DTYPE_F32 &&
           v->dtype == DTYPE_F32 && step >= 1);
    int64_t n = tensor_numel(param);
    assert(tensor_numel(grad) == n && tensor_numel(m) == n && tensor_numel(v) == n);
    if (n == 0)
        return;
    float decay = (float)(1.0 - lr * weight_decay);
    float w1 = (float)(1.0 - beta1), b2 = (float)beta2, w2 = (float)(1.0 - beta2);
    float step_size = (float)(lr / (1.0 - pow(beta1, (double)step)));
    float bc2_sqrt = (float)sqrt(1.0 - pow(beta2, (double)step)), epsf = (float)eps;
    CUDA_LAUNCH(cb, adamw_kernel, cuda_blocks(n), CUDA_THREADS, 0, (float *)param->data, (const float *)grad->data,
                (float *)m->data, (float *)v->data, n, decay, w1, b2, w2, step_size, bc2_sqrt, epsf);
}
