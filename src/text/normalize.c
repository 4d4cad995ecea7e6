/* Normalizers: the Prepend and Replace steps of SentencePiece-style tokenizers (Llama 2's
 * Prepend("▁") then Replace(" ", "▁")) and the Unicode forms NFC, NFD, NFKC and NFKD (Qwen2
 * uses NFC), which libutf8proc computes rather than tables of our own. tokenizers normalizes
 * each stretch of text between added tokens on its own, so Prepend puts a "▁" after every
 * special token as well; the caller keeps that by normalizing stretch by stretch. Offsets are
 * not tracked: tune needs ids, not alignments. */
#include "text/tokenizer_impl.h"

#include <stdlib.h>

#include <utf8proc.h>

/* utf8proc's options for a normalization form (those of its utf8proc_NFC and kin, without
 * NULLTERM: the text may hold NUL bytes). */
static utf8proc_option_t unicode_form(enum tok_norm_kind kind)
{
    switch (kind) {
    case TOK_NORM_NFC:
        return UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    case TOK_NORM_NFD:
        return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
    case TOK_NORM_NFKC:
        return UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    default:
        return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    }
}

/* Characters utf8proc normalizes and tokenizers does not: new since Unicode 9.0, the version
 * of tokenizers' tables (the unicode-normalization-alignments crate). tokenizers treats each
 * as a starter without a decomposition, and passing it through while normalizing the text on
 * either side of it on its own does the same. tools/ref/unicode_norm_gaps.py makes the table:
 * utf8proc 2.8.0 (Unicode 15.0.0) against tokenizers 0.23.3, 244 code points. */
static const struct {
    uint32_t lo, hi;
} tokenizers_unknown[] = {
    {0x7FD, 0x7FD}, {0x898, 0x89F}, {0x8CA, 0x8D3}, {0x9FE, 0x9FE},
    {0xC3C, 0xC3C}, {0xD3B, 0xD3C}, {0xEBA, 0xEBA}, {0x1715, 0x1715},
    {0x1ABF, 0x1ACE}, {0x1DF6, 0x1DFA}, {0x32FF, 0x32FF}, {0xA7F2, 0xA7F4},
    {0xA82C, 0xA82C}, {0xAB69, 0xAB69}, {0x10781, 0x10785}, {0x10787, 0x107B0},
    {0x107B2, 0x107BA}, {0x10D24, 0x10D27}, {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF},
    {0x10F46, 0x10F50}, {0x10F82, 0x10F85}, {0x11070, 0x11070}, {0x1133B, 0x1133B},
    {0x1145E, 0x1145E}, {0x11839, 0x1183A}, {0x11930, 0x11930}, {0x11938, 0x11938},
    {0x1193D, 0x1193E}, {0x11943, 0x11943}, {0x119E0, 0x119E0}, {0x11A34, 0x11A34},
    {0x11A47, 0x11A47}, {0x11A99, 0x11A99}, {0x11D42, 0x11D42}, {0x11D44, 0x11D45},
    {0x11D97, 0x11D97}, {0x11F41, 0x11F42}, {0x16FF0, 0x16FF1}, {0x1E030, 0x1E06D},
    {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE}, {0x1E2EC, 0x1E2EF},
    {0x1E4EC, 0x1E4EF}, {0x1F16C, 0x1F16C}, {0x1FBF0, 0x1FBF9},
};

static bool tokenizers_knows(uint32_t cp)
{
    size_t lo = 0, hi = sizeof tokenizers_unknown / sizeof *tokenizers_unknown;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < tokenizers_unknown[mid].lo)
            hi = mid;
        else if (cp > tokenizers_unknown[mid].hi)
            lo = mid + 1;
        else
            return false;
    }
    return true;
}

/* Appends s[0..len) (valid UTF-8) in the form of `kind` to out, as utf8proc gives it. */
static int append_mapped(struct tok_buf *out, enum tok_norm_kind kind, const char *s,
                         size_t len, tune_err *err)
{
    if (len == 0)
        return 0;
    utf8proc_uint8_t *d = NULL;
    utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &d,
                                      unicode_form(kind));
    int rc = n < 0 ? err_set(err, "normalizer: %s", utf8proc_errmsg(n))
             : tok_buf_append(out, d, (size_t)n) != 0 ? err_set(err, "out of memory") : 0;
    free(d);
    return rc;
}

/* Appends s[0..len) (valid UTF-8) in the form of `kind` to out, as tokenizers gives it. */
static int append_unicode_form(struct tok_buf *out, enum tok_norm_kind kind, const char *s,
                               size_t len, tune_err *err)
{
    size_t start = 0, i = 0, n;
    for (; i < len; i += n) {
        uint32_t cp = tok_utf8_decode(s + i, &n);
        if (cp < tokenizers_unknown[0].lo || tokenizers_knows(cp))
            continue;
        if (append_mapped(out, kind, s + start, i - start, err) != 0)
            return -1;
        if (tok_buf_append(out, s + i, n) != 0)
            return err_set(err, "out of memory");
        start = i + n;
    }
    return append_mapped(out, kind, s + start, len - start, err);
}

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
        } else if (n->kind == TOK_NORM_REPLACE) {
            if (tok_regex_replace_all(&n->pattern, ms, out->p, out->n, n->text, n->text_len,
                                      tmp, err) != 0)
                return -1;
        } else if (append_unicode_form(tmp, n->kind, out->p, out->n, err) != 0) {
            return -1;
        }
        struct tok_buf t = *out;
        *out = *tmp;
        *tmp = t;
    }
    return 0;
}
