/* SwiGLU, h = silu(gate) * up, and its backward from the same inputs, as
 * cpu/swiglu.c (sigmoid written 1 / (1 + exp(-g)), saturating cleanly). One
 * thread per element; all-bf16 tensors (the model's) go eight elements per
 * thread in 16-byte loads, the op being bound by memory. */
#include "backend/cuda/cuda_ops.cuh"

static __device__ __forceinline__ float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

static __global__ void swiglu_bf16x8_kernel(uint4 *h, const uint4 *gate, const uint4 *up, int64_t n8)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n8; i += (int64_t)gridDim.x * blockDim.x) {
        union bf16x8 g, u, o;
        g.u = gate[i], u.u = up[i];
        for (int k = 0; k < 8; k++) {
            float x = __bfloat162float(g.h[k]);
            o.h[k] = __float2bfloat16(x * sigmoid(x) * __bfloat162float(u.h[k]));
        }
        h[i] = o.u;
    }
}

static __global__ void swiglu_backward_bf16x8_kernel(uint4 *dgate, uint4 *dup, const uint4 *dh, const uint4 *gate,
                                                     const uint4 *up, int64_t n8)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n8; i += (int64_t)gridDim.x * blockDim.x) {
        union bf16x8 g, u, d, dg, du;
        g.u = gate[i], u.u = up[i], d.u = dh[i];
        for (int k = 0; k < 8; k++) {
            float x = __bfloat162float(g.h[k]), y = __bfloat162float(u.h[k]), z = __bfloat162float(d.h[k]);
            float s = sigmoid(x);
            du.h[k] = __float2bfloat16(z * x * s);
            dg.h[k] = __float2bfloat16(z * y * s * (1.0f + x * (1.0f - s)));
        }
        dgate[i] = dg.u, dup[i] = du.u;
    }
}

/* h, gate, up [T, I] as n elements. */
static __global__ void swiglu_kernel(void *h, int h_dtype, const void *gate, int gate_dtype, const void *up,
                                     int up_dtype, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float g = cuda_load(gate, gate_dtype, i);
        cuda_store(h, h_dtype, i, g * sigmoid(g) * cuda_load(up, up_dtype, i));
    }
}

extern "C" void cuda_swiglu(struct backend *b, struct tensor *h, const struct tensor *gate, const struct tensor *up)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(cuda_is_float(h->dtype) && cuda_is_float(gate->dtype) && cuda_is_float(up->dtype));
    int64_t n = tensor_numel(h);
    assert(tensor_numel(gate) == n && tensor_numel(up) == n);
    if (n == 0)
        return;
    const struct tensor *all[] = {h, gate, up};
    if (wide_bf16(all, 3, n)) {
        CUDA_LAUNCH(cb, swiglu_bf16x8_kernel, cuda_blocks(n / 8), CUDA_THREADS, 0, (uint4 *)h->data,
                    (const uint4 *)gate->data, (const uint4 *)up->data, n / 8);
        return;
    }
    CUDA_LAUNCH(cb, swiglu_kernel, cuda_blocks(n), CUDA_THREADS, 0, h->data, h->dtype, gate->data, gate->dtype,
                up->data, up->dtype, n);
}

/* dgate, dup, dh, gate, up [T, I] as n elements. */
static __global__ void swiglu_backward_kernel(void *dgate, int dgate_dtype, void *dup, int dup_dtype,
                                              const void *dh, int dh_dtype, const void *gate, int gate_dtype,
                                              const void *up, int up_dtype, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float g = cuda_load(gate, gate_dtype, i), u = cuda_load(up, up_dtype, i), d = cuda_load(dh, dh_dtype, i);
        float s = sigmoid(g);
        cuda_store(dup, dup_dtype, i, d * g * s);
        cuda_store(dgate, dgate_dtype, i, d * u * s * (1.0f + g * (1.0f - s)));
    }
}

extern "C" void cuda_swiglu_backward(struct backend *b, struct tensor *dgate, struct tensor *dup,
                                     const struct tensor *dh, const struct tensor *gate, const struct tensor *up)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(cuda_is_float(dgate->dtype) && cuda_is_float(dup->dtype) && cuda_is_float(dh->dtype) &&
           cuda_is_float(gate->dtype) && cuda_is_float(up->dtype));
    int64_t n = tensor_numel(dh);
    assert(tensor_numel(dgate) == n && tensor_numel(dup) == n && tensor_numel(gate) == n && tensor_numel(up) == n);
    if (n == 0)
        return;
    const struct tensor *all[] = {dgate, dup, dh, gate, up};
    if (wide_bf16(all, 5, n)) {
        CUDA_LAUNCH(cb, swiglu_backward_bf16x8_kernel, cuda_blocks(n / 8), CUDA_THREADS, 0, (uint4 *)dgate->data,
                    (uint4 *)dup->data, (const uint4 *)dh->data, (const uint4 *)gate->data, (const uint4 *)up->data,
                    n / 8);
        return;
    }
    CUDA_LAUNCH(cb, swiglu_backward_kernel, cuda_blocks(n), CUDA_THREADS, 0, dgate->data, dgate->dtype, dup->data,
                dup->dtype, dh->data, dh->dtype, gate->data, gate->dtype, up->data, up->dtype, n);
}
