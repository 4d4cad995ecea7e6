/* Buffer tables of the Llama family (Llama, Mistral, Qwen2) and gpt-oss. The
 * two share attention and differ in the MLP, so one walk over the layer's
 * linears (layout.c) covers both. Sizes: T = micro_batch * seq tokens, C hidden,
 * H/KV heads, D head_dim, I intermediate, E experts, K experts per token,
 * V vocab, r LoRA rank. Activations are stored in the compute dtype (bf16
 * unless the base is fp16 or fp32); statistics, LoRA factors, gradients and
 * optimizer states in fp32. */
#include "model/buffers.h"

#include <stdio.h>
#include <string.h>

#include "model/layout.h"

struct ctx {
    struct mem_plan *plan;
    const struct model_spec *s;
    const struct run_config *rc;
    enum dtype wd;    /* dtype of unquantized weights */
    enum dtype ad;    /* dtype of activations */
    int64_t T;        /* tokens per micro-batch */
    int64_t trained_layers;
};

/* A trained tensor brings its fp32 value (LoRA factor or master weight) and
 * its gradient; its optimizer states come after all of them
 * (declare_optimizer_states). */
static void declare_trained(struct ctx *c, const char *name, int64_t elems, int64_t count,
                            enum plan_place place)
{
    struct mem_plan *p = c->plan;
    plan_add(p, PLAN_TRAINABLE, DTYPE_F32, elems, count, place, "%s", name);
    plan_add(p, PLAN_GRADS, DTYPE_F32, elems, count, place, "%s.grad", name);
    p->trainable_params += elems * count;
}

/* The optimizer states of every trained tensor. AdamW's two moments are laid
 * out as two runs in the trainable tensors' order, so that each run is
 * parallel to the trainable block (and the gradients') and one AdamW call can
 * update them all. */
static void declare_optimizer_states(struct ctx *c)
{
    struct mem_plan *p = c->plan;
    enum optimizer opt = c->rc->optimizer;
    int n = p->n;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++) {
            if (p->buf[i].category != PLAN_TRAINABLE)
                continue;
            struct plan_buffer t = p->buf[i]; /* plan_add may move p->buf */
            if (opt == OPTIMIZER_ADAMW)
                plan_add(p, PLAN_OPTIMIZER, DTYPE_F32, t.elems, t.count, t.place, "%s.%s", t.name,
                         pass == 0 ? "exp_avg" : "exp_avg_sq");
            else if (opt == OPTIMIZER_ADAMW_8BIT && pass == 0) { /* bitsandbytes-style blockwise, 256-value blocks */
                plan_add(p, PLAN_OPTIMIZER, DTYPE_U8, 2 * t.elems, t.count, t.place, "%s.adam_states_8bit", t.name);
                plan_add(p, PLAN_OPTIMIZER, DTYPE_F32, 2 * ((t.elems + 255) / 256), t.count, t.place,
                         "%s.adam_absmax", t.name);
            }
        }
}

/* A frozen or base weight matrix (stack x out x in), stored in the run's base
 * format: MXFP4 blocks + E8M0 scales per 32 values for gpt-oss experts, NF4 +
 * absmax per 64 values under QLoRA, else the weight dtype. */
static void declare_weight(struct ctx *c, const char *name, int64_t elems, bool expert, int64_t count,
                           enum plan_place place)
{
    struct mem_plan *p = c->plan;
    enum dtype base = c->rc->base_dtype;
    if (expert && base == DTYPE_MXFP4) {
        plan_add(p, PLAN_WEIGHTS, DTYPE_MXFP4, elems, count, place, "%s_blocks", name);
        plan_add(p, PLAN_WEIGHTS, DTYPE_U8, elems / 32, count, place, "%s_scales", name);
    } else if (base == DTYPE_NF4) {
        plan_add(p, PLAN_WEIGHTS, DTYPE_NF4, elems, count, place, "%s.nf4", name);
        if (c->rc->double_quant) {
            plan_add(p, PLAN_WEIGHTS, DTYPE_U8, elems / 64, count, place, "%s.absmax_u8", name);
            plan_add(p, PLAN_WEIGHTS, DTYPE_F32, elems / 64 / 256 + 1, count, place, "%s.absmax_scale", name);
        } else {
            plan_add(p, PLAN_WEIGHTS, DTYPE_F32, elems / 64, count, place, "%s.absmax", name);
        }
    } else {
        plan_add(p, PLAN_WEIGHTS, c->wd, elems, count, place, "%s", name);
    }
}

