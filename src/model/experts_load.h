/* gpt-oss expert weights from a checkpoint into the model (experts_load.c). */
#ifndef TUNE_MODEL_EXPERTS_LOAD_H
#define TUNE_MODEL_EXPERTS_LOAD_H

#include "io/safetensors.h"
#include "model/llama.h"

/* Linear i (an experts' linear) of layer l: its weight and bias. */
int experts_load(struct llama *m, const struct st_model *st, int64_t l, int i, tune_err *err);

#endif
