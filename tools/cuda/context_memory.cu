// Measures what the CUDA context and a cuBLASLt handle take on the device, the
// constants tune plan takes off each GPU's memory (plan/hardware.h). Prints
// one JSON object. Built by `make cuda`; runs on a GPU machine.
#include <stdio.h>
#include <stdlib.h>

#include <cublasLt.h>
#include <cuda_runtime.h>

#define CUDA_CHECK(call)                                                                     \
    do {                                                                                     \
        cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess) {                                                             \
            fprintf(stderr, "%s failed at %s:%d: %s\n", #call, __FILE__, __LINE__,           \
                    cudaGetErrorString(e_));                                                 \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

int main(void)
{
    size_t free0, total;
    CUDA_CHECK(cudaFree(0)); // creates the primary context
    CUDA_CHECK(cudaMemGetInfo(&free0, &total));
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));

    cublasLtHandle_t lt;
    if (cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "cublasLtCreate failed\n");
        return 1;
    }
    size_t free1;
    CUDA_CHECK(cudaMemGetInfo(&free1, &total));

    // One allocation of 1 GiB: how much the driver's granularity adds.
    void *p;
    CUDA_CHECK(cudaMalloc(&p, (size_t)1 << 30));
    size_t free2;
    CUDA_CHECK(cudaMemGetInfo(&free2, &total));
    CUDA_CHECK(cudaFree(p));
    cublasLtDestroy(lt);

    printf("{\"device\": \"%s\", \"total_bytes\": %zu, \"context_bytes\": %zu, "
           "\"cublaslt_handle_bytes\": %zu, \"alloc_1gib_cost_bytes\": %zu}\n",
           prop.name, total, total - free0, free0 - free1, free1 - free2);
    return 0;
}
