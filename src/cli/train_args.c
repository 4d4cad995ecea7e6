/* See train_args.h. One table of flags; YAML config files are read with
 * libyaml (a flat mapping of flag names to scalars) and turned into the same
 * flags, so every path into the parser is the command line's. */
#include "cli/train_args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <yaml.h>

#include "base/units.h"
#include "cli/args.h"
#include "io/atomic_file.h"
#include "io/json.h"
#include "text/chat.h"

enum {
    T_MODEL, T_DATA, T_TEMPLATE, T_CHAT, T_OUTPUT, T_RESUME, T_CONFIG, T_METHOD, T_R, T_ALPHA, T_DROPOUT,
    T_TARGETS, T_LAYERS, T_EXPERT_LAYERS, T_SEQ, T_MB, T_GA, T_EPOCHS, T_MAX_STEPS, T_LR, T_SCHEDULE, T_WARMUP,
    T_WD, T_CLIP, T_EVAL_SPLIT, T_VAL_FRACTION, T_EVAL_STEPS, T_SAVE_STEPS, T_SAVE_LIMIT, T_LOG_STEPS, T_SEED, T_CKPT,
    T_OFFLOAD_CKPT, T_CKPT_KEEP, T_CHAT_DATE, T_EFFORT, T_DEVICE, T_SKIP_NONFINITE, T_RSLORA, T_NO_GRAPHS, T_HELP, T_COUNT
};

static const struct cli_opt train_opts[] = {
    [T_MODEL] = {"--model", "DIR", "Hugging Face model folder (config.json, safetensors, tokenizer.json)"},
    [T_DATA] = {"--data", "PATH", ".json / .jsonl file or a folder of them"},
    [T_TEMPLATE] = {"--template", "FILE", "how to build prompt and completion from other record shapes"},
    [T_CHAT] = {"--chat-format", "F", "harmony, llama3, chatml or mistral for {\"messages\"} records"},
    [T_OUTPUT] = {"--output", "DIR", "checkpoints, metrics.jsonl, loss.svg and final/ go here"},
    [T_RESUME] = {"--resume", "DIR", "continue OUTPUT/checkpoint-N exactly where it stopped"},
    [T_CONFIG] = {"--config", "FILE", "YAML file of these flags (long names as keys); flags override it"},
    [T_METHOD] = {"--method", "M", "lora (default) or full (every weight, or those of --targets)"},
    [T_R] = {"--r", "N", "LoRA rank (default 16)"},
    [T_ALPHA] = {"--alpha", "A", "LoRA alpha (default 32)"},
    [T_DROPOUT] = {"--dropout", "P", "LoRA dropout (default 0.05)"},
    [T_TARGETS] = {"--targets", "LIST", "q,k,v,o,gate,up,down or all-linear (default q,k,v,o)"},
    [T_LAYERS] = {"--target-layers", "LIST", "only these layers (default all)"},
    [T_EXPERT_LAYERS] = {"--expert-layers", "LIST", EXPERT_LAYERS_HELP},
    [T_SEQ] = {"--seq", "N", "tokens per packed row; longer examples are truncated (default 512)"},
    [T_MB] = {"--micro-batch", "N", "rows per micro-batch (default 1)"},
    [T_GA] = {"--grad-accum", "N", "micro-batches per optimizer step (default 1)"},
    [T_EPOCHS] = {"--epochs", "N", "passes over the training split (default 3)"},
    [T_MAX_STEPS] = {"--max-steps", "N", "stop after N optimizer steps instead"},
    [T_LR] = {"--lr", "X", "peak learning rate (default 2e-4)"},
    [T_SCHEDULE] = {"--lr-schedule", "S", "constant, linear (default) or cosine"},
    [T_WARMUP] = {"--warmup-steps", "N", "linear warmup steps (default 0)"},
    [T_WD] = {"--weight-decay", "X", "AdamW weight decay (default 0)"},
    [T_CLIP] = {"--max-grad-norm", "X", "global gradient-norm clip (default 1.0; 0 disables)"},
    [T_EVAL_SPLIT] = {"--eval-split", "F", "fraction (or count) held out for evaluation (default 0: none)"},
    [T_VAL_FRACTION] = {"--val-fraction", "F", "the same as --eval-split (the seeds' name: --val-fraction 0.1 --seed 42)"},
    [T_EVAL_STEPS] = {"--eval-steps", "N", "evaluate every N steps (and at the end)"},
    [T_SAVE_STEPS] = {"--save-steps", "N", "checkpoint every N steps"},
    [T_SAVE_LIMIT] = {"--save-total-limit", "K", "keep the last K checkpoints (default all)"},
    [T_LOG_STEPS] = {"--logging-steps", "N", "progress line every N steps off a terminal (default 1)"},
    [T_SEED] = {"--seed", "N", "seed of LoRA init, dropout, split and shuffle (default 42)"},
    [T_CKPT] = {"--grad-ckpt", "P", "gradient checkpointing: none (default), full, or selective (matmul outputs kept)"},
    [T_OFFLOAD_CKPT] = {"--offload-checkpoints", NULL, OFFLOAD_CKPT_HELP},
    [T_CKPT_KEEP] = {"--ckpt-keep", "N", CKPT_KEEP_HELP},
    [T_CHAT_DATE] = {"--chat-date", "YYYY-MM-DD", "the date harmony's system message states (default: the day the "
                                                   "run starts, kept for --resume)"},
    [T_EFFORT] = {"--reasoning-effort", "E", "harmony's system message: low, medium (default) or high"},
    [T_DEVICE] = {"--device", "D", DEVICE_HELP "; default auto"},
    [T_SKIP_NONFINITE] = {"--skip-nonfinite", NULL, "skip a step whose loss or gradient is not finite (default: stop)"},
    [T_RSLORA] = {"--rslora", NULL, "rank-stabilized LoRA: scale alpha / sqrt(r) (PEFT's use_rslora)"},
    [T_NO_GRAPHS] = {"--no-cuda-graphs", NULL, "run each step op by op (default: replay it as a CUDA graph)"},
    [T_HELP] = {"--help", NULL, "show this help"},
};
_Static_assert(sizeof train_opts / sizeof train_opts[0] == T_COUNT, "train options");

