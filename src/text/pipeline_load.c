/* Reading the pipeline parts of a tokenizer.json: normalizer, pre_tokenizer,
 * post_processor and decoder. Each is a tagged object ("type") or a Sequence of them; a
 * Sequence is flattened into the tokenizer's step arrays, since applying a Sequence is
 * applying its members in order. An unsupported type is refused by name rather than
 * skipped: a silently ignored step would produce wrong ids that look right. */
#include "text/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#include "io/json.h"

/* GPT-2's split pattern, which tokenizers' ByteLevel uses when use_regex is set. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static const char *str_field(const cJSON *j, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, key));
}

static int get_type(const cJSON *j, const char **type, tune_err *err)
{
    if (!cJSON_IsObject(j) || !(*type = str_field(j, "type")))
        return err_set(err, "expected an object with a \"type\"");
    return 0;
}

static int unsupported(const char *type, const char *known, tune_err *err)
{
    char shown[ERR_SHOWN_SIZE];
    return err_set(err, "type \"%s\" is not supported (%s are)", err_shown(shown, type), known);
}

/* A boolean field, `def` when absent or null. */
static int bool_field(const cJSON *j, const char *key, bool def, bool *out, tune_err *err)
{
    *out = def;
    return json_get_bool(j, key, out, err);
}

static int copy_string(const char *s, char **out, size_t *len, tune_err *err)
{
    *len = strlen(s);
    if (!(*out = malloc(*len + 1)))
        return err_set(err, "out of memory");
    memcpy(*out, s, *len + 1);
    return 0;
}

/* {"String": s} or {"Regex": r} */
static int load_pattern(struct tok_regex *re, const cJSON *j, tune_err *err)
{
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
    const char *s;
    if ((s = str_field(pat, "String")))
        return tok_regex_compile(re, s, strlen(s), TOK_REGEX_LITERAL, err);
    if ((s = str_field(pat, "Regex")))
        return tok_regex_compile(re, s, strlen(s), TOK_REGEX_ONIG, err);
    return err_set(err, "pattern: expected {\"String\": ...} or {\"Regex\": ...}");
}

/* One character, as Metaspace and Strip take it. */
static int char_field(const cJSON *j, const char *key, uint32_t *cp, tune_err *err)
{
    const char *s = str_field(j, key);
    size_t n, len = s ? strlen(s) : 0;
    if (!s || len == 0 || tok_utf8_valid_prefix(s, len) != len)
        return err_set(err, "%s: expected one character", key);
    *cp = tok_utf8_decode(s, &n);
    if (n != len)
        return err_set(err, "%s: expected one character", key);
    return 0;
}

static int prepend_scheme(const cJSON *j, enum tok_prepend *out, tune_err *err)
{
    const char *s = str_field(j, "prepend_scheme");
    bool add_prefix_space = true;
    char shown[ERR_SHOWN_SIZE];
    if (bool_field(j, "add_prefix_space", true, &add_prefix_space, err) != 0)
        return -1;
    if (!s || strcmp(s, "always") == 0)
        *out = TOK_PREPEND_ALWAYS;
    else if (strcmp(s, "first") == 0)
        *out = TOK_PREPEND_FIRST;
    else if (strcmp(s, "never") == 0)
        *out = TOK_PREPEND_NEVER;
    else
        return err_set(err, "prepend_scheme: \"%s\" is not always, first or never",
                       err_shown(shown, s));
    /* Files older than prepend_scheme say add_prefix_space: false for never. */
    if (!add_prefix_space)
        *out = TOK_PREPEND_NEVER;
    return 0;
}

/* Calls add on every member of a Sequence's array `key`, prefixing errors with the index. */
static int each_member(struct tokenizer *tok, const cJSON *j, const char *key,
                       int (*add)(struct tokenizer *, const cJSON *, tune_err *), tune_err *err)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsArray(arr))
        return err_set(err, "%s: expected an array", key);
    int i = 0;
    for (const cJSON *m = arr->child; m; m = m->next, i++)
        if (add(tok, m, err) != 0)
            return err_prefix(err, "%s[%d]", key, i);
    return 0;
}

/* The Unicode normalization forms (no parameters), as tokenizers names them. */
static bool unicode_form_named(const char *type, enum tok_norm_kind *kind)
{
    static const struct {
        const char *name;
        enum tok_norm_kind kind;
    } forms[] = {{"NFC", TOK_NORM_NFC}, {"NFD", TOK_NORM_NFD}, {"NFKC", TOK_NORM_NFKC},
                 {"NFKD", TOK_NORM_NFKD}};
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        if (strcmp(type, forms[i].name) == 0) {
            *kind = forms[i].kind;
            return true;
        }
    }
    return false;
}

