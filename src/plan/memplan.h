/* The exact memory plan: every buffer the engine will hold on one GPU, by name
 * and category. `tune plan` prints this list and `tune train` allocates it (one
 * block per category, tensors are views), so the plan is the allocation.
 * Buffers are declared by the model families (model/buffers.c) per instance,
 * unsharded; plan_finish applies ZeRO sharding, layer placement and offload,
 * and sums each category for the worst rank. */
#ifndef TUNE_PLAN_MEMPLAN_H
#define TUNE_PLAN_MEMPLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/error.h"
#include "model/spec.h"
#include "plan/run.h"

enum plan_category {
    PLAN_WEIGHTS,     /* frozen base weights (bf16, NF4 or MXFP4 + scales) */
    PLAN_TRAINABLE,   /* LoRA A/B (fp32) or fp32 master of fully trained weights */
    PLAN_GRADS,       /* gradients of trainable tensors */
    PLAN_OPTIMIZER,   /* optimizer states */
    PLAN_ACTIVATIONS, /* what backward keeps, under the checkpoint policy */
    PLAN_SCRATCH,     /* temporaries reused across layers */
    PLAN_WORKSPACE,   /* cuBLASLt workspace, NCCL buffers */
    PLAN_CATEGORY_COUNT
};

/* Where a buffer lives when frozen layers are placed across GPUs. */
enum plan_place { PLAN_PLACE_EVERY_RANK, PLAN_PLACE_LAYER, PLAN_PLACE_FIRST, PLAN_PLACE_LAST };

/* Buffers are sized in whole 256-byte units, the alignment the engine gives
 * each view. */
#define PLAN_ALIGN 256

struct plan_buffer {
    char name[96];   /* "layers.*.self_attn.q_proj.lora_A" */
    enum plan_category category;
    enum dtype dtype;
    int64_t elems;   /* of one instance, before sharding */
    int64_t count;   /* instances: layers it repeats over, or 1 */
    enum plan_place place;
    int64_t shards;  /* set by plan_finish: ranks one instance is split over */
    bool on_host;    /* set by plan_finish: offloaded to CPU memory */
    int64_t bytes;   /* set by plan_finish: on the reported rank, all instances */
};

struct mem_plan {
    struct plan_buffer *buf;
    int n, cap;
    int64_t per_gpu[PLAN_CATEGORY_COUNT]; /* bytes on the reported (largest) rank */
    int64_t total;                        /* sum of per_gpu: the peak */
    int64_t host_bytes;                   /* offloaded to CPU memory per rank */
    int64_t params, trainable_params;
    int rank;                             /* which rank is reported */
};

/* Builds the plan of (spec, rc). Returns -1 with err set when the run is
 * invalid for the model. */
int plan_build(struct mem_plan *plan, const struct model_spec *spec, const struct run_config *rc,
               tune_err *err);
void plan_free(struct mem_plan *plan);

/* Declares one buffer (used by model/buffers.c). `count` instances of `elems`
 * elements each. */
void plan_add(struct mem_plan *plan, enum plan_category cat, enum dtype dtype, int64_t elems,
              int64_t count, enum plan_place place, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* Bytes of one instance as allocated: the payload of elems rounded up to PLAN_ALIGN. */
int64_t plan_instance_bytes(enum dtype dtype, int64_t elems);

const char *plan_category_name(enum plan_category c);

#endif
