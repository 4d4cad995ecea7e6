/* Pre-tokenizers: Split (the model's regex: Llama 3, o200k, cl100k), ByteLevel (GPT-2's
 * prefix space and regex) and Metaspace (SentencePiece's "▁"). tokenizers applies each step
 * to every piece the previous step made; here a piece goes depth-first through all the
 * steps into BPE before the next piece is cut, so no list of pieces is ever built and a
 * step that rewrites a piece (a prefix space, "▁" for " ") reuses one buffer per step.
 * ByteLevel's byte -> character mapping is no step at all: byte-level vocabularies are
 * stored as raw bytes (see tokenizer_impl.h). */
#include "text/tokenizer_impl.h"

#include <string.h>

/* Cuts s at the matches of re (kept as pieces unless remove) and passes every non-empty
 * piece on to step `next`. An empty match only separates the text around it, as in
 * tokenizers. */
static int split_regex(struct tok_encode_ctx *c, size_t next, const struct tok_regex *re,
                       bool remove, const char *s, size_t len, bool at_start)
{
    size_t pos = 0, from = 0, a, b;
    int found;
    while ((found = tok_regex_find(re, &c->ms, s, len, from, &a, &b, c->err)) == 1) {
        if (a > pos && tok_pretokenize(c, next, s + pos, a - pos, at_start && pos == 0) != 0)
            return -1;
        if (!remove && b > a && tok_pretokenize(c, next, s + a, b - a, at_start && a == 0) != 0)
            return -1;
        pos = b;
        from = b;
        if (a == b) {
            if (a == len)
                break;
            size_t k;
            tok_utf8_decode(s + a, &k);
            from = a + k;
        }
    }
    if (found < 0)
        return -1;
    return pos < len ? tok_pretokenize(c, next, s + pos, len - pos, at_start && pos == 0) : 0;
}

static int byte_level(struct tok_encode_ctx *c, size_t step, const char *s, size_t len,
                      bool at_start)
{
    const struct tok_pretok *p = &c->tok->pretok[step];
    if (p->add_prefix_space && s[0] != ' ') {
        struct tok_buf *buf = &c->step_buf[step];
        buf->n = 0;
        if (tok_buf_append(buf, " ", 1) != 0 || tok_buf_append(buf, s, len) != 0)
            return err_set(c->err, "out of memory");
        s = buf->p;
        len = buf->n;
    }
    if (p->has_re)
        return split_regex(c, step + 1, &p->re, false, s, len, at_start);
    return tok_pretokenize(c, step + 1, s, len, at_start);
}

/* Metaspace: " " -> "▁", a "▁" in front (always, or only at the start of the text), then
 * (split) a cut before every "▁", each "▁" staying with what follows it. */
static int metaspace(struct tok_encode_ctx *c, size_t step, const char *s, size_t len,
                     bool at_start)
{
    const struct tok_pretok *p = &c->tok->pretok[step];
    struct tok_buf *buf = &c->step_buf[step];
    bool has_rep = s[0] == ' ' || (len >= p->rep_len && memcmp(s, p->rep, p->rep_len) == 0);
    bool prepend = !has_rep && (p->prepend == TOK_PREPEND_ALWAYS ||
                                (p->prepend == TOK_PREPEND_FIRST && at_start));
    buf->n = 0;
    if (prepend && tok_buf_append(buf, p->rep, p->rep_len) != 0)
        return err_set(c->err, "out of memory");
    for (size_t i = 0, run = 0; i <= len; i++) {
        if (i < len && s[i] != ' ')
            continue;
        if (tok_buf_append(buf, s + run, i - run) != 0 ||
            (i < len && tok_buf_append(buf, p->rep, p->rep_len) != 0))
            return err_set(c->err, "out of memory");
        run = i + 1;
    }
    if (!p->split)
        return tok_pretokenize(c, step + 1, buf->p, buf->n, at_start);
    size_t start = 0;
    for (size_t i = 1; i + p->rep_len <= buf->n; i++) {
        if (memcmp(buf->p + i, p->rep, p->rep_len) != 0)
            continue;
        if (tok_pretokenize(c, step + 1, buf->p + start, i - start, at_start && start == 0))
            return -1;
        start = i;
    }
    return tok_pretokenize(c, step + 1, buf->p + start, buf->n - start, at_start && start == 0);
}

int tok_pretokenize(struct tok_encode_ctx *c, size_t step, const char *s, size_t len,
                    bool at_start)
{
    if (len == 0)
        return 0;
    if (step == c->tok->n_pretok)
        return tok_bpe_encode_word(&c->tok->bpe, &c->bpe, s, len, c->out, c->err);
    const struct tok_pretok *p = &c->tok->pretok[step];
    switch (p->kind) {
    case TOK_PRETOK_SPLIT:
        return split_regex(c, step + 1, &p->re, p->remove_matches, s, len, at_start);
    case TOK_PRETOK_BYTE_LEVEL:
        return byte_level(c, step, s, len, at_start);
    case TOK_PRETOK_METASPACE:
        return metaspace(c, step, s, len, at_start);
    }
    return err_set(c->err, "pre-tokenizer step %zu has no kind", step);
}
