/* Added and special tokens, found in the text before the model sees it, with tokenizers'
 * rules: leftmost-longest matches, non-overlapping; a match failing single_word is
 * skipped, not retried shorter; lstrip/rstrip swallow the whitespace beside a match.
 * Instead of tokenizers' Aho-Corasick automaton, each position whose byte can start a
 * token tries a hash lookup per distinct token length: gpt-oss's 1100 specials have about
 * ten lengths and nearly all start with '<', so plain text costs one bitmap test a byte. */
#include "text/tokenizer_impl.h"

#include <stdlib.h>

static int cmp_desc(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int tok_added_set_build(struct tokenizer *tok, struct tok_added_set *set, bool normalized)
{
    *set = (struct tok_added_set){0};
    for (size_t i = 0; i < tok->n_added; i++) {
        const struct tok_added *a = &tok->added[i];
        if (a->normalized != normalized || a->key_len == 0)
            continue;
        if (tok_strmap_put(&set->keys, a->key, a->key_len, (int32_t)i) != 0)
            return -1;
        unsigned char c = (unsigned char)a->key[0];
        set->first[c >> 3] |= (uint8_t)(1u << (c & 7));
        size_t k = 0;
        while (k < set->n_lens && set->lens[k] != a->key_len)
            k++;
        if (k == set->n_lens) {
            size_t *lens = realloc(set->lens, (set->n_lens + 1) * sizeof *lens);
            if (!lens)
                return -1;
            set->lens = lens;
            set->lens[set->n_lens++] = a->key_len;
        }
    }
    if (set->n_lens)
        qsort(set->lens, set->n_lens, sizeof *set->lens, cmp_desc);
    return 0;
}

void tok_added_set_free(struct tok_added_set *set)
{
    tok_strmap_free(&set->keys);
    free(set->lens);
    *set = (struct tok_added_set){0};
}

/* The leftmost, then longest, key in s[from..len). */
static bool find_longest(const struct tok_added_set *set, const char *s, size_t len,
                         size_t from, size_t *start, int32_t *index)
{
    if (set->n_lens == 0)
        return false;
    for (size_t i = from; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(set->first[c >> 3] & (1u << (c & 7))))
            continue;
        for (size_t k = 0; k < set->n_lens; k++) {
            if (set->lens[k] > len - i)
                continue;
            int32_t v = tok_strmap_get(&set->keys, s + i, set->lens[k]);
            if (v >= 0) {
                *start = i;
                *index = v;
                return true;
            }
        }
    }
    return false;
}

/* Start of the character that ends at s[i] (exclusive), for i > 0. */
static size_t char_before(const char *s, size_t i)
{
    do
        i--;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80);
    return i;
}

/* Whether the character at s[i] (i < len) is a word character (Rust's \w). */
static bool is_word_at(const struct tokenizer *tok, struct tok_match_scratch *ms,
                       const char *s, size_t i)
{
    size_t n, a, b;
    tok_utf8_decode(s + i, &n);
    return tok_regex_find(&tok->word_re, ms, s + i, n, 0, &a, &b, NULL) == 1;
}

bool tok_added_next(const struct tokenizer *tok, const struct tok_added_set *set,
                    struct tok_match_scratch *ms, const char *s, size_t len, bool skip_special,
                    size_t *pos, size_t done, struct tok_added_match *m)
{
    size_t start;
    int32_t index;
    while (find_longest(set, s, len, *pos, &start, &index)) {
        const struct tok_added *a = &tok->added[index];
        size_t end = start + a->key_len;
        *pos = end;
        if (skip_special && a->special)
            continue;
        if (a->single_word && ((start > 0 && is_word_at(tok, ms, s, char_before(s, start))) ||
                               (end < len && is_word_at(tok, ms, s, end))))
            continue;
        if (a->lstrip) {
            size_t k;
            while (start > done &&
                   tok_utf8_is_space(tok_utf8_decode(s + char_before(s, start), &k)))
                start = char_before(s, start);
        }
        if (a->rstrip) {
            size_t k;
            while (end < len && tok_utf8_is_space(tok_utf8_decode(s + end, &k)))
                end += k;
            *pos = end;
        }
        *m = (struct tok_added_match){start, end, a->id};
        return true;
    }
    return false;
}
