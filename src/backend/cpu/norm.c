/* RMSNorm as Llama's (transformers' LlamaRMSNorm): y = w * (x * rstd), with
 * rstd = 1 / sqrt(mean(x^2) + eps) kept per row for the backward pass. The
 * mean of squares over C and the sums of the backward pass run in double
 * (the rows' as vec_math.h's cpu_vec_dot).
 *
 * Backward, with r = rstd and g = dy * w:
 *   dx = r * g - x * r^3 / C * sum_c(g_c * x_c)
 *   dw = sum over rows of dy * x * r
 * dw is a reduction over rows, so it gets its own loop over column blocks:
 * one owner per element, no atomics, the same bits for any thread count. */
#include <assert.h>
#include <math.h>

#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/vec_math.h"

void cpu_rmsnorm(struct backend *b, struct tensor *out, struct tensor *rstd, const struct tensor *x,
                 const struct tensor *w, float eps)
{
    (void)b;
    assert(out->dtype == DTYPE_F32 && rstd->dtype == DTYPE_F32 && x->dtype == DTYPE_F32 &&
           w->dtype == DTYPE_F32);
    int64_t T = cpu_rows(x), C = cpu_cols(x);
    assert(tensor_numel(out) == T * C && tensor_numel(rstd) == T && tensor_numel(w) == C);
    float *y = out->data;      /* [T, C] */
    float *rs = rstd->data;    /* [T] */
    const float *xd = x->data; /* [T, C] */
    const float *wd = w->data; /* [C] */
#pragma omp parallel for
    for (int64_t t = 0; t < T; t++) {
        const float *xt = xd + t * C;
        double ss = cpu_vec_dot(xt, xt, NULL, C);
        float r = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
        rs[t] = r;
#pragma omp simd
        for (int64_t c = 0; c < C; c++)
            y[t * C + c] = wd[c] * (xt[c] * r);
    }
}

void cpu_rmsnorm_backward(struct backend *b, struct tensor *dx, struct tensor *dw, const struct tensor *dout,
                          const struct tensor *x, const struct tensor *w, const struct tensor *rstd)
{
    (void)b;
    assert(dx->dtype == DTYPE_F32 && dout->dtype == DTYPE_F32 && x->dtype == DTYPE_F32 &&
           w->dtype == DTYPE_F32 && rstd->dtype == DTYPE_F32);
    int64_t T = cpu_rows(x), C = cpu_cols(x);
    assert(tensor_numel(dx) == T * C && tensor_numel(dout) == T * C && tensor_numel(w) == C &&
           tensor_numel(rstd) == T);
    float *dxd = dx->data;        /* [T, C] */
    const float *g = dout->data;  /* [T, C] */
    const float *xd = x->data;    /* [T, C] */
    const float *wd = w->data;    /* [C] */
    const float *rs = rstd->data; /* [T] */
#pragma omp parallel for
    for (int64_t t = 0; t < T; t++) {
        const float *xt = xd + t * C, *gt = g + t * C;
        double dot = cpu_vec_dot(gt, wd, xt, C);
        float r = rs[t];
        float k = (float)((double)r * r * r * dot / (double)C);
#pragma omp simd
        for (int64_t c = 0; c < C; c++)
            dxd[t * C + c] += r * wd[c] * gt[c] - k * xt[c];
    }
    if (!dw)
        return;
    assert(dw->dtype == DTYPE_F32 && tensor_numel(dw) == C);
    float *dwd = dw->data; /* [C] */
#pragma omp parallel for
    for (int64_t c0 = 0; c0 < C; c0 += CPU_COLS_PER_TASK) {
        int64_t c1 = c0 + CPU_COLS_PER_TASK < C ? c0 + CPU_COLS_PER_TASK : C;
        double sum[CPU_COLS_PER_TASK] = {0};
        for (int64_t t = 0; t < T; t++)
            for (int64_t c = c0; c < c1; c++)
                sum[c - c0] += (double)g[t * C + c] * xd[t * C + c] * rs[t];
        for (int64_t c = c0; c < c1; c++)
            dwd[c] += (float)sum[c - c0];
    }
}
