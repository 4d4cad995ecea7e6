/* Training metrics: OUTPUT/metrics.jsonl (one object per optimizer step, and
 * one per evaluation), the loss curve drawn from it as OUTPUT/loss.svg, and
 * the progress shown while training: a bar on a terminal, plain lines when
 * the output is a file or pipe. */
#ifndef TUNE_TRAIN_METRICS_H
#define TUNE_TRAIN_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/error.h"

struct step_metrics {
    int64_t step;
    double epoch;
    double loss;      /* mean over the labelled tokens of the step */
    double lr;
    double grad_norm; /* before clipping */
    int64_t tokens;   /* tokens processed in the step */
    double seconds;
};

/* Opens DIR/metrics.jsonl for appending, first dropping every row of a step
 * after keep_through (a resumed run rewrites what follows its checkpoint). */
int metrics_open(FILE **out, const char *dir, int64_t keep_through, tune_err *err);
void metrics_write_step(FILE *f, const struct step_metrics *m);
void metrics_write_eval(FILE *f, int64_t step, double eval_loss);
/* Draws DIR/loss.svg from DIR/metrics.jsonl. */
int metrics_plot(const char *dir, tune_err *err);

struct progress {
    int64_t total, start;
    bool tty;
    double t0, tokens;
};
void progress_init(struct progress *p, int64_t total_steps, int64_t start_step);
/* Redraws the bar, or prints a line every `every` steps off a terminal. */
void progress_update(struct progress *p, const struct step_metrics *m, int64_t every);
void progress_eval(struct progress *p, int64_t step, double eval_loss);
void progress_done(struct progress *p);

#endif
