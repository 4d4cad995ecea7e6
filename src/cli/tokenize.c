/* tune tokenize: what the tokenizer and the data pipeline make of a text or a dataset, before
 * any training: the ids of --text, or for --data the statistics of the examples (tokens,
 * trained tokens, truncated, dropped) and the first example token by token with its loss
 * mask. The EOS defaults to the eos_token of the tokenizer_config.json beside the tokenizer,
 * where transformers' tokenizer.eos_token_id (the seeds' EOS) comes from. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/units.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "data/dataset.h"
#include "data/template.h"
#include "io/json.h"

enum {
    OPT_TOKENIZER, OPT_TEXT, OPT_DATA, OPT_TEMPLATE, OPT_CHAT, OPT_MAX_LENGTH, OPT_KEEP_END,
    OPT_EOS, OPT_NO_SPECIAL, OPT_HELP, OPT_COUNT
};

static const struct cli_opt tokenize_opts[] = {
    [OPT_TOKENIZER] = {"--tokenizer", "FILE", "a tokenizer.json"},
    [OPT_TEXT] = {"--text", "TEXT", "print the ids of this text"},
    [OPT_DATA] = {"--data", "PATH", "a .json / .jsonl dataset or a directory of them: statistics "
                                    "and the first example"},
    [OPT_TEMPLATE] = {"--template", "FILE", "build prompt and completion from each record's fields "
                                            "(src/data/template.h)"},
    [OPT_CHAT] = {"--chat-format", "F", "render \"messages\" records: harmony, llama3, chatml or "
                                        "mistral"},
    [OPT_MAX_LENGTH] = {"--max-length", "N", "truncate examples to N tokens (default: no limit)"},
    [OPT_KEEP_END] = {"--keep-end", NULL, "truncate by dropping the start (default: the end)"},
    [OPT_EOS] = {"--eos", "TOKEN", "token appended after texts and completions, or none "
                                   "(default: eos_token of tokenizer_config.json beside FILE)"},
    [OPT_NO_SPECIAL] = {"--no-special", NULL, "skip the tokenizer's post-processor (no BOS)"},
    [OPT_HELP] = {"--help", NULL, "show this help"},
};
_Static_assert(sizeof tokenize_opts / sizeof tokenize_opts[0] == OPT_COUNT, "tokenize options");

struct tokenize_args {
    const char *v[OPT_COUNT]; /* the value of each option given; "" for a switch */
    int64_t max_length;
    enum chat_format chat_format;
};

/* The EOS id: --eos (a token, or "none"), else tokenizer_config.json's eos_token, else none. */
static int resolve_eos(const struct tokenizer *tok, const char *tok_path, const char *arg,
                       int32_t *eos, tune_err *err)
{
    *eos = -1;
    if (arg) {
        if (strcmp(arg, "none") == 0)
            return 0;
        if ((*eos = tok_token_to_id(tok, arg)) < 0)
            return err_set(err, "--eos: '%s' is not a token of %s", arg, tok_path);
        return 0;
    }
    const char *slash = strrchr(tok_path, '/');
    int dir_len = slash ? (int)(slash - tok_path + 1) : 0;
    char path[4096];
    snprintf(path, sizeof path, "%.*stokenizer_config.json", dir_len, tok_path);
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    fclose(f);
    cJSON *cfg = json_load_file(path, 64 << 20, err);
    if (!cfg)
        return -1;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(cfg, "eos_token");
    if (cJSON_IsObject(e))
        e = cJSON_GetObjectItemCaseSensitive(e, "content");
    int rc = 0;
    if (cJSON_IsString(e) && (*eos = tok_token_to_id(tok, e->valuestring)) < 0)
        rc = err_set(err, "%s: eos_token '%s' is not a token of the tokenizer", path,
                     e->valuestring);
    cJSON_Delete(cfg);
    return rc;
}

/* Prints one token's text on one line: newlines and tabs escaped. */
static void print_token(const struct tokenizer *tok, int32_t id, bool masked)
{
    char *text = NULL;
    size_t len = 0;
    tune_err err;
    if (tok_decode(tok, &id, 1, 0, &text, &len, &err))
        len = 0;
    fputs(masked ? "[" : "", stdout);
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\n')
            fputs("\\n", stdout);
        else if (text[i] == '\t')
            fputs("\\t", stdout);
        else
            putchar(text[i]);
    }
    fputs(masked ? "]" : "", stdout);
    free(text);
}