static bool full_trains(const struct ctx *c, int64_t layer, const char *target)
{
    return c->rc->method == METHOD_FULL && run_layer_targeted(c->rc, layer, target);
}

/* Whether the whole model (embeddings, norms) is trained, not chosen linears. */
static bool full_all(const struct ctx *c)
{
    return c->rc->method == METHOD_FULL && c->rc->targets == 0 && c->rc->all_layers;
}

/* A frozen input embedding that is not also the head is only gathered from, a step's T rows: on a GPU
 * it stays in host memory (1.2 GB of gpt-oss's, 1.1 GB of Llama-3.1-8B's) and the rows are sent. */
static bool embed_on_host(const struct ctx *c)
{
    return !full_all(c) && c->rc->device == DEVICE_CUDA && !c->s->tie_embeddings;
}

static void declare_parameters(struct ctx *c)
{
    const struct model_spec *s = c->s;
    const struct run_config *rc = c->rc;
    struct linear_shape lin[LAYOUT_MAX_LINEARS];
    int n = layout_layer_linears(s, lin);
    int64_t L = s->layers, C = s->hidden;
    char name[96];

    plan_add(c->plan, PLAN_WEIGHTS, c->wd, s->vocab * C, 1, PLAN_PLACE_FIRST, "embed_tokens.weight");
    if (full_all(c))
        declare_trained(c, "embed_tokens.weight.master", s->vocab * C, 1, PLAN_PLACE_FIRST);
    else if (embed_on_host(c))
        plan_keep_on_host(c->plan, "embed_tokens.weight");

    for (int i = 0; i < n; i++) {
        const struct linear_shape *l = &lin[i];
        int64_t elems = l->stack * l->in * l->out;
        bool expert = l->component == COMPONENT_EXPERTS;
        snprintf(name, sizeof name, "layers.*.%s.weight", l->module);
        declare_weight(c, name, elems, expert, L, PLAN_PLACE_LAYER);
        if (l->bias) {
            snprintf(name, sizeof name, "layers.*.%s.bias", l->module);
            plan_add(c->plan, PLAN_WEIGHTS, c->wd, l->stack * l->out, L, PLAN_PLACE_LAYER, "%s", name);
        }
        int64_t trained = 0;
        for (int64_t layer = 0; layer < L; layer++)
            trained += run_layer_targeted(rc, layer, l->target);
        if (!trained)
            continue;
        if (rc->method == METHOD_FULL) {
            snprintf(name, sizeof name, "layers.*.%s.weight.master", l->module);
            declare_trained(c, name, elems + (l->bias ? l->stack * l->out : 0), trained, PLAN_PLACE_LAYER);
        } else {
            snprintf(name, sizeof name, "layers.*.%s.lora_A", l->module);
            declare_trained(c, name, l->stack * rc->lora_r * l->in, trained, PLAN_PLACE_LAYER);
            snprintf(name, sizeof name, "layers.*.%s.lora_B", l->module);
            declare_trained(c, name, l->stack * l->out * rc->lora_r, trained, PLAN_PLACE_LAYER);
        }
    }
    int64_t norm_elems = 2 * C + (s->attention_sinks ? s->heads : 0);
    plan_add(c->plan, PLAN_WEIGHTS, c->wd, 2 * C, L, PLAN_PLACE_LAYER, "layers.*.{input,post_attention}_layernorm.weight");
    if (s->attention_sinks)
        plan_add(c->plan, PLAN_WEIGHTS, c->wd, s->heads, L, PLAN_PLACE_LAYER, "layers.*.self_attn.sinks");
    if (full_all(c))
        declare_trained(c, "layers.*.norms_and_sinks.master", norm_elems, L, PLAN_PLACE_LAYER);

    plan_add(c->plan, PLAN_WEIGHTS, c->wd, C, 1, PLAN_PLACE_LAST, "norm.weight");
    if (full_all(c))
        declare_trained(c, "norm.weight.master", C, 1, PLAN_PLACE_LAST);
    if (!s->tie_embeddings)
        plan_add(c->plan, PLAN_WEIGHTS, c->wd, s->vocab * C, 1, PLAN_PLACE_LAST, "lm_head.weight");
    if (full_all(c) || full_trains(c, 0, "lm_head")) {
        if (!s->tie_embeddings)
            declare_trained(c, "lm_head.weight.master", s->vocab * C, 1, PLAN_PLACE_LAST);
    } else if (rc->method != METHOD_FULL && rc->targets & 1u << TARGET_LM_HEAD) {
        declare_trained(c, "lm_head.lora_A", rc->lora_r * C, 1, PLAN_PLACE_LAST);
        declare_trained(c, "lm_head.lora_B", s->vocab * rc->lora_r, 1, PLAN_PLACE_LAST);
    }
}

