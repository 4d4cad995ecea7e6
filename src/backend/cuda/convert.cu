/* convert: F32 <-> BF16 <-> F16 element by element through fp32, rounding to
 * nearest even (__float2bfloat16_rn / __float2half_rn, the CPU's rounding;
 * NaN stays NaN, as there, though its payload is the canonical one). Same
 * dtypes are a device copy. Also the strided block conversion that matmul
 * uses to round fp32 operands to bf16. */
#include "backend/cuda/cuda_ops.cuh"

/* dst[i] = src[i], i < n. */
static __global__ void convert_kernel(void *dst, int dst_dtype, const void *src, int src_dtype, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        cuda_store(dst, dst_dtype, i, cuda_load(src, src_dtype, i));
}

/* dst[i] = src[i] for fp32 src and bf16 dst, four at a time (16-byte loads), i < 4 * n4. */
static __global__ void convert_f32_bf16x4_kernel(uint2 *dst, const float4 *src, int64_t n4)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x) {
        float4 v = src[i];
        __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
        dst[i] = make_uint2(*(uint32_t *)&lo, *(uint32_t *)&hi);
    }
}

extern "C" void cuda_convert(struct backend *b, struct tensor *dst, const struct tensor *src)
{
    struct cuda_backend *cb = cuda_of(b);
    int64_t n = tensor_numel(src);
    assert(tensor_numel(dst) == n && cuda_is_float(dst->dtype) && cuda_is_float(src->dtype));
    assert(dst->data != src->data || dst->dtype == src->dtype); /* no in-place change of width */
    if (n == 0 || dst->data == src->data)
        return;
    if (dst->dtype == src->dtype) {
        CUDA_CHECK(cb, cudaMemcpyAsync(dst->data, src->data, (size_t)dtype_bytes(src->dtype, n),
                                       cudaMemcpyDeviceToDevice, cb->stream));
        return;
    }
    if (src->dtype == DTYPE_F32 && dst->dtype == DTYPE_BF16 && n % 4 == 0 && ((uintptr_t)src->data & 15) == 0 &&
        ((uintptr_t)dst->data & 7) == 0) { /* the residual gradient and the LoRA factors' compute copy */
        CUDA_LAUNCH(cb, convert_f32_bf16x4_kernel, cuda_blocks(n / 4), CUDA_THREADS, 0, (uint2 *)dst->data,
                    (const float4 *)src->data, n / 4);
        return;
    }
    CUDA_LAUNCH(cb, convert_kernel, cuda_blocks(n), CUDA_THREADS, 0, dst->data, dst->dtype, src->data, src->dtype, n);
}

/* dst[r, c] (bf16, [rows, cols]) = src[(r0 + r) * ld + c0 + c]. */
static __global__ void convert_block_kernel(__nv_bfloat16 *dst, const void *src, int src_dtype, int64_t ld,
                                            int64_t r0, int64_t c0, int64_t rows, int64_t cols)
{
    int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / cols, c = i % cols;
        dst[i] = __float2bfloat16_rn(cuda_load(src, src_dtype, (r0 + r) * ld + c0 + c));
    }
}

void cuda_convert_block_bf16(struct cuda_backend *cb, void *dst, const void *src, enum dtype src_dtype,
                             int64_t ld, int64_t r0, int64_t c0, int64_t rows, int64_t cols)
{
    if (rows * cols == 0)
        return;
    CUDA_LAUNCH(cb, convert_block_kernel, cuda_blocks(rows * cols), CUDA_THREADS, 0, (__nv_bfloat16 *)dst, src,
                src_dtype, ld, r0, c0, rows, cols);
}
