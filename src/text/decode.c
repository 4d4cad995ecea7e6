/* tok_decode: ids -> tokens -> the decoder chain -> text, the way tokenizers' decode runs
 * (each decoder maps the list of token strings to a new list, the result is joined).
 * Keeping the list form, rather than decoding straight into one buffer, is what makes
 * Llama 2's chain come out right: ByteFallback must see <0xNN> tokens one by one and Strip
 * must see the first token after Fuse. Decoding is not on the training path, so the few
 * copies that costs are fine. */
#include "text/tokenizer_impl.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* A list of strings: token i is text.p[end[i-1] .. end[i]). */
struct strs {
    struct tok_buf text;
    size_t *end;
    size_t n, cap;
};

static void strs_free(struct strs *l)
{
    tok_buf_free(&l->text);
    free(l->end);
    *l = (struct strs){0};
}

static const char *strs_at(const struct strs *l, size_t i, size_t *len)
{
    size_t start = i ? l->end[i - 1] : 0;
    *len = l->end[i] - start;
    return l->text.p ? l->text.p + start : ""; /* no text at all yet */
}

/* Closes the string begun at the end of the previous one (its bytes already appended). */
static int strs_close(struct strs *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        size_t *end = realloc(l->end, cap * sizeof *end);
        if (!end)
            return -1;
        l->end = end;
        l->cap = cap;
    }
    l->end[l->n++] = l->text.n;
    return 0;
}

static int strs_push(struct strs *l, const char *s, size_t len)
{
    return tok_buf_append(&l->text, s, len) == 0 ? strs_close(l) : -1;
}

/* Every token to bytes through GPT-2's map (as-is when a character is outside it), all
 * joined and made valid UTF-8: one string. */
static int byte_level(const struct strs *in, struct strs *out)
{
    struct tok_buf raw = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < in->n; i++) {
        size_t len;
        const char *t = strs_at(in, i, &len);
        int ok = tok_byte_level_decode(&raw, t, len);
        rc = ok < 0 ? -1 : ok == 0 ? tok_buf_append(&raw, t, len) : 0;
    }
    if (rc == 0)
        rc = tok_utf8_append_lossy(&out->text, raw.p, raw.n);
    tok_buf_free(&raw);
    return rc == 0 ? strs_close(out) : -1;
}