/* Whether any layer trains (LoRA or full) the linear named target. */
static bool any_trained(const struct ctx *c, const char *target)
{
    for (int64_t layer = 0; layer < c->s->layers; layer++)
        if (run_layer_targeted(c->rc, layer, target))
            return true;
    return false;
}

/* What backward needs of one layer, except its input (the checkpoint).
 * Declared `count` times under `prefix` ("layers.*" or "recompute"). A matmul's
 * input is kept only when its weight or LoRA factors get a gradient. */
static void declare_layer_saved(struct ctx *c, const char *prefix, int64_t count, enum plan_place place)
{
    const struct model_spec *s = c->s;
    struct mem_plan *p = c->plan;
    int64_t T = c->T, C = s->hidden, I = s->intermediate, K = s->experts_per_token;
    int64_t q = s->heads * s->head_dim, kv = s->kv_heads * s->head_dim;
    int64_t rows_mlp = s->experts ? T * K : T; /* expert rows after routing */
    bool moe = s->experts > 0;

    bool selective = c->rc->grad_ckpt == GRAD_CKPT_SELECTIVE; /* element-wise outputs recomputed */
    plan_add(p, PLAN_ACTIVATIONS, DTYPE_F32, T, count, place, "%s.input_layernorm.rstd", prefix);
    if (!selective && (any_trained(c, "q") || any_trained(c, "k") || any_trained(c, "v")))
        plan_add(p, PLAN_ACTIVATIONS, c->ad, T * C, count, place, "%s.input_layernorm.out", prefix);
    plan_add(p, PLAN_ACTIVATIONS, c->ad, T * (q + 2 * kv), count, place, "%s.self_attn.qkv_rope", prefix);
    plan_add(p, PLAN_ACTIVATIONS, c->ad, T * q, count, place, "%s.self_attn.out", prefix);
    plan_add(p, PLAN_ACTIVATIONS, DTYPE_F32, T * s->heads, count, place, "%s.self_attn.lse", prefix);
    plan_add(p, PLAN_ACTIVATIONS, c->ad, T * C, count, place, "%s.residual_mid", prefix);
    plan_add(p, PLAN_ACTIVATIONS, DTYPE_F32, T, count, place, "%s.post_attention_layernorm.rstd", prefix);
    bool mlp_in = moe ? any_trained(c, "router") || any_trained(c, "gate_up")
                      : any_trained(c, "gate") || any_trained(c, "up");
    if (mlp_in && !selective)
        plan_add(p, PLAN_ACTIVATIONS, c->ad, T * C, count, place, "%s.post_attention_layernorm.out", prefix);
    if (moe) {
        plan_add(p, PLAN_ACTIVATIONS, DTYPE_I32, T * K, count, place, "%s.mlp.router.topk_index", prefix);
        plan_add(p, PLAN_ACTIVATIONS, DTYPE_F32, T * K, count, place, "%s.mlp.router.topk_weight", prefix);
        /* moe_group's order and position [T * K] each, and offsets [E + 1] */
        plan_add(p, PLAN_ACTIVATIONS, DTYPE_I32, 2 * T * K + s->experts + 1, count, place,
                 "%s.mlp.experts.permutation_and_offsets", prefix);
        if (any_trained(c, "gate_up"))
            plan_add(p, PLAN_ACTIVATIONS, c->ad, T * K * C, count, place, "%s.mlp.experts.input_permuted", prefix);
        plan_add(p, PLAN_ACTIVATIONS, c->ad, T * K * 2 * I, count, place, "%s.mlp.experts.gate_up_out", prefix);
        plan_add(p, PLAN_ACTIVATIONS, c->ad, T * K * C, count, place, "%s.mlp.experts.out", prefix);
    } else {
        plan_add(p, PLAN_ACTIVATIONS, c->ad, T * 2 * I, count, place, "%s.mlp.gate_up_out", prefix);
    }
    if (any_trained(c, "down") && !selective)
        plan_add(p, PLAN_ACTIVATIONS, c->ad, rows_mlp * I, count, place, "%s.mlp.act", prefix);
    if (c->rc->method != METHOD_FULL) {
        struct linear_shape lin[LAYOUT_MAX_LINEARS];
        int n = layout_layer_linears(s, lin);
        for (int i = 0; i < n; i++)
            if (any_trained(c, lin[i].target))
                plan_add(p, PLAN_ACTIVATIONS, c->ad,
                         (lin[i].component == COMPONENT_EXPERTS ? T * K : T) * c->rc->lora_r, count,
                         place, "%s.%s.lora_xa", prefix, lin[i].module);
    }
}

