/* Run configuration: defaults, target parsing and validation; see run.h. */
#include "plan/run.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/layout.h"

const char *const run_method_names[METHOD_COUNT] = {"full", "lora", "qlora"};
const char *const run_optimizer_names[OPTIMIZER_COUNT] = {"adamw", "adamw-8bit", "sgd"};
const char *const run_grad_ckpt_names[GRAD_CKPT_COUNT] = {"none", "full", "selective"};
const char *const run_offload_names[OFFLOAD_COUNT] = {"none", "optimizer", "params"};
const char *const run_attn_names[ATTN_IMPL_COUNT] = {"sdpa", "eager"};
static const char *const target_names[TARGET_COUNT] = {
    "q", "k", "v", "o", "gate", "up", "down", "router", "gate_up", "lm_head",
};

const char *run_method_name(enum method m) { return run_method_names[m]; }
const char *run_optimizer_name(enum optimizer o) { return run_optimizer_names[o]; }
const char *run_target_name(enum target t) { return target_names[t]; }

int run_lookup(const char *const *names, int count, const char *s)
{
    for (int i = 0; i < count; i++)
        if (!strcmp(names[i], s))
            return i;
    return -1;
}

void run_config_default(struct run_config *rc, const struct model_spec *spec)
{
    memset(rc, 0, sizeof *rc);
    rc->method = METHOD_LORA;
    rc->lora_r = 16;
    rc->lora_alpha = 32;
    rc->lora_dropout = 0.05;
    rc->targets = 1u << TARGET_Q | 1u << TARGET_K | 1u << TARGET_V | 1u << TARGET_O;
    rc->all_layers = true;
    rc->base_dtype = spec->expert_quant == WEIGHT_QUANT_MXFP4 ? DTYPE_MXFP4 : DTYPE_BF16;
    rc->double_quant = true;
    rc->optimizer = OPTIMIZER_ADAMW;
    rc->grad_ckpt = GRAD_CKPT_NONE;
    rc->seq = 2048;
    rc->micro_batch = 1;
    rc->grad_accum = 1;
    rc->gpus = 1;
    rc->attn = ATTN_IMPL_SDPA;
}

/* Targets this model has: the linears of its layers plus lm_head. */
static uint32_t model_targets(const struct model_spec *spec)
{
    struct linear_shape lin[LAYOUT_MAX_LINEARS];
    int n = layout_layer_linears(spec, lin);
    uint32_t mask = 1u << TARGET_LM_HEAD;
    for (int i = 0; i < n; i++)
        mask |= 1u << run_lookup(target_names, TARGET_COUNT, lin[i].target);
    return mask;
}

static void list_targets(uint32_t mask, char *buf, size_t len)
{
    buf[0] = 0;
    for (int t = 0; t < TARGET_COUNT; t++)
        if (mask & 1u << t)
            snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", buf[0] ? "," : "", target_names[t]);
}

int run_parse_targets(struct run_config *rc, const struct model_spec *spec, const char *list,
                      tune_err *err)
{
    uint32_t have = model_targets(spec), mask = 0;
    char copy[512], *save = NULL;
    snprintf(copy, sizeof copy, "%s", list);
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        size_t n = strlen(tok);
        if (n > 5 && !strcmp(tok + n - 5, "_proj"))
            tok[n - 5] = 0; /* PEFT's module names: q_proj -> q */
        if (!strcmp(tok, "all-linear")) {
            /* PEFT's all-linear: every nn.Linear of the layers (gpt-oss experts
             * and router are bare parameters, not nn.Linear: there "down" is the
             * experts' down_proj). */
            unsigned linear = 1u << TARGET_Q | 1u << TARGET_K | 1u << TARGET_V | 1u << TARGET_O |
                              1u << TARGET_GATE | 1u << TARGET_UP | (spec->experts ? 0 : 1u << TARGET_DOWN);
            mask |= have & linear;
            continue;
        }
        if (!strcmp(tok, "experts") && spec->experts) {
            mask |= 1u << TARGET_GATE_UP | 1u << TARGET_DOWN;
            continue;
        }
        int t = run_lookup(target_names, TARGET_COUNT, tok);
        if (t < 0 || !(have & 1u << t)) {
            char names[256];
            list_targets(have, names, sizeof names);
            return err_set(err, "--targets: '%s' is not a target of %s (its targets: %s%s, all-linear)",
                           tok, spec_arch_name(spec->arch), names, spec->experts ? ",experts" : "");
        }
        mask |= 1u << t;
    }
    if (!mask)
        return err_set(err, "--targets: empty list");
    rc->targets = mask;
    return 0;
}

/* "7,15,23" into selected[] (cleared first); flag names the option in errors. */
static int parse_layer_list(const struct model_spec *spec, const char *list, const char *flag, bool *selected,
                            tune_err *err)
{
    char copy[2048], *save = NULL;
    snprintf(copy, sizeof copy, "%s", list);
    memset(selected, 0, sizeof(bool) * SPEC_MAX_LAYERS);
    int count = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end;
        long v = strtol(tok, &end, 10);
        if (end == tok || *end || v < 0 || v >= spec->layers)
            return err_set(err, "%s: '%s' is not a layer index in [0, %lld)", flag, tok, (long long)spec->layers);
        selected[v] = true;
        count++;
    }
    return count ? 0 : err_set(err, "%s: empty list", flag);
}

