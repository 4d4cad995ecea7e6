/* Building a tokenizer's tables (shared by the tokenizer.json and tiktoken loaders),
 * freeing it, and the id <-> token lookups. Every id keeps its text as tokenizer.json
 * writes it, so tok_id_to_token answers the same for a rank file as for the converted
 * tokenizer.json; the model's own map is keyed by what BPE sees (raw bytes in byte mode). */
#include "text/tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ensure_id(struct tokenizer *tok, int32_t id)
{
    if (id < tok->n_ids)
        return 0;
    size_t n = (size_t)id + 1;
    if (n > tok->id_cap) {
        size_t cap = tok->id_cap ? tok->id_cap : 1024;
        while (cap < n)
            cap *= 2;
        uint32_t *off = realloc(tok->id_off, cap * sizeof *off);
        if (!off)
            return -1;
        tok->id_off = off;
        uint8_t *flags = realloc(tok->id_flags, cap);
        if (!flags)
            return -1;
        tok->id_flags = flags;
        tok->id_cap = cap;
    }
    for (size_t i = (size_t)tok->n_ids; i < n; i++) {
        tok->id_off[i] = UINT32_MAX;
        tok->id_flags[i] = 0;
    }
    tok->n_ids = (int32_t)n;
    return 0;
}

int tok_set_id_text(struct tokenizer *tok, int32_t id, const char *text, size_t len)
{
    if (ensure_id(tok, id) != 0)
        return -1;
    if (tok->id_off[id] != UINT32_MAX)
        return 0;
    if (tok->id_text.n + len + 1 >= UINT32_MAX)
        return -1;
    tok->id_off[id] = (uint32_t)tok->id_text.n;
    return tok_buf_append(&tok->id_text, text, len) == 0 &&
                   tok_buf_append(&tok->id_text, "", 1) == 0 ? 0 : -1;
}

/* The raw bytes of a token in GPT-2 form into raw (room for len bytes). False when a
 * character is outside the map: such a token can never come out of byte-level BPE. */
static bool to_raw(const char *text, size_t len, char *raw, size_t *raw_len)
{
    size_t n = 0;
    for (size_t i = 0, k; i < len; i += k) {
        int b = tok_char_to_byte(tok_utf8_decode(text + i, &k));
        if (b < 0)
            return false;
        raw[n++] = (char)b;
    }
    *raw_len = n;
    return true;
}

int tok_add_vocab(struct tokenizer *tok, const char *text, size_t len, int32_t id)
{
    if (tok_set_id_text(tok, id, text, len) != 0)
        return -1;
    if (!tok->bpe.byte_mode)
        return tok_strmap_put(&tok->bpe.vocab, text, len, id);
    char small[256], *raw = len <= sizeof small ? small : malloc(len);
    if (!raw)
        return -1;
    size_t raw_len;
    int rc = to_raw(text, len, raw, &raw_len) ? tok_strmap_put(&tok->bpe.vocab, raw, raw_len, id)
                                              : tok_strmap_put(&tok->odd_text, text, len, id);
    if (raw != small)
        free(raw);
    return rc;
}

int32_t tok_vocab_lookup(const struct tokenizer *tok, const char *text, size_t len)
{
    if (!tok->bpe.byte_mode)
        return tok_strmap_get(&tok->bpe.vocab, text, len);
    char small[256], *raw = len <= sizeof small ? small : malloc(len);
    if (!raw)
        return -1;
    size_t raw_len;
    int32_t id = to_raw(text, len, raw, &raw_len) ? tok_strmap_get(&tok->bpe.vocab, raw, raw_len)
                                                  : tok_strmap_get(&tok->odd_text, text, len);
    if (raw != small)
        free(raw);
    return id;
}

int tok_add_added(struct tokenizer *tok, const char *content, size_t len, int32_t id,
                  bool special, bool lstrip, bool rstrip, bool single_word, bool normalized)
{
    if (tok->n_added % 64 == 0) {
        struct tok_added *a = realloc(tok->added, (tok->n_added + 64) * sizeof *a);
        if (!a)
            return -1;
        tok->added = a;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, content, len);
    copy[len] = 0;
    tok->added[tok->n_added++] = (struct tok_added){
        .content = copy, .len = len, .id = id, .special = special, .lstrip = lstrip,
        .rstrip = rstrip, .single_word = single_word, .normalized = normalized};
    if (tok_set_id_text(tok, id, content, len) != 0)
        return -1;
    tok->id_flags[id] = special ? TOK_ID_SPECIAL : 0;
    return tok_strmap_put(&tok->added_ids, content, len, id);
}

