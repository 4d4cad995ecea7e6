/* The largest micro-batch and the longest sequence whose exact plan fits a
 * given number of bytes per GPU. */
#ifndef TUNE_PLAN_FIT_H
#define TUNE_PLAN_FIT_H

#include <stdint.h>

#include "model/spec.h"
#include "plan/run.h"

struct fit_result {
    int64_t max_micro_batch; /* at rc->seq; 0 if not even 1 fits */
    int64_t max_seq;         /* at rc->micro_batch; 0 if not even 1 token fits */
    bool seq_capped;         /* max_seq stopped at the model's context length */
    int64_t max_ckpt_keep;   /* with full checkpointing: the most last layers kept out of the recompute
                                (--ckpt-keep) at rc's sizes; -1 without it or if rc does not fit */
};

/* Searches (plans are monotone in both sizes, and in the layers kept) by doubling then bisection. */
void fit_find(const struct model_spec *spec, const struct run_config *rc, int64_t usable_bytes,
              struct fit_result *out);

/* Total planned bytes of rc on one GPU, or -1 if rc is invalid. */
int64_t fit_plan_total(const struct model_spec *spec, const struct run_config *rc);

#endif
