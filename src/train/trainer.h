/* The training loop: gradient accumulation with the loss normalized over all
 * labelled tokens of the accumulated batch, global-norm clipping, AdamW with a
 * schedule, evaluation, metrics, progress, and checkpoints that resume
 * exactly (every later loss bit-identical on the CPU). */
#ifndef TUNE_TRAIN_TRAINER_H
#define TUNE_TRAIN_TRAINER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "model/llama.h"
#include "train/optimizer.h"
#include "train/schedule.h"

struct train_config {
    struct adamw_config adamw;
    enum lr_schedule schedule;
    int64_t warmup_steps;
    int64_t epochs;
    int64_t max_steps;      /* 0: as many as the epochs take */
    int64_t grad_accum;
    double max_grad_norm;   /* 0: no clipping */
    int64_t logging_steps;  /* progress lines when not on a terminal */
    int64_t eval_steps;     /* 0: only at the end */
    int64_t save_steps;     /* 0: only the final adapter */
    int64_t save_total_limit; /* checkpoints kept, 0: all */
    bool skip_nonfinite;    /* a step with a non-finite loss or gradient is skipped, not fatal */
    uint64_t seed;
    const char *output_dir;
    const char *base_model; /* recorded in the adapter's config */
};

/* Micro-batches come from the data layer through this interface. A position
 * is (epoch, index) in the stream's own units (e.g. examples): the trainer
 * only stores it and gives it back. */
struct batch_stream {
    void *ctx;
    /* Positions the stream at `index` of `epoch`. */
    int (*seek)(void *ctx, int64_t epoch, int64_t index, tune_err *err);
    /* The position of the next micro-batch. */
    void (*tell)(void *ctx, int64_t *epoch, int64_t *index);
    /* Fills b (memory owned by the stream, valid until the next call): 1 when
     * it did, 0 when the epoch has no more, -1 on error. */
    int (*next)(void *ctx, struct llama_batch *b, tune_err *err);
    int64_t batches_per_epoch; /* for the step count and the epoch fraction */
    int64_t items_per_epoch;   /* units of index in an epoch */
};

struct trainer {
    struct llama *m;
    struct train_config cfg;
    int64_t step;            /* optimizer steps done */
    int64_t epoch, index;    /* data position of the next micro-batch (the stream's units) */
    int64_t total_steps;
    int64_t skipped;         /* steps skipped for a non-finite loss (--skip-nonfinite) */
    FILE *metrics;           /* OUTPUT/metrics.jsonl */
    int lock_fd;             /* OUTPUT/.lock, held while this run writes there */
    double last_loss;
};

/* Prepares OUTPUT (created if needed) and locks it: a second run writing to
 * the same OUTPUT is refused instead of mixing checkpoints. */
int trainer_init(struct trainer *t, struct llama *m, const struct train_config *cfg,
                 const struct batch_stream *train, tune_err *err);
void trainer_free(struct trainer *t);

/* Trains until max_steps or the last epoch, evaluating on `eval` (may be
 * NULL) every eval_steps and at the end, checkpointing every save_steps,
 * and writes the final adapter to OUTPUT/final. */
int trainer_run(struct trainer *t, struct batch_stream *train, struct batch_stream *eval, tune_err *err);

/* Mean loss of m over every labelled token of one pass of `eval` (NaN if
 * the model gives NaN); -1 with err set on failure or with no labelled token. */
int evaluate_loss(struct llama *m, struct batch_stream *eval, double *mean, tune_err *err);

/* Restores the state of OUTPUT/checkpoint-N into t (adapter, optimizer
 * states, step, data position); trainer_run then drops the metrics rows
 * after that step and goes on from there. */
int trainer_resume(struct trainer *t, const char *checkpoint_dir, tune_err *err);

/* What a run produces: the adapter (PEFT layout) for LoRA, the whole model
 * (safetensors + config) for full fine-tuning; and reading it back. */
int trainer_save_model(const struct trainer *t, const char *dir, tune_err *err);
int trainer_load_model(struct trainer *t, const char *dir, tune_err *err);

/* Writes OUTPUT/checkpoint-<step> atomically (a temporary directory renamed
 * into place) and prunes the oldest beyond save_total_limit. */
int trainer_save_checkpoint(struct trainer *t, const struct batch_stream *train, tune_err *err);
/* The newest DIR/checkpoint-N into path; 0 when there is none. */
int trainer_last_checkpoint(const char *dir, char *path, size_t size);

#endif
