/* One record -> the token ids and loss mask of one example, before truncation (the masking
 * rule is documented in data/dataset.h). Used by data/dataset.c; tests call it directly. */
#ifndef TUNE_DATA_EXAMPLE_H
#define TUNE_DATA_EXAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "base/error.h"
#include "data/dataset.h"
#include "text/tokenizer.h"

/* Working memory reused across records; zero-initialise, free with example_buf_free. */
struct example_buf {
    struct tok_ids ids;   /* the example's ids */
    uint8_t *mask;        /* [ids.n] 1: trained */
    size_t mask_cap;
    struct tok_ids prefix; /* scratch: ids of a text cut at a span boundary */
};

/* Tokenizes text[0..len) with flags (enum tok_encode_flags) into b->ids, setting the mask of
 * the tokens inside the byte spans (increasing, non-overlapping) by the common-prefix rule. */
int example_encode_spans(struct example_buf *b, const struct tokenizer *tok, const char *text,
                         size_t len, const struct chat_span *spans, size_t n_spans,
                         unsigned flags, tune_err *err);

/* Builds b from a record by its shape (or o->tmpl), appending EOS where dataset.h says. */
int example_from_record(struct example_buf *b, const cJSON *record, const struct data_options *o,
                        tune_err *err);

void example_buf_free(struct example_buf *b);

#endif