static void print_stats(const struct dataset *d, const struct data_options *o, const char *path)
{
    const struct data_stats *s = &d->stats;
    char buf[64];
    printf("data        %s (%lld file%s, %lld records)\n", path, (long long)s->files,
           s->files == 1 ? "" : "s", (long long)s->records);
    printf("examples    %zu (%lld dropped: no trained token)\n", d->n, (long long)s->dropped);
    printf("tokens      %s (longest example %lld)\n", units_fmt_count(s->tokens, buf, sizeof buf),
           (long long)s->max_len);
    printf("trained     %s (%.1f%% of tokens)\n", units_fmt_count(s->trained, buf, sizeof buf),
           s->tokens ? 100.0 * (double)s->trained / (double)s->tokens : 0.0);
    if (o->max_length)
        printf("truncated   %lld (to %lld tokens, keeping the %s)\n", (long long)s->truncated,
               (long long)o->max_length, o->truncate == DATA_TRUNCATE_KEEP_END ? "end" : "start");
    else
        printf("truncated   0 (no --max-length)\n");
    if (o->eos_id >= 0)
        printf("eos         %s (%d)\n", tok_id_to_token(o->tok, o->eos_id), o->eos_id);
    else
        printf("eos         none appended\n");
    const struct data_example *e = &d->ex[0];
    printf("\nfirst example, %d tokens, %d trained ([bracketed] tokens get no loss):\n", e->len,
           e->trained);
    for (int32_t t = 0; t < e->len; t++) {
        if (t)
            putchar('|');
        /* position 0 is never a label, whatever its mask says */
        print_token(o->tok, d->ids[e->off + t], t == 0 || !d->mask[e->off + t]);
    }
    putchar('\n');
}

static int run(const struct tokenize_args *a, tune_err *err)
{
    struct tokenizer *tok = NULL;
    struct data_template *tmpl = NULL;
    struct dataset d = {0};
    struct data_options o = {0};
    int rc = tok_load(&tok, a->v[OPT_TOKENIZER], err);
    if (rc == 0) {
        data_options_init(&o, tok);
        o.add_special = !a->v[OPT_NO_SPECIAL];
        o.truncate = a->v[OPT_KEEP_END] ? DATA_TRUNCATE_KEEP_END : DATA_TRUNCATE_KEEP_START;
        o.max_length = a->max_length;
        o.chat = a->v[OPT_CHAT] != NULL;
        o.chat_format = a->chat_format;
        if (a->v[OPT_DATA]) /* --text prints the tokenizer's ids alone */
            rc = resolve_eos(tok, a->v[OPT_TOKENIZER], a->v[OPT_EOS], &o.eos_id, err);
    }
    if (rc == 0 && a->v[OPT_TEMPLATE])
        rc = data_template_load(&tmpl, a->v[OPT_TEMPLATE], err);
    o.tmpl = tmpl;
    if (rc == 0 && a->v[OPT_TEXT]) {
        struct tok_ids ids = {0};
        rc = tok_encode(tok, a->v[OPT_TEXT], strlen(a->v[OPT_TEXT]),
                        o.add_special ? TOK_ENCODE_ADD_SPECIAL : 0, &ids, err);
        for (size_t i = 0; rc == 0 && i < ids.n; i++)
            printf("%s%d", i ? " " : "", ids.v[i]);
        if (rc == 0)
            printf("\n");
        tok_ids_free(&ids);
    }
    if (rc == 0 && a->v[OPT_DATA] && (rc = dataset_load(&d, a->v[OPT_DATA], &o, err)) == 0)
        print_stats(&d, &o, a->v[OPT_DATA]);
    dataset_free(&d);
    data_template_free(tmpl);
    tok_free(tok);
    return rc;
}

int cmd_tokenize(int argc, char **argv)
{
    struct cli_args ca = {argc, 0, argv};
    struct tokenize_args a = {0};
    const char *value;
    tune_err err;
    int i;
    while ((i = cli_next(&ca, tokenize_opts, OPT_COUNT, &value, &err)) >= 0) {
        if (i == OPT_HELP) {
            cli_print_help(stdout, "tune tokenize --tokenizer FILE (--text TEXT | --data PATH) "
                           "[options]", "Prints the ids of a text, or what a dataset becomes: "
                           "examples, tokens, trained tokens, and the first example with its "
                           "loss mask.", tokenize_opts, OPT_COUNT);
            return 0;
        }
        a.v[i] = value ? value : "";
    }
    if (i == -2 ||
        (a.v[OPT_MAX_LENGTH] &&
         units_parse_int(a.v[OPT_MAX_LENGTH], "--max-length", 2, 1 << 24, &a.max_length, &err)) ||
        (a.v[OPT_CHAT] && chat_format_parse(a.v[OPT_CHAT], &a.chat_format, &err))) {
        fprintf(stderr, "tune tokenize: %s\n", err.msg);
        return 2;
    }
    if (!a.v[OPT_TOKENIZER] || (!a.v[OPT_TEXT] && !a.v[OPT_DATA])) {
        fprintf(stderr, "tune tokenize: give --tokenizer FILE and --text TEXT or --data PATH\n");
        return 2;
    }
    if (run(&a, &err)) {
        fprintf(stderr, "tune tokenize: %s\n", err.msg);
        return 1;
    }
    return 0;
}
