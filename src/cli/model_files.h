/* What the CLI reads from a model folder beside its weights: the tokenizer and
 * the end-of-sequence ids (generation_config.json, tokenizer_config.json or
 * config.json, in that order, as transformers resolves them). */
#ifndef TUNE_CLI_MODEL_FILES_H
#define TUNE_CLI_MODEL_FILES_H

#include <stdint.h>

#include "base/error.h"
#include "text/tokenizer.h"

#define MODEL_MAX_EOS 8

int model_load_tokenizer(const char *model_dir, struct tokenizer **tok, tune_err *err);
/* The model's end-of-sequence ids (the first is appended to training
 * examples; any of them stops generation). Returns how many, -1 on error. */
int model_eos_ids(const char *model_dir, const struct tokenizer *tok, int32_t ids[MODEL_MAX_EOS], tune_err *err);

#endif
