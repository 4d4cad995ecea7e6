/* tok_encode: the order of tokenizers' encode, which the ids depend on. Added tokens that
 * match raw text are cut out first; each stretch between them is normalized, cut again at
 * added tokens that match normalized text, pre-tokenized, and BPE-encoded; the template
 * (BOS) goes around the whole. All scratch lives in one context per call, so a tokenizer
 * is shared by threads without locks. */
#include "text/tokenizer_impl.h"

static int push(struct tok_encode_ctx *c, int32_t id)
{
    return tok_ids_push(c->out, id) == 0 ? 0 : err_set(c->err, "out of memory");
}

/* A stretch of text between raw-matched added tokens. */
static int encode_stretch(struct tok_encode_ctx *c, const char *s, size_t len, bool at_start,
                          bool skip_special)
{
    const struct tokenizer *tok = c->tok;
    if (tok->n_norm) {
        if (tok_normalize(tok, &c->ms, s, len, &c->norm, &c->norm_tmp, c->err) != 0)
            return -1;
        s = c->norm.p;
        len = c->norm.n;
    }
    size_t pos = 0, done = 0;
    struct tok_added_match m;
    while (tok_added_next(tok, &tok->norm_set, &c->ms, s, len, skip_special, &pos, done, &m)) {
        if (m.start > done && tok_pretokenize(c, 0, s + done, m.start - done,
                                              at_start && done == 0) != 0)
            return -1;
        if (push(c, m.id) != 0)
            return -1;
        done = m.end;
    }
    return tok_pretokenize(c, 0, s + done, len - done, at_start && done == 0);
}

static int encode_text(struct tok_encode_ctx *c, const char *s, size_t len, bool skip_special)
{
    const struct tokenizer *tok = c->tok;
    size_t pos = 0, done = 0;
    struct tok_added_match m;
    while (tok_added_next(tok, &tok->raw_set, &c->ms, s, len, skip_special, &pos, done, &m)) {
        if (m.start > done &&
            encode_stretch(c, s + done, m.start - done, done == 0, skip_special) != 0)
            return -1;
        if (push(c, m.id) != 0)
            return -1;
        done = m.end;
    }
    if (done == len)
        return 0;
    return encode_stretch(c, s + done, len - done, done == 0, skip_special);
}

int tok_encode(const struct tokenizer *tok, const char *text, size_t len, unsigned flags,
               struct tok_ids *ids, tune_err *err)
{
    size_t valid = tok_utf8_valid_prefix(text, len);
    if (valid != len)
        return err_set(err, "text is not valid UTF-8 at byte %zu", valid);
    struct tok_encode_ctx c = {.tok = tok, .out = ids, .err = err};
    size_t mark = ids->n;
    bool add_special = flags & TOK_ENCODE_ADD_SPECIAL;
    int rc = 0;
    for (size_t i = 0; add_special && rc == 0 && i < tok->n_prefix; i++)
        rc = push(&c, tok->prefix_ids[i]);
    if (rc == 0)
        rc = encode_text(&c, text, len, flags & TOK_ENCODE_SPECIAL_AS_TEXT);
    for (size_t i = 0; add_special && rc == 0 && i < tok->n_suffix; i++)
        rc = push(&c, tok->suffix_ids[i]);
    tok_match_scratch_free(&c.ms);
    tok_bpe_scratch_free(&c.bpe);
    for (size_t i = 0; i < TOK_MAX_PRETOK; i++)
        tok_buf_free(&c.step_buf[i]);
    tok_buf_free(&c.norm);
    tok_buf_free(&c.norm_tmp);
    if (rc != 0)
        ids->n = mark;
    return rc;
}
