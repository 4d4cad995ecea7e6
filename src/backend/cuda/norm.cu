/* RMSNorm as Llama's: y = w * (x * rstd), rstd = 1 / sqrt(mean(x^2) + eps),
 * kept per row for the backward pass. One block per row; the row sums in
 * double, as the CPU's. Backward, with r = rstd and g = dy * w:
 *   dx += r * g - x * r^3 / C * sum_c(g_c * x_c)   (one block per row)
 *   dw += sum over rows of dy * x * r              (deterministic column sums)
 * The model's case (bf16 x, w, y, dy; fp32 dx) reads and writes 8 elements
 * at a time (16-byte bf16 loads), the ops being bound by memory; any other
 * dtypes go element by element. Both sum in the same order per thread. */
#include "backend/cuda/cuda_ops.cuh"

/* Block t: out[t, :], rstd[t], all bf16 and C % 8 == 0. */
static __global__ void rmsnorm_bf16x8_kernel(uint4 *out, float *rstd, const uint4 *x, const uint4 *w, int64_t C,
                                             float eps)
{
    __shared__ double shared[32];
    const int64_t C8 = C / 8, row = (int64_t)blockIdx.x * C8;
    double ss = 0;
    for (int64_t c = threadIdx.x; c < C8; c += blockDim.x) {
        union bf16x8 v;
        v.u = x[row + c];
        for (int k = 0; k < 8; k++) {
            double f = __bfloat162float(v.h[k]);
            ss += f * f;
        }
    }
    ss = cuda_block_sum_double(ss, shared);
    float r = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
    if (threadIdx.x == 0)
        rstd[blockIdx.x] = r;
    for (int64_t c = threadIdx.x; c < C8; c += blockDim.x) {
        union bf16x8 v, g, o;
        v.u = x[row + c], g.u = w[c];
        for (int k = 0; k < 8; k++)
            o.h[k] = __float2bfloat16_rn(__bfloat162float(g.h[k]) * (__bfloat162float(v.h[k]) * r));
        out[row + c] = o.u;
    }
}

/* Block t: dx[t, :] (fp32) += ..., dout, x, w bf16, C % 8 == 0. */
static __global__ void rmsnorm_backward_bf16x8_kernel(float4 *dx, const uint4 *dout, const uint4 *x, const uint4 *w,
                                                      const float *rstd, int64_t C)
{
    __shared__ double shared[32];
    const int64_t C8 = C / 8, row = (int64_t)blockIdx.x * C8;
    double dot = 0;
    for (int64_t c = threadIdx.x; c < C8; c += blockDim.x) {
        union bf16x8 d, v, g;
        d.u = dout[row + c], v.u = x[row + c], g.u = w[c];
        for (int k = 0; k < 8; k++)
            dot += (double)__bfloat162float(d.h[k]) * __bfloat162float(g.h[k]) * __bfloat162float(v.h[k]);
    }
    dot = cuda_block_sum_double(dot, shared);
    float r = rstd[blockIdx.x];
    float k3 = (float)((double)r * r * r * dot / (double)C);
    for (int64_t c = threadIdx.x; c < C8; c += blockDim.x) {
        union bf16x8 d, v, g;
        d.u = dout[row + c], v.u = x[row + c], g.u = w[c];
        float4 *o = dx + 2 * (row + c);
        float4 lo = o[0], hi = o[1];
        float *a[8] = {&lo.x, &lo.y, &lo.z, &lo.w, &hi.x, &hi.y, &hi.z, &hi.w};
        for (int k = 0; k < 8; k++)
            *a[k] += r * __bfloat162float(g.h[k]) * __bfloat162float(d.h[k]) - k3 * __bfloat162float(v.h[k]);
        o[0] = lo, o[1] = hi;
    }
}

/* Block t: out[t, :], rstd[t]. */
static __global__ void rmsnorm_kernel(void *out, int out_dtype, float *rstd, const void *x, int x_dtype,
                                      const void *w, int w_dtype, int64_t C, float eps)
{
    __shared__ double shared[32];
    int64_t row = (int64_t)blockIdx.x * C;
    double ss = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        double v = cuda_load(x, x_dtype, row + c);
        ss += v * v;
    }
    ss = cuda_block_sum_double(ss, shared);
    float r = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
    if (threadIdx.x == 0)
        rstd[blockIdx.x] = r;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        cuda_store(out, out_dtype, row + c, cuda_load(w, w_dtype, c) * (cuda_load(x, x_dtype, row + c) * r));
}

