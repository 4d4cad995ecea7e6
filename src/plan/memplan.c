/* The exact plan: collects the model's buffer table, adds what distribution
 * needs (ZeRO-3 gather buffers, ZeRO-2 reduce-scatter bucket) and the fixed
 * workspaces, then applies sharding, placement and offload. */
#include "plan/memplan.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/buffers.h"
#include "model/layout.h"

/* The CUDA backend's own workspace, taken when it starts (backend_cuda.h):
 * cuBLASLt's (32 MiB, as NVIDIA advises for Hopper), bf16 copies of fp32 GEMM
 * operands (64 MiB) and the partial sums of deterministic reductions (8 MiB). */
#define WORKSPACE_CUBLASLT (32LL << 20)
#define WORKSPACE_CONVERT (64LL << 20)
#define WORKSPACE_REDUCE (8LL << 20)
/* NCCL's buffers: NCCL_BUFFSIZE (4 MiB) per channel and peer direction; 2 x 16
 * channels is what a 2-8 GPU NVLink node sets up. Assumed, to be replaced by
 * the measured figure when dist/ lands. */
#define WORKSPACE_NCCL (2LL * 16 * (4LL << 20))

static const char *category_names[] = {
    [PLAN_WEIGHTS] = "weights",         [PLAN_TRAINABLE] = "trainable", [PLAN_GRADS] = "grads",
    [PLAN_OPTIMIZER] = "optimizer",     [PLAN_ACTIVATIONS] = "activations",
    [PLAN_SCRATCH] = "scratch",         [PLAN_WORKSPACE] = "workspace",
};
static_assert(sizeof category_names / sizeof category_names[0] == PLAN_CATEGORY_COUNT, "categories");

const char *plan_category_name(enum plan_category c) { return category_names[c]; }

int64_t plan_instance_bytes(enum dtype dtype, int64_t elems)
{
    int64_t b = dtype_bytes(dtype, elems);
    return (b + PLAN_ALIGN - 1) / PLAN_ALIGN * PLAN_ALIGN;
}

void plan_add(struct mem_plan *plan, enum plan_category cat, enum dtype dtype, int64_t elems,
              int64_t count, enum plan_place place, const char *fmt, ...)
{
    if (elems <= 0 || count <= 0)
        return;
    if (plan->n == plan->cap) {
        plan->cap = plan->cap ? 2 * plan->cap : 64;
        plan->buf = realloc(plan->buf, (size_t)plan->cap * sizeof *plan->buf);
        if (!plan->buf)
            abort(); /* a few KB: running out here means the process is lost anyway */
    }
    struct plan_buffer *b = &plan->buf[plan->n++];
    memset(b, 0, sizeof *b);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->name, sizeof b->name, fmt, ap);
    va_end(ap);
    b->category = cat;
    b->dtype = dtype;
    b->elems = elems;
    b->count = count;
    b->place = place;
    b->shards = 1;
}

void plan_keep_on_host(struct mem_plan *plan, const char *name)
{
    for (int i = 0; i < plan->n; i++)
        if (!strcmp(plan->buf[i].name, name))
            plan->buf[i].host = true;
}

void plan_free(struct mem_plan *plan)
{
    free(plan->buf);
    memset(plan, 0, sizeof *plan);
}

/* Sum of one instance of the per-layer buffers of a category, unsharded. */
static int64_t layer_bytes(const struct mem_plan *plan, enum plan_category cat)
{
    int64_t sum = 0;
    for (int i = 0; i < plan->n; i++)
        if (plan->buf[i].category == cat && plan->buf[i].place == PLAN_PLACE_LAYER)
            sum += plan_instance_bytes(plan->buf[i].dtype, plan->buf[i].elems);
    return sum;
}

static int64_t largest_whole_weight(const struct mem_plan *plan)
{
    int64_t big = 0;
    for (int i = 0; i < plan->n; i++)
        if (plan->buf[i].category == PLAN_WEIGHTS && plan->buf[i].place != PLAN_PLACE_LAYER) {
            int64_t b = plan_instance_bytes(plan->buf[i].dtype, plan->buf[i].elems);
            big = b > big ? b : big;
        }
    return big;
}

