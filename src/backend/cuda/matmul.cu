/* matmul through cuBLASLt, fp32 compute. Every tensor is read as a matrix
 * [product of the leading dims, last dim], as on the CPU. With beta == 0, c
 * is not read (BLAS semantics).
 *
 * Dtypes: a, b, c each F32 or BF16. All F32: an fp32 GEMM (CUBLAS_COMPUTE_32F,
 * no TF32), within fp32 rounding of the CPU. Otherwise a bf16 x bf16 GEMM
 * into c's dtype, the fp32 operands rounded to bf16 first, into the
 * backend's conversion scratch (one half for a, one for b). An operand larger
 * than its half is converted and multiplied in slices: rows of op(a) (slices
 * of M), columns of op(b) (slices of N), each slice's GEMM writing its block
 * of c. Slices only split the output, never K, so each output element is
 * still one GEMM's dot product.
 *
 * Row-major to cuBLASLt's column-major: a row-major [r, c] matrix with row
 * stride ld is the column-major [c, r] matrix with leading dimension ld, its
 * transpose. So row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T:
 * cuBLASLt's A is our b, its B our a, its m = N, n = M. */
#include "backend/cuda/cuda_ops.cuh"

/* An operand as stored: row-major, `trans` as in backend.h, row stride ld. */
struct operand {
    const void *data;
    enum dtype dtype;
    bool trans;
    int64_t ld;
};

static cudaDataType lt_type(enum dtype d) { return d == DTYPE_F32 ? CUDA_R_32F : CUDA_R_16BF; }

/* Largest power of two (at most 256) dividing the address: cuBLASLt's
 * heuristic assumes 256-byte alignment unless told otherwise. */
static uint32_t alignment(const void *p)
{
    uintptr_t u = (uintptr_t)p;
    uint32_t a = 256;
    while (a > 1 && u % a)
        a /= 2;
    return a;
}

/* c[M, N] (row stride ldc) = alpha op(a)[M, K] op(b)[K, N] + beta c. */
static void lt_gemm(struct cuda_backend *cb, int64_t M, int64_t N, int64_t K, struct operand a, struct operand b,
                    void *c, enum dtype c_dtype, int64_t ldc, float alpha, float beta)
{
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasOperation_t opa = b.trans ? CUBLAS_OP_T : CUBLAS_OP_N; /* cuBLASLt's A is our b */
    cublasOperation_t opb = a.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cb, cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(cb, cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    CUBLAS_CHECK(cb, cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    /* Stored shapes, column-major: our b is [N, K] (or [K, N] transposed), our a [K, M] (or [M, K]). */
    CUBLAS_CHECK(cb, cublasLtMatrixLayoutCreate(&la, lt_type(b.dtype), b.trans ? K : N, b.trans ? N : K, b.ld));
    CUBLAS_CHECK(cb, cublasLtMatrixLayoutCreate(&lb, lt_type(a.dtype), a.trans ? M : K, a.trans ? K : M, a.ld));
    CUBLAS_CHECK(cb, cublasLtMatrixLayoutCreate(&lc, lt_type(c_dtype), N, M, ldc));
    CUBLAS_CHECK(cb, cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = cb->lt_workspace_bytes;
    uint32_t al_a = alignment(b.data), al_b = alignment(a.data), al_c = alignment(c);
    CUBLAS_CHECK(cb, cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    CUBLAS_CHECK(cb, cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
                                                          sizeof al_a));
    CUBLAS_CHECK(cb, cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
                                                          sizeof al_b));
    CUBLAS_CHECK(cb, cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c,
                                                          sizeof al_c));
    CUBLAS_CHECK(cb, cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c,
                                                          sizeof al_c));
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    if (!cb->failed)
        CUBLAS_CHECK(cb, cublasLtMatmulAlgoGetHeuristic(cb->lt, op, la, lb, lc, lc, pref, 1, &heur, &found));
    if (!cb->failed && found == 0)
        cuda_record_error(cb, "cublasLtMatmulAlgoGetHeuristic", "no algorithm for this GEMM", __func__, __FILE__,
                          __LINE__);
    if (!cb->failed)
        CUBLAS_CHECK(cb, cublasLtMatmul(cb->lt, op, &alpha, b.data, la, a.data, lb, &beta, c, lc, c, lc, &heur.algo,
                                        cb->lt_workspace, ws, cb->stream));
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
    if (lc)
        cublasLtMatrixLayoutDestroy(lc);
    if (lb)
        cublasLtMatrixLayoutDestroy(lb);
    if (la)
        cublasLtMatrixLayoutDestroy(la);
    if (op)
        cublasLtMatmulDescDestroy(op);
}

