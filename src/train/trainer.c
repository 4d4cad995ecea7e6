/* The training loop; see trainer.h. A step first gathers its grad_accum
 * micro-batches (host copies, small) so the number of labelled tokens of the
 * whole accumulated batch is known before any backward: each micro-batch's
 * gradient is then of its share of the mean, as if the batch were one. */
#include "train/trainer.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "model/peft.h"
#include "train/metrics.h"

struct held_batch {
    int32_t *ids, *labels, *starts;
    struct llama_batch b;
};

static int hold(struct held_batch *h, const struct llama_batch *b, tune_err *err)
{
    size_t T = (size_t)b->tokens, S = (size_t)b->sequences;
    int32_t *ids = realloc(h->ids, T * sizeof *ids), *labels = NULL, *starts = NULL;
    if (ids)
        h->ids = ids;
    labels = ids ? realloc(h->labels, T * sizeof *labels) : NULL;
    if (labels)
        h->labels = labels;
    starts = labels ? realloc(h->starts, (S + 1) * sizeof *starts) : NULL;
    if (!starts)
        return err_set(err, "out of memory holding a micro-batch of %zu tokens", T);
    h->starts = starts;
    memcpy(h->ids, b->ids, T * sizeof *ids);
    memcpy(h->labels, b->labels, T * sizeof *labels);
    memcpy(h->starts, b->starts, (S + 1) * sizeof *starts);
    h->b = (struct llama_batch){h->ids, h->labels, h->starts, b->tokens, b->sequences};
    return 0;
}

static int64_t labelled(const struct llama_batch *b)
{
    int64_t n = 0;
    for (int64_t t = 0; t < b->tokens; t++)
        n += b->labels[t] != -100;
    return n;
}

int trainer_init(struct trainer *t, struct llama *m, const struct train_config *cfg,
                 const struct batch_stream *train, tune_err *err)
{
    memset(t, 0, sizeof *t);
    t->m = m;
    t->cfg = *cfg;
    t->lock_fd = -1;
    if (mkdir(cfg->output_dir, 0755) != 0 && errno != EEXIST)
        return err_set(err, "%s: cannot create: %s", cfg->output_dir, strerror(errno));
    char lock[4200];
    snprintf(lock, sizeof lock, "%s/.lock", cfg->output_dir);
    t->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (t->lock_fd < 0)
        return err_set(err, "%s: cannot create: %s", lock, strerror(errno));
    if (flock(t->lock_fd, LOCK_EX | LOCK_NB) != 0)
        return err_set(err, "%s: another tune run is writing to this directory", cfg->output_dir);
    int64_t per_epoch = (train->batches_per_epoch + cfg->grad_accum - 1) / cfg->grad_accum;
    t->total_steps = cfg->max_steps ? cfg->max_steps : per_epoch * cfg->epochs;
    if (t->total_steps < 1)
        return err_set(err, "no training steps: the dataset gives %lld micro-batches per epoch",
                       (long long)train->batches_per_epoch);
    return 0;
}

void trainer_free(struct trainer *t)
{
    if (t->metrics)
        fclose(t->metrics);
    t->metrics = NULL;
    if (t->lock_fd >= 0)
        close(t->lock_fd); /* releases the lock */
    t->lock_fd = -1;
}

/* The next micro-batch, moving to the next epoch at the end of one; 0 when
 * the last epoch is done. */
static int next_batch(struct trainer *t, struct batch_stream *s, struct llama_batch *b, tune_err *err)
{
    for (;;) {
        if (t->epoch >= t->cfg.epochs && !t->cfg.max_steps)
            return 0;
        int rc = s->next(s->ctx, b, err);
        if (rc != 0) {
            s->tell(s->ctx, &t->epoch, &t->index);
            return rc;
        }
        t->epoch++;
        t->index = 0;
        if (s->seek(s->ctx, t->epoch, 0, err))
            return -1;
    }
}