static void declare_activations(struct ctx *c)
{
    const struct model_spec *s = c->s;
    struct mem_plan *p = c->plan;
    int64_t T = c->T, C = s->hidden;

    plan_add(p, PLAN_ACTIVATIONS, DTYPE_I32,
             BUFFERS_SCALARS_AT(T) + (int64_t)(sizeof(struct step_scalars) / sizeof(int32_t)), 1,
             PLAN_PLACE_EVERY_RANK, BUFFERS_BATCH);
    if (embed_on_host(c)) { /* the rows gathered in page-locked memory, sent while the host goes on */
        plan_add(p, PLAN_ACTIVATIONS, c->ad, T * C, 1, PLAN_PLACE_FIRST, "embed_tokens.rows");
        plan_keep_on_host(p, "embed_tokens.rows");
    }
    plan_add(p, PLAN_ACTIVATIONS, c->ad, T * C, s->layers, PLAN_PLACE_LAYER, "layers.*.input");
    if (c->rc->offload_checkpoints) { /* in host memory; the layers compute on two device copies in turn */
        plan_keep_on_host(p, "layers.*.input");
        plan_add(p, PLAN_ACTIVATIONS, c->ad, T * C, 2, PLAN_PLACE_EVERY_RANK, "layers.*.input.device");
    }
    if (c->rc->grad_ckpt == GRAD_CKPT_FULL) {
        declare_layer_saved(c, "recompute", 1, PLAN_PLACE_EVERY_RANK);
        if (c->rc->ckpt_keep_layers) /* the last layers', kept from the forward */
            declare_layer_saved(c, "kept", c->rc->ckpt_keep_layers, PLAN_PLACE_EVERY_RANK);
    } else
        declare_layer_saved(c, "layers.*", s->layers, PLAN_PLACE_LAYER);
    plan_add(p, PLAN_ACTIVATIONS, c->ad, T * C, 1, PLAN_PLACE_LAST, "norm.input");
    plan_add(p, PLAN_ACTIVATIONS, DTYPE_F32, T, 1, PLAN_PLACE_LAST, "norm.rstd");
    plan_add(p, PLAN_ACTIVATIONS, c->ad, T * C, 1, PLAN_PLACE_LAST, "norm.out");
    plan_add(p, PLAN_ACTIVATIONS, DTYPE_F32, 2 * T, 1, PLAN_PLACE_LAST, "loss.{lse,target_logit}");
}