extern "C" void cuda_matmul(struct backend *b, struct tensor *c, const struct tensor *a, bool ta,
                            const struct tensor *bm, bool tb, float alpha, float beta)
{
    struct cuda_backend *cb = cuda_of(b);
    assert((c->dtype == DTYPE_F32 || c->dtype == DTYPE_BF16) && (a->dtype == DTYPE_F32 || a->dtype == DTYPE_BF16) &&
           (bm->dtype == DTYPE_F32 || bm->dtype == DTYPE_BF16));
    int64_t M = cuda_rows(c), N = cuda_cols(c);
    int64_t K = ta ? cuda_rows(a) : cuda_cols(a);
    /* a is stored [M, K] or, transposed, [K, M]; b [K, N] or [N, K]. */
    assert((ta ? cuda_cols(a) : cuda_rows(a)) == M);
    assert((tb ? cuda_cols(bm) : cuda_rows(bm)) == K);
    assert((tb ? cuda_rows(bm) : cuda_cols(bm)) == N);
    assert(K > 0);
    if (M == 0 || N == 0)
        return;
    struct operand oa = {a->data, a->dtype, ta, cuda_cols(a)}, ob = {bm->data, bm->dtype, tb, cuda_cols(bm)};
    if (a->dtype == DTYPE_F32 && bm->dtype == DTYPE_F32 && c->dtype == DTYPE_F32) {
        lt_gemm(cb, M, N, K, oa, ob, c->data, c->dtype, N, alpha, beta);
        return;
    }
    /* Mixed: the fp32 operands go through bf16 copies, sliced to fit. */
    bool conv_a = a->dtype == DTYPE_F32, conv_b = bm->dtype == DTYPE_F32;
    size_t half = cb->convert_bytes / 2;
    char *scratch_a = (char *)cb->convert, *scratch_b = scratch_a + half;
    int64_t cap = (int64_t)(half / sizeof(__nv_bfloat16)) / K; /* rows of op(a) or columns of op(b) per slice */
    assert(((!conv_a && !conv_b) || cap >= 1) && "matmul: K too large for the conversion scratch");
    int64_t mc = conv_a && cap < M ? cap : M, nc = conv_b && cap < N ? cap : N;
    for (int64_t n0 = 0; n0 < N; n0 += nc) {
        int64_t nn = N - n0 < nc ? N - n0 : nc;
        struct operand sb = ob;
        if (conv_b) {
            /* op(b) columns [n0, n0 + nn): stored rows of b^T, or columns of b. */
            if (tb)
                cuda_convert_block_bf16(cb, scratch_b, ob.data, DTYPE_F32, ob.ld, n0, 0, nn, K);
            else
                cuda_convert_block_bf16(cb, scratch_b, ob.data, DTYPE_F32, ob.ld, 0, n0, K, nn);
            sb = (struct operand){scratch_b, DTYPE_BF16, tb, tb ? K : nn};
        } else {
            sb.data = (const char *)ob.data + dtype_bytes(ob.dtype, tb ? n0 * ob.ld : n0);
        }
        for (int64_t m0 = 0; m0 < M; m0 += mc) {
            int64_t mm = M - m0 < mc ? M - m0 : mc;
            struct operand sa = oa;
            if (conv_a) {
                /* op(a) rows [m0, m0 + mm): stored rows of a, or columns of a^T. */
                if (ta)
                    cuda_convert_block_bf16(cb, scratch_a, oa.data, DTYPE_F32, oa.ld, 0, m0, K, mm);
                else
                    cuda_convert_block_bf16(cb, scratch_a, oa.data, DTYPE_F32, oa.ld, m0, 0, mm, K);
                sa = (struct operand){scratch_a, DTYPE_BF16, ta, ta ? mm : K};
            } else {
                sa.data = (const char *)oa.data + dtype_bytes(oa.dtype, ta ? m0 : m0 * oa.ld);
            }
            void *cblk = (char *)c->data + dtype_bytes(c->dtype, m0 * N + n0);
            lt_gemm(cb, mm, nn, K, sa, sb, cblk, c->dtype, N, alpha, beta);
        }
    }
}
