/* gpt-oss expert weights from a checkpoint into the model (experts_load.c). */
#ifndef TUNE_MODEL_EXPERTS_LOAD_H
#define TUNE_MODEL_EXPERTS_LOAD_H

#include "io/safetensors.h"
#include "model/llama.h"

/* Each of E stacked [rows, cols] matrices of src transposed into dst, [E, cols, rows]: transformers'
 * [E, in, out] expert parameters to the plan's [E, out, in] and back. */
void experts_transpose(float *dst, const float *src, int64_t E, int64_t rows, int64_t cols);

/* Linear i (an experts' linear) of layer l: its weight and bias. */
int experts_load(struct llama *m, const struct st_model *st, int64_t l, int i, tune_err *err);

#endif
