/* The buffer table of each model family: every tensor the engine keeps for a
 * training run, declared once here and read both by `tune plan` and (as the
 * engine lands) by the allocator, in the spirit of llm.c's activation table. */
#ifndef TUNE_MODEL_BUFFERS_H
#define TUNE_MODEL_BUFFERS_H

#include "model/spec.h"
#include "plan/memplan.h"
#include "plan/run.h"

/* Vocabulary columns of one chunk of the fused linear + cross-entropy. */
#define BUFFERS_CE_VOCAB_CHUNK 8192

/* Declares the weights, trainable tensors, gradients, optimizer states,
 * activations and scratch of (spec, rc) into plan, unsharded. */
void buffers_declare(struct mem_plan *plan, const struct model_spec *spec, const struct run_config *rc);

#endif
