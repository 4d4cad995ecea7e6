/* Token embedding lookup and its gradient. The backward pass scatters rows
 * into the table and ids repeat, so it is parallel over blocks of columns,
 * not over tokens: each task owns a slice of C for every token and adds in
 * token order, race-free and bitwise the same for any thread count. */
#include <assert.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"

void cpu_embedding(struct backend *b, struct tensor *out, const struct tensor *table,
                   const struct tensor *ids)
{
    (void)b;
    assert(out->dtype == DTYPE_F32 && table->dtype == DTYPE_F32 && ids->dtype == DTYPE_I32);
    int64_t T = tensor_numel(ids), C = cpu_cols(table);
    assert(cpu_rows(out) == T && cpu_cols(out) == C);
    float *o = out->data;          /* [T, C] */
    const float *w = table->data;  /* [V, C] */
    const int32_t *id = ids->data; /* [T] */
#pragma omp parallel for
    for (int64_t t = 0; t < T; t++) {
        assert(id[t] >= 0 && id[t] < cpu_rows(table));
        memcpy(o + t * C, w + (int64_t)id[t] * C, (size_t)C * sizeof(float));
    }
}

void cpu_embedding_backward(struct backend *b, struct tensor *dtable, const struct tensor *dout,
                            const struct tensor *ids)
{
    (void)b;
    assert(dtable->dtype == DTYPE_F32 && dout->dtype == DTYPE_F32 && ids->dtype == DTYPE_I32);
    int64_t T = tensor_numel(ids), C = cpu_cols(dtable);
    assert(cpu_rows(dout) == T && cpu_cols(dout) == C);
    float *dw = dtable->data;      /* [V, C] */
    const float *g = dout->data;   /* [T, C] */
    const int32_t *id = ids->data; /* [T] */
#pragma omp parallel for
    for (int64_t c0 = 0; c0 < C; c0 += CPU_COLS_PER_TASK) {
        int64_t c1 = c0 + CPU_COLS_PER_TASK < C ? c0 + CPU_COLS_PER_TASK : C;
        for (int64_t t = 0; t < T; t++) {
            assert(id[t] >= 0 && id[t] < cpu_rows(dtable));
            for (int64_t c = c0; c < c1; c++)
                dw[(int64_t)id[t] * C + c] += g[t * C + c];
        }
    }
}
