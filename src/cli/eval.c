/* tune eval: the mean loss (and perplexity) of a model, with or without an
 * adapter, over every labelled token of a dataset, on the CPU or a GPU. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/units.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/data_setup.h"
#include "cli/device.h"
#include "cli/model_files.h"
#include "model/llama.h"
#include "model/peft.h"

enum { E_MODEL, E_ADAPTER, E_DATA, E_TEMPLATE, E_CHAT, E_CHAT_DATE, E_EFFORT, E_SEQ, E_MB, E_DEVICE, E_HELP, E_COUNT };

static const struct cli_opt eval_opts[] = {
    [E_MODEL] = {"--model", "DIR", "the base model folder"},
    [E_ADAPTER] = {"--adapter", "DIR", "a PEFT LoRA adapter to apply (default: the base alone)"},
    [E_DATA] = {"--data", "PATH", ".json / .jsonl file or folder"},
    [E_TEMPLATE] = {"--template", "FILE", "how to build prompt and completion from the records"},
    [E_CHAT] = {"--chat-format", "F", "for {\"messages\"} records"},
    [E_CHAT_DATE] = {"--chat-date", "YYYY-MM-DD", "the date harmony's system message states (a run's: its "
                                                  "training_args.json; default today)"},
    [E_EFFORT] = {"--reasoning-effort", "E", "harmony's system message: low, medium (default) or high"},
    [E_SEQ] = {"--seq", "N", "tokens per row; longer examples are truncated (default 512)"},
    [E_MB] = {"--micro-batch", "N", "rows per forward (default 1)"},
    [E_DEVICE] = {"--device", "D", DEVICE_HELP "; default auto"},
    [E_HELP] = {"--help", NULL, "show this help"},
};

static int run(const char **opt, int64_t seq, int64_t mb, tune_err *err)
{
    struct model_spec spec;
    struct run_config rc;
    if (spec_resolve(&spec, opt[E_MODEL], err))
        return -1;
    run_config_default(&rc, &spec);
    if (opt[E_ADAPTER] && peft_read_config(opt[E_ADAPTER], &spec, &rc, err))
        return -1;
    struct device_choice dc;
    if (device_choose(opt[E_DEVICE], &dc, err))
        return -1;
    rc.device = dc.kind;
    rc.seq = seq;
    rc.micro_batch = mb;
    rc.lora_dropout = 0;
    rc.grad_ckpt = GRAD_CKPT_FULL; /* no backward: keep only what forward needs */
    struct tokenizer *tok = NULL;
    struct dataset d = {0};
    struct data_template *tmpl = NULL;
    struct packer_stream ps = {0};
    struct batch_stream bs;
    struct llama m = {0};
    struct backend *be = NULL;
    int32_t eos[MODEL_MAX_EOS];
    struct data_request req = {opt[E_DATA], opt[E_TEMPLATE],   opt[E_CHAT],
                               &spec,       seq, opt[E_CHAT_DATE], opt[E_EFFORT]};
    int status = -1;
    if (model_load_tokenizer(opt[E_MODEL], &tok, err) || model_eos_ids(opt[E_MODEL], tok, eos, err) < 0 ||
        data_setup_load(&req, tok, eos[0], &d, &tmpl, err) ||
        packer_stream_init(&ps, &bs, &d, NULL, 0, seq, mb, 0, true, err) || !(be = device_open(&dc, err)) ||
        llama_init(&m, &spec, &rc, be, 0, err) || llama_load_weights(&m, opt[E_MODEL], err) ||
        (opt[E_ADAPTER] && peft_load_adapter(&m, opt[E_ADAPTER], err)))
        goto out;
    double loss;
    if (evaluate_loss(&m, &bs, &loss, err))
        goto out;
    printf("eval_loss %.6f  perplexity %.4f  (%zu examples, %lld labelled tokens%s%s)\n", loss, exp(loss), d.n,
           (long long)d.stats.trained, opt[E_ADAPTER] ? ", adapter " : ", base model", opt[E_ADAPTER] ? opt[E_ADAPTER] : "");
    status = 0;
out:
    if (m.layers)
        llama_free(&m);
    device_close(be);
    packer_free(&ps.p);
    dataset_free(&d);
    data_template_free(tmpl);
    tok_free(tok);
    return status;
}

int cmd_eval(int argc, char **argv)
{
    struct cli_args a = {argc, 0, argv};
    const char *opt[E_COUNT] = {0}, *v;
    int64_t seq = 512, mb = 1;
    tune_err err;
    int i;
    while ((i = cli_next(&a, eval_opts, E_COUNT, &v, &err)) >= 0) {
        if (i == E_HELP) {
            cli_print_help(stdout, "tune eval --model DIR [--adapter DIR] --data PATH [options]",
                           "Mean loss and perplexity over the labelled tokens of a dataset.", eval_opts, E_COUNT);
            return 0;
        }
        if ((i == E_SEQ && units_parse_int(v, "--seq", 2, 1 << 20, &seq, &err)) ||
            (i == E_MB && units_parse_int(v, "--micro-batch", 1, 1 << 16, &mb, &err))) {
            fprintf(stderr, "tune eval: %s\n", err.msg);
            return 2;
        }
        opt[i] = v;
    }
    if (i == -2 || !opt[E_MODEL] || !opt[E_DATA]) {
        fprintf(stderr, "tune eval: %s\n", i == -2 ? err.msg : "--model and --data are required");
        return 2;
    }
    if (run(opt, seq, mb, &err)) {
        fprintf(stderr, "tune eval: %s\n", err.msg);
        return 1;
    }
    return 0;
}
