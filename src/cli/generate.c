/* tune generate: continues a prompt with a model (and adapter) over a KV
 * cache on the CPU or a GPU, greedy or sampled, stopping at the model's
 * end-of-sequence tokens or after --max-new tokens. The prompt is raw text,
 * tokenized as the tokenizer's post-processor makes it (BOS included), or with
 * --chat-format a user message rendered as the model's chat template renders
 * it with the generation prompt; then the turn's end tokens stop it too
 * (harmony's <|return|> and <|call|>). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/units.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/device.h"
#include "cli/model_files.h"
#include "model/llama.h"
#include "model/peft.h"
#include "model/sample.h"
#include "model/spec.h"
#include "text/chat.h"

enum { G_MODEL, G_ADAPTER, G_PROMPT, G_CHAT, G_EFFORT, G_MAX_NEW, G_TEMP, G_TOP_P, G_SEED, G_DEVICE, G_HELP, G_COUNT };

static const struct cli_opt gen_opts[] = {
    [G_MODEL] = {"--model", "DIR", "the base model folder"},
    [G_ADAPTER] = {"--adapter", "DIR", "a PEFT LoRA adapter to apply"},
    [G_PROMPT] = {"--prompt", "TEXT", "the text to continue"},
    [G_CHAT] = {"--chat-format", "F", "the prompt is a user message in chat format F (harmony, llama3, chatml, "
                                      "mistral; auto: the model's); stops at the end of the model's turn"},
    [G_EFFORT] = {"--reasoning-effort", "E", "with --chat-format harmony: low, medium (default) or high"},
    [G_MAX_NEW] = {"--max-new", "N", "tokens to generate at most (default 128)"},
    [G_TEMP] = {"--temperature", "T", "0 (default) is greedy"},
    [G_TOP_P] = {"--top-p", "P", "nucleus sampling mass (default 1.0)"},
    [G_SEED] = {"--seed", "N", "seed of the sampling (default 0)"},
    [G_DEVICE] = {"--device", "D", DEVICE_HELP "; default auto"},
    [G_HELP] = {"--help", NULL, "show this help"},
};

struct gen_settings {
    int64_t max_new, seed;
    double temperature, top_p;
};

/* The text to tokenize: --prompt as it is, or as a user turn of the chat
 * format with the generation prompt after it; a chat format adds its turn
 * ends to stop_ids. */
static int prompt_text(const char **opt, const struct model_spec *spec, const struct tokenizer *tok, char **text,
                       int32_t *stop_ids, int *n_stop, tune_err *err)
{
    if (!opt[G_CHAT])
        return (*text = strdup(opt[G_PROMPT])) ? 0 : err_set(err, "out of memory");
    enum chat_format format;
    if (strcmp(opt[G_CHAT], "auto") ? chat_format_parse(opt[G_CHAT], &format, err)
                                    : chat_format_for_model(spec_model_type(spec->arch), spec->vocab, &format, err))
        return err_prefix(err, "--chat-format");
    struct chat_message user = {.role = CHAT_ROLE_USER, .content = opt[G_PROMPT]};
    struct chat_options options = {.reasoning_effort = opt[G_EFFORT]};
    struct chat_text t = {0};
    if (chat_effort_check(opt[G_EFFORT], err))
        return err_prefix(err, "--reasoning-effort");
    if (chat_check_tokenizer(format, tok, err) || chat_render(format, &user, 1, &options, &t, err)) {
        chat_text_free(&t);
        return err_prefix(err, "--chat-format");
    }
    const char *open = chat_generation_prompt(format);
    if ((*text = malloc(t.len + strlen(open) + 1)))
        snprintf(*text, t.len + strlen(open) + 1, "%s%s", t.text, open);
    chat_text_free(&t);
    *n_stop += chat_turn_end_ids(format, tok, stop_ids + *n_stop);
    return *text ? 0 : err_set(err, "out of memory");
}

