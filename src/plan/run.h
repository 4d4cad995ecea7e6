/* The training run being planned: method, LoRA settings, precision, sizes and
 * distribution. Filled by cli/ from flags; read by the planner and estimators. */
#ifndef TUNE_PLAN_RUN_H
#define TUNE_PLAN_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/error.h"
#include "model/spec.h"

enum method { METHOD_FULL, METHOD_LORA, METHOD_QLORA, METHOD_COUNT };
enum optimizer { OPTIMIZER_ADAMW, OPTIMIZER_ADAMW_8BIT, OPTIMIZER_SGD, OPTIMIZER_COUNT };
/* Gradient checkpointing: none keeps every activation backward needs; full
 * keeps each layer's input and recomputes the layer; selective keeps the
 * matmul outputs and recomputes only the element-wise ones (the normed
 * inputs of the projections, the SwiGLU output). */
enum grad_ckpt { GRAD_CKPT_NONE, GRAD_CKPT_FULL, GRAD_CKPT_SELECTIVE, GRAD_CKPT_COUNT };
enum offload { OFFLOAD_NONE, OFFLOAD_OPTIMIZER, OFFLOAD_PARAMS, OFFLOAD_COUNT };
enum attn_impl { ATTN_IMPL_SDPA, ATTN_IMPL_EAGER, ATTN_IMPL_COUNT };
enum device { DEVICE_CUDA, DEVICE_CPU }; /* where the run computes: sets the plan's dtypes */

/* LoRA targets, by tune's short names (layout.h's linear_shape.target). */
enum target {
    TARGET_Q, TARGET_K, TARGET_V, TARGET_O, TARGET_GATE, TARGET_UP, TARGET_DOWN,
    TARGET_ROUTER, TARGET_GATE_UP, TARGET_LM_HEAD, TARGET_COUNT
};

struct run_config {
    enum method method;
    int64_t lora_r;
    double lora_alpha, lora_dropout;
    bool use_rslora;                     /* scale alpha / sqrt(r) instead of alpha / r (PEFT's rsLoRA) */
    uint32_t targets;                    /* bit (1 << TARGET_x) */
    bool all_layers;                     /* else only layer_selected[] */
    bool layer_selected[SPEC_MAX_LAYERS];
    bool expert_layers_chosen;           /* the experts' LoRA only on expert_layer_selected[] layers */
    bool expert_layer_selected[SPEC_MAX_LAYERS];
    enum dtype base_dtype;     /* bf16, f16, f32, nf4 (qlora) or mxfp4 (gpt-oss experts) */
    bool double_quant;         /* qlora: quantize the NF4 absmax too */
    enum optimizer optimizer;
    enum grad_ckpt grad_ckpt;
    int64_t seq, micro_batch, grad_accum;
    int64_t gpus;
    int zero;                  /* 0 (DDP when gpus > 1), 1, 2, 3 */
    enum offload offload;
    bool offload_checkpoints;  /* full checkpointing: the layers' inputs kept in host memory */
    int64_t ckpt_keep_layers;  /* full checkpointing: the last N layers keep what backward needs (not recomputed) */
    bool place_layers;         /* spread frozen layers over the GPUs (pipeline placement) */
    enum attn_impl attn;       /* transformers' attention, for its estimate only */
    enum device device;
};

/* Defaults of `tune plan`: LoRA r16 alpha 32 on q,k,v,o, bf16 base (MXFP4
 * experts for gpt-oss), AdamW, no checkpointing, seq 2048, micro-batch 1,
 * one GPU. */
void run_config_default(struct run_config *rc, const struct model_spec *spec);

/* Parses "q,k,v,o", "q_proj,v_proj", "all-linear", "experts" for this model
 * into rc->targets; names the unknown target and lists the model's targets. */
int run_parse_targets(struct run_config *rc, const struct model_spec *spec, const char *list,
                      tune_err *err);

/* Parses "7,15,23" into rc->layer_selected. */
int run_parse_layers(struct run_config *rc, const struct model_spec *spec, const char *list,
                     tune_err *err);
/* Parses "7,15,23" into rc->expert_layer_selected: the experts' LoRA (gpt-oss)
 * on those layers only, the other targets where they are (the OpenAI
 * cookbook's recipe). */
int run_parse_expert_layers(struct run_config *rc, const struct model_spec *spec, const char *list,
                            tune_err *err);

/* Checks the combination (qlora needs nf4, zero 3 with gpus > 1, mxfp4 only for
 * gpt-oss experts, ...). */
int run_validate(const struct run_config *rc, const struct model_spec *spec, tune_err *err);

/* Whether linear `target` of layer `layer` carries LoRA (or is trained, for full). */
bool run_layer_targeted(const struct run_config *rc, int64_t layer, const char *target);

const char *run_method_name(enum method m);
const char *run_optimizer_name(enum optimizer o);
const char *run_target_name(enum target t);
int run_lookup(const char *const *names, int count, const char *s); /* index or -1 */

extern const char *const run_method_names[METHOD_COUNT];
extern const char *const run_optimizer_names[OPTIMIZER_COUNT];
extern const char *const run_grad_ckpt_names[GRAD_CKPT_COUNT];
extern const char *const run_offload_names[OFFLOAD_COUNT];
extern const char *const run_attn_names[ATTN_IMPL_COUNT];

#endif
