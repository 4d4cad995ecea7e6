/* The buffer table of each model family: every tensor the engine keeps for a
 * training run, declared once here and read both by `tune plan` and (as the
 * engine lands) by the allocator, in the spirit of llm.c's activation table. */
#ifndef TUNE_MODEL_BUFFERS_H
#define TUNE_MODEL_BUFFERS_H

#include <stdint.h>

#include "model/spec.h"
#include "plan/memplan.h"
#include "plan/run.h"

/* Token rows of one chunk of the fused linear + cross-entropy (whole
 * vocabulary rows): enough that the LM head's GEMM runs near its peak (at 128
 * rows of a 128K vocabulary it ran at half of it on an H100). */
#define BUFFERS_CE_ROWS 512

/* The batch buffer: ids, labels and positions [T], the starts of the packed
 * sequences [T + 1] (empty ones at T after the last), then, at int32 index
 * BUFFERS_SCALARS_AT(planned T) (8-byte aligned), the step's scalars. */
#define BUFFERS_BATCH "batch.{input_ids,labels,positions,seq_starts,step_scalars}"
#define BUFFERS_SCALARS_AT(T) (4 * (T) + 2)

/* The numbers of a step that its ops read from (or add to) the backend's
 * memory rather than take as arguments (backend.h), sent with the batch. */
struct step_scalars {
    uint64_t dropout_seed;
    double loss_sum; /* of the step's counted tokens, added to by each loss chunk */
    float loss_scale;
    float unused;
};

/* Declares the weights, trainable tensors, gradients, optimizer states,
 * activations and scratch of (spec, rc) into plan, unsharded. */
void buffers_declare(struct mem_plan *plan, const struct model_spec *spec, const struct run_config *rc);

#endif
