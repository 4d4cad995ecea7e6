/* Tensor views (backend.h): pure bookkeeping over shape and pointer, valid for
 * every backend since no view ever touches the data. Bad shapes are
 * programmer errors, so they assert rather than return a status. */
#include "backend/backend.h"
#include "base/mxfp4.h"

#include <assert.h>

int64_t tensor_numel(const struct tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->shape[i];
    return n;
}

struct tensor tensor_rows(const struct tensor *t, int64_t row0, int64_t rows)
{
    assert(t->rank >= 1 && row0 >= 0 && rows >= 0 && row0 + rows <= t->shape[0]);
    int64_t row_elems = t->shape[0] ? tensor_numel(t) / t->shape[0] : 0;
    struct tensor v = *t;
    v.data = (char *)t->data + dtype_bytes(t->dtype, row0 * row_elems);
    if (t->scales) /* rows are whole MXFP4 blocks */
        v.scales = (char *)t->scales + row0 * row_elems / MXFP4_BLOCK;
    v.shape[0] = rows;
    return v;
}

struct tensor tensor_reshape(const struct tensor *t, int rank, const int64_t *shape)
{
    assert(rank >= 1 && rank <= TENSOR_MAX_RANK);
    struct tensor v = {.data = t->data, .dtype = t->dtype, .rank = rank, .scales = t->scales};
    for (int i = 0; i < rank; i++)
        v.shape[i] = shape[i];
    assert(tensor_numel(&v) == tensor_numel(t));
    return v;
}

struct tensor tensor_2d(void *data, enum dtype dtype, int64_t rows, int64_t cols)
{
    return (struct tensor){.data = data, .dtype = dtype, .rank = 2, .shape = {rows, cols}};
}

struct tensor tensor_1d(void *data, enum dtype dtype, int64_t n)
{
    return (struct tensor){.data = data, .dtype = dtype, .rank = 1, .shape = {n}};
}