static int add_norm(struct tokenizer *tok, const cJSON *j, tune_err *err)
{
    const char *type;
    if (get_type(j, &type, err) != 0)
        return -1;
    if (strcmp(type, "Sequence") == 0)
        return each_member(tok, j, "normalizers", add_norm, err);
    struct tok_norm *norm = realloc(tok->norm, (tok->n_norm + 1) * sizeof *norm);
    if (!norm)
        return err_set(err, "out of memory");
    tok->norm = norm;
    struct tok_norm *n = &tok->norm[tok->n_norm];
    *n = (struct tok_norm){0};
    if (strcmp(type, "Prepend") == 0) {
        const char *s = str_field(j, "prepend");
        if (!s)
            return err_set(err, "Prepend: prepend: expected a string");
        n->kind = TOK_NORM_PREPEND;
        if (copy_string(s, &n->text, &n->text_len, err) != 0)
            return -1;
    } else if (strcmp(type, "Replace") == 0) {
        const char *s = str_field(j, "content");
        n->kind = TOK_NORM_REPLACE;
        if (!s)
            return err_set(err, "Replace: content: expected a string");
        if (copy_string(s, &n->text, &n->text_len, err) != 0)
            return -1;
        if (load_pattern(&n->pattern, j, err) != 0) {
            free(n->text);
            return err_prefix(err, "Replace");
        }
    } else if (!unicode_form_named(type, &n->kind)) {
        return unsupported(type, "Prepend, Replace, NFC, NFD, NFKC, NFKD and Sequence", err);
    }
    tok->n_norm++;
    return 0;
}

static int add_pretok(struct tokenizer *tok, const cJSON *j, tune_err *err)
{
    const char *type;
    if (get_type(j, &type, err) != 0)
        return -1;
    if (strcmp(type, "Sequence") == 0)
        return each_member(tok, j, "pretokenizers", add_pretok, err);
    if (tok->n_pretok == TOK_MAX_PRETOK)
        return err_set(err, "more than %d pre-tokenizer steps", TOK_MAX_PRETOK);
    struct tok_pretok *p = &tok->pretok[tok->n_pretok];
    *p = (struct tok_pretok){0};
    if (strcmp(type, "Split") == 0) {
        const char *behavior = str_field(j, "behavior");
        bool invert;
        if (bool_field(j, "invert", false, &invert, err) != 0)
            return err_prefix(err, "Split");
        if (invert)
            return err_set(err, "Split: invert: true is not supported");
        char shown[ERR_SHOWN_SIZE];
        if (!behavior || (strcmp(behavior, "Isolated") && strcmp(behavior, "Removed")))
            return err_set(err, "Split: behavior \"%s\" is not supported (Isolated and "
                                "Removed are)",
                           err_shown(shown, behavior ? behavior : "(missing)"));
        p->kind = TOK_PRETOK_SPLIT;
        p->remove_matches = strcmp(behavior, "Removed") == 0;
        if (load_pattern(&p->re, j, err) != 0)
            return err_prefix(err, "Split");
        p->has_re = true;
    } else if (strcmp(type, "ByteLevel") == 0) {
        bool use_regex;
        p->kind = TOK_PRETOK_BYTE_LEVEL;
        if (bool_field(j, "add_prefix_space", true, &p->add_prefix_space, err) != 0 ||
            bool_field(j, "use_regex", true, &use_regex, err) != 0)
            return err_prefix(err, "ByteLevel");
        if (use_regex && tok_regex_compile(&p->re, gpt2_pattern, sizeof gpt2_pattern - 1,
                                           TOK_REGEX_ONIG, err) != 0)
            return -1;
        p->has_re = use_regex;
        tok->bpe.byte_mode = true;
    } else if (strcmp(type, "Metaspace") == 0) {
        uint32_t cp;
        p->kind = TOK_PRETOK_METASPACE;
        if (char_field(j, "replacement", &cp, err) != 0 || prepend_scheme(j, &p->prepend, err) ||
            bool_field(j, "split", true, &p->split, err) != 0)
            return err_prefix(err, "Metaspace");
        p->rep_len = tok_utf8_encode(cp, p->rep);
    } else {
        return unsupported(type, "Split, ByteLevel, Metaspace and Sequence", err);
    }
    tok->n_pretok++;
    return 0;
}

/* The ids a template's special token stands for, from the template's special_tokens. */
static int template_ids(struct tokenizer *tok, const cJSON *j, const char *name, bool prefix,
                        tune_err *err)
{
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
    char shown[ERR_SHOWN_SIZE];
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(specials, name), "ids");
    if (!cJSON_IsArray(ids))
        return err_set(err, "special_tokens: \"%s\": expected an ids array",
                       err_shown(shown, name));
    int32_t **arr = prefix ? &tok->prefix_ids : &tok->suffix_ids;
    size_t *n = prefix ? &tok->n_prefix : &tok->n_suffix;
    for (const cJSON *v = ids->child; v; v = v->next) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= TOK_MAX_ID)
            return err_set(err, "special_tokens: \"%s\": bad id", err_shown(shown, name));
        int32_t *grown = realloc(*arr, (*n + 1) * sizeof **arr);
        if (!grown)
            return err_set(err, "out of memory");
        *arr = grown;
        (*arr)[(*n)++] = (int32_t)v->valuedouble;
    }
    return 0;
}

/* TemplateProcessing's single template: the special tokens before $A and after it. The
 * pair template is not read: tune encodes one sequence at a time. */
