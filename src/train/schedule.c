/* See schedule.h; the formulas are transformers' (optimization.py). */
#include "train/schedule.h"

#include <math.h>

const char *const lr_schedule_names[LR_SCHEDULE_COUNT] = {"constant", "linear", "cosine"};

double schedule_lr(enum lr_schedule kind, double lr, int64_t step, int64_t warmup_steps, int64_t total_steps)
{
    if (step < warmup_steps)
        return lr * (double)step / (double)(warmup_steps > 1 ? warmup_steps : 1);
    if (kind == LR_SCHEDULE_CONSTANT)
        return lr;
    double span = (double)(total_steps - warmup_steps > 1 ? total_steps - warmup_steps : 1);
    double progress = (double)(step - warmup_steps) / span;
    if (kind == LR_SCHEDULE_LINEAR)
        return lr * fmax(0.0, 1.0 - progress);
    return lr * fmax(0.0, 0.5 * (1.0 + cos(3.14159265358979323846 * progress)));
}
