/* What other stacks and the literature would say for the same run: the seeds'
 * rule of thumb and worksheet, the ZeRO per-GPU formulas, DeepSpeed's
 * model-state estimator, and a calibrated model of transformers+PEFT. Kept
 * apart from the exact plan (memplan.c): these are estimates of others, shown
 * beside tune's plan by `tune plan --explain`. The seed functions reproduce the
 * seeds' Python to the digit, units included (GB = 1e9 bytes). */
#ifndef TUNE_PLAN_ESTIMATE_H
#define TUNE_PLAN_ESTIMATE_H

#include <stdbool.h>
#include <stdint.h>

#include "model/spec.h"
#include "plan/run.h"

enum estimate_kind {
    ESTIMATE_RULE_OF_THUMB, ESTIMATE_SEED_WORKSHEET, ESTIMATE_ZERO_FORMULA, ESTIMATE_DEEPSPEED,
    ESTIMATE_TRANSFORMERS_PEFT, ESTIMATE_COUNT
};

struct estimate {
    const char *name;      /* "rule-of-thumb", ... as in `--json` */
    int64_t per_gpu_bytes; /* -1 where the estimator does not apply */
    char detail[640];      /* how it was computed, in the estimator's own units */
};

/* The seeds' estimate_memory() worksheet (distributed fine-tuning seed), in GB. */
struct seed_worksheet {
    double model, grad, optim, act, total;
};
struct seed_worksheet estimate_seed_worksheet(double params_b, int64_t n_gpus, int zero_stage,
                                              enum method method, int64_t seq_len, int64_t micro_bs,
                                              int64_t hidden_dim, int64_t n_layers, bool grad_ckpt,
                                              double lora_pct);

/* The seeds' mem_per_gpu(): weights + grads + optimizer under ZeRO stage 0-3, in GB. */
double estimate_seed_zero_gb(double params_b, int64_t n_gpus, int zero_stage);

/* DeepSpeed's estimate_zero2/zero3_model_states_mem_needs (bytes). */
void estimate_deepspeed_zero2(int64_t total_params, int64_t gpus_per_node, int64_t nodes,
                              bool cpu_offload, int64_t *cpu_bytes, int64_t *gpu_bytes);
void estimate_deepspeed_zero3(int64_t total_params, int64_t largest_layer_params,
                              int64_t gpus_per_node, int64_t nodes, bool cpu_offload,
                              bool cpu_offload_params, int64_t *cpu_bytes, int64_t *gpu_bytes);

/* Calibrated peak of a transformers+PEFT training step (tfpeft.c). */
struct tfpeft_estimate {
    int64_t allocated, reserved; /* bytes, per GPU */
};
int estimate_transformers_peft(const struct model_spec *spec, const struct run_config *rc,
                               struct tfpeft_estimate *out, char *why_not, size_t len);

/* All estimates for (spec, rc); trainable_params from the exact plan. */
void estimate_all(const struct model_spec *spec, const struct run_config *rc,
                  int64_t trainable_params, struct estimate out[ESTIMATE_COUNT]);

/* Where the seeds' prose contradicts their own formulas, or the facts, for a run
 * like this one: users copy those sentences. Fills up to max notes; returns
 * how many. */
#define ESTIMATE_NOTE_LEN 480
int estimate_seed_notes(const struct model_spec *spec, const struct run_config *rc,
                        int64_t trainable_params, char notes[][ESTIMATE_NOTE_LEN], int max);

#endif
