/* `tune merge`: a base model folder plus a PEFT LoRA adapter -> a new folder
 * whose weights are W + (alpha / r) B A (PEFT's merge_and_unload), in the
 * base's dtype, sharded as transformers writes them, with the config and
 * tokenizer files copied, so from_pretrained loads it as a plain model.
 * gpt-oss: the experts' stacked LoRA folds into transformers' [E, in, out]
 * parameters; where the base keeps its experts in MXFP4, every expert is
 * written dequantized (in the model's float dtype) and config.json loses its
 * quantization_config, the rest of it byte for byte. Each merged or
 * dequantized tensor is made when its shard is written and freed after, so
 * the host holds one of them (and one expert in fp32) at a time, not the
 * model; the others are copied from the mapped base. */
#ifndef TUNE_MODEL_MERGE_H
#define TUNE_MODEL_MERGE_H

#include <stdint.h>

#include "base/error.h"

int merge_lora(const char *base_dir, const char *adapter_dir, const char *out_dir, int64_t max_shard_bytes,
               tune_err *err);

#endif
