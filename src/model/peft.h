/* LoRA adapters in PEFT's layout: adapter_config.json (PEFT's fields) and
 * adapter_model.safetensors with PEFT's tensor names
 * ("base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"), so an
 * adapter trained here loads with PeftModel.from_pretrained and one trained
 * with PEFT loads here. */
#ifndef TUNE_MODEL_PEFT_H
#define TUNE_MODEL_PEFT_H

#include "io/safetensors.h"
#include "model/llama.h"
#include "plan/run.h"

/* Reads DIR/adapter_config.json into rc's LoRA fields (r, alpha, dropout,
 * targets, layers). Refuses what tune does not train (DoRA, rsLoRA with
 * patterns, biases, modules_to_save) with the field named. */
int peft_read_config(const char *dir, const struct model_spec *spec, struct run_config *rc, tune_err *err);

/* Loads DIR/adapter_model.safetensors into m's LoRA factors: every factor
 * the run has must be there with its shape, and no other lora tensor. The
 * factors may be F32, BF16 or F16 (adapters saved from a half-precision
 * model are); they are trained in fp32. */
int peft_load_adapter(struct llama *m, const char *dir, tune_err *err);

/* Writes DIR/adapter_config.json and DIR/adapter_model.safetensors (fp32),
 * each atomically. base_model names the base for PEFT (may be NULL). */
int peft_save_adapter(const struct llama *m, const char *dir, const char *base_model, tune_err *err);

/* PEFT's module path of linear i's LoRA in layer l ("self_attn.q_proj";
 * gpt-oss's experts: "mlp.experts" or, for gate_up with down also trained,
 * "mlp.experts.base_layer"). */
const char *peft_module(const struct llama *m, int64_t l, int i);
/* Opens DIR/adapter_model.safetensors into f (path gets its path); where the
 * folder holds only PEFT's older adapter_model.bin, says that tune reads
 * safetensors only, rather than that the file is missing. */
int peft_open_weights(const char *dir, struct st_file *f, char *path, size_t path_len, tune_err *err);
/* Whether t's dtype is one a LoRA factor may have (F32, BF16, F16); -1 with
 * err naming the tensor otherwise. */
int peft_factor_dtype_check(const struct st_tensor *t, tune_err *err);
/* A factor's values in fp32: t's own data when it is F32 (*owned NULL),
 * else converted from BF16 or F16 into *owned (malloc'd, the caller frees
 * it). NULL with err set for another dtype or when out of memory. */
const float *peft_factor_f32(const struct st_tensor *t, float **owned, tune_err *err);
/* An expert LoRA's B between tune's [E, out, r] and PEFT's [out, r * E]
 * (expert e's column j at j * E + e); to_peft picks the way. */
void peft_expert_b_layout(float *dst, const float *src, int64_t E, int64_t out, int64_t r, bool to_peft);

#endif
