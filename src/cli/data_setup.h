/* Shared by tune train and tune eval; see data_setup.c. */
#ifndef TUNE_CLI_DATA_SETUP_H
#define TUNE_CLI_DATA_SETUP_H

#include <stdbool.h>
#include <stdint.h>

#include "data/dataset.h"
#include "data/pack.h"
#include "data/template.h"
#include "model/spec.h"
#include "train/trainer.h"

struct data_request {
    const char *data, *template_path, *chat_format; /* the latter two may be NULL */
    const struct model_spec *spec;                  /* picks the default chat format */
    int64_t max_length;
    const char *chat_date; /* YYYY-MM-DD for the formats that state a date; NULL: the template's default */
    const char *reasoning_effort; /* harmony's "low", "medium" or "high"; NULL: "medium" */
};

/* Whether "messages" records render, and in which format: --chat-format's, or
 * the model's own where its template is built in. */
int data_setup_chat_format(const struct data_request *a, bool *chat, enum chat_format *format, tune_err *err);

/* Loads a->data with the tokenizer, EOS id and options the request implies. */
int data_setup_load(const struct data_request *a, struct tokenizer *tok, int32_t eos, struct dataset *d,
                    struct data_template **tmpl, tune_err *err);

/* A packer seen as the trainer's batch stream. */
struct packer_stream {
    struct packer p;
    bool one_pass; /* evaluation: one epoch, then the end */
    int64_t epoch0;
};

/* Packs examples idx[0..n) of d (NULL: all) into micro-batches of `rows` rows
 * of seq tokens; one_pass streams one unshuffled epoch (evaluation). */
int packer_stream_init(struct packer_stream *s, struct batch_stream *bs, const struct dataset *d, const size_t *idx,
                       size_t n, int64_t seq, int64_t rows, uint64_t seed, bool one_pass, tune_err *err);

#endif
