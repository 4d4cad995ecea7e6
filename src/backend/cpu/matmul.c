/* matmul: one cblas_sgemm call (OpenBLAS, threaded by itself). Every tensor
 * is read as a matrix [product of the leading dims, last dim], so a [T, H, D]
 * tensor is [T*H, D]: callers reshape to [T, H*D] when that is what they mean.
 * With beta == 0, c is not read (BLAS semantics): it may hold garbage or NaN. */
#include <assert.h>
#include <cblas.h>
#include <limits.h>

#include "backend/cpu/cpu_ops.h"

void cpu_matmul(struct backend *b, struct tensor *c, const struct tensor *a, bool ta, const struct tensor *bm,
                bool tb, float alpha, float beta)
{
    (void)b;
    assert(c->dtype == DTYPE_F32 && a->dtype == DTYPE_F32 && bm->dtype == DTYPE_F32);
    int64_t m = cpu_rows(c), n = cpu_cols(c);
    int64_t k = ta ? cpu_rows(a) : cpu_cols(a);
    /* a is stored [M, K] or, transposed, [K, M]; b [K, N] or [N, K]. */
    assert((ta ? cpu_cols(a) : cpu_rows(a)) == m);
    assert((tb ? cpu_cols(bm) : cpu_rows(bm)) == k);
    assert((tb ? cpu_rows(bm) : cpu_cols(bm)) == n);
    assert(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && cpu_cols(a) <= INT_MAX && cpu_cols(bm) <= INT_MAX);
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                (int)k, alpha, a->data, (int)cpu_cols(a), bm->data, (int)cpu_cols(bm), beta, c->data, (int)n);
}
