/* The small whole-tensor ops: bias add and its gradient, axpy, scale, and the
 * sum of squares behind the global grad norm; and the deterministic column
 * sums that the bias and norm-weight gradients share. Reductions accumulate
 * in double, as the CPU's do, over fixed splits summed in a fixed order, so a
 * result depends on the input alone: not on the GPU, its SM count or the run
 * (a resumed run's grad norms and clipping repeat bit for bit). */
#include "backend/cuda/cuda_ops.cuh"

/* y[rows, n] += bias[n]. */
static __global__ void add_bias_kernel(void *y, int y_dtype, const void *bias, int bias_dtype, int64_t rows,
                                       int64_t n)
{
    int64_t total = rows * n;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        cuda_store(y, y_dtype, i, cuda_load(y, y_dtype, i) + cuda_load(bias, bias_dtype, i % n));
}

extern "C" void cuda_add_bias(struct backend *b, struct tensor *y, const struct tensor *bias)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(cuda_is_float(y->dtype) && cuda_is_float(bias->dtype));
    int64_t rows = cuda_rows(y), n = cuda_cols(y);
    assert(tensor_numel(bias) == n);
    if (rows * n == 0)
        return;
    CUDA_LAUNCH(cb, add_bias_kernel, cuda_blocks(rows * n), CUDA_THREADS, 0, y->data, y->dtype, bias->data,
                bias->dtype, rows, n);
}

/* ---- deterministic column sums ---- */

int64_t cuda_column_chunks(const struct cuda_backend *cb, int64_t rows, int64_t cols)
{
    int64_t fit = (int64_t)(cb->reduce_bytes / sizeof(double)) / (cols > 0 ? cols : 1);
    assert(fit >= 1 && "column sums: more columns than the reduction scratch holds");
    int64_t chunks = (rows + 31) / 32; /* at least 32 rows a chunk */
    chunks = chunks > 256 ? 256 : chunks;
    chunks = chunks > fit ? fit : chunks;
    return chunks < 1 ? 1 : chunks;
}

/* dst[c] += sum over k of partial[k, c], k in order. */
static __global__ void column_sums_finish_kernel(void *dst, int dst_dtype, const double *partial, int64_t chunks,
                                                 int64_t cols)
{
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c >= cols)
        return;
    double s = 0;
    for (int64_t k = 0; k < chunks; k++)
        s += partial[k * cols + c];
    cuda_store(dst, dst_dtype, c, cuda_load(dst, dst_dtype, c) + (float)s);
}

void cuda_column_sums_finish(struct cuda_backend *cb, struct tensor *dst, int64_t chunks, int64_t cols)
{
    CUDA_LAUNCH(cb, column_sums_finish_kernel, (unsigned)((cols + CUDA_THREADS - 1) / CUDA_THREADS), CUDA_THREADS, 0,
                dst->data, dst->dtype, (const double *)cb->reduce, chunks, cols);
}

/* partial[k, c] = sum of dy[r, c] over chunk k's rows; grid (column blocks, chunks). */
static __global__ void bias_backward_kernel(double *partial, const void *dy, int dy_dtype, int64_t rows,
                                            int64_t cols, int64_t rows_per_chunk)
{
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, k = blockIdx.y;
    if (c >= cols)
        return;
    int64_t r0 = k * rows_per_chunk, r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    double s = 0;
    for (int64_t r = r0; r < r1; r++)
        s += cuda_load(dy, dy_dtype, r * cols + c);
    partial[k * cols + c] = s;
}

extern "C" void cuda_bias_backward(struct backend *b, struct tensor *dbias, const struct tensor *dy)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(cuda_is_float(dbias->dtype) && cuda_is_float(dy->dtype));
    int64_t rows = cuda_rows(dy), n = cuda_cols(dy);
    assert(tensor_numel(dbias) == n);
    if (n == 0 || rows == 0)
        return;
    int64_t chunks = cuda_column_chunks(cb, rows, n), per = (rows + chunks - 1) / chunks;
    dim3 grid((unsigned)((n + CUDA_THREADS - 1) / CUDA_THREADS), (unsigned)chunks);
    CUDA_LAUNCH(cb, bias_backward_kernel, grid, CUDA_THREADS, 0, (double *)cb->reduce, dy->data, dy->dtype, rows, n,
                per);
    cuda_column_sums_finish(cb, dbias, chunks, n);
}

/* ---- axpy, scale ---- */

static __global__ void axpy_kernel(void *y, int y_dtype, float alpha, const void *x, int x_dtype, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        cuda_store(y, y_dtype, i, cuda_load(y, y_dtype, i) + alpha * cuda_load(x, x_dtype, i));
}

extern "C" void cuda_axpy(struct backend *b, struct tensor *y, float alpha, const struct tensor *x)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(cuda_is_float(y->dtype) && cuda_is_float(x->dtype));
    int64_t n = tensor_numel(y);
    assert(tensor_numel(x) == n);
    if (n == 0)
        return;
    CUDA_LAUNCH(cb, axpy_kernel, cuda_blocks(n), CUDA_THREADS, 0, y->data, y->dtype, alpha, x->data, x->dtype, n);
}

static __global__ void scale_kernel(void *x, int x_dtype, float s, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        cuda_store(x, x_dtype, i, cuda_load(x, x_dtype, i) * s);
}

extern "C" void cuda_scale(struct backend *b, struct tensor *x, float s)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(cuda_is_float(x->dtype));
    int64_t n = tensor_numel(x);
    if (n == 0)
        return;
    CUDA_LAUNCH(cb, scale_kernel, cuda_blocks(n), CUDA_THREADS, 0, x->data, x->dtype, s, n);
}

/* ---- sum of squares ---- */

/* A fixed grid, whatever the GPU: SUMSQ_BLOCKS x CUDA_THREADS threads, thread
 * t summing elements t, t + stride, ... in double. */
#define SUMSQ_BLOCKS 256

static __global__ void sum_squares_partial_kernel(double *partial, const void *x, int x_dtype, int64_t n)
{
    __shared__ double shared[32];
    double s = 0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        double v = cuda_load(x, x_dtype, i);
        s += v * v;
    }
    s = cuda_block_sum_double(s, shared);
    if (threadIdx.x == 0)
        partial[blockIdx.x] = s;
}

/* result = sum of partial[0 .. SUMSQ_BLOCKS), one block of SUMSQ_BLOCKS threads. */
static __global__ void sum_squares_final_kernel(double *result, const double *partial)
{
    __shared__ double shared[32];
    double s = cuda_block_sum_double(partial[threadIdx.x], shared);
    if (threadIdx.x == 0)
        *result = s;
}

extern "C" double cuda_sum_squares(struct backend *b, const struct tensor *x)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(cuda_is_float(x->dtype));
    int64_t n = tensor_numel(x);
    if (n == 0)
        return 0;
    double *partial = (double *)cb->reduce, *result = partial + SUMSQ_BLOCKS, host = 0;
    CUDA_LAUNCH(cb, sum_squares_partial_kernel, SUMSQ_BLOCKS, CUDA_THREADS, 0, partial, x->data, x->dtype, n);
    CUDA_LAUNCH(cb, sum_squares_final_kernel, 1, SUMSQ_BLOCKS, 0, result, partial);
    CUDA_CHECK(cb, cudaMemcpyAsync(&host, result, sizeof host, cudaMemcpyDeviceToHost, cb->stream));
    CUDA_CHECK(cb, cudaStreamSynchronize(cb->stream));
    return host;
}