void train_args_help(void)
{
    cli_print_help(stdout, "tune train --model DIR --data PATH --output DIR [options] | tune train --resume DIR",
                   "LoRA fine-tuning of a Llama-family model (Llama 2/3, Mistral, Qwen2). Writes a PEFT adapter.",
                   train_opts, T_COUNT);
}

/* Appends "--key" "value" pairs of a flat YAML mapping to *v. */
static int yaml_args(const char *path, char ***v, int *n, tune_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(err, "--config %s: cannot open", path);
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    yaml_event_t e;
    int depth = 0, rc = 0;
    bool key = true, done = false;
    while (!done && !rc) {
        if (!yaml_parser_parse(&p, &e)) {
            rc = err_set(err, "--config %s: line %zu: %s", path, p.problem_mark.line + 1,
                         p.problem ? p.problem : "invalid YAML");
            break;
        }
        switch (e.type) {
        case YAML_MAPPING_START_EVENT:
            if (++depth > 1)
                rc = err_set(err, "--config %s: line %zu: values must be scalars", path, e.start_mark.line + 1);
            break;
        case YAML_SEQUENCE_START_EVENT:
            rc = err_set(err, "--config %s: line %zu: write lists as \"q,k,v\"", path, e.start_mark.line + 1);
            break;
        case YAML_SCALAR_EVENT: {
            char **grown = realloc(*v, sizeof **v * (size_t)(*n + 2));
            if (!grown) {
                rc = err_set(err, "out of memory");
                break;
            }
            *v = grown;
            const char *s = (const char *)e.data.scalar.value;
            size_t len = strlen(s) + 3;
            char *arg = malloc(len);
            if (arg)
                snprintf(arg, len, key ? "--%s" : "%s", s);
            (*v)[(*n)++] = arg;
            key = !key;
            break;
        }
        case YAML_STREAM_END_EVENT: done = true; break;
        default: break;
        }
        yaml_event_delete(&e);
    }
    yaml_parser_delete(&p);
    fclose(f);
    if (!rc && !key)
        rc = err_set(err, "--config %s: a key has no value", path);
    return rc;
}

