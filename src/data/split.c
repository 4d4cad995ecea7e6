/* The train/eval split and the seeded shuffle it and the packer share; see dataset.h. The
 * counts follow datasets' train_test_split to the example (the same double arithmetic:
 * ceil(0.07 * 100) is 8 there and here); the membership does not, since reproducing numpy's
 * PCG64 permutation would tie tune to numpy's generator for no gain in training. */
#include <math.h>
#include <stdlib.h>

#include "base/rng.h"
#include "data/dataset.h"

/* Uniform in [0, bound): rejects the (2^64 mod bound) lowest draws, so no value is favoured. */
static uint64_t below(uint64_t *state, uint64_t bound)
{
    uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        uint64_t r = rng_next(state);
        if (r >= threshold)
            return r % bound;
    }
}

void data_shuffle(size_t *idx, size_t n, uint64_t seed, uint64_t stream)
{
    /* Streams are decorrelated through the mixer: seed + k would only shift one sequence. */
    uint64_t state = seed ^ rng_next(&stream);
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)below(&state, i);
        size_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

void data_split_free(struct data_split *s)
{
    free(s->train);
    free(s->test);
    *s = (struct data_split){0};
}

int dataset_split(const struct dataset *d, double test_size, uint64_t seed,
                  struct data_split *out, tune_err *err)
{
    *out = (struct data_split){0};
    size_t n = d->n, n_test;
    if (!(test_size > 0))
        return err_set(err, "eval split: test_size %g must be a fraction in (0, 1) or a count",
                       test_size);
    if (test_size < 1) {
        n_test = (size_t)ceil(test_size * (double)n);
    } else {
        if (test_size != floor(test_size))
            return err_set(err, "eval split: test_size %g is neither a fraction below 1 nor a "
                           "whole count", test_size);
        n_test = test_size >= (double)n ? n : (size_t)test_size;
    }
    if (n_test >= n)
        return err_set(err, "eval split: %zu eval examples of %zu leaves none to train on",
                       n_test, n);
    size_t *all = malloc((n ? n : 1) * sizeof *all);
    size_t *train = malloc((n - n_test) * sizeof *train);
    if (!all || !train) {
        free(all);
        free(train);
        return err_set(err, "eval split: out of memory");
    }
    for (size_t i = 0; i < n; i++)
        all[i] = i;
    data_shuffle(all, n, seed, 0);
    for (size_t i = n_test; i < n; i++)
        train[i - n_test] = all[i];
    qsort(all, n_test, sizeof *all, cmp_size);
    qsort(train, n - n_test, sizeof *train, cmp_size);
    out->test = all; /* its first n_test entries */
    out->train = train;
    out->n_test = n_test;
    out->n_train = n - n_test;
    return 0;
}