static int run(const char **opt, const struct gen_settings *g, tune_err *err)
{
    struct model_spec spec;
    struct run_config rc;
    struct tokenizer *tok = NULL;
    struct tok_ids ids = {0};
    struct llama m = {0};
    struct llama_kv_cache kv = {0};
    struct backend *be = NULL;
    struct device_choice dc;
    float *logits = NULL;
    char *prompt = NULL;
    int32_t stop_ids[MODEL_MAX_EOS + CHAT_MAX_TURN_ENDS];
    int n_stop, status = -1;
    if (spec_resolve(&spec, opt[G_MODEL], err) || model_load_tokenizer(opt[G_MODEL], &tok, err) ||
        (n_stop = model_eos_ids(opt[G_MODEL], tok, stop_ids, err)) < 0 ||
        prompt_text(opt, &spec, tok, &prompt, stop_ids, &n_stop, err) ||
        tok_encode(tok, prompt, strlen(prompt), opt[G_CHAT] ? 0 : TOK_ENCODE_ADD_SPECIAL, &ids, err))
        goto out;
    run_config_default(&rc, &spec);
    if (opt[G_ADAPTER] && peft_read_config(opt[G_ADAPTER], &spec, &rc, err))
        goto out;
    int64_t cap = (int64_t)ids.n + g->max_new;
    if (device_choose(opt[G_DEVICE], &dc, err))
        goto out;
    rc.device = dc.kind;
    rc.seq = cap;
    rc.micro_batch = 1;
    rc.lora_dropout = 0;
    rc.grad_ckpt = GRAD_CKPT_FULL;
    if (!(be = device_open(&dc, err)) || llama_init(&m, &spec, &rc, be, 0, err) || llama_load_weights(&m, opt[G_MODEL], err) ||
        (opt[G_ADAPTER] && peft_load_adapter(&m, opt[G_ADAPTER], err)) || llama_kv_cache_init(&kv, &m, cap, err))
        goto out;
    if (!(logits = malloc(sizeof(float) * (size_t)spec.vocab))) {
        err_set(err, "out of memory");
        goto out;
    }
    uint64_t rng = (uint64_t)g->seed;
    int32_t next;
    if (llama_decode(&m, &kv, ids.v, (int64_t)ids.n, logits, err))
        goto out;
    size_t prompt_n = ids.n;
    const char *stopped_at = NULL;
    for (int64_t k = 0; k < g->max_new && !stopped_at; k++) {
        next = sample_token(logits, spec.vocab, g->temperature, g->top_p, &rng);
        for (int e = 0; e < n_stop && !stopped_at; e++)
            if (next == stop_ids[e])
                stopped_at = tok_id_to_token(tok, next);
        if (stopped_at)
            break;
        if (ids.n == ids.cap) {
            int32_t *grown = realloc(ids.v, sizeof *grown * (ids.cap * 2 + 16));
            if (!grown) {
                err_set(err, "out of memory");
                goto out;
            }
            ids.v = grown;
            ids.cap = ids.cap * 2 + 16;
        }
        ids.v[ids.n++] = next;
        if (k + 1 < g->max_new && llama_decode(&m, &kv, &next, 1, logits, err))
            goto out;
    }
    /* Decoded as a whole: a character may span several byte-level tokens. */
    char *text = NULL;
    size_t len = 0;
    if (tok_decode(tok, ids.v + prompt_n, ids.n - prompt_n, 0, &text, &len, err))
        goto out;
    printf("%s%s\n", prompt, text);
    free(text);
    fprintf(stderr, "generated %zu tokens, %s%s\n", ids.n - prompt_n, stopped_at ? "stopped at " : "--max-new reached",
            stopped_at ? stopped_at : "");
    status = 0;
out:
    free(prompt);
    free(logits);
    if (kv.k)
        llama_kv_cache_free(&kv, &m);
    if (m.layers)
        llama_free(&m);
    device_close(be);
    tok_ids_free(&ids);
    tok_free(tok);
    return status;
}

int cmd_generate(int argc, char **argv)
{
    struct cli_args a = {argc, 0, argv};
    const char *opt[G_COUNT] = {0}, *v;
    struct gen_settings g = {128, 0, 0.0, 1.0};
    tune_err err;
    int i, bad = 0;
    while ((i = cli_next(&a, gen_opts, G_COUNT, &v, &err)) >= 0) {
        if (i == G_HELP) {
            cli_print_help(stdout, "tune generate --model DIR [--adapter DIR] --prompt TEXT [options]",
                           "Continues a prompt over a KV cache until an end-of-sequence token.", gen_opts, G_COUNT);
            return 0;
        }
        opt[i] = v;
        bad = bad || (i == G_MAX_NEW && units_parse_int(v, "--max-new", 1, 1 << 20, &g.max_new, &err)) ||
              (i == G_TEMP && units_parse_real(v, "--temperature", 0, 100, &g.temperature, &err)) ||
              (i == G_TOP_P && units_parse_real(v, "--top-p", 1e-6, 1, &g.top_p, &err)) ||
              (i == G_SEED && units_parse_int(v, "--seed", 0, INT64_MAX, &g.seed, &err));
    }
    if (i == -2 || bad || !opt[G_MODEL] || !opt[G_PROMPT]) {
        fprintf(stderr, "tune generate: %s\n", i == -2 || bad ? err.msg : "--model and --prompt are required");
        return 2;
    }
    if (run(opt, &g, &err)) {
        fprintf(stderr, "tune generate: %s\n", err.msg);
        return 1;
    }
    return 0;
}
