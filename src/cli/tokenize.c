/* tune tokenize: what the tokenizer and the data pipeline make of a text or a dataset, before
 * any training: the ids of --text or of a file (--file; with --jsonl one text per line, for
 * batch checks against other tokenizers), or for --data the statistics of the examples
 * (tokens, trained tokens, truncated, dropped) and the first example token by token with its
 * loss mask. The EOS defaults to the eos_token of the tokenizer_config.json beside the
 * tokenizer, where transformers' tokenizer.eos_token_id (the seeds' EOS) comes from. */
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
#include "io/read_file.h"

enum {
    OPT_TOKENIZER, OPT_TEXT, OPT_FILE, OPT_JSON, OPT_JSONL, OPT_DATA, OPT_TEMPLATE, OPT_CHAT,
    OPT_MAX_LENGTH, OPT_KEEP_END, OPT_EOS, OPT_NO_SPECIAL, OPT_HELP, OPT_COUNT
};

static const struct cli_opt tokenize_opts[] = {
    [OPT_TOKENIZER] = {"--tokenizer", "FILE", "a tokenizer.json"},
    [OPT_TEXT] = {"--text", "TEXT", "print the ids of this text"},
    [OPT_FILE] = {"--file", "F", "print the ids of the text in file F"},
    [OPT_JSON] = {"--json", NULL, "print the ids as one JSON array"},
    [OPT_JSONL] = {"--jsonl", NULL, "F holds one JSON string per line: print one JSON array of "
                                    "ids per line"},
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

/* Prints the ids of text[0..len): space-separated, or as a JSON array in the layout of
 * Python's json.dumps ("[1, 2, 3]") so that outputs compare as text. */
static int print_ids(const struct tokenizer *tok, const char *text, size_t len, unsigned flags, bool json,
                     tune_err *err)
{
    struct tok_ids ids = {0};
    int rc = tok_encode(tok, text, len, flags, &ids, err);
    if (rc == 0) {
        fputs(json ? "[" : "", stdout);
        for (size_t i = 0; i < ids.n; i++)
            printf(i == 0 ? "%d" : json ? ", %d" : " %d", ids.v[i]);
        fputs(json ? "]\n" : "\n", stdout);
    }
    tok_ids_free(&ids);
    return rc;
}

static int encode_file(const struct tokenizer *tok, const char *path, unsigned flags, bool json, tune_err *err)
{
    size_t len;
    char *text = io_read_file(path, 0, &len, err);
    if (!text)
        return -1;
    int rc = print_ids(tok, text, len, flags, json, err);
    free(text);
    return rc ? err_prefix(err, "%s", path) : 0;
}

/* Whether a JSON string literal writes \u0000, which cJSON cannot keep (its strings end at
 * the first NUL): refused rather than cut. */
static bool has_escaped_nul(const char *s)
{
    for (; *s; s++)
        if (*s == '\\') {
            if (s[1] == 'u' && strncmp(s + 2, "0000", 4) == 0)
                return true;
            if (s[1])
                s++;
        }
    return false;
}

/* One JSON string per line of path -> one JSON array of ids per line of output, in order. A
 * line that is not one JSON string (a blank line included) is an error naming it, so the
 * output lines always pair with the input lines. */
static int encode_jsonl(const struct tokenizer *tok, const char *path, unsigned flags, tune_err *err)
{
    size_t len;
    char *text = io_read_file(path, 0, &len, err);
    if (!text)
        return -1;
    int rc = 0;
    long long line = 0;
    for (char *at = text; rc == 0 && at < text + len; line++) {
        char *nl = memchr(at, '\n', (size_t)(text + len - at)), *end = nl ? nl : text + len;
        *end = 0;
        if (end > at && end[-1] == '\r')
            *--end = 0;
        cJSON *v = memchr(at, 0, (size_t)(end - at)) ? NULL : cJSON_Parse(at);
        if (!cJSON_IsString(v))
            rc = err_set(err, "%s:%lld: not a JSON string", path, line + 1);
        else if (has_escaped_nul(at))
            rc = err_set(err, "%s:%lld: \\u0000 in a string is not supported", path, line + 1);
        else if (print_ids(tok, v->valuestring, strlen(v->valuestring), flags, true, err))
            rc = err_prefix(err, "%s:%lld", path, line + 1);
        cJSON_Delete(v);
        at = (nl ? nl : end) + 1;
    }
    free(text);
    return rc;
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
    unsigned flags = o.add_special ? TOK_ENCODE_ADD_SPECIAL : 0;
    if (rc == 0 && a->v[OPT_TEXT])
        rc = print_ids(tok, a->v[OPT_TEXT], strlen(a->v[OPT_TEXT]), flags, a->v[OPT_JSON] != NULL, err);
    if (rc == 0 && a->v[OPT_FILE])
        rc = a->v[OPT_JSONL] ? encode_jsonl(tok, a->v[OPT_FILE], flags, err)
                             : encode_file(tok, a->v[OPT_FILE], flags, a->v[OPT_JSON] != NULL, err);
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
            cli_print_help(stdout, "tune tokenize --tokenizer FILE (--text TEXT | --file F | --data PATH) "
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
    if (!a.v[OPT_TOKENIZER] || (!a.v[OPT_TEXT] && !a.v[OPT_FILE] && !a.v[OPT_DATA])) {
        fprintf(stderr, "tune tokenize: give --tokenizer FILE and --text TEXT, --file F or --data PATH\n");
        return 2;
    }
    const char *misuse = NULL;
    if (a.v[OPT_TEXT] && a.v[OPT_FILE])
        misuse = "give --text or --file, not both";
    else if (a.v[OPT_JSONL] && !a.v[OPT_FILE])
        misuse = "--jsonl reads --file F";
    else if (a.v[OPT_JSON] && !a.v[OPT_TEXT] && !a.v[OPT_FILE])
        misuse = "--json prints the ids of --text or --file";
    if (misuse) {
        fprintf(stderr, "tune tokenize: %s\n", misuse);
        return 2;
    }
    if (run(&a, &err)) {
        fprintf(stderr, "tune tokenize: %s\n", err.msg);
        return 1;
    }
    return 0;
}