static int apply(struct train_args *a, int opt, const char *v, tune_err *err)
{
    struct run_config *rc = &a->rc;
    struct train_config *tc = &a->tc;
    int64_t n;
    int c;
    switch (opt) {
    case T_METHOD:
        if (!strcmp(v, "full")) {
            rc->method = METHOD_FULL;
            rc->targets = 0; /* every weight, unless --targets names some */
            return 0;
        }
        if (strcmp(v, "lora"))
            return err_set(err, "--method: '%s': tune train does lora and full today (qlora is planned)", v);
        return 0;
    case T_R: return units_parse_int(v, "--r", 1, 4096, &rc->lora_r, err);
    case T_ALPHA: return units_parse_real(v, "--alpha", 1e-6, 1e6, &rc->lora_alpha, err);
    case T_DROPOUT: return units_parse_real(v, "--dropout", 0, 0.999, &rc->lora_dropout, err);
    case T_TARGETS: return run_parse_targets(rc, &a->spec, v, err);
    case T_LAYERS: return run_parse_layers(rc, &a->spec, v, err);
    case T_EXPERT_LAYERS: return run_parse_expert_layers(rc, &a->spec, v, err);
    case T_SEQ: return units_parse_int(v, "--seq", 2, 1 << 20, &rc->seq, err);
    case T_MB: return units_parse_int(v, "--micro-batch", 1, 1 << 16, &rc->micro_batch, err);
    case T_GA: return units_parse_int(v, "--grad-accum", 1, 1 << 20, &tc->grad_accum, err);
    case T_EPOCHS: return units_parse_int(v, "--epochs", 1, 1 << 20, &tc->epochs, err);
    case T_MAX_STEPS: return units_parse_int(v, "--max-steps", 1, INT64_MAX / 4, &tc->max_steps, err);
    case T_LR: return units_parse_real(v, "--lr", 1e-12, 10, &tc->adamw.lr, err);
    case T_SCHEDULE:
        if ((c = run_lookup(lr_schedule_names, LR_SCHEDULE_COUNT, v)) < 0)
            return err_set(err, "--lr-schedule: '%s' is not one of constant, linear, cosine", v);
        tc->schedule = (enum lr_schedule)c;
        return 0;
    case T_WARMUP: return units_parse_int(v, "--warmup-steps", 0, INT64_MAX / 4, &tc->warmup_steps, err);
    case T_WD: return units_parse_real(v, "--weight-decay", 0, 10, &tc->adamw.weight_decay, err);
    case T_CLIP: return units_parse_real(v, "--max-grad-norm", 0, 1e9, &tc->max_grad_norm, err);
    case T_EVAL_SPLIT:
    case T_VAL_FRACTION: return units_parse_real(v, train_opts[opt].name, 0, 1e9, &a->eval_split, err);
    case T_EVAL_STEPS: return units_parse_int(v, "--eval-steps", 1, INT64_MAX / 4, &tc->eval_steps, err);
    case T_SAVE_STEPS: return units_parse_int(v, "--save-steps", 1, INT64_MAX / 4, &tc->save_steps, err);
    case T_SAVE_LIMIT: return units_parse_int(v, "--save-total-limit", 1, 1 << 20, &tc->save_total_limit, err);
    case T_LOG_STEPS: return units_parse_int(v, "--logging-steps", 1, INT64_MAX / 4, &tc->logging_steps, err);
    case T_SEED:
        if (units_parse_int(v, "--seed", 0, INT64_MAX, &n, err))
            return -1;
        tc->seed = (uint64_t)n;
        return 0;
    case T_CKPT:
        if ((c = run_lookup(run_grad_ckpt_names, GRAD_CKPT_COUNT, v)) < 0)
            return err_set(err, "--grad-ckpt: '%s' is not one of none, full, selective", v);
        rc->grad_ckpt = (enum grad_ckpt)c;
        return 0;
    case T_OFFLOAD_CKPT: rc->offload_checkpoints = true; return 0;
    case T_CKPT_KEEP: return units_parse_int(v, "--ckpt-keep", 0, SPEC_MAX_LAYERS, &rc->ckpt_keep_layers, err);
    case T_CHAT_DATE: a->chat_date = v; return 0;
    case T_EFFORT:
        a->reasoning_effort = v;
        return chat_effort_check(v, err) ? err_prefix(err, "--reasoning-effort") : 0;
    case T_SKIP_NONFINITE: tc->skip_nonfinite = true; return 0;
    case T_RSLORA: rc->use_rslora = true; return 0;
    case T_NO_GRAPHS: a->no_graphs = true; return 0;
    case T_DEVICE:
        if (device_parse(v, &a->device, err))
            return -1;
        device_resolve(&a->device);
        rc->device = a->device.kind;
        return 0;
    default: return 0;
    }
}

