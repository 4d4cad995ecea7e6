/* The small whole-tensor ops: bias add and its gradient, axpy, scale, and the
 * sum of squares behind the global grad norm. Reductions accumulate in double
 * (over T tokens, or over every parameter of a model, fp32 sums would lose
 * digits); each output element has one owner thread, so no atomics and the
 * result does not depend on the thread count: sum_squares sums fixed blocks
 * and adds the block sums in order, so a resumed run's gradient norms (and
 * clipping) repeat bit for bit. */
#include <assert.h>

#include "backend/cpu/cpu_ops.h"

void cpu_add_bias(struct backend *b, struct tensor *y, const struct tensor *bias)
{
    (void)b;
    assert(y->dtype == DTYPE_F32 && bias->dtype == DTYPE_F32);
    int64_t rows = cpu_rows(y), n = cpu_cols(y);
    assert(tensor_numel(bias) == n);
    float *yd = y->data;          /* [rows, n] */
    const float *bd = bias->data; /* [n] */
#pragma omp parallel for
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++)
            yd[r * n + j] += bd[j];
}

void cpu_bias_backward(struct backend *b, struct tensor *dbias, const struct tensor *dy)
{
    (void)b;
    assert(dbias->dtype == DTYPE_F32 && dy->dtype == DTYPE_F32);
    int64_t rows = cpu_rows(dy), n = cpu_cols(dy);
    assert(tensor_numel(dbias) == n);
    float *db = dbias->data;   /* [n] */
    const float *g = dy->data; /* [rows, n] */
#pragma omp parallel for
    for (int64_t j0 = 0; j0 < n; j0 += CPU_COLS_PER_TASK) {
        int64_t j1 = j0 + CPU_COLS_PER_TASK < n ? j0 + CPU_COLS_PER_TASK : n;
        double sum[CPU_COLS_PER_TASK] = {0};
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = j0; j < j1; j++)
                sum[j - j0] += g[r * n + j];
        for (int64_t j = j0; j < j1; j++)
            db[j] += (float)sum[j - j0];
    }
}

void cpu_axpy(struct backend *b, struct tensor *y, float alpha, const struct tensor *x)
{
    (void)b;
    assert(y->dtype == DTYPE_F32 && x->dtype == DTYPE_F32);
    int64_t n = tensor_numel(y);
    assert(tensor_numel(x) == n);
    float *yd = y->data;
    const float *xd = x->data;
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        yd[i] += alpha * xd[i];
}

double cpu_sum_squares(struct backend *b, const struct tensor *x)
{
    (void)b;
    assert(x->dtype == DTYPE_F32);
    int64_t n = tensor_numel(x);
    const float *xd = x->data;
    enum { BLOCK = 4096, MAX_BLOCKS = 256 };
    double part[MAX_BLOCKS];
    int64_t blocks = (n + BLOCK - 1) / BLOCK, per = 1;
    while (blocks > MAX_BLOCKS) { /* coarser blocks for long tensors, still a fixed split */
        per *= 2;
        blocks = (n + BLOCK * per - 1) / (BLOCK * per);
    }
#pragma omp parallel for
    for (int64_t k = 0; k < blocks; k++) {
        double s = 0;
        int64_t end = (k + 1) * BLOCK * per < n ? (k + 1) * BLOCK * per : n;
        for (int64_t i = k * BLOCK * per; i < end; i++)
            s += (double)xd[i] * xd[i];
        part[k] = s;
    }
    double sum = 0;
    for (int64_t k = 0; k < blocks; k++)
        sum += part[k];
    return sum;
}

void cpu_scale(struct backend *b, struct tensor *x, float s)
{
    (void)b;
    assert(x->dtype == DTYPE_F32);
    int64_t n = tensor_numel(x);
    float *xd = x->data;
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        xd[i] *= s;
}
