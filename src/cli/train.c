/* tune train: dataset -> packed micro-batches -> the Llama engine on the CPU
 * or CUDA backend -> a PEFT adapter, with metrics, checkpoints and exact resume. The
 * plan is built first: it is the allocation, and its total is printed. */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/units.h"
#include "cli/commands.h"
#include "cli/data_setup.h"
#include "cli/device.h"
#include "cli/model_files.h"
#include "cli/train_args.h"
#include "data/dataset.h"
#include "data/pack.h"
#include "model/llama.h"
#include "model/peft.h"
#include "train/trainer.h"

static void print_data_stats(const struct dataset *d, size_t n_train, size_t n_eval)
{
    const struct data_stats *s = &d->stats;
    printf("data       %lld records from %lld file(s): %zu examples (%zu train, %zu eval), %lld tokens, "
           "%lld trained; %lld truncated, %lld dropped, longest %lld\n",
           (long long)s->records, (long long)s->files, d->n, n_train, n_eval, (long long)s->tokens,
           (long long)s->trained, (long long)s->truncated, (long long)s->dropped, (long long)s->max_len);
}

/* Harmony's system message states the date, today's by default: the run
 * keeps the day it started (as --chat-date among its saved arguments), so
 * that --resume renders the same tokens on another day. */
static int pin_chat_date(struct train_args *a, tune_err *err)
{
    static char today[16];
    time_t now = time(NULL);
    struct tm tm;
    if (!localtime_r(&now, &tm) || !strftime(today, sizeof today, "%Y-%m-%d", &tm))
        return err_set(err, "--chat-date: cannot read today's date");
    char **grown = realloc(a->all, sizeof *grown * (size_t)(a->n_all + 2));
    if (!grown)
        return err_set(err, "out of memory");
    a->all = grown;
    a->all[a->n_all++] = "--chat-date";
    a->all[a->n_all++] = today;
    a->chat_date = today;
    return 0;
}

