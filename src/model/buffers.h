/* The buffer table of each model family: every tensor the engine keeps for a
 * training run, declared once here and read both by `tune plan` and (as the
 * engine lands) by the allocator, in the spirit of llm.c's activation table. */
#ifndef TUNE_MODEL_BUFFERS_H
#define TUNE_MODEL_BUFFERS_H

#include "model/spec.h"
#include "plan/memplan.h"
#include "plan/run.h"

/* Token rows of one chunk of the fused linear + cross-entropy (whole
 * vocabulary rows): enough that the LM head's GEMM runs near its peak (at 128
 * rows of a 128K vocabulary it ran at half of it on an H100). */
#define BUFFERS_CE_ROWS 512

/* Declares the weights, trainable tensors, gradients, optimizer states,
 * activations and scratch of (spec, rc) into plan, unsharded. */
void buffers_declare(struct mem_plan *plan, const struct model_spec *spec, const struct run_config *rc);

#endif
