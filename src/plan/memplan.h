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
    bool host;       /* kept in host memory whatever the offload policy (buffers.c decides) */
    int64_t shards;  /* set by plan_finish: ranks one instance is split over */
    bool on_host;    /* set by plan_finish: offloaded to CPU memory */
    int64_t bytes;   /* set by plan_finish: on the reported rank, all instances */
    int64_t instance_bytes; /* set by plan_finish: one instance (shard) as allocated */
    int64_t offset;  /* set by plan_finish: from the start of its category's block */
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

/* The buffer called name, or NULL if the run does not need it. */
const struct plan_buffer *plan_find(const struct mem_plan *plan, const char *name);
/* Keeps the buffer called name (declared) in host memory. */
void plan_keep_on_host(struct mem_plan *plan, const char *name);

/* The plan made real: one block per category from the backend, buffers as
 * views into it, except the workspace, which the backend took when it
 * started. Nothing else is allocated on the device for a run. */
struct backend;
struct plan_arena {
    struct backend *be;
    const struct mem_plan *plan;
    void *block[PLAN_CATEGORY_COUNT];
    void *host; /* offloaded buffers, in CPU memory */
};

/* Allocates every category's block; on failure names the category and its
 * size, and frees what it had. */
int plan_arena_alloc(struct plan_arena *a, const struct mem_plan *plan, struct backend *be, tune_err *err);
void plan_arena_free(struct plan_arena *a);
/* Instance i of buffer name (a layer's copy of a per-layer buffer), or NULL
 * if the plan has no such buffer. */
void *plan_arena_at(const struct plan_arena *a, const char *name, int64_t instance);
/* Whether p points into the arena's host memory (offloaded or host buffers). */
bool plan_arena_on_host(const struct plan_arena *a, const void *p);

#endif
