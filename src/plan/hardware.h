/* Hardware catalog: GPUs with the memory CUDA reports for them, and the cloud
 * instances (those of ../shared/seeds and their successors, plus common
 * single-GPU ones) that carry them. Answers "does it fit, and what do I rent". */
#ifndef TUNE_PLAN_HARDWARE_H
#define TUNE_PLAN_HARDWARE_H

#include <stdint.h>

#include "base/error.h"

struct gpu_model {
    const char *name;     /* "h100-80" */
    const char *product;  /* "NVIDIA H100 80GB HBM3 (SXM5)" */
    int64_t total_mib;    /* as nvidia-smi reports it */
    const char *source;   /* where total_mib was read */
};

/* Taken off every GPU's total before the plan must fit: the CUDA context
 * (measured on the lent H100 with CUDA 13, see bench/RESULTS.md) and a stated
 * reserve for the driver's page-granular allocations. */
#define HW_CUDA_CONTEXT_BYTES (534LL << 20)
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
int64_t hw_gpu_total_bytes(const struct gpu_model *g);
int64_t hw_gpu_usable_bytes(const struct gpu_model *g);

int hw_gpu_count(void);
const struct gpu_model *hw_gpu_at(int i);
int hw_instance_count(void);
const struct cloud_instance *hw_instance_at(int i);

#endif
