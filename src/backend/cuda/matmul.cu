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
#include <string.h>

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

/* What one GEMM shape needs from cuBLASLt: the descriptors and the algorithm
 * its heuristic chose. Made on a shape's first call and kept for the
 * backend's life: a training step calls a few dozen shapes thousands of
 * times, and the heuristic alone costs more than a small GEMM. A packed run's
 * batches differ in token count, so a long run meets thousands of shapes:
 * they are found through a hash index (cb->lt_slots), not a scan. */
struct lt_plan {
    int64_t M, N, K, lda, ldb, ldc;
    enum dtype a_dtype, b_dtype, c_dtype;
    bool ta, tb;
    uint32_t al_a, al_b, al_c;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
};

static void lt_plan_destroy(struct lt_plan *p)
{
    if (p->lc)
        cublasLtMatrixLayoutDestroy(p->lc);
    if (p->lb)
        cublasLtMatrixLayoutDestroy(p->lb);
    if (p->la)
        cublasLtMatrixLayoutDestroy(p->la);
    if (p->op)
        cublasLtMatmulDescDestroy(p->op);
}

void cuda_lt_plans_free(struct cuda_backend *cb)
{
    for (int i = 0; i < cb->n_lt_plans; i++)
        lt_plan_destroy(&cb->lt_plans[i]);
    free(cb->lt_plans);
    free(cb->lt_slots);
    cb->lt_plans = NULL;
    cb->lt_slots = NULL;
    cb->n_lt_plans = cb->cap_lt_plans = 0;
}

static bool same_shape(const struct lt_plan *p, const struct lt_plan *key)
{
    return p->M == key->M && p->N == key->N && p->K == key->K && p->lda == key->lda && p->ldb == key->ldb &&
           p->ldc == key->ldc && p->a_dtype == key->a_dtype && p->b_dtype == key->b_dtype &&
           p->c_dtype == key->c_dtype && p->ta == key->ta && p->tb == key->tb && p->al_a == key->al_a &&
           p->al_b == key->al_b && p->al_c == key->al_c;
}

/* The first slot of key's probe sequence in an index of `slots` (a power of two) entries. */
static uint32_t shape_slot(const struct lt_plan *key, uint32_t slots)
{
    const uint64_t f[] = {(uint64_t)key->M, (uint64_t)key->N, (uint64_t)key->K, (uint64_t)key->lda,
                          (uint64_t)key->ldb, (uint64_t)key->ldc,
                          (uint64_t)key->a_dtype | (uint64_t)key->b_dtype << 8 | (uint64_t)key->c_dtype << 16 |
                              (uint64_t)key->ta << 24 | (uint64_t)key->tb << 25,
                          (uint64_t)key->al_a | (uint64_t)key->al_b << 16 | (uint64_t)key->al_c << 32};
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (uint64_t x : f)
        h = (h ^ x) * 0xff51afd7ed558ccdull, h ^= h >> 32;
    return (uint32_t)h & (slots - 1);
}

/* Puts plan i into the index (2 * cap_lt_plans slots: at most half full). */
static void index_plan(struct cuda_backend *cb, int i)
{
    uint32_t slots = 2 * (uint32_t)cb->cap_lt_plans, s = shape_slot(&cb->lt_plans[i], slots);
    while (cb->lt_slots[s])
        s = (s + 1) & (slots - 1);
    cb->lt_slots[s] = i + 1;
}

/* Fills p's descriptors and algorithm for its shape: `hint` (another shape's choice) where cuBLASLt
 * confirms it runs this one, else its heuristic's; false (recorded in cb) on failure. */
