/* Hardware catalog: GPUs with the memory CUDA reports for them, and the cloud
 * instances (those of ../shared/seeds and their successors, plus common
 * single-GPU ones) that carry them. Answers "does it fit, and what do I rent". */
#ifndef TUNE_PLAN_HARDWARE_H
#define TUNE_PLAN_HARDWARE_H

#include <stdint.h>

#include "base/error.h"

struct gpu_model {
    const char *name;         /* "h100-80" */
    const char *product;      /* "NVIDIA H100 80GB HBM3 (SXM5)" */
    int64_t smi_mib;          /* memory.total as nvidia-smi reports it */
    int64_t cuda_total_bytes; /* cudaMemGetInfo's total where measured, else 0 */
};

/* CUDA's total is below nvidia-smi's by what the driver keeps: 480 MiB on the
 * H100 and 616 MiB on the H200 measured here (0.6% and 0.4%). For GPUs not
 * measured, 1% is taken off, rounded up to MiB. */
#define HW_DRIVER_KEEPS_PERCENT 1
/* Taken off CUDA's total before the plan must fit: the CUDA context plus a
 * cuBLASLt handle, measured on the lent H100 and H200 with CUDA 13
 * (tools/cuda/context_memory.cu: 552,402,944 + 2,097,152 bytes on both), and
 * a stated reserve for what tune cannot see (driver page granularity, other
 * libraries' handles, the CUDA graph a recorded step keeps: 8 MiB for
 * llama-3.1-8b's LoRA step at s2048 and 16 MiB with full checkpointing,
 * measured on the H100). tune allocates one block per category, so there is
 * no allocator fragmentation to reserve for. */
#define HW_CUDA_CONTEXT_BYTES (552402944LL + 2097152LL)
#define HW_RESERVE_BYTES (256LL << 20)

struct cloud_instance {
    const char *provider; /* "AWS" */
    const char *name;     /* "p5.48xlarge" */
    const char *gpu;      /* catalog name */
    int gpus;
    const char *note;     /* what users should know, or NULL */
};

const struct gpu_model *hw_gpu_lookup(const char *name);
/* Same, with an error listing the known names. */
int hw_gpu_find(const char *name, const struct gpu_model **out, tune_err *err);
/* What CUDA reports as total: measured, or nvidia-smi's figure less 1%. */
int64_t hw_gpu_total_bytes(const struct gpu_model *g);
int64_t hw_gpu_usable_bytes(const struct gpu_model *g);

int hw_gpu_count(void);
const struct gpu_model *hw_gpu_at(int i);
int hw_instance_count(void);
const struct cloud_instance *hw_instance_at(int i);

#endif
