/* matmul: cblas_sgemm (OpenBLAS) on slices of C, one slice per OpenMP
 * thread, with OpenBLAS itself single-threaded. Two thread pools (OpenBLAS's
 * and OpenMP's, whose idle threads spin) would contend for the same cores:
 * measured 4x slower on the 2-core machine. Each element of C is still made by
 * one sgemm over the whole K, so the split does not change the sums' order;
 * slices start at multiples of MATMUL_ALIGN, where OpenBLAS's SkylakeX and
 * Prescott kernels give every element the same bits whatever the slices
 * (checked by tests/test_cpu_ops.c). Its Haswell / Zen kernels do not: there a
 * product's bits depend on the thread count, split or not (as before). A
 * slice is also never smaller than MATMUL_MIN_WORK multiply-adds: OpenBLAS
 * computes products up to that size with other kernels (SkylakeX's "small
 * matrix" ones, which round differently), so a split must not move a product
 * from one kind to the other; tiny products are not worth a thread anyway.
 * The slices cut the longer side of C [M, N]: every sgemm packs all of the
 * operand along the side it does not cut, so cutting rows makes each thread
 * pack all of b ([K, N]) and cutting columns all of a ([M, K]). For the LM
 * head (M = a block of ~130 tokens, N = a 32000 vocabulary) cutting rows had
 * both threads pack the whole 98 MB weight.
 * Every tensor is read as a matrix [product of the leading dims, last dim],
 * so a [T, H, D] tensor is [T*H, D]: callers reshape to [T, H*D] when that is
 * what they mean. With beta == 0, c is not read (BLAS semantics). */
#include <assert.h>
#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"

/* Slice boundaries are multiples of this many rows or columns. */
#define MATMUL_ALIGN 16
/* OpenBLAS 0.3's bound (M N K <= 100^3) for its small-matrix kernels. */
#define MATMUL_MIN_WORK 1000000.0

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
    const float *bd = bm->data;
    bool by_cols = n > m;
    int64_t side = by_cols ? n : m;
    /* Slices of at least 64 rows or columns and MATMUL_MIN_WORK (the smallest
     * slice is at most MATMUL_ALIGN short of the mean); else fewer. */
    int64_t slices = omp_get_max_threads(), other = by_cols ? m : n;
    while (slices > 1 && (side / slices < 64 || (double)(side / slices - MATMUL_ALIGN) * (double)other * (double)k <=
                                                      MATMUL_MIN_WORK))
        slices--;
#pragma omp parallel for if (slices > 1)
    for (int64_t s = 0; s < slices; s++) {
        int64_t i0 = side * s / slices / MATMUL_ALIGN * MATMUL_ALIGN;
        int64_t i1 = s + 1 == slices ? side : side * (s + 1) / slices / MATMUL_ALIGN * MATMUL_ALIGN;
        /* Rows i0.. of op(a): row i0 of a, or column i0 of a when transposed;
         * columns i0.. of op(b): column i0 of b, or row i0 when transposed. */
        const float *as = by_cols ? ad : ta ? ad + i0 : ad + i0 * lda;
        const float *bs = !by_cols ? bd : tb ? bd + i0 * ldb : bd + i0;
        int64_t rows = by_cols ? m : i1 - i0, cols = by_cols ? i1 - i0 : n;
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)rows,
                    (int)cols, (int)k, alpha, as, lda, bs, ldb, beta, cd + (by_cols ? i0 : i0 * n), (int)n);
    }
}

/* The addend copied into d first (BLAS has no separate C), then beta 1. */
void cpu_matmul_add(struct backend *b, struct tensor *d, const struct tensor *c, const struct tensor *a, bool ta,
                    const struct tensor *bm, bool tb, float alpha)
{
    assert(d->dtype == c->dtype && tensor_numel(d) == tensor_numel(c));
    if (d->data != c->data)
        memmove(d->data, c->data, (size_t)dtype_bytes(d->dtype, tensor_numel(d)));
    cpu_matmul(b, d, a, ta, bm, tb, alpha, 1.0f);
}