/* The text an added token is matched as: normalized ones match the normalizer's output. */
static int added_key(struct tokenizer *tok, struct tok_added *a, tune_err *err)
{
    if (!a->normalized || tok->n_norm == 0) {
        a->key = a->content;
        a->key_len = a->len;
        return 0;
    }
    struct tok_match_scratch ms = {0};
    struct tok_buf out = {0}, tmp = {0};
    int rc = tok_normalize(tok, &ms, a->content, a->len, &out, &tmp, err);
    tok_match_scratch_free(&ms);
    tok_buf_free(&tmp);
    if (rc == 0 && tok_buf_append(&out, "", 1) != 0)
        rc = err_set(err, "out of memory");
    if (rc != 0) {
        char shown[ERR_SHOWN_SIZE];
        tok_buf_free(&out);
        return err_prefix(err, "added token \"%s\"", err_shown_n(shown, a->content, a->len));
    }
    a->key = out.p;
    a->key_len = out.n - 1;
    if (a->key_len != a->len || memcmp(a->key, a->content, a->len) != 0)
        tok->id_flags[a->id] |= TOK_ID_DECODES_NORMALIZED;
    return 0;
}

int tok_finish(struct tokenizer *tok, tune_err *err)
{
    struct tok_bpe *bpe = &tok->bpe;
    for (int b = 0; b < 256; b++) {
        char c = (char)b, name[8];
        bpe->byte_id[b] = bpe->byte_mode ? tok_strmap_get(&bpe->vocab, &c, 1) : -1;
        snprintf(name, sizeof name, "<0x%02X>", b);
        bpe->fallback_id[b] = bpe->byte_mode ? -1 : tok_strmap_get(&bpe->vocab, name, 6);
    }
    bool single_word = false;
    for (size_t i = 0; i < tok->n_added; i++) {
        if (added_key(tok, &tok->added[i], err) != 0)
            return -1;
        single_word |= tok->added[i].single_word;
    }
    if (tok_added_set_build(tok, &tok->raw_set, false) != 0 ||
        tok_added_set_build(tok, &tok->norm_set, true) != 0)
        return err_set(err, "out of memory");
    if (single_word) {
        if (tok_regex_compile(&tok->word_re, "\\w", 2, TOK_REGEX_ONIG, err) != 0)
            return -1;
        tok->has_word_re = true;
    }
    return 0;
}

void tok_free(struct tokenizer *tok)
{
    if (!tok)
        return;
    free(tok->id_off);
    free(tok->id_flags);
    tok_buf_free(&tok->id_text);
    tok_strmap_free(&tok->odd_text);
    tok_strmap_free(&tok->bpe.vocab);
    tok_pairmap_free(&tok->bpe.merges);
    for (size_t i = 0; i < tok->n_added; i++) {
        if (tok->added[i].key != tok->added[i].content)
            free(tok->added[i].key);
        free(tok->added[i].content);
    }
    free(tok->added);
    tok_strmap_free(&tok->added_ids);
    tok_added_set_free(&tok->raw_set);
    tok_added_set_free(&tok->norm_set);
    tok_regex_free(&tok->word_re);
    for (size_t i = 0; i < tok->n_norm; i++) {
        tok_regex_free(&tok->norm[i].pattern);
        free(tok->norm[i].text);
    }
    free(tok->norm);
    for (size_t i = 0; i < tok->n_pretok; i++)
        tok_regex_free(&tok->pretok[i].re);
    for (size_t i = 0; i < tok->n_dec; i++) {
        tok_regex_free(&tok->dec[i].pattern);
        free(tok->dec[i].text);
    }
    free(tok->dec);
    free(tok->prefix_ids);
    free(tok->suffix_ids);
    free(tok);
}

int32_t tok_token_to_id(const struct tokenizer *tok, const char *token)
{
    size_t len = strlen(token);
    if (tok_utf8_valid_prefix(token, len) != len)
        return -1;
    int32_t id = tok_strmap_get(&tok->added_ids, token, len);
    return id >= 0 ? id : tok_vocab_lookup(tok, token, len);
}

const char *tok_id_to_token(const struct tokenizer *tok, int32_t id)
{
    if (id < 0 || id >= tok->n_ids || tok->id_off[id] == UINT32_MAX)
        return NULL;
    return tok->id_text.p + tok->id_off[id];
}

int32_t tok_vocab_size(const struct tokenizer *tok)
{
    return tok->n_ids;
}

bool tok_is_special(const struct tokenizer *tok, int32_t id)
{
    return id >= 0 && id < tok->n_ids && (tok->id_flags[id] & TOK_ID_SPECIAL);
}