int evaluate_loss(struct llama *m, struct batch_stream *eval, double *mean, tune_err *err)
{
    if (eval->seek(eval->ctx, 0, 0, err))
        return -1;
    double sum = 0;
    int64_t count = 0;
    struct llama_batch b;
    int rc;
    while ((rc = eval->next(eval->ctx, &b, err)) > 0) {
        int64_t n = 0;
        double loss;
        if (llama_step(m, &b, false, 0, 0, &loss, &n, err))
            return -1;
        sum += loss;
        count += n;
    }
    if (rc < 0)
        return -1;
    if (!count)
        return err_set(err, "the evaluation data has no labelled tokens");
    *mean = sum / (double)count;
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The error of a step whose loss or gradient is not finite: nothing of it
 * was applied, and the user learns where to go back to. */
static int nonfinite(const struct trainer *t, double loss, double norm, tune_err *err)
{
    char last[4200];
    if (!trainer_last_checkpoint(t->cfg.output_dir, last, sizeof last))
        snprintf(last, sizeof last, "none saved yet");
    return err_set(err, "step %lld: the loss (%g) or gradient norm (%g) is not finite; nothing of this step was "
                        "applied; last checkpoint: %s (--skip-nonfinite skips such steps)",
                   (long long)t->step + 1, loss, norm, last);
}

/* One optimizer step over up to grad_accum micro-batches; 0 when the data
 * ran out before the first. */
static int train_step(struct trainer *t, struct batch_stream *s, struct held_batch *held,
                      struct step_metrics *out, tune_err *err)
{
    int64_t n = 0, labels = 0, tokens = 0;
    for (; n < t->cfg.grad_accum; n++) {
        struct llama_batch b;
        int rc = next_batch(t, s, &b, err);
        if (rc < 0)
            return -1;
        if (rc == 0)
            break;
        if (hold(&held[n], &b, err))
            return -1;
        labels += labelled(&b);
        tokens += b.tokens;
    }
    if (n == 0)
        return 0;
    double t0 = now(), loss = 0;
    llama_zero_grads(t->m);
    for (int64_t k = 0; k < n; k++) {
        int64_t counted;
        /* A batch with no labelled token still runs: its gradient is zero. */
        double l;
        if (llama_step(t->m, &held[k].b, true, labels ? 1.0f / (float)labels : 0.0f,
                       (uint64_t)(t->step * t->cfg.grad_accum + k), &l, &counted, err))
            return -1;
        loss += l;
    }
    struct backend *be = t->m->be;
    double norm = optim_grad_norm(be, &t->m->arena);
    double lr = schedule_lr(t->cfg.schedule, t->cfg.adamw.lr, t->step, t->cfg.warmup_steps, t->total_steps);
    if (!isfinite(loss) || !isfinite(norm)) {
        if (!t->cfg.skip_nonfinite)
            return nonfinite(t, loss, norm, err);
        fprintf(stderr, "step %lld: the loss (%g) or gradient norm (%g) is not finite; skipped (--skip-nonfinite)\n",
                (long long)t->step + 1, loss, norm);
        t->skipped++;
    } else {
        optim_clip(be, &t->m->arena, norm, t->cfg.max_grad_norm);
        optim_adamw_step(be, &t->m->arena, &t->cfg.adamw, lr, t->step + 1);
        if (t->m->rc.method == METHOD_FULL)
            llama_refresh_weights(t->m);
    }
    if (be->check && be->check(be, err))
        return -1;
    t->step++;
    *out = (struct step_metrics){t->step, (double)t->epoch + (double)t->index / (double)(s->items_per_epoch ? s->items_per_epoch : 1),
                                 labels ? loss / (double)labels : NAN, lr, norm, tokens, now() - t0};
    t->last_loss = out->loss;
    return 1;
}

int trainer_run(struct trainer *t, struct batch_stream *train, struct batch_stream *eval, tune_err *err)
{
    struct held_batch *held = calloc((size_t)t->cfg.grad_accum, sizeof *held);
    if (!held)
        return err_set(err, "out of memory");
    /* A fresh run starts its metrics anew; a resumed one keeps the rows up to its step. */
    int rc = metrics_open(&t->metrics, t->cfg.output_dir, t->step, err) ||
             train->seek(train->ctx, t->epoch, t->index, err);
    struct progress prog;
    progress_init(&prog, t->total_steps, t->step);
    while (!rc && t->step < t->total_steps) {
        struct step_metrics sm;
        int got = train_step(t, train, held, &sm, err);
        if (got < 0) {
            rc = -1;
            break;
        }
        if (got == 0)
            break;
        metrics_write_step(t->metrics, &sm);
        progress_update(&prog, &sm, t->cfg.logging_steps);
        bool last = t->step >= t->total_steps;
        if (eval && ((t->cfg.eval_steps && t->step % t->cfg.eval_steps == 0) || last)) {
            double el;
            if (evaluate_loss(t->m, eval, &el, err)) {
                rc = -1;
                break;
            }
            metrics_write_eval(t->metrics, t->step, el);
            progress_eval(&prog, t->step, el);
        }
        if (t->cfg.save_steps && t->step % t->cfg.save_steps == 0 && !last)
            rc = trainer_save_checkpoint(t, train, err);
    }
    progress_done(&prog);
    for (int64_t k = 0; k < t->cfg.grad_accum; k++) {
        free(held[k].ids);
        free(held[k].labels);
        free(held[k].starts);
    }
    free(held);
    if (rc)
        return -1;
    char final[4096];
    snprintf(final, sizeof final, "%s/final", t->cfg.output_dir);
    if (trainer_save_model(t, final, err))
        return -1;
    return metrics_plot(t->cfg.output_dir, err);
}

int trainer_save_model(const struct trainer *t, const char *dir, tune_err *err)
{
    if (t->m->rc.method == METHOD_FULL)
        return llama_save_weights(t->m, dir, t->cfg.base_model, err);
    return peft_save_adapter(t->m, dir, t->cfg.base_model, err);
}

int trainer_load_model(struct trainer *t, const char *dir, tune_err *err)
{
    if (t->m->rc.method == METHOD_FULL)
        return llama_load_weights(t->m, dir, err);
    return peft_load_adapter(t->m, dir, err);
}
