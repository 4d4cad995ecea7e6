/* Normalizers: the Prepend and Replace steps of SentencePiece-style tokenizers (Llama 2's
 * Prepend("▁") then Replace(" ", "▁")). tokenizers normalizes each stretch of text between
 * added tokens on its own, so Prepend puts a "▁" after every special token as well; the
 * caller keeps that by normalizing stretch by stretch. Offsets are not tracked: tune needs
 * ids, not alignments. */
#include "text/tokenizer_impl.h"

int tok_normalize(const struct tokenizer *tok, struct tok_match_scratch *ms, const char *s,
                  size_t len, struct tok_buf *out, struct tok_buf *tmp, tune_err *err)
{
    out->n = 0;
    if (tok_buf_append(out, s, len) != 0)
        return err_set(err, "out of memory");
    for (size_t i = 0; i < tok->n_norm; i++) {
        const struct tok_norm *n = &tok->norm[i];
        tmp->n = 0;
        if (n->kind == TOK_NORM_PREPEND) {
            if (out->n == 0)
                continue;
            if (tok_buf_append(tmp, n->text, n->text_len) != 0 ||
                tok_buf_append(tmp, out->p, out->n) != 0)
                return err_set(err, "out of memory");
        } else if (tok_regex_replace_all(&n->pattern, ms, out->p, out->n, n->text,
                                         n->text_len, tmp, err) != 0) {
            return -1;
        }
        struct tok_buf t = *out;
        *out = *tmp;
        *tmp = t;
    }
    return 0;
}
