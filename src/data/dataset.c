/* Datasets: the loop from records to stored examples, with truncation and statistics; see
 * dataset.h. Examples are kept end to end in two flat arrays (ids int32, mask uint8: 5 bytes
 * a token) rather than one allocation per example, so a dataset of millions of examples is
 * two reallocs and the packer copies straight out of them. */
#include "data/dataset.h"

#include <stdlib.h>
#include <string.h>

#include "data/example.h"
#include "data/source.h"

void data_options_init(struct data_options *o, const struct tokenizer *tok)
{
    memset(o, 0, sizeof *o);
    o->tok = tok;
    o->eos_id = -1;
    o->add_special = true;
    o->truncate = DATA_TRUNCATE_KEEP_START;
}

void dataset_free(struct dataset *d)
{
    free(d->ids);
    free(d->mask);
    free(d->ex);
    memset(d, 0, sizeof *d);
}

/* Makes room for one more example of n tokens. */
static int reserve(struct dataset *d, size_t n, tune_err *err)
{
    if (d->n == d->ex_cap) {
        size_t cap = d->ex_cap ? 2 * d->ex_cap : 256;
        struct data_example *ex = realloc(d->ex, cap * sizeof *ex);
        if (!ex)
            return err_set(err, "out of memory for %zu examples", cap);
        d->ex = ex;
        d->ex_cap = cap;
    }
    size_t need = (size_t)d->stats.tokens + n;
    if (need > d->tok_cap) {
        size_t cap = d->tok_cap ? d->tok_cap : 1 << 16;
        while (cap < need)
            cap *= 2;
        int32_t *ids = realloc(d->ids, cap * sizeof *ids);
        if (ids)
            d->ids = ids;
        uint8_t *mask = ids ? realloc(d->mask, cap) : NULL;
        if (!mask)
            return err_set(err, "out of memory for %zu tokens", cap);
        d->mask = mask;
        d->tok_cap = cap;
    }
    return 0;
}

/* Truncates b's example and stores it, or drops it when it trains nothing. */
static int store(struct dataset *d, const struct example_buf *b, const struct data_options *o,
                 bool *kept, tune_err *err)
{
    size_t n = b->ids.n, from = 0;
    if (o->max_length > 0 && n > (size_t)o->max_length) {
        d->stats.truncated++;
        if (o->truncate == DATA_TRUNCATE_KEEP_END)
            from = n - (size_t)o->max_length;
        n = (size_t)o->max_length;
    }
    int32_t trained = 0;
    for (size_t t = 1; t < n; t++)
        trained += b->mask[from + t];
    *kept = trained > 0;
    if (!*kept) {
        d->stats.dropped++;
        return 0;
    }
    if (n > INT32_MAX)
        return err_set(err, "%zu tokens in one example: set a max_length", n);
    if (reserve(d, n, err))
        return -1;
    int64_t off = d->stats.tokens;
    memcpy(d->ids + off, b->ids.v + from, n * sizeof *d->ids);
    memcpy(d->mask + off, b->mask + from, n);
    d->ex[d->n++] = (struct data_example){off, (int32_t)n, trained};
    d->stats.tokens += (int64_t)n;
    d->stats.trained += trained;
    if ((int64_t)n > d->stats.max_len)
        d->stats.max_len = (int64_t)n;
    return 0;
}

static int add_record(struct dataset *d, struct example_buf *b, const cJSON *record,
                      const struct data_options *o, bool *kept, tune_err *err)
{
    bool k;
    d->stats.records++;
    if (example_from_record(b, record, o, err) || store(d, b, o, &k, err))
        return -1;
    if (kept)
        *kept = k;
    return 0;
}

int dataset_add_record(struct dataset *d, const cJSON *record, const struct data_options *o,
                       bool *kept, tune_err *err)
{
    struct example_buf b = {0};
    int rc = add_record(d, &b, record, o, kept, err);
    example_buf_free(&b);
    return rc;
}

struct load_ctx {
    struct dataset *d;
    const struct data_options *o;
    struct example_buf b;
};

static int on_record(void *ctx, const cJSON *record, const struct data_origin *origin,
                     tune_err *err)
{
    (void)origin;
    struct load_ctx *c = ctx;
    return add_record(c->d, &c->b, record, c->o, NULL, err);
}

int dataset_load(struct dataset *d, const char *path, const struct data_options *o,
                 tune_err *err)
{
    memset(d, 0, sizeof *d);
    if (o->eos_id >= tok_vocab_size(o->tok))
        return err_set(err, "eos id %d is outside the tokenizer's vocabulary (%d)", o->eos_id,
                       tok_vocab_size(o->tok));
    struct load_ctx c = {.d = d, .o = o};
    int rc = data_source_read(path, o->max_file_bytes, on_record, &c, &d->stats.files, err);
    example_buf_free(&c.b);
    if (rc)
        return -1;
    if (d->stats.records == 0)
        return err_set(err, "%s: no records", path);
    if (d->n == 0)
        return err_set(err, "%s: none of the %lld records has a trained token (prompts longer "
                       "than max_length %lld?)", path, (long long)d->stats.records,
                       (long long)o->max_length);
    return 0;
}