static int run(struct train_args *a, tune_err *err)
{
    struct tokenizer *tok = NULL;
    struct dataset d = {0};
    struct data_template *tmpl = NULL;
    struct data_split split = {0};
    struct packer_stream train_s = {0}, eval_s = {0};
    struct batch_stream train_bs, eval_bs;
    struct llama m;
    struct trainer t;
    struct backend *be = NULL;
    int32_t eos[MODEL_MAX_EOS];
    bool model_ready = false, trainer_ready = false;
    int rc = -1;
    memset(&m, 0, sizeof m);
    memset(&t, 0, sizeof t);

    /* A run that cannot fit is refused before the data and the weights are read. */
    if (!(be = device_open(&a->device, err)) || llama_supports(&a->spec, &a->rc, be, err) ||
        device_check_fit(be, &a->spec, &a->rc, err))
        goto out;
    struct data_request req = {a->data,      a->template_path, a->chat_format,       &a->spec,
                               a->rc.seq,    a->chat_date,     a->reasoning_effort};
    bool chat;
    enum chat_format format;
    if (data_setup_chat_format(&req, &chat, &format, err) ||
        (chat && format == CHAT_FORMAT_HARMONY && !a->chat_date && pin_chat_date(a, err)))
        goto out;
    req.chat_date = a->chat_date;
    if (model_load_tokenizer(a->model, &tok, err) || model_eos_ids(a->model, tok, eos, err) < 0 ||
        data_setup_load(&req, tok, eos[0], &d, &tmpl, err))
        goto out;
    bool have_eval = a->eval_split > 0;
    if (have_eval && dataset_split(&d, a->eval_split, a->tc.seed, &split, err))
        goto out;
    print_data_stats(&d, have_eval ? split.n_train : d.n, have_eval ? split.n_test : 0);
    if (packer_stream_init(&train_s, &train_bs, &d, have_eval ? split.train : NULL, have_eval ? split.n_train : 0,
                           a->rc.seq, a->rc.micro_batch, a->tc.seed, false, err) ||
        (have_eval && packer_stream_init(&eval_s, &eval_bs, &d, split.test, split.n_test, a->rc.seq,
                                         a->rc.micro_batch, a->tc.seed, true, err)))
        goto out;

    be->bytes_peak = be->bytes_in_use; /* measure this run's own allocations */
    int64_t held_before = be->bytes_in_use;
    if (llama_init(&m, &a->spec, &a->rc, be, a->tc.seed, err) || llama_load_weights(&m, a->model, err))
        goto out;
    model_ready = true;
    m.unrecorded = a->no_graphs;
    llama_init_lora(&m);
    char total[32];
    printf("plan       %s on %s: %s allocated as planned (%d buffers in %d blocks), %lld trainable parameters\n",
           a->spec.name, m.be->name, units_fmt_bytes(m.plan.total, total, sizeof total), m.plan.n,
           PLAN_CATEGORY_COUNT, (long long)m.plan.trainable_params);

    a->tc.output_dir = a->output;
    a->tc.base_model = a->model;
    trainer_ready = true; /* trainer_free undoes a partial trainer_init too */
    if (trainer_init(&t, &m, &a->tc, &train_bs, err))
        goto out;
    if (a->resume) {
        if (trainer_resume(&t, a->resume, err))
            goto out;
        printf("resumed    %s at step %lld (epoch %lld)\n", a->resume, (long long)t.step, (long long)t.epoch);
    } else if (train_args_save(a, err)) {
        goto out;
    }
    printf("train      %lld optimizer steps of %lld micro-batch(es) of %lld x %lld tokens\n", (long long)t.total_steps,
           (long long)a->tc.grad_accum, (long long)a->rc.micro_batch, (long long)a->rc.seq);
    fflush(stdout);
    if (trainer_run(&t, &train_bs, have_eval ? &eval_bs : NULL, err))
        goto out;
    printf("done       %lld steps, last loss %.4f; %s in %s/final, metrics in %s/metrics.jsonl, curve in "
           "%s/loss.svg\n", (long long)t.step, t.last_loss, a->rc.method == METHOD_FULL ? "model" : "adapter",
           a->output, a->output, a->output);
    if (be->capture_begin && !m.unrecorded)
        printf("graphs     %lld of %lld micro-steps replayed as a CUDA graph (those of as many tokens as the one "
               "before)\n", (long long)m.replayed, (long long)m.backward_steps);
    device_print_memory(be, m.plan.total, be->bytes_peak - held_before);
    rc = 0;
out:
    if (trainer_ready)
        trainer_free(&t);
    if (model_ready || m.layers)
        llama_free(&m);
    device_close(be);
    packer_free(&train_s.p);
    packer_free(&eval_s.p);
    data_split_free(&split);
    dataset_free(&d);
    data_template_free(tmpl);
    tok_free(tok);
    return rc;
}

int cmd_train(int argc, char **argv)
{
    struct train_args a;
    tune_err err;
    char **saved = NULL;
    int n_saved = 0, n_loaded = 0, status = 0;
    /* --resume DIR alone: the run's own arguments come back from training_args.json. */
    if (argc == 2 && !strcmp(argv[0], "--resume")) {
        if (train_args_load_saved(argv[1], &saved, &n_saved, &err)) {
            fprintf(stderr, "tune train: %s\n", err.msg);
            return 2;
        }
        n_loaded = n_saved;
        /* The run continues where its checkpoint is, even if the folder moved. */
        static char checkpoint[4096];
        snprintf(checkpoint, sizeof checkpoint, "%s", argv[1]);
        char *parent = dirname(checkpoint); /* "run" of "run/checkpoint-4/" */
        saved[n_saved++] = "--resume";
        saved[n_saved++] = argv[1];
        saved[n_saved++] = "--output";
        saved[n_saved++] = parent;
        argc = n_saved;
        argv = saved;
    }
    if (train_args_parse(&a, argc, argv, &err)) {
        fprintf(stderr, "tune train: %s\n", err.msg);
        status = 2;
    } else if (a.help) {
        train_args_help();
    } else if (run(&a, &err)) {
        fprintf(stderr, "tune train: %s\n", err.msg);
        status = 1;
    }
    for (int k = 0; k < a.n_config; k++)
        free(a.all[k]);
    free(a.all);
    for (int k = 0; k < n_loaded; k++)
        free(saved[k]);
    free(saved);
    return status;
}
