/* Dropout with philox.h's counter-based stream, the very lines the CPU
 * compiles: element i keeps iff philox_draw(seed, offset + i) >= p * 2^32,
 * and is scaled by 1 / (1 - p) in fp32, so masks and kept values are the
 * CPU's bit for bit. One thread per element (each recomputes its whole
 * Philox block and keeps one word, as on the CPU). y may be x (in place). */
#include "backend/cuda/cuda_ops.cuh"
#include "backend/philox.h"

static __global__ void dropout_kernel(void *y, int y_dtype, const void *x, int x_dtype, int64_t n,
                                      uint32_t threshold, float keep_scale, const uint64_t *seed_at,
                                      uint64_t offset)
{
    const uint64_t seed = *seed_at;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        bool keep = philox_draw(seed, offset + (uint64_t)i) >= threshold;
        cuda_store(y, y_dtype, i, keep ? cuda_load(x, x_dtype, i) * keep_scale : 0.0f);
    }
}

extern "C" void cuda_dropout(struct backend *b, struct tensor *y, const struct tensor *x, float p,
                             const uint64_t *seed, uint64_t offset)
{
    struct cuda_backend *cb = cuda_of(b);
    assert(cuda_is_float(y->dtype) && cuda_is_float(x->dtype) && p >= 0 && p <= 1);
    int64_t n = tensor_numel(x);
    assert(tensor_numel(y) == n);
    if (n == 0)
        return;
    if (p == 0) {
        cuda_convert(b, y, x);
        return;
    }
    uint32_t threshold = philox_keep_threshold(p);
    float keep_scale = p < 1 ? 1.0f / (1.0f - p) : 0.0f; /* p == 1 drops everything */
    CUDA_LAUNCH(cb, dropout_kernel, cuda_blocks(n), CUDA_THREADS, 0, y->data, y->dtype, x->data, x->dtype, n,
                threshold, keep_scale, seed, offset);
}
