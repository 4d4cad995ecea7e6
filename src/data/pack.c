/* Packing; see pack.h. One function decides how many examples the next batch takes
 * (batch_take), and both packing and counting call it, so the step count a schedule is
 * planned with is the count of batches the run will see. */
#include "data/pack.h"

#include <stdlib.h>
#include <string.h>

/* Puts epoch's order into order[]. */
static void epoch_order(const struct packer *p, int64_t epoch, size_t *order)
{
    memcpy(order, p->pool, p->n * sizeof *order);
    if (p->opt.shuffle)
        data_shuffle(order, p->n, p->opt.seed, 1 + (uint64_t)epoch);
}

/* How many examples of order[from..n) the micro-batch starting there takes: whole examples,
 * in order, into B rows of T tokens. At least one, since every example fits a row. */
static size_t batch_take(const struct packer *p, const size_t *order, size_t from,
                         int64_t *rows)
{
    int64_t row = 0, fill = 0;
    size_t i = from;
    for (; i < p->n; i++) {
        int64_t len = p->d->ex[order[i]].len;
        if (fill + len > p->opt.seq) {
            if (++row == p->opt.rows)
                break;
            fill = 0;
        }
        fill += len;
    }
    *rows = row == p->opt.rows ? row : row + 1;
    return i - from;
}

void packer_free(struct packer *p)
{
    free(p->pool);
    free(p->order);
    free(p->ids);
    free(p->labels);
    free(p->starts);
    memset(p, 0, sizeof *p);
}

int packer_init(struct packer *p, const struct dataset *d, const size_t *idx, size_t n,
                const struct packer_options *opt, tune_err *err)
{
    memset(p, 0, sizeof *p);
    if (!idx)
        n = d->n;
    if (opt->seq < 2 || opt->rows < 1 || opt->seq > INT32_MAX / opt->rows)
        return err_set(err, "packing: %lld rows of %lld tokens is not a batch",
                       (long long)opt->rows, (long long)opt->seq);
    if (n == 0)
        return err_set(err, "packing: no examples");
    size_t cap = (size_t)(opt->rows * opt->seq);
    p->d = d;
    p->opt = *opt;
    p->n = n;
    p->pool = malloc(n * sizeof *p->pool);
    p->order = malloc(n * sizeof *p->order);
    p->ids = malloc(cap * sizeof *p->ids);
    p->labels = malloc(cap * sizeof *p->labels);
    p->starts = malloc((cap + 1) * sizeof *p->starts);
    if (!p->pool || !p->order || !p->ids || !p->labels || !p->starts) {
        packer_free(p);
        return err_set(err, "packing: out of memory for a batch of %zu tokens", cap);
    }
    for (size_t i = 0; i < n; i++) {
        size_t e = idx ? idx[i] : i;
        if (e >= d->n) {
            packer_free(p);
            return err_set(err, "packing: example %zu is not in the dataset of %zu", e, d->n);
        }
        if (d->ex[e].len > opt->seq) {
            packer_free(p);
            return err_set(err, "packing: example %zu has %d tokens, more than a row of %lld "
                           "(load with max_length <= seq)", e, d->ex[e].len, (long long)opt->seq);
        }
        p->pool[i] = e;
    }
    epoch_order(p, 0, p->order);
    return 0;
}

void packer_next(struct packer *p, struct packed_batch *out)
{
    const struct dataset *d = p->d;
    size_t from = (size_t)p->pos.index;
    size_t k = batch_take(p, p->order, from, &out->rows);
    int64_t T = 0, trained = 0;
    p->starts[0] = 0;
    for (size_t s = 0; s < k; s++) {
        const struct data_example *e = &d->ex[p->order[from + s]];
        const int32_t *ids = d->ids + e->off;
        const uint8_t *mask = d->mask + e->off;
        memcpy(p->ids + T, ids, (size_t)e->len * sizeof *ids);
        for (int32_t t = 0; t + 1 < e->len; t++)
            p->labels[T + t] = mask[t + 1] ? ids[t + 1] : PACK_IGNORE;
        p->labels[T + e->len - 1] = PACK_IGNORE;
        trained += e->trained;
        T += e->len;
        p->starts[s + 1] = (int32_t)T;
    }
    out->batch = (struct llama_batch){p->ids, p->labels, p->starts, T, (int64_t)k};
    out->trained = trained;
    out->epoch = p->pos.epoch;
    p->pos.index += (int64_t)k;
    out->epoch_end = (size_t)p->pos.index == p->n;
    if (out->epoch_end) {
        p->pos.epoch++;
        p->pos.index = 0;
        epoch_order(p, p->pos.epoch, p->order);
    }
}

struct packer_pos packer_tell(const struct packer *p)
{
    return p->pos;
}

int packer_seek(struct packer *p, struct packer_pos pos, tune_err *err)
{
    if (pos.epoch < 0 || pos.index < 0 || (size_t)pos.index > p->n)
        return err_set(err, "packing: position (epoch %lld, example %lld) is outside the "
                       "dataset of %zu examples", (long long)pos.epoch, (long long)pos.index,
                       p->n);
    if ((size_t)pos.index == p->n)
        pos = (struct packer_pos){pos.epoch + 1, 0};
    p->pos = pos;
    epoch_order(p, pos.epoch, p->order);
    return 0;
}

int64_t packer_batches_in_epoch(const struct packer *p, int64_t epoch)
{
    size_t *order = malloc(p->n * sizeof *order);
    if (!order)
        return -1;
    epoch_order(p, epoch, order);
    int64_t batches = 0, rows;
    for (size_t i = 0; i < p->n; batches++)
        i += batch_take(p, order, i, &rows);
    free(order);
    return batches;
}