/* Temporaries of one layer's forward and backward, reused by every layer. */
static void declare_scratch(struct ctx *c)
{
    const struct model_spec *s = c->s;
    struct mem_plan *p = c->plan;
    int64_t T = c->T, C = s->hidden, I = s->intermediate;
    int64_t rows = s->experts ? T * s->experts_per_token : T;
    int64_t q = s->heads * s->head_dim, kv = s->kv_heads * s->head_dim;

    plan_add(p, PLAN_SCRATCH, DTYPE_F32, T * C, 1, PLAN_PLACE_EVERY_RANK, "grad.residual");
    plan_add(p, PLAN_SCRATCH, c->ad, T * C, 1, PLAN_PLACE_EVERY_RANK, "grad.normed");
    plan_add(p, PLAN_SCRATCH, c->ad, T * C, 1, PLAN_PLACE_EVERY_RANK, "forward.normed");
    plan_add(p, PLAN_SCRATCH, c->ad, T * (q + 2 * kv), 1, PLAN_PLACE_EVERY_RANK, "grad.qkv");
    plan_add(p, PLAN_SCRATCH, c->ad, T * q, 1, PLAN_PLACE_EVERY_RANK, "grad.attn_out");
    plan_add(p, PLAN_SCRATCH, c->ad, rows * I, 1, PLAN_PLACE_EVERY_RANK, "forward_and_grad.act");
    if (c->rc->grad_ckpt == GRAD_CKPT_SELECTIVE && any_trained(c, "down")) /* forward_and_grad.act holds dh then */
        plan_add(p, PLAN_SCRATCH, c->ad, rows * I, 1, PLAN_PLACE_EVERY_RANK, "selective.mlp.act");
    if (s->experts) {
        plan_add(p, PLAN_SCRATCH, DTYPE_F32, T * s->experts, 1, PLAN_PLACE_EVERY_RANK, "router.logits");
        plan_add(p, PLAN_SCRATCH, DTYPE_F32, rows, 1, PLAN_PLACE_EVERY_RANK, "grad.router_weights");
        plan_add(p, PLAN_SCRATCH, c->ad, rows * C, 1, PLAN_PLACE_EVERY_RANK, "experts.input_permuted");
        plan_add(p, PLAN_SCRATCH, c->ad, rows * C, 1, PLAN_PLACE_EVERY_RANK, "grad.experts_out");
        plan_add(p, PLAN_SCRATCH, c->ad, rows * 2 * I, 1, PLAN_PLACE_EVERY_RANK, "grad.gate_up");
        if (c->rc->method == METHOD_FULL && (any_trained(c, "gate_up") || any_trained(c, "down")))
            /* a constant column of ones: an expert's bias gradient is its rows' sum, a grouped product */
            plan_add(p, PLAN_WEIGHTS, c->ad, rows, 1, PLAN_PLACE_EVERY_RANK, "experts.ones");
    }
    if (c->rc->method != METHOD_FULL) {
        plan_add(p, PLAN_SCRATCH, c->ad, rows * c->rc->lora_r, 1, PLAN_PLACE_EVERY_RANK, "grad.lora_xa");
        /* LoRA dropout acts on the adapter's input only: the dropped copy of
         * the widest targeted input, made again in backward from the same RNG. */
        if (c->rc->lora_dropout > 0)
            plan_add(p, PLAN_SCRATCH, c->ad, rows * (I > C ? I : C), 1, PLAN_PLACE_EVERY_RANK,
                     "lora.dropped_input");
    }
    /* The loss runs over blocks of whole-vocabulary rows, BUFFERS_CE_ROWS
     * tokens at a time, forward and backward together: never [T, V] at once.
     * The logits are in the compute dtype, as transformers' LM head gives them. */
    plan_add(p, PLAN_SCRATCH, c->ad, (T < BUFFERS_CE_ROWS ? T : BUFFERS_CE_ROWS) * s->vocab, 1, PLAN_PLACE_LAST,
             "loss.logits_chunk");
    if (c->rc->base_dtype == DTYPE_NF4) {
        /* The largest base matrix, dequantized for its GEMM. */
        struct linear_shape lin[LAYOUT_MAX_LINEARS];
        int n = layout_layer_linears(s, lin);
        int64_t largest = 0;
        for (int i = 0; i < n; i++)
            largest = lin[i].in * lin[i].out > largest ? lin[i].in * lin[i].out : largest;
        plan_add(p, PLAN_SCRATCH, DTYPE_BF16, largest, 1, PLAN_PLACE_EVERY_RANK, "nf4.dequantized_matrix");
    }
}

/* LoRA factors in the compute dtype for the GEMMs, which would otherwise
 * round the fp32 factors to bf16 at every call: a mirror of the trainable
 * block (same element offsets, padding included), made from it in one pass
 * at the start of each step, so scratch rather than state. */
static void declare_lora_compute_copy(struct ctx *c)
{
    if (c->rc->method == METHOD_FULL || c->ad == DTYPE_F32 || c->rc->zero == 3) /* ZeRO-3 shards the factors */
        return;
    int64_t bytes = 0;
    for (int i = 0; i < c->plan->n; i++) {
        const struct plan_buffer *b = &c->plan->buf[i];
        if (b->category == PLAN_TRAINABLE)
            bytes += plan_instance_bytes(b->dtype, b->elems) * b->count;
    }
    if (bytes)
        plan_add(c->plan, PLAN_SCRATCH, c->ad, bytes / (int64_t)sizeof(float), 1, PLAN_PLACE_EVERY_RANK,
                 "lora.compute_copy");
}

void buffers_declare(struct mem_plan *plan, const struct model_spec *spec, const struct run_config *rc)
{
    struct ctx c = {
        .plan = plan, .s = spec, .rc = rc,
        /* The CPU reference computes in fp32 whatever the checkpoint's dtype. */
        .wd = rc->device == DEVICE_CPU || rc->base_dtype == DTYPE_F32 ? DTYPE_F32
              : rc->base_dtype == DTYPE_F16 ? DTYPE_F16 : DTYPE_BF16,
        .T = rc->micro_batch * rc->seq,
    };
    c.ad = c.wd;
    declare_parameters(&c);
    declare_optimizer_states(&c);
    declare_lora_compute_copy(&c);
    /* cos and sin of every position up to seq for D/2 frequencies, built once. */
    plan_add(plan, PLAN_WEIGHTS, DTYPE_F32, rc->seq * spec->head_dim, 1, PLAN_PLACE_EVERY_RANK, "rope.cos_sin");
    declare_activations(&c);
    declare_scratch(&c);
}