extern "C" void cuda_rmsnorm(struct backend *b, struct tensor *out, struct tensor *rstd, const struct tensor *x,
                             const struct tensor *w, float eps)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(cuda_is_float(out->dtype) && rstd->dtype == DTYPE_F32 && cuda_is_float(x->dtype) &&
           cuda_is_float(w->dtype));
    int64_t T = cuda_rows(x), C = cuda_cols(x);
    assert(tensor_numel(out) == T * C && tensor_numel(rstd) == T && tensor_numel(w) == C);
    if (T * C == 0)
        return;
    const struct tensor *all[] = {out, x, w};
    if (wide_bf16(all, 3, C)) {
        CUDA_LAUNCH(cb, rmsnorm_bf16x8_kernel, (unsigned)T, CUDA_THREADS, 0, (uint4 *)out->data, (float *)rstd->data,
                    (const uint4 *)x->data, (const uint4 *)w->data, C, eps);
        return;
    }
    CUDA_LAUNCH(cb, rmsnorm_kernel, (unsigned)T, CUDA_THREADS, 0, out->data, out->dtype, (float *)rstd->data,
                x->data, x->dtype, w->data, w->dtype, C, eps);
}

/* Block t: dx[t, :] += ... */
static __global__ void rmsnorm_backward_kernel(void *dx, int dx_dtype, const void *dout, int dout_dtype,
                                               const void *x, int x_dtype, const void *w, int w_dtype,
                                               const float *rstd, int64_t C)
{
    __shared__ double shared[32];
    int64_t row = (int64_t)blockIdx.x * C;
    double dot = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        dot += (double)cuda_load(dout, dout_dtype, row + c) * cuda_load(w, w_dtype, c) * cuda_load(x, x_dtype, row + c);
    dot = cuda_block_sum_double(dot, shared);
    float r = rstd[blockIdx.x];
    float k = (float)((double)r * r * r * dot / (double)C);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float g = cuda_load(dout, dout_dtype, row + c), xv = cuda_load(x, x_dtype, row + c);
        float d = r * cuda_load(w, w_dtype, c) * g - k * xv;
        cuda_store(dx, dx_dtype, row + c, cuda_load(dx, dx_dtype, row + c) + d);
    }
}

/* partial[k, c] = sum of dout[t, c] * x[t, c] * rstd[t] over chunk k's rows. */
static __global__ void rmsnorm_dw_kernel(double *partial, const void *dout, int dout_dtype, const void *x,
                                         int x_dtype, const float *rstd, int64_t T, int64_t C, int64_t rows_per_chunk)
{
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, k = blockIdx.y;
    if (c >= C)
        return;
    int64_t t0 = k * rows_per_chunk, t1 = t0 + rows_per_chunk < T ? t0 + rows_per_chunk : T;
    double s = 0;
    for (int64_t t = t0; t < t1; t++)
        s += (double)cuda_load(dout, dout_dtype, t * C + c) * cuda_load(x, x_dtype, t * C + c) * rstd[t];
    partial[k * C + c] = s;
}

extern "C" void cuda_rmsnorm_backward(struct backend *b, struct tensor *dx, struct tensor *dw,
                                      const struct tensor *dout, const struct tensor *x, const struct tensor *w,
                                      const struct tensor *rstd)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(cuda_is_float(dx->dtype) && cuda_is_float(dout->dtype) && cuda_is_float(x->dtype) &&
           cuda_is_float(w->dtype) && rstd->dtype == DTYPE_F32);
    int64_t T = cuda_rows(x), C = cuda_cols(x);
    assert(tensor_numel(dx) == T * C && tensor_numel(dout) == T * C && tensor_numel(w) == C &&
           tensor_numel(rstd) == T);
    if (T * C == 0)
        return;
    const struct tensor *all[] = {dout, x, w};
    if (wide_bf16(all, 3, C) && dx->dtype == DTYPE_F32 && ((uintptr_t)dx->data & 15) == 0)
        CUDA_LAUNCH(cb, rmsnorm_backward_bf16x8_kernel, (unsigned)T, CUDA_THREADS, 0, (float4 *)dx->data,
                    (const uint4 *)dout->data, (const uint4 *)x->data, (const uint4 *)w->data,
                    (const float *)rstd->data, C);
    else
        CUDA_LAUNCH(cb, rmsnorm_backward_kernel, (unsigned)T, CUDA_THREADS, 0, dx->data, dx->dtype, dout->data,
                    dout->dtype, x->data, x->dtype, w->data, w->dtype, (const float *)rstd->data, C);
    if (!dw)
        return;
    assert(cuda_is_float(dw->dtype) && tensor_numel(dw) == C);
    int64_t chunks = cuda_column_chunks(cb, T, C), per = (T + chunks - 1) / chunks;
    dim3 grid((unsigned)((C + CUDA_THREADS - 1) / CUDA_THREADS), (unsigned)chunks);
    CUDA_LAUNCH(cb, rmsnorm_dw_kernel, grid, CUDA_THREADS, 0, (double *)cb->reduce, dout->data, dout->dtype, x->data,
                x->dtype, (const float *)rstd->data, T, C, per);
    cuda_column_sums_finish(cb, dw, chunks, C);
}
