/* The containers the tokenizer is built from: growable byte buffers and id lists, and two
 * open-addressing hash maps (token bytes -> id, merge pair -> rank and id). Linear probing
 * at load factor <= 1/2 keeps a lookup to about one cache line, which is what encoding
 * spends its time on; keys live in one buffer so a 200k-token vocab is three allocations. */
#include "text/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

int tok_buf_reserve(struct tok_buf *b, size_t extra)
{
    if (b->cap - b->n >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->n < extra) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int tok_buf_append(struct tok_buf *b, const void *s, size_t len)
{
    if (tok_buf_reserve(b, len) != 0)
        return -1;
    if (len)
        memcpy(b->p + b->n, s, len);
    b->n += len;
    return 0;
}

void tok_buf_free(struct tok_buf *b)
{
    free(b->p);
    *b = (struct tok_buf){0};
}

int tok_ids_push(struct tok_ids *ids, int32_t id)
{
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *v = realloc(ids->v, cap * sizeof *v);
        if (!v)
            return -1;
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return 0;
}

void tok_ids_free(struct tok_ids *ids)
{
    free(ids->v);
    *ids = (struct tok_ids){0};
}

/* 8 bytes at a time, multiply-xorshift, with a final avalanche so the low bits (the slot)
 * depend on every byte. */
static uint32_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (len * 0xff51afd7ed558ccdull);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
        h ^= h >> 31;
        s += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, len);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return (uint32_t)h;
}

static uint32_t table_size(size_t expected)
{
    uint32_t n = 16;
    while (n < expected * 2 && n < (1u << 31))
        n *= 2;
    return n;
}

static int strmap_alloc(struct tok_strmap *m, uint32_t size)
{
    m->slots = malloc((size_t)size * sizeof *m->slots);
    if (!m->slots)
        return -1;
    for (uint32_t i = 0; i < size; i++)
        m->slots[i].len = UINT32_MAX;
    m->mask = size - 1;
    return 0;
}

int tok_strmap_init(struct tok_strmap *m, size_t expected)
{
    *m = (struct tok_strmap){0};
    return strmap_alloc(m, table_size(expected));
}

static struct tok_strmap_slot *strmap_find(const struct tok_strmap *m, uint32_t h,
                                           const char *key, size_t len)
{
    uint32_t i = h & m->mask;
    for (;;) {
        struct tok_strmap_slot *s = &m->slots[i];
        if (s->len == UINT32_MAX)
            return s;
        if (s->hash == h && s->len == len && memcmp(m->keys.p + s->off, key, len) == 0)
            return s;
        i = (i + 1) & m->mask;
    }
}

static int strmap_grow(struct tok_strmap *m)
{
    struct tok_strmap_slot *old = m->slots;
    uint32_t old_size = m->mask + 1;
    if (old_size >= (1u << 31) || strmap_alloc(m, old_size * 2) != 0) {
        m->slots = old;
        return -1;
    }
    for (uint32_t i = 0; i < old_size; i++) {
        if (old[i].len == UINT32_MAX)
            continue;
        uint32_t j = old[i].hash & m->mask;
        while (m->slots[j].len != UINT32_MAX)
            j = (j + 1) & m->mask;
        m->slots[j] = old[i];
    }
    free(old);
    return 0;
}

int tok_strmap_put(struct tok_strmap *m, const char *key, size_t len, int32_t val)
{
    if (len >= UINT32_MAX || m->keys.n + len >= UINT32_MAX)
        return -1;
    if (!m->slots && strmap_alloc(m, 16) != 0)
        return -1;
    if ((size_t)(m->count + 1) * 2 > (size_t)m->mask + 1 && strmap_grow(m) != 0)
        return -1;
    uint32_t h = hash_bytes(key, len);
    struct tok_strmap_slot *s = strmap_find(m, h, key, len);
    if (s->len == UINT32_MAX) {
        uint32_t off = (uint32_t)m->keys.n;
        if (tok_buf_append(&m->keys, key, len) != 0)
            return -1;
        *s = (struct tok_strmap_slot){.hash = h, .len = (uint32_t)len, .off = off};
        m->count++;
    }
    s->val = val;
    return 0;
}

int32_t tok_strmap_get(const struct tok_strmap *m, const char *key, size_t len)
{
    if (!m->slots)
        return -1;
    const struct tok_strmap_slot *s = strmap_find(m, hash_bytes(key, len), key, len);
    return s->len == UINT32_MAX ? -1 : s->val;
}

void tok_strmap_free(struct tok_strmap *m)
{
    free(m->slots);
    tok_buf_free(&m->keys);
    *m = (struct tok_strmap){0};
}

static uint32_t hash_pair(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (uint32_t)k;
}

static int pairmap_alloc(struct tok_pairmap *m, uint32_t size)
{
    m->slots = malloc((size_t)size * sizeof *m->slots);
    if (!m->slots)
        return -1;
    for (uint32_t i = 0; i < size; i++)
        m->slots[i].pair = UINT64_MAX;
    m->mask = size - 1;
    return 0;
}

int tok_pairmap_init(struct tok_pairmap *m, size_t expected)
{
    *m = (struct tok_pairmap){0};
    return pairmap_alloc(m, table_size(expected));
}

static struct tok_merge *pairmap_find(const struct tok_pairmap *m, uint64_t pair)
{
    uint32_t i = hash_pair(pair) & m->mask;
    while (m->slots[i].pair != UINT64_MAX && m->slots[i].pair != pair)
        i = (i + 1) & m->mask;
    return &m->slots[i];
}

int tok_pairmap_put(struct tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id)
{
    if (!m->slots && pairmap_alloc(m, 16) != 0)
        return -1;
    if ((size_t)(m->count + 1) * 2 > (size_t)m->mask + 1) {
        struct tok_merge *old = m->slots;
        uint32_t old_size = m->mask + 1;
        if (old_size >= (1u << 31) || pairmap_alloc(m, old_size * 2) != 0) {
            m->slots = old;
            return -1;
        }
        for (uint32_t i = 0; i < old_size; i++)
            if (old[i].pair != UINT64_MAX)
                *pairmap_find(m, old[i].pair) = old[i];
        free(old);
    }
    uint64_t pair = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    struct tok_merge *s = pairmap_find(m, pair);
    if (s->pair == UINT64_MAX)
        m->count++;
    *s = (struct tok_merge){.pair = pair, .rank = rank, .id = id};
    return 0;
}

const struct tok_merge *tok_pairmap_get(const struct tok_pairmap *m, int32_t a, int32_t b)
{
    if (!m->slots)
        return NULL;
    const struct tok_merge *s = pairmap_find(m, (uint64_t)(uint32_t)a << 32 | (uint32_t)b);
    return s->pair == UINT64_MAX ? NULL : s;
}

void tok_pairmap_free(struct tok_pairmap *m)
{
    free(m->slots);
    *m = (struct tok_pairmap){0};
}