static void add_distribution_buffers(struct mem_plan *plan, const struct run_config *rc)
{
    if (rc->zero == 3) {
        /* Two gather buffers so the next layer's all-gather overlaps this
         * layer's compute; sized for a layer or the embedding, whichever is larger. */
        int64_t layer = layer_bytes(plan, PLAN_WEIGHTS), whole = largest_whole_weight(plan);
        plan_add(plan, PLAN_SCRATCH, DTYPE_U8, 2 * (layer > whole ? layer : whole), 1,
                 PLAN_PLACE_EVERY_RANK, "zero3.gathered_params_x2");
    }
    if (rc->zero >= 2)
        plan_add(plan, PLAN_SCRATCH, DTYPE_U8, layer_bytes(plan, PLAN_GRADS), 1, PLAN_PLACE_EVERY_RANK,
                 "zero.reduce_scatter_bucket");
    if (rc->device == DEVICE_CUDA) {
        plan_add(plan, PLAN_WORKSPACE, DTYPE_U8, WORKSPACE_CUBLASLT, 1, PLAN_PLACE_EVERY_RANK, "cublaslt.workspace");
        plan_add(plan, PLAN_WORKSPACE, DTYPE_U8, WORKSPACE_CONVERT, 1, PLAN_PLACE_EVERY_RANK, "cuda.convert_scratch");
        plan_add(plan, PLAN_WORKSPACE, DTYPE_U8, WORKSPACE_REDUCE, 1, PLAN_PLACE_EVERY_RANK, "cuda.reduce_scratch");
    }
    if (rc->gpus > 1)
        plan_add(plan, PLAN_WORKSPACE, DTYPE_U8, WORKSPACE_NCCL, 1, PLAN_PLACE_EVERY_RANK,
                 "nccl.buffers (assumed, not yet measured)");
}

static int64_t shards_of(const struct plan_buffer *b, const struct run_config *rc)
{
    int64_t n = rc->gpus;
    switch (b->category) {
    case PLAN_WEIGHTS: return rc->zero == 3 ? n : 1;
    /* A full run computes with the bf16 weights, so its fp32 masters are
     * optimizer state (sharded from ZeRO-1); LoRA computes with its fp32 factors. */
    case PLAN_TRAINABLE: return rc->zero == 3 || (rc->method == METHOD_FULL && rc->zero >= 1) ? n : 1;
    case PLAN_GRADS: return rc->zero >= 2 ? n : 1;
    case PLAN_OPTIMIZER: return rc->zero >= 1 ? n : 1;
    default: return 1;
    }
}

static bool offloaded(const struct plan_buffer *b, const struct run_config *rc)
{
    if (b->host)
        return true;
    if (rc->offload == OFFLOAD_NONE)
        return false;
    if (b->category == PLAN_OPTIMIZER)
        return true;
    if (b->category == PLAN_TRAINABLE && rc->method == METHOD_FULL)
        return true;
    return rc->offload == OFFLOAD_PARAMS && b->category == PLAN_WEIGHTS;
}

/* Instances of buffer b on rank r under layer placement: the layers are split
 * into contiguous runs, the first (L mod N) ranks taking one more; the first
 * rank holds the embedding, the last the final norm and head. */
static int64_t instances_on_rank(const struct plan_buffer *b, const struct run_config *rc,
                                 int64_t layers, int64_t r)
{
    if (!rc->place_layers)
        return b->count;
    int64_t n = rc->gpus;
    switch (b->place) {
    case PLAN_PLACE_FIRST: return r == 0 ? b->count : 0;
    case PLAN_PLACE_LAST: return r == n - 1 ? b->count : 0;
    case PLAN_PLACE_LAYER: {
        int64_t mine = layers / n + (r < layers % n);
        return (b->count * mine + layers - 1) / layers;
    }
    default: return b->count;
    }
}

static int64_t rank_total(struct mem_plan *plan, const struct run_config *rc, int64_t layers, int64_t r,
                          bool record)
{
    int64_t total = 0;
    for (int i = 0; i < plan->n; i++) {
        struct plan_buffer *b = &plan->buf[i];
        int64_t one = plan_instance_bytes(b->dtype, b->elems);
        int64_t shard = (one + b->shards - 1) / b->shards;
        shard = (shard + PLAN_ALIGN - 1) / PLAN_ALIGN * PLAN_ALIGN;
        int64_t bytes = shard * instances_on_rank(b, rc, layers, r);
        if (record) {
            b->bytes = bytes;
            b->instance_bytes = shard;
            b->offset = b->on_host ? plan->host_bytes : plan->per_gpu[b->category];
        }
        if (b->on_host) {
            if (record)
                plan->host_bytes += bytes;
            continue;
        }
        if (record)
            plan->per_gpu[b->category] += bytes;
        total += bytes;
    }
    return total;
}

int plan_build(struct mem_plan *plan, const struct model_spec *spec, const struct run_config *rc,
               tune_err *err)
{
    memset(plan, 0, sizeof *plan);
    if (run_validate(rc, spec, err))
        return -1;
    buffers_declare(plan, spec, rc);
    add_distribution_buffers(plan, rc);
    for (int i = 0; i < plan->n; i++) {
        plan->buf[i].shards = plan->buf[i].place == PLAN_PLACE_EVERY_RANK ? 1 : shards_of(&plan->buf[i], rc);
        plan->buf[i].on_host = offloaded(&plan->buf[i], rc);
    }
    int64_t worst = 0, worst_total = -1;
    for (int64_t r = 0; r < (rc->place_layers ? rc->gpus : 1); r++) {
        int64_t t = rank_total(plan, rc, spec->layers, r, false);
        if (t > worst_total) {
            worst_total = t;
            worst = r;
        }
    }
    plan->rank = (int)worst;
    plan->total = rank_total(plan, rc, spec->layers, worst, true);
    struct param_counts pc;
    layout_count_params(spec, &pc);
    plan->params = pc.total;
    return 0;
}
