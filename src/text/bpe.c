/* The BPE model: one pre-token -> ids. It follows tokenizers' Word::merge_all step for
 * step, because the ids must be equal, not merely plausible: symbols in a linked list,
 * candidate merges in a min-heap ordered by (rank, position), stale candidates dropped when
 * popped. That is O(n log n) per word, which matters for SentencePiece-style tokenizers
 * whose "word" is a whole paragraph. tiktoken rank files fit the same loop: the loader
 * turns every split of a token into a merge ranked by the token (tiktoken_load.c).
 *
 * No word cache: a shared one would need locking for const, thread-safe encoding, and the
 * merge loop over a short word costs about what a cache lookup does. */
#include "text/tokenizer_impl.h"

#include <stdlib.h>

/* Room for n symbols and 2n candidates: the heap starts with at most n - 1 and each merge
 * pops one and pushes at most two. */
static int scratch_reserve(struct tok_bpe_scratch *s, size_t n)
{
    if (n <= s->cap)
        return 0;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < n)
        cap *= 2;
    struct tok_bpe_sym *sym = realloc(s->sym, cap * sizeof *sym);
    if (!sym)
        return -1;
    s->sym = sym;
    struct tok_bpe_cand *heap = realloc(s->heap, 2 * cap * sizeof *heap);
    if (!heap)
        return -1;
    s->heap = heap;
    s->cap = cap;
    return 0;
}

void tok_bpe_scratch_free(struct tok_bpe_scratch *s)
{
    free(s->sym);
    free(s->heap);
    *s = (struct tok_bpe_scratch){0};
}

/* ---- a binary min-heap of candidate merges on cand.key ---- */

static void heap_push(struct tok_bpe_cand *h, size_t *n, struct tok_bpe_cand c)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent].key <= c.key)
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = c;
}

static struct tok_bpe_cand heap_pop(struct tok_bpe_cand *h, size_t *n)
{
    struct tok_bpe_cand top = h[0], last = h[--*n];
    size_t i = 0, size = *n;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= size)
            break;
        if (child + 1 < size && h[child + 1].key < h[child].key)
            child++;
        if (last.key <= h[child].key)
            break;
        h[i] = h[child];
        i = child;
    }
    if (size)
        h[i] = last;
    return top;
}

/* Queues the merge of symbol pos with its right neighbour, if there is one. */
static void push_pair(const struct tok_bpe *bpe, struct tok_bpe_scratch *s, size_t *n_heap,
                      int32_t pos)
{
    int32_t next = s->sym[pos].next;
    if (next < 0)
        return;
    const struct tok_merge *m = tok_pairmap_get(&bpe->merges, s->sym[pos].id, s->sym[next].id);
    if (m)
        heap_push(s->heap, n_heap, (struct tok_bpe_cand){(uint64_t)m->rank << 32 | (uint32_t)pos,
                                                         m->id});
}

/* Word::merge_all over the n symbols in s->sym. */
static void merge_all(const struct tok_bpe *bpe, struct tok_bpe_scratch *s, size_t n)
{
    size_t n_heap = 0;
    for (size_t i = 0; i + 1 < n; i++)
        push_pair(bpe, s, &n_heap, (int32_t)i);
    while (n_heap) {
        struct tok_bpe_cand top = heap_pop(s->heap, &n_heap);
        int32_t pos = (int32_t)(uint32_t)top.key;
        struct tok_bpe_sym *left = &s->sym[pos];
        if (left->id < 0 || left->next < 0)
            continue;
        struct tok_bpe_sym *right = &s->sym[left->next];
        /* Stale when the pair there no longer makes this token (tokenizers' test). */
        const struct tok_merge *m = tok_pairmap_get(&bpe->merges, left->id, right->id);
        if (!m || m->id != top.id)
            continue;
        left->id = top.id;
        right->id = -1;
        left->next = right->next;
        if (right->next >= 0)
            s->sym[right->next].prev = pos;
        if (left->prev >= 0)
            push_pair(bpe, s, &n_heap, left->prev);
        push_pair(bpe, s, &n_heap, pos);
    }
}

/* Whether every byte of a unit has a <0xNN> token. */
static bool fallback_ok(const struct tok_bpe *bpe, const char *u, size_t len)
{
    for (size_t k = 0; k < len; k++)
        if (bpe->fallback_id[(unsigned char)u[k]] < 0)
            return false;
    return true;
}

static void add_sym(struct tok_bpe_scratch *s, size_t *n, int32_t id)
{
    s->sym[*n] = (struct tok_bpe_sym){id, (int32_t)*n - 1, (int32_t)*n + 1};
    (*n)++;
}

/* The symbols of a word before any merge, as BPE::merge_word makes them: each unit (byte
 * or character) by its id; an unknown character by its <0xNN> byte tokens under
 * byte_fallback, else by unk (runs of unk fused under fuse_unk), else dropped. */
static int split_units(const struct tok_bpe *bpe, struct tok_bpe_scratch *s, const char *w,
                       size_t len, size_t *n_out, tune_err *err)
{
    size_t n = 0;
    bool pending_unk = false;
    for (size_t i = 0; i < len;) {
        size_t ulen = 1;
        int32_t id;
        if (bpe->byte_mode) {
            id = bpe->byte_id[(unsigned char)w[i]];
        } else {
            tok_utf8_decode(w + i, &ulen);
            id = tok_strmap_get(&bpe->vocab, w + i, ulen);
        }
        if (id >= 0) {
            if (pending_unk)
                add_sym(s, &n, bpe->unk_id);
            pending_unk = false;
            add_sym(s, &n, id);
        } else if (bpe->byte_fallback && !bpe->byte_mode && fallback_ok(bpe, w + i, ulen)) {
            /* tokenizers leaves a pending unk behind the byte tokens; so does this. */
            for (size_t k = 0; k < ulen; k++)
                add_sym(s, &n, bpe->fallback_id[(unsigned char)w[i + k]]);
        } else if (bpe->unk_id >= 0) {
            if (pending_unk && !bpe->fuse_unk)
                add_sym(s, &n, bpe->unk_id);
            pending_unk = true;
        } else if (bpe->unk_missing) {
            return err_set(err, "unk_token is not in the vocab");
        }
        i += ulen;
    }
    if (pending_unk)
        add_sym(s, &n, bpe->unk_id);
    if (n)
        s->sym[n - 1].next = -1;
    *n_out = n;
    return 0;
}

int tok_bpe_encode_word(const struct tok_bpe *bpe, struct tok_bpe_scratch *s, const char *w,
                        size_t len, struct tok_ids *out, tune_err *err)
{
    if (len == 0)
        return 0;
    if (bpe->ignore_merges) {
        int32_t id = tok_strmap_get(&bpe->vocab, w, len);
        if (id >= 0)
            return tok_ids_push(out, id) == 0 ? 0 : err_set(err, "out of memory");
    }
    if (len > INT32_MAX / 2)
        return err_set(err, "pre-token of %zu bytes is too long", len);
    if (scratch_reserve(s, len) != 0)
        return err_set(err, "out of memory");
    size_t n = 0;
    if (split_units(bpe, s, w, len, &n, err) != 0)
        return -1;
    merge_all(bpe, s, n);
    for (int32_t i = n ? 0 : -1; i >= 0; i = s->sym[i].next)
        if (tok_ids_push(out, s->sym[i].id) != 0)
            return err_set(err, "out of memory");
    return 0;
}
