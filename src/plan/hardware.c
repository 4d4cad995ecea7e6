/* The catalog tables; see hardware.h. Memory totals are what nvidia-smi shows
 * (MiB, as published for each product); CUDA's own total is filled in where it
 * was measured on this workplace's lent machines (2026-11-23). */
#include "plan/hardware.h"

#include <stdio.h>
#include <string.h>

static const struct gpu_model gpus[] = {
    {"h100-80", "NVIDIA H100 80GB HBM3 (SXM5)", 81559, 85017493504LL},
    {"h100-pcie-80", "NVIDIA H100 PCIe 80GB", 81559, 0},
    {"h100-nvl-94", "NVIDIA H100 NVL 94GB", 95830, 0},
    {"h200-141", "NVIDIA H200 141GB HBM3e", 143771, 150109880320LL},
    {"b200-180", "NVIDIA B200 180GB HBM3e", 183359, 0},
    {"a100-80", "NVIDIA A100 80GB", 81920, 0},
    {"a100-40", "NVIDIA A100 40GB", 40960, 0},
    {"l40s-48", "NVIDIA L40S 48GB", 46068, 0},
    {"rtx6000ada-48", "NVIDIA RTX 6000 Ada 48GB", 49140, 0},
    {"a10g-24", "NVIDIA A10G 24GB", 23028, 0},
    {"l4-24", "NVIDIA L4 24GB", 23034, 0},
    {"rtx4090-24", "NVIDIA GeForce RTX 4090 24GB", 24564, 0},
    {"rtx3090-24", "NVIDIA GeForce RTX 3090 24GB", 24576, 0},
    {"v100-32", "NVIDIA V100 32GB", 32768, 0},
    {"v100-16", "NVIDIA V100 16GB", 16384, 0},
    {"t4-16", "NVIDIA T4 16GB", 15360, 0},
};

static const struct cloud_instance instances[] = {
    {"AWS", "p4d.24xlarge", "a100-40", 8, NULL},
    {"AWS", "p4de.24xlarge", "a100-80", 8, NULL},
    {"AWS", "p5.4xlarge", "h100-80", 1, NULL},
    {"AWS", "p5.48xlarge", "h100-80", 8, NULL},
    {"AWS", "p5e.48xlarge", "h200-141", 8, NULL},
    {"AWS", "p5en.48xlarge", "h200-141", 8, NULL},
    {"AWS", "p6-b200.48xlarge", "b200-180", 8, NULL},
    {"AWS", "g5.xlarge", "a10g-24", 1, NULL},
    {"AWS", "g6.xlarge", "l4-24", 1, NULL},
    {"AWS", "g6e.xlarge", "l40s-48", 1, NULL},
    {"Azure", "Standard_NC24ads_A100_v4", "a100-80", 1,
     "NC A100 v4: the 1/2/4-GPU A100-80 sizes the seeds attribute to NDm A100 v4"},
    {"Azure", "Standard_NC48ads_A100_v4", "a100-80", 2, NULL},
    {"Azure", "Standard_NC96ads_A100_v4", "a100-80", 4, NULL},
    {"Azure", "Standard_ND96amsr_A100_v4", "a100-80", 8,
     "NDm A100 v4 comes in this one 8-GPU size"},
    {"Azure", "Standard_ND96isr_H100_v5", "h100-80", 8, "ND H100 v5 comes in this one 8-GPU size"},
    {"Azure", "Standard_ND96isr_H200_v5", "h200-141", 8, NULL},
    {"Azure", "Standard_NC40ads_H100_v5", "h100-nvl-94", 1, NULL},
    {"Azure", "Standard_NC80adis_H100_v5", "h100-nvl-94", 2, NULL},
    {"GCP", "g2-standard-8", "l4-24", 1, NULL},
    {"GCP", "a2-ultragpu-1g", "a100-80", 1, NULL},
    {"GCP", "a2-ultragpu-8g", "a100-80", 8, NULL},
    {"GCP", "a3-highgpu-1g", "h100-80", 1, NULL},
    {"GCP", "a3-highgpu-8g", "h100-80", 8, NULL},
    {"GCP", "a3-ultragpu-8g", "h200-141", 8, NULL},
    {"RunPod", "1x H200 SXM", "h200-141", 1, NULL},
    {"RunPod", "2x H200 SXM", "h200-141", 2, "the seeds' machine"},
    {"RunPod", "1x RTX 4090", "rtx4090-24", 1, NULL},
    {"Lambda", "gpu_1x_h100_sxm5", "h100-80", 1, NULL},
    {"Lambda", "gpu_8x_h100_sxm5", "h100-80", 8, NULL},
};

int hw_gpu_count(void) { return (int)(sizeof gpus / sizeof gpus[0]); }
const struct gpu_model *hw_gpu_at(int i) { return &gpus[i]; }
int hw_instance_count(void) { return (int)(sizeof instances / sizeof instances[0]); }
const struct cloud_instance *hw_instance_at(int i) { return &instances[i]; }

const struct gpu_model *hw_gpu_lookup(const char *name)
{
    for (int i = 0; i < hw_gpu_count(); i++)
        if (!strcmp(gpus[i].name, name))
            return &gpus[i];
    return NULL;
}

int hw_gpu_find(const char *name, const struct gpu_model **out, tune_err *err)
{
    *out = hw_gpu_lookup(name);
    if (*out)
        return 0;
    char known[512] = "";
    for (int i = 0; i < hw_gpu_count(); i++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", gpus[i].name);
    return err_set(err, "--gpu: unknown GPU '%s' (known: %s)", name, known);
}

int64_t hw_gpu_total_bytes(const struct gpu_model *g)
{
    if (g->cuda_total_bytes)
        return g->cuda_total_bytes;
    int64_t kept_mib = (g->smi_mib * HW_DRIVER_KEEPS_PERCENT + 99) / 100;
    return (g->smi_mib - kept_mib) << 20;
}

int64_t hw_gpu_usable_bytes(const struct gpu_model *g)
{
    return hw_gpu_total_bytes(g) - HW_CUDA_CONTEXT_BYTES - HW_RESERVE_BYTES;
}
