/* Learning-rate schedules as transformers' Trainer applies them: the rate of
 * optimizer step k (0-based) is lr * lambda(k), with a linear warmup over
 * warmup_steps and then constant, linear decay to 0, or half a cosine to 0 at
 * total_steps (get_constant_schedule_with_warmup, get_linear_schedule_with_warmup,
 * get_cosine_schedule_with_warmup). */
#ifndef TUNE_TRAIN_SCHEDULE_H
#define TUNE_TRAIN_SCHEDULE_H

#include <stdint.h>

enum lr_schedule { LR_SCHEDULE_CONSTANT, LR_SCHEDULE_LINEAR, LR_SCHEDULE_COSINE, LR_SCHEDULE_COUNT };

extern const char *const lr_schedule_names[LR_SCHEDULE_COUNT];

double schedule_lr(enum lr_schedule kind, double lr, int64_t step, int64_t warmup_steps, int64_t total_steps);

#endif
