/* Rotary embedding in place, Llama's rotate_half layout, as cpu/rope.c: for
 * i < D/2 the pair (x[i], x[i + D/2]) turns by the tabulated angle of
 * (position, i); backward turns by -angle. One thread per pair (eight for
 * bf16); each pair is read and written by its thread alone, so in place is
 * safe. */
#include "backend/cuda/cuda_ops.cuh"

/* x [T, heads, D], cos_sin [positions, D/2, 2], positions [T]; sign -1 for backward. */
static __global__ void rope_kernel(void *x, int x_dtype, const float *cos_sin, const int32_t *positions,
                                   int64_t T, int64_t heads, int64_t half, int64_t max_pos, float sign)
{
    int64_t n = T * heads * half;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = e % half, th = e / half, t = th / heads;
        int64_t pos = positions[t];
        int64_t base = th * 2 * half;
        float c = NAN, s = NAN; /* a position outside the table poisons the row visibly */
        if (pos >= 0 && pos < max_pos) {
            c = cos_sin[(pos * half + i) * 2];
            s = sign * cos_sin[(pos * half + i) * 2 + 1];
        }
        float x1 = cuda_load(x, x_dtype, base + i), x2 = cuda_load(x, x_dtype, base + i + half);
        cuda_store(x, x_dtype, base + i, x1 * c - x2 * s);
        cuda_store(x, x_dtype, base + i + half, x2 * c + x1 * s);
    }
}

/* The same for bf16 x with half % 8 == 0 (the model's): eight pairs a thread,
 * 16-byte loads, 32-bit index arithmetic (n8 < 2^31). */
static __global__ void rope_bf16x8_kernel(uint4 *x, const float4 *cos_sin, const int32_t *positions, int32_t n8,
                                          int32_t heads, int32_t half8, int32_t max_pos, float sign)
{
    for (int32_t e = blockIdx.x * blockDim.x + threadIdx.x; e < n8; e += gridDim.x * blockDim.x) {
        int32_t i8 = e % half8, th = e / half8, t = th / heads, pos = positions[t];
        uint4 *row = x + (int64_t)th * 2 * half8;
        union bf16x8 a, b;
        a.u = row[i8], b.u = row[i8 + half8];
        bool ok = pos >= 0 && pos < max_pos;
        const float4 *cs = cos_sin + ((int64_t)(ok ? pos : 0) * half8 + i8) * 4; /* 8 (cos, sin) pairs */
        for (int q = 0; q < 4; q++) {
            float4 v = cs[q];
            float c[2] = {ok ? v.x : NAN, ok ? v.z : NAN}, sn[2] = {ok ? sign * v.y : NAN, ok ? sign * v.w : NAN};
            for (int k = 0; k < 2; k++) {
                float x1 = __bfloat162float(a.h[2 * q + k]), x2 = __bfloat162float(b.h[2 * q + k]);
                a.h[2 * q + k] = __float2bfloat16_rn(x1 * c[k] - x2 * sn[k]);
                b.h[2 * q + k] = __float2bfloat16_rn(x2 * c[k] + x1 * sn[k]);
            }
        }
        row[i8] = a.u, row[i8 + half8] = b.u;
    }
}

extern "C" void cuda_rope(struct backend *b, struct tensor *x, const struct rope_table *rt,
                          const struct seq_layout *sl, bool backward)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(cuda_is_float(x->dtype));
    int64_t half = rt->half_dim, D = 2 * half, T = x->shape[0];
    int64_t heads = T ? tensor_numel(x) / (T * D) : 0;
    assert(tensor_numel(x) == T * heads * D);
    if (T * heads * half == 0)
        return;
    const struct tensor *all[] = {x};
    if (wide_bf16(all, 1, half) && T * heads * half / 8 < INT32_MAX && ((uintptr_t)rt->cos_sin & 15) == 0) {
        int64_t n8 = T * heads * half / 8;
        CUDA_LAUNCH(cb, rope_bf16x8_kernel, cuda_blocks(n8), CUDA_THREADS, 0, (uint4 *)x->data,
                    (const float4 *)rt->cos_sin, sl->positions, (int32_t)n8, (int32_t)heads, (int32_t)(half / 8),
                    (int32_t)rt->positions, backward ? -1.0f : 1.0f);
        return;
    }
    CUDA_LAUNCH(cb, rope_kernel, cuda_blocks(T * heads * half), CUDA_THREADS, 0, x->data, x->dtype, rt->cos_sin,
                sl->positions, T, heads, half, rt->positions, backward ? -1.0f : 1.0f);
}
