/* SwiGLU, h = silu(gate) * up, and its backward from the same inputs, as
 * cpu/swiglu.c (sigmoid written 1 / (1 + exp(-g)), saturating cleanly). One
 * thread per element. */
#include "backend/cuda/cuda_ops.cuh"

static __device__ __forceinline__ float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

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
    CUDA_LAUNCH(cb, swiglu_backward_kernel, cuda_blocks(n), CUDA_THREADS, 0, dgate->data, dgate->dtype, dup->data,
                dup->dtype, dh->data, dh->dtype, gate->data, gate->dtype, up->data, up->dtype, n);
}