static bool lt_plan_make(struct cuda_backend *cb, struct lt_plan *p, const cublasLtMatmulAlgo_t *hint)
{
    cublasOperation_t opa = p->tb ? CUBLAS_OP_T : CUBLAS_OP_N; /* cuBLASLt's A is our b */
    cublasOperation_t opb = p->ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    int64_t M = p->M, N = p->N, K = p->K;
    CUBLAS_CHECK(cb, cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(cb, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    CUBLAS_CHECK(cb, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    /* Stored shapes, column-major: our b is [N, K] (or [K, N] transposed), our a [K, M] (or [M, K]). */
    CUBLAS_CHECK(cb, cublasLtMatrixLayoutCreate(&p->la, lt_type(p->b_dtype), p->tb ? K : N, p->tb ? N : K, p->ldb));
    CUBLAS_CHECK(cb, cublasLtMatrixLayoutCreate(&p->lb, lt_type(p->a_dtype), p->ta ? M : K, p->ta ? K : M, p->lda));
    CUBLAS_CHECK(cb, cublasLtMatrixLayoutCreate(&p->lc, lt_type(p->c_dtype), N, M, p->ldc));
    cublasLtMatmulHeuristicResult_t checked;
    if (hint && !cb->failed &&
        cublasLtMatmulAlgoCheck(cb->lt, p->op, p->la, p->lb, p->lc, p->lc, hint, &checked) == CUBLAS_STATUS_SUCCESS &&
        checked.workspaceSize <= cb->lt_workspace_bytes) {
        p->algo = *hint;
        return true;
    }
    cublasLtMatmulPreference_t pref = NULL;
    CUBLAS_CHECK(cb, cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = cb->lt_workspace_bytes;
    CUBLAS_CHECK(cb, cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    const struct {
        cublasLtMatmulPreferenceAttributes_t attr;
        uint32_t *value;
    } al[] = {{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &p->al_b}, {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &p->al_a},
              {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &p->al_c}, {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &p->al_c}};
    for (const auto &x : al)
        CUBLAS_CHECK(cb, cublasLtMatmulPreferenceSetAttribute(pref, x.attr, x.value, sizeof *x.value));
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    if (!cb->failed)
        CUBLAS_CHECK(cb, cublasLtMatmulAlgoGetHeuristic(cb->lt, p->op, p->la, p->lb, p->lc, p->lc, pref, 1, &heur, &found));
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
    if (!cb->failed && found == 0)
        cuda_record_error(cb, "cublasLtMatmulAlgoGetHeuristic", "no algorithm for this GEMM", __func__, __FILE__,
                          __LINE__);
    if (cb->failed)
        return false;
    p->algo = heur.algo;
    return true;
}

/* Token counts are rounded up to this for the heuristic's choice (below). */
#define LT_ROWS_ROUND 128

/* key with its token dimension rounded up to a multiple of LT_ROWS_ROUND where that dimension is a row
 * count of every operand (M unless a is transposed; K when only a is), so the layouts stay valid. */
static struct lt_plan rounded_shape(const struct lt_plan *key)
{
    struct lt_plan r = *key;
    if (!key->ta)
        r.M = (key->M + LT_ROWS_ROUND - 1) / LT_ROWS_ROUND * LT_ROWS_ROUND;
    else if (!key->tb)
        r.K = (key->K + LT_ROWS_ROUND - 1) / LT_ROWS_ROUND * LT_ROWS_ROUND;
    return r;
}

/* The plan of this shape, made on first use; NULL on failure. A packed run's batches differ in token count
 * and each new count brings its shapes, whose heuristic runs while the device waits; a shape whose token
 * count is not a multiple of LT_ROWS_ROUND takes the algorithm chosen for the count rounded up (made once
 * per rounded count) where cuBLASLt confirms it runs, so the choice is still a function of the shape. */
static const struct lt_plan *lt_plan_for(struct cuda_backend *cb, const struct lt_plan *key)
{
    if (cb->cap_lt_plans) {
        uint32_t slots = 2 * (uint32_t)cb->cap_lt_plans;
        for (uint32_t s = shape_slot(key, slots); cb->lt_slots[s]; s = (s + 1) & (slots - 1))
            if (same_shape(&cb->lt_plans[cb->lt_slots[s] - 1], key))
                return &cb->lt_plans[cb->lt_slots[s] - 1];
    }
    struct lt_plan round = rounded_shape(key);
    cublasLtMatmulAlgo_t hint;
    bool hinted = false;
    if (!same_shape(&round, key)) { /* the rounded shape is its own rounding: one level deep */
        const struct lt_plan *r = lt_plan_for(cb, &round);
        if (!r)
            return NULL;
        hint = r->algo; /* copied: adding this shape's plan may move the table */
        hinted = true;
    }
    if (cb->n_lt_plans == cb->cap_lt_plans) {
        int cap = cb->cap_lt_plans ? 2 * cb->cap_lt_plans : 64;
        struct lt_plan *grown = (struct lt_plan *)realloc(cb->lt_plans, sizeof *grown * (size_t)cap);
        int *slots = grown ? (int *)calloc(2 * (size_t)cap, sizeof *slots) : NULL;
        if (!slots) {
            if (grown)
                cb->lt_plans = grown;
            cuda_record_error(cb, "realloc", "out of host memory for GEMM plans", __func__, __FILE__, __LINE__);
            return NULL;
        }
        cb->lt_plans = grown;
        cb->cap_lt_plans = cap;
        free(cb->lt_slots);
        cb->lt_slots = slots;
        for (int i = 0; i < cb->n_lt_plans; i++)
            index_plan(cb, i);
    }
    struct lt_plan *p = &cb->lt_plans[cb->n_lt_plans];
    *p = *key;
    p->op = NULL, p->la = p->lb = p->lc = NULL;
    if (!lt_plan_make(cb, p, hinted ? &hint : NULL)) {
        lt_plan_destroy(p);
        return NULL;
    }
    index_plan(cb, cb->n_lt_plans);
    cb->n_lt_plans++;
    return p;
}

/* d[M, N] (row stride ldc) = alpha op(a)[M, K] op(b)[K, N] + beta c, c laid out as d (cuBLASLt reads C and
 * writes D; they may be one matrix). */
static void lt_gemm(struct cuda_backend *cb, int64_t M, int64_t N, int64_t K, struct operand a, struct operand b,
                    const void *c, void *d, enum dtype c_dtype, int64_t ldc, float alpha, float beta)
{
    if (cb->failed)
        return;
    struct lt_plan key;
    memset(&key, 0, sizeof key);
    key.M = M, key.N = N, key.K = K, key.lda = a.ld, key.ldb = b.ld, key.ldc = ldc;
    key.a_dtype = a.dtype, key.b_dtype = b.dtype, key.c_dtype = c_dtype, key.ta = a.trans, key.tb = b.trans;
    uint32_t al_c = alignment(c), al_d = alignment(d);
    key.al_a = alignment(a.data), key.al_b = alignment(b.data), key.al_c = al_c < al_d ? al_c : al_d;
    const struct lt_plan *p = lt_plan_for(cb, &key);
    if (p)
        CUBLAS_CHECK(cb, cublasLtMatmul(cb->lt, p->op, &alpha, b.data, p->la, a.data, p->lb, &beta, c, p->lc, d, p->lc,
                                        &p->algo, cb->lt_workspace, cb->lt_workspace_bytes, cb->stream));
}

/* d = alpha op(a) op(bm) + beta c; c and d of one shape and dtype (matmul's c is both). */
static void gemm(struct cuda_backend *cb, struct tensor *d, const struct tensor *c, const struct tensor *a, bool ta,
                 const struct tensor *bm, bool tb, float alpha, float beta)
{
    assert((d->dtype == DTYPE_F32 || d->dtype == DTYPE_BF16) && (a->dtype == DTYPE_F32 || a->dtype == DTYPE_BF16) &&
           (bm->dtype == DTYPE_F32 || bm->dtype == DTYPE_BF16));
    assert(c->dtype == d->dtype && tensor_numel(c) == tensor_numel(d));
    int64_t M = cuda_rows(d), N = cuda_cols(d);
    int64_t K = ta ? cuda_rows(a) : cuda_cols(a);
    /* a is stored [M, K] or, transposed, [K, M]; b [K, N] or [N, K]. */
    assert((ta ? cuda_cols(a) : cuda_rows(a)) == M);
    assert((tb ? cuda_cols(bm) : cuda_rows(bm)) == K);
    assert((tb ? cuda_rows(bm) : cuda_cols(bm)) == N);
    assert(K > 0);
    if (M == 0 || N == 0)
        return;
    struct operand oa = {a->data, a->dtype, ta, cuda_cols(a)}, ob = {bm->data, bm->dtype, tb, cuda_cols(bm)};
    if (a->dtype == DTYPE_F32 && bm->dtype == DTYPE_F32 && d->dtype == DTYPE_F32) {
        lt_gemm(cb, M, N, K, oa, ob, c->data, d->data, d->dtype, N, alpha, beta);
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
            int64_t at = dtype_bytes(d->dtype, m0 * N + n0);
            lt_gemm(cb, mm, nn, K, sa, sb, (const char *)c->data + at, (char *)d->data + at, d->dtype, N, alpha,
                    beta);
        }
    }
}

extern "C" void cuda_matmul(struct backend *b, struct tensor *c, const struct tensor *a, bool ta,
                            const struct tensor *bm, bool tb, float alpha, float beta)
{
    gemm(cuda_of(b), c, c, a, ta, bm, tb, alpha, beta);
}

extern "C" void cuda_matmul_add(struct backend *b, struct tensor *d, const struct tensor *c, const struct tensor *a,
                                bool ta, const struct tensor *bm, bool tb, float alpha)
{
    gemm(cuda_of(b), d, c, a, ta, bm, tb, alpha, 1.0f);
}
