/* The optimizer over a run's trainable tensors, found through the plan: each
 * trainable buffer NAME has NAME.grad, and for AdamW NAME.exp_avg and
 * NAME.exp_avg_sq, instance for instance (model/buffers.c declares them so). */
#ifndef TUNE_TRAIN_OPTIMIZER_H
#define TUNE_TRAIN_OPTIMIZER_H

#include "backend/backend.h"
#include "plan/memplan.h"

struct adamw_config {
    double lr, beta1, beta2, eps, weight_decay;
};

/* Global L2 norm of every gradient (as torch.nn.utils.clip_grad_norm_ computes it). */
double optim_grad_norm(struct backend *be, const struct plan_arena *a);

/* Scales every gradient by max_norm / (norm + 1e-6) when that is below 1,
 * as clip_grad_norm_ does; max_norm <= 0 disables clipping. */
void optim_clip(struct backend *be, const struct plan_arena *a, double norm, double max_norm);

/* One AdamW step (torch semantics; step counts from 1) at learning rate lr. */
void optim_adamw_step(struct backend *be, const struct plan_arena *a, const struct adamw_config *c, double lr,
                      int64_t step);

#endif
