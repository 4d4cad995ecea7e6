/* Rotary embedding in place, Llama's rotate_half layout, as cpu/rope.c: for
 * i < D/2 the pair (x[i], x[i + D/2]) turns by the tabulated angle of
 * (position, i); backward turns by -angle. One thread per pair; each pair is
 * read and written by its thread alone, so in place is safe. */
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
    CUDA_LAUNCH(cb, rope_kernel, cuda_blocks(T * heads * half), CUDA_THREADS, 0, x->data, x->dtype, rt->cos_sin,
                sl->positions, T, heads, half, rt->positions, backward ? -1.0f : 1.0f);
}
