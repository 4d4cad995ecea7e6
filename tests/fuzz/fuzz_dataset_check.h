/* What data/dataset.h promises of a loaded dataset, checked by the fuzz targets that make
 * one (fuzz_template, fuzz_dataset). */
#ifndef TUNE_TESTS_FUZZ_DATASET_CHECK_H
#define TUNE_TESTS_FUZZ_DATASET_CHECK_H

#include "data/dataset.h"
#include "fuzz_util.h"

/* The examples of d against what dataset.h promises. */
static inline void check_dataset(const struct dataset *d, int64_t max_length, int32_t vocab)
{
    int64_t off = 0, trained_all = 0, longest = 0;
    for (size_t i = 0; i < d->n; i++) {
        const struct data_example *e = &d->ex[i];
        if (e->off != off || e->len < 2 || (max_length && e->len > max_length))
            fuzz_fail("an example out of place or of a bad length", NULL);
        int32_t trained = 0;
        for (int32_t t = 0; t < e->len; t++) {
            if (d->ids[e->off + t] < 0 || d->ids[e->off + t] >= vocab || d->mask[e->off + t] > 1)
                fuzz_fail("an id or mask value out of range", NULL);
            trained += t > 0 && d->mask[e->off + t];
        }
        if (trained != e->trained || trained < 1)
            fuzz_fail("an example's trained count is not its mask's", NULL);
        off += e->len;
        trained_all += trained;
        longest = e->len > longest ? e->len : longest;
    }
    if (off != d->stats.tokens || trained_all != d->stats.trained || longest != d->stats.max_len)
        fuzz_fail("dataset statistics disagree with its examples", NULL);
}

#endif
