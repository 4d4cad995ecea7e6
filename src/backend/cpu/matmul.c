/* matmul: cblas_sgemm (OpenBLAS) on slices of C's rows, one slice per OpenMP
 * thread, with OpenBLAS itself single-threaded. Two thread pools (OpenBLAS's
 * and OpenMP's, whose idle threads spin) would contend for the same cores:
 * measured 4x slower on the 2-core machine. Each element of C is still made by
 * one sgemm over the whole K, so the split does not change the sums' order.
 * Every tensor is read as a matrix [product of the leading dims, last dim],
 * so a [T, H, D] tensor is [T*H, D]: callers reshape to [T, H*D] when that is
 * what they mean. With beta == 0, c is not read (BLAS semantics). */
#include <assert.h>
#include <cblas.h>
#include <limits.h>
#include <omp.h>

#include "backend/cpu/cpu_ops.h"

/* OpenBLAS's own entry point (cblas.h declares it in OpenBLAS builds). */
void openblas_set_num_threads(int num_threads);

void cpu_matmul(struct backend *b, struct tensor *c, const struct tensor *a, bool ta, const struct tensor *bm,
                bool tb, float alpha, float beta)
{
    (void)b;
    static int single_threaded_blas;
    if (!single_threaded_blas) {
        openblas_set_num_threads(1);
        single_threaded_blas = 1;
    }
    assert(c->dtype == DTYPE_F32 && a->dtype == DTYPE_F32 && bm->dtype == DTYPE_F32);
    int64_t m = cpu_rows(c), n = cpu_cols(c);
    int64_t k = ta ? cpu_rows(a) : cpu_cols(a);
    /* a is stored [M, K] or, transposed, [K, M]; b [K, N] or [N, K]. */
    assert((ta ? cpu_cols(a) : cpu_rows(a)) == m);
    assert((tb ? cpu_cols(bm) : cpu_rows(bm)) == k);
    assert((tb ? cpu_rows(bm) : cpu_cols(bm)) == n);
    assert(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && cpu_cols(a) <= INT_MAX && cpu_cols(bm) <= INT_MAX);
    int lda = (int)cpu_cols(a), ldb = (int)cpu_cols(bm);
    const float *ad = a->data;
    float *cd = c->data;
    /* Slices of at least 64 rows; small products run on one thread. */
    int64_t slices = m / 64 < omp_get_max_threads() ? m / 64 : omp_get_max_threads();
    if (slices < 1)
        slices = 1;
#pragma omp parallel for if (slices > 1)
    for (int64_t s = 0; s < slices; s++) {
        int64_t r0 = m * s / slices, r1 = m * (s + 1) / slices;
        /* Rows r0.. of op(a): row r0 of a, or column r0 of a when transposed. */
        const float *as = ta ? ad + r0 : ad + r0 * lda;
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)(r1 - r0),
                    (int)n, (int)k, alpha, as, lda, bm->data, ldb, beta, cd + r0 * n, (int)n);
    }
}