static int load_template(struct tokenizer *tok, const cJSON *j, tune_err *err)
{
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single");
    if (!cJSON_IsArray(single))
        return err_set(err, "single: expected an array");
    if (tok->n_prefix || tok->n_suffix)
        return err_set(err, "a second template is not supported");
    bool seen_a = false;
    for (const cJSON *item = single->child; item; item = item->next) {
        const cJSON *special = cJSON_GetObjectItemCaseSensitive(item, "SpecialToken");
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(item, "Sequence");
        const char *id = str_field(special ? special : seq, "id");
        if (!id)
            return err_set(err, "single: expected SpecialToken or Sequence items with an id");
        if (seq) {
            if (strcmp(id, "A") != 0 || seen_a)
                return err_set(err, "single: only one sequence, $A, is supported");
            seen_a = true;
        } else if (template_ids(tok, j, id, !seen_a, err) != 0) {
            return -1;
        }
    }
    return seen_a ? 0 : err_set(err, "single: the template has no $A");
}

static int add_post(struct tokenizer *tok, const cJSON *j, tune_err *err)
{
    const char *type;
    if (get_type(j, &type, err) != 0)
        return -1;
    if (strcmp(type, "Sequence") == 0)
        return each_member(tok, j, "processors", add_post, err);
    if (strcmp(type, "ByteLevel") == 0)
        return 0; /* it only trims offsets */
    if (strcmp(type, "TemplateProcessing") == 0)
        return load_template(tok, j, err) == 0 ? 0 : err_prefix(err, "TemplateProcessing");
    return unsupported(type, "TemplateProcessing, ByteLevel and Sequence", err);
}

static int add_dec(struct tokenizer *tok, const cJSON *j, tune_err *err)
{
    const char *type;
    if (get_type(j, &type, err) != 0)
        return -1;
    if (strcmp(type, "Sequence") == 0)
        return each_member(tok, j, "decoders", add_dec, err);
    struct tok_dec *dec = realloc(tok->dec, (tok->n_dec + 1) * sizeof *dec);
    if (!dec)
        return err_set(err, "out of memory");
    tok->dec = dec;
    struct tok_dec *d = &tok->dec[tok->n_dec];
    *d = (struct tok_dec){0};
    if (strcmp(type, "ByteLevel") == 0) {
        d->kind = TOK_DEC_BYTE_LEVEL;
    } else if (strcmp(type, "ByteFallback") == 0) {
        d->kind = TOK_DEC_BYTE_FALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        d->kind = TOK_DEC_FUSE;
    } else if (strcmp(type, "Replace") == 0) {
        const char *s = str_field(j, "content");
        d->kind = TOK_DEC_REPLACE;
        if (!s)
            return err_set(err, "Replace: content: expected a string");
        if (copy_string(s, &d->text, &d->text_len, err) != 0)
            return -1;
        if (load_pattern(&d->pattern, j, err) != 0) {
            free(d->text);
            return err_prefix(err, "Replace");
        }
    } else if (strcmp(type, "Strip") == 0) {
        int64_t start = 0, stop = 0;
        d->kind = TOK_DEC_STRIP;
        if (char_field(j, "content", &d->ch, err) != 0 ||
            json_get_int(j, "start", true, 0, 1 << 20, &start, err) != 0 ||
            json_get_int(j, "stop", true, 0, 1 << 20, &stop, err) != 0)
            return err_prefix(err, "Strip");
        d->start = (size_t)start;
        d->stop = (size_t)stop;
    } else if (strcmp(type, "Metaspace") == 0) {
        d->kind = TOK_DEC_METASPACE;
        if (char_field(j, "replacement", &d->ch, err) != 0 ||
            prepend_scheme(j, &d->prepend, err) != 0)
            return err_prefix(err, "Metaspace");
    } else {
        return unsupported(type, "ByteLevel, ByteFallback, Fuse, Replace, Strip, Metaspace and "
                                 "Sequence", err);
    }
    tok->n_dec++;
    return 0;
}

/* A part that is absent or null is no step at all. */
static int load_part(struct tokenizer *tok, const cJSON *j, const char *name,
                     int (*add)(struct tokenizer *, const cJSON *, tune_err *), tune_err *err)
{
    if (!j || cJSON_IsNull(j))
        return 0;
    return add(tok, j, err) == 0 ? 0 : err_prefix(err, "%s", name);
}

int tok_load_normalizer(struct tokenizer *tok, const cJSON *j, tune_err *err)
{
    return load_part(tok, j, "normalizer", add_norm, err);
}

int tok_load_pre_tokenizer(struct tokenizer *tok, const cJSON *j, tune_err *err)
{
    return load_part(tok, j, "pre_tokenizer", add_pretok, err);
}

int tok_load_post_processor(struct tokenizer *tok, const cJSON *j, tune_err *err)
{
    return load_part(tok, j, "post_processor", add_post, err);
}

int tok_load_decoder(struct tokenizer *tok, const cJSON *j, tune_err *err)
{
    return load_part(tok, j, "decoder", add_dec, err);
}