/* The byte of a "<0xNN>" token, or -1. */
static int fallback_byte(const char *t, size_t len)
{
    if (len != 6 || memcmp(t, "<0x", 3) != 0 || t[5] != '>')
        return -1;
    int v = 0;
    for (int k = 3; k < 5; k++) {
        char c = t[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* A run of byte tokens: one string if the bytes are valid UTF-8, else one U+FFFD each. */
static int flush_bytes(struct tok_buf *bytes, struct strs *out)
{
    if (bytes->n == 0)
        return 0;
    int rc = 0;
    if (tok_utf8_valid_prefix(bytes->p, bytes->n) == bytes->n)
        rc = strs_push(out, bytes->p, bytes->n);
    else
        for (size_t k = 0; rc == 0 && k < bytes->n; k++)
            rc = strs_push(out, "\xEF\xBF\xBD", 3);
    bytes->n = 0;
    return rc;
}

static int byte_fallback(const struct strs *in, struct strs *out)
{
    struct tok_buf bytes = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < in->n; i++) {
        size_t len;
        const char *t = strs_at(in, i, &len);
        int b = fallback_byte(t, len);
        if (b >= 0) {
            char c = (char)b;
            rc = tok_buf_append(&bytes, &c, 1);
        } else {
            rc = flush_bytes(&bytes, out);
            if (rc == 0)
                rc = strs_push(out, t, len);
        }
    }
    if (rc == 0)
        rc = flush_bytes(&bytes, out);
    tok_buf_free(&bytes);
    return rc;
}

/* Strip: up to `start` leading and `stop` trailing copies of one character. */
static int strip(const struct tok_dec *d, const char *t, size_t len, struct strs *out)
{
    char ch[4];
    size_t n = tok_utf8_encode(d->ch, ch);
    size_t a = 0, b = len;
    for (size_t k = 0; k < d->start && b - a >= n && memcmp(t + a, ch, n) == 0; k++)
        a += n;
    for (size_t k = 0; k < d->stop && b - a >= n && memcmp(t + b - n, ch, n) == 0; k++)
        b -= n;
    return strs_push(out, t + a, b - a);
}

/* Metaspace: the replacement character becomes a space, except in the first token, where
 * tokenizers drops it (unless prepend_scheme is never). */
static int metaspace(const struct tok_dec *d, size_t index, const char *t, size_t len,
                     struct strs *out)
{
    char rep[4];
    size_t n = tok_utf8_encode(d->ch, rep), run = 0;
    bool drop = index == 0 && d->prepend != TOK_PREPEND_NEVER;
    for (size_t i = 0; i + n <= len; i++) {
        if (memcmp(t + i, rep, n) != 0)
            continue;
        if (tok_buf_append(&out->text, t + run, i - run) != 0 ||
            (!drop && tok_buf_append(&out->text, " ", 1) != 0))
            return -1;
        run = i + n;
        i += n - 1;
    }
    return tok_buf_append(&out->text, t + run, len - run) == 0 ? strs_close(out) : -1;
}

/* One decoder over the list; returns -1 with err set. */
static int run_step(const struct tok_dec *d, struct tok_match_scratch *ms,
                    const struct strs *in, struct strs *out, tune_err *err)
{
    int rc = 0;
    switch (d->kind) {
    case TOK_DEC_BYTE_LEVEL:
        rc = byte_level(in, out);
        break;
    case TOK_DEC_BYTE_FALLBACK:
        rc = byte_fallback(in, out);
        break;
    case TOK_DEC_FUSE:
        rc = tok_buf_append(&out->text, in->text.p, in->text.n) == 0 ? strs_close(out) : -1;
        break;
    case TOK_DEC_REPLACE:
    case TOK_DEC_STRIP:
    case TOK_DEC_METASPACE:
        for (size_t i = 0; rc == 0 && i < in->n; i++) {
            size_t len;
            const char *t = strs_at(in, i, &len);
            if (d->kind == TOK_DEC_STRIP)
                rc = strip(d, t, len, out);
            else if (d->kind == TOK_DEC_METASPACE)
                rc = metaspace(d, i, t, len, out);
            else if (tok_regex_replace_all(&d->pattern, ms, t, len, d->text, d->text_len,
                                           &out->text, err) != 0)
                return -1;
            else
                rc = strs_close(out);
        }
        break;
    }
    return rc == 0 ? 0 : err_set(err, "out of memory");
}

/* The text an id decodes from: its token, or for a TOK_ID_DECODES_NORMALIZED added token the
 * normalized text (rare enough to search for). */
static const char *token_text(const struct tokenizer *tok, int32_t id)
{
    if (id >= 0 && id < tok->n_ids && (tok->id_flags[id] & TOK_ID_DECODES_NORMALIZED))
        for (size_t k = 0; k < tok->n_added; k++)
            if (tok->added[k].id == id && tok->added[k].key != tok->added[k].content)
                return tok->added[k].key;
    return tok_id_to_token(tok, id);
}

int tok_decode(const struct tokenizer *tok, const int32_t *ids, size_t n, unsigned flags,
               char **text, size_t *len, tune_err *err)
{
    struct strs a = {0}, b = {0};
    struct tok_match_scratch ms = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *t = token_text(tok, ids[i]);
        if (!t)
            rc = err_set(err, "id %" PRId32 " at position %zu is not in the vocabulary",
                         ids[i], i);
        else if (!(flags & TOK_DECODE_SKIP_SPECIAL) || !tok_is_special(tok, ids[i]))
            rc = strs_push(&a, t, strlen(t)) == 0 ? 0 : err_set(err, "out of memory");
    }
    for (size_t k = 0; rc == 0 && k < tok->n_dec; k++) {
        b.text.n = b.n = 0;
        rc = run_step(&tok->dec[k], &ms, &a, &b, err);
        struct strs t = a;
        a = b;
        b = t;
    }
    /* Without a decoder tokenizers joins the tokens with spaces. */
    struct tok_buf out = {0};
    for (size_t i = 0; rc == 0 && i < a.n; i++) {
        size_t tlen;
        const char *t = strs_at(&a, i, &tlen);
        if ((i && tok->n_dec == 0 && tok_buf_append(&out, " ", 1) != 0) ||
            tok_buf_append(&out, t, tlen) != 0)
            rc = err_set(err, "out of memory");
    }
    if (rc == 0 && tok_buf_append(&out, "", 1) != 0)
        rc = err_set(err, "out of memory");
    strs_free(&a);
    strs_free(&b);
    tok_match_scratch_free(&ms);
    if (rc != 0) {
        tok_buf_free(&out);
        return -1;
    }
    *text = out.p;
    *len = out.n - 1;
    return 0;
}