int train_args_parse(struct train_args *a, int argc, char **argv, tune_err *err)
{
    memset(a, 0, sizeof *a);
    /* Pass 1: the paths, --config and --help; the model decides the rest's meaning. */
    char **all = NULL;
    int n = 0;
    struct cli_args ca = {argc, 0, argv};
    const char *v;
    int i;
    while ((i = cli_next(&ca, train_opts, T_COUNT, &v, err)) >= 0)
        if (i == T_CONFIG && yaml_args(v, &all, &n, err)) {
            a->all = all;
            a->n_config = n;
            return -1;
        }
        else if (i == T_HELP)
            a->help = true;
    a->all = all; /* freed by the caller, also on the early returns */
    a->n_config = n;
    if (i == -2 || a->help)
        return i == -2 ? -1 : 0;
    char **grown = realloc(all, sizeof *all * (size_t)(n + argc + 1));
    if (!grown)
        return err_set(err, "out of memory");
    a->all = all = grown;
    for (int k = 0; k < argc; k++)
        all[n + k] = argv[k];
    int total = n + argc;
    a->n_all = total;
    int rc = 0;
    for (int pass = 0; pass < 2 && !rc; pass++) {
        struct cli_args cb = {total, 0, all};
        while (!rc && (i = cli_next(&cb, train_opts, T_COUNT, &v, err)) >= 0) {
            const char **path[] = {[T_MODEL] = &a->model, [T_DATA] = &a->data, [T_TEMPLATE] = &a->template_path,
                                   [T_CHAT] = &a->chat_format, [T_OUTPUT] = &a->output, [T_RESUME] = &a->resume,
                                   [T_CONFIG] = &a->config};
            if (pass == 0 && i <= T_CONFIG)
                *path[i] = v;
            else if (pass == 1 && i > T_CONFIG)
                rc = apply(a, i, v, err);
        }
        if (i == -2)
            rc = -1;
        if (pass == 0 && !rc) {
            if (!a->model)
                rc = err_set(err, "--model is required");
            else if (spec_resolve(&a->spec, a->model, err))
                rc = -1;
            else {
                run_config_default(&a->rc, &a->spec);
                a->device = (struct device_choice){.is_auto = true};
                device_resolve(&a->device);
                a->rc.device = a->device.kind;
                a->rc.seq = 512;
                a->tc = (struct train_config){.adamw = {2e-4, 0.9, 0.999, 1e-8, 0.0}, .schedule = LR_SCHEDULE_LINEAR,
                                              .epochs = 3, .grad_accum = 1, .max_grad_norm = 1.0,
                                              .logging_steps = 1, .seed = 42};
            }
        }
    }
    /* The config file's strings are kept: a->... may point into them. */
    if (!rc && !a->resume && (!a->data || !a->output))
        rc = err_set(err, "--data and --output are required (or --resume)");
    return rc;
}

int train_args_save(const struct train_args *a, tune_err *err)
{
    cJSON *arr = cJSON_CreateArray();
    for (int k = 0; k < a->n_all; k++)
        if (strcmp(a->all[k], "--config"))
            cJSON_AddItemToArray(arr, cJSON_CreateString(a->all[k]));
        else
            k++; /* its flags come first in a->all already */
    char *text = cJSON_Print(arr);
    cJSON_Delete(arr);
    char path[4096];
    snprintf(path, sizeof path, "%s/training_args.json", a->output);
    int rc = text ? atomic_file_save(path, text, strlen(text), err) : err_set(err, "out of memory");
    free(text);
    return rc;
}

int train_args_load_saved(const char *checkpoint, char ***argv, int *argc, tune_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/../training_args.json", checkpoint);
    cJSON *arr = json_load_file(path, 1 << 20, err);
    if (!arr)
        return -1;
    int n = cJSON_GetArraySize(arr);
    *argv = calloc((size_t)n + 4, sizeof **argv); /* room for --resume DIR --output DIR */
    if (!*argv || !cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        return err_set(err, "%s: expected a list of arguments", path);
    }
    for (int k = 0; k < n; k++) {
        const cJSON *s = cJSON_GetArrayItem(arr, k);
        if (!cJSON_IsString(s)) {
            cJSON_Delete(arr);
            return err_set(err, "%s: argument %d is not a string", path, k);
        }
        (*argv)[k] = strdup(s->valuestring);
    }
    *argc = n;
    cJSON_Delete(arr);
    return 0;
}