int run_parse_layers(struct run_config *rc, const struct model_spec *spec, const char *list,
                     tune_err *err)
{
    if (parse_layer_list(spec, list, "--target-layers", rc->layer_selected, err))
        return -1;
    rc->all_layers = false;
    return 0;
}

int run_parse_expert_layers(struct run_config *rc, const struct model_spec *spec, const char *list,
                            tune_err *err)
{
    if (!spec->experts)
        return err_set(err, "--expert-layers: %s has no experts", spec->name);
    if (parse_layer_list(spec, list, "--expert-layers", rc->expert_layer_selected, err))
        return -1;
    rc->expert_layers_chosen = true;
    return 0;
}

bool run_layer_targeted(const struct run_config *rc, int64_t layer, const char *target)
{
    if (!rc->all_layers && !rc->layer_selected[layer])
        return false;
    /* set only for models with experts, whose "down" is the experts' too */
    if (rc->expert_layers_chosen && !rc->expert_layer_selected[layer] &&
        (!strcmp(target, "gate_up") || !strcmp(target, "down")))
        return false;
    if (rc->method == METHOD_FULL && rc->targets == 0)
        return true;
    return rc->targets & 1u << run_lookup(target_names, TARGET_COUNT, target);
}

int run_validate(const struct run_config *rc, const struct model_spec *spec, tune_err *err)
{
    if (rc->method == METHOD_QLORA && rc->base_dtype != DTYPE_NF4)
        return err_set(err, "--method qlora keeps the base in nf4, not %s", dtype_name(rc->base_dtype));
    if (rc->method != METHOD_QLORA && rc->base_dtype == DTYPE_NF4)
        return err_set(err, "--base-dtype nf4 is QLoRA: use --method qlora");
    if (rc->base_dtype == DTYPE_MXFP4 && spec->expert_quant != WEIGHT_QUANT_MXFP4)
        return err_set(err, "--base-dtype mxfp4: only gpt-oss ships MXFP4 experts");
    if (rc->base_dtype == DTYPE_MXFP4 && rc->method == METHOD_FULL)
        return err_set(err, "--method full trains the experts, which cannot stay MXFP4: use --base-dtype bf16");
    if (rc->base_dtype != DTYPE_BF16 && rc->base_dtype != DTYPE_F16 && rc->base_dtype != DTYPE_F32 &&
        rc->base_dtype != DTYPE_NF4 && rc->base_dtype != DTYPE_MXFP4)
        return err_set(err, "--base-dtype: %s is not a base precision (bf16, fp16, fp32, nf4, mxfp4)",
                       dtype_name(rc->base_dtype));
    if (rc->zero && rc->gpus < 2)
        return err_set(err, "--zero %d shards over GPUs: it needs --gpus 2 or more", rc->zero);
    if (rc->expert_layers_chosen && (rc->method == METHOD_FULL || !(rc->targets & (1u << TARGET_GATE_UP |
                                                                                     1u << TARGET_DOWN))))
        return err_set(err, "--expert-layers chooses where the experts' LoRA goes: add experts to --targets");
    if (rc->ckpt_keep_layers && rc->grad_ckpt != GRAD_CKPT_FULL)
        return err_set(err, "--ckpt-keep keeps some layers out of full checkpointing: it needs --grad-ckpt full");
    if (rc->ckpt_keep_layers < 0 || rc->ckpt_keep_layers >= spec->layers)
        return err_set(err, "--ckpt-keep %lld: keep 0 to %lld of %s's %lld layers (all of them is --grad-ckpt none)",
                       (long long)rc->ckpt_keep_layers, (long long)spec->layers - 1, spec->name,
                       (long long)spec->layers);
    if (rc->offload_checkpoints && rc->grad_ckpt != GRAD_CKPT_FULL)
        return err_set(err, "--offload-checkpoints keeps full checkpointing's layer inputs: it needs --grad-ckpt full");
    if (rc->offload == OFFLOAD_PARAMS && rc->zero != 3)
        return err_set(err, "--offload params needs --zero 3 (parameters are offloaded shards)");
    if (rc->place_layers && (rc->gpus < 2 || rc->zero == 3))
        return err_set(err, "--placement layers spreads layers over 2+ GPUs and excludes --zero 3");
    if (rc->place_layers && rc->method == METHOD_FULL)
        return err_set(err, "--placement layers places frozen layers: use it with lora or qlora");
    if (rc->method != METHOD_FULL && rc->targets == 0)
        return err_set(err, "--targets: LoRA needs at least one target");
    if (rc->lora_r < 1 || rc->lora_r > 4096)
        return err_set(err, "--r: %lld is out of range [1, 4096]", (long long)rc->lora_r);
    return 0;
}
