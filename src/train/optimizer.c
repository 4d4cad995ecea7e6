/* See optimizer.h. AdamW works instance by instance: the plan pads each
 * instance to PLAN_ALIGN, so a buffer's instances are not one contiguous
 * array, and parameters, gradients and moments live in different blocks. */
#include "train/optimizer.h"

#include <math.h>
#include <stdio.h>

/* Calls fn on every instance of every buffer of category cat. */
static void each_instance(const struct plan_arena *a, enum plan_category cat,
                          void (*fn)(void *ctx, const struct plan_buffer *b, int64_t inst), void *ctx)
{
    const struct mem_plan *p = a->plan;
    for (int i = 0; i < p->n; i++)
        if (p->buf[i].category == cat)
            for (int64_t k = 0; k < p->buf[i].count; k++)
                fn(ctx, &p->buf[i], k);
}

struct norm_ctx {
    struct backend *be;
    const struct plan_arena *a;
    double sum;
    float scale;
};

static void add_squares(void *ctx, const struct plan_buffer *b, int64_t inst)
{
    struct norm_ctx *c = ctx;
    struct tensor t = tensor_1d(plan_arena_at(c->a, b->name, inst), b->dtype, b->elems);
    c->sum += c->be->sum_squares(c->be, &t);
}

/* The gradients as one fp32 array when they can be: every buffer fp32 and in
 * the device block, whose padding between instances the arena zeroed and no
 * op writes. Then the norm and the clip are one call each instead of one per
 * tensor (hundreds for LoRA on every linear, each norm call a device wait). */
static bool grads_as_one(const struct plan_arena *a, struct tensor *all)
{
    const struct mem_plan *p = a->plan;
    if (!a->block[PLAN_GRADS] || p->per_gpu[PLAN_GRADS] % 4)
        return false;
    for (int i = 0; i < p->n; i++)
        if (p->buf[i].category == PLAN_GRADS && (p->buf[i].dtype != DTYPE_F32 || p->buf[i].on_host))
            return false;
    *all = tensor_1d(a->block[PLAN_GRADS], DTYPE_F32, p->per_gpu[PLAN_GRADS] / 4);
    return true;
}

double optim_grad_norm(struct backend *be, const struct plan_arena *a)
{
    struct tensor all;
    if (grads_as_one(a, &all))
        return sqrt(be->sum_squares(be, &all));
    struct norm_ctx c = {be, a, 0, 1};
    each_instance(a, PLAN_GRADS, add_squares, &c);
    return sqrt(c.sum);
}

static void scale_one(void *ctx, const struct plan_buffer *b, int64_t inst)
{
    struct norm_ctx *c = ctx;
    struct tensor t = tensor_1d(plan_arena_at(c->a, b->name, inst), b->dtype, b->elems);
    c->be->scale(c->be, &t, c->scale);
}

void optim_clip(struct backend *be, const struct plan_arena *a, double norm, double max_norm)
{
    double coef = max_norm / (norm + 1e-6);
    if (max_norm <= 0 || coef >= 1)
        return;
    struct tensor all;
    if (grads_as_one(a, &all)) {
        be->scale(be, &all, (float)coef);
        return;
    }
    struct norm_ctx c = {be, a, 0, (float)coef};
    each_instance(a, PLAN_GRADS, scale_one, &c);
}

struct adam_ctx {
    struct backend *be;
    const struct plan_arena *a;
    const struct adamw_config *cfg;
    double lr;
    int64_t step;
};

static struct tensor named(const struct plan_arena *a, const char *base, const char *suffix, int64_t inst,
                           int64_t elems)
{
    char name[160];
    snprintf(name, sizeof name, "%s%s", base, suffix);
    return tensor_1d(plan_arena_at(a, name, inst), DTYPE_F32, elems);
}

static void adam_one(void *ctx, const struct plan_buffer *b, int64_t inst)
{
    struct adam_ctx *c = ctx;
    struct tensor p = named(c->a, b->name, "", inst, b->elems), g = named(c->a, b->name, ".grad", inst, b->elems);
    struct tensor m = named(c->a, b->name, ".exp_avg", inst, b->elems);
    struct tensor v = named(c->a, b->name, ".exp_avg_sq", inst, b->elems);
    c->be->adamw(c->be, &p, &g, &m, &v, c->lr, c->cfg->beta1, c->cfg->beta2, c->cfg->eps, c->cfg->weight_decay,
                 c->step);
}

/* The trainable tensors, their gradients and both moments as four parallel
 * fp32 arrays when the plan laid them out so (buffers.c: the moments as two
 * runs in the trainable order), every one in its device block: then AdamW is
 * one call instead of one per tensor (448 for LoRA on every linear of an 8B
 * model). The padding between instances is zero in all four and stays so. */
static bool states_as_one(const struct plan_arena *a, struct tensor all[4])
{
    const struct mem_plan *p = a->plan;
    int64_t bytes = p->per_gpu[PLAN_TRAINABLE];
    if (!a->block[PLAN_TRAINABLE] || !a->block[PLAN_GRADS] || !a->block[PLAN_OPTIMIZER] ||
        p->per_gpu[PLAN_GRADS] != bytes || p->per_gpu[PLAN_OPTIMIZER] != 2 * bytes || bytes % 4)
        return false;
    for (int i = 0; i < p->n; i++) {
        const struct plan_buffer *b = &p->buf[i];
        if (b->category != PLAN_TRAINABLE)
            continue;
        char name[160];
        const char *suffix[3] = {".grad", ".exp_avg", ".exp_avg_sq"};
        int64_t want[3] = {b->offset, b->offset, bytes + b->offset};
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "%s%s", b->name, suffix[k]);
            const struct plan_buffer *s = plan_find(p, name);
            if (b->on_host || b->dtype != DTYPE_F32 || !s || s->on_host || s->dtype != DTYPE_F32 ||
                s->offset != want[k] || s->bytes != b->bytes)
                return false;
        }
    }
    char *opt = a->block[PLAN_OPTIMIZER];
    void *data[4] = {a->block[PLAN_TRAINABLE], a->block[PLAN_GRADS], opt, opt + bytes};
    for (int k = 0; k < 4; k++)
        all[k] = tensor_1d(data[k], DTYPE_F32, bytes / 4);
    return true;
}

void optim_adamw_step(struct backend *be, const struct plan_arena *a, const struct adamw_config *c, double lr,
                      int64_t step)
{
    struct tensor all[4];
    if (states_as_one(a, all)) {
        be->adamw(be, &all[0], &all[1], &all[2], &all[3], lr, c->beta1, c->beta2, c->eps, c->weight_decay, step);
        return;
    }
    struct adam_ctx ctx = {be, a, c, lr, step};
    each_instance(a, PLAN_TRAINABLE, adam_one, &ctx);
}
