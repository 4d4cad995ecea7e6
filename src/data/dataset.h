/* Datasets: records (data/source.h) turned into examples, each a list of token ids with a
 * loss mask, stored end to end in one array; and the deterministic train/eval split.
 *
 * Record shapes (the first that matches, unless a template is given, which then builds
 * every record):
 *   {"messages": [...]}               rendered by the chat format (text/chat.h); loss on the
 *                                     assistant spans it reports. No EOS is appended: every
 *                                     format ends the turn itself (<|eot_id|>, <|im_end|>,
 *                                     </s>, <|return|>/<|end|>), and the tokenizer's
 *                                     post-processor is not applied: the text already holds
 *                                     the BOS where the template writes one.
 *   {"prompt": s, "completion": s}    loss on the completion and the EOS
 *   {"text": s}                       loss on every token and the EOS
 *   anything, with a template         data/template.h makes the prompt and completion
 * Prompt and completion are joined with nothing between them (the seeds' prompt + label);
 * a separator belongs in the data or the template.
 *
 * Masking: the joined text is tokenized once (the ids are those of the whole text, as the
 * seeds' tokenizer(prompt + label) gives), and a token is trained when it lies after the
 * start of a loss span: the tokens before a span's start are the longest common prefix of the
 * text's ids and the ids of the text cut at that byte. A token that straddles the boundary
 * (a BPE merge across it, e.g. "A:" + "Score" tokenized as ":Score") is trained, since it
 * writes completion bytes. The seeds instead mask len(tokenizer(prompt)) tokens, which in
 * that case masks a token of the completion or trains one of the prompt; where no merge
 * crosses the boundary the two agree (tests/test_data.c checks both on the seeds' recipe,
 * tools/ref/make_data_fixtures.py). Cost: one more tokenization of a prefix per span
 * boundary (one for prompt/completion, two per assistant turn for chats). Note that in the
 * seeds' runs no mask survives: their DataCollatorForLanguageModeling(mlm=False) replaces the
 * labels by input_ids with the pad token (= eos there) at -100, so the prompt is trained and
 * the EOS is not. tune trains what this header says.
 *
 * Truncation to max_length happens after the EOS is appended. DATA_TRUNCATE_KEEP_START (the
 * default, transformers' truncation=True) drops the end, EOS included; KEEP_END drops the
 * start. The seeds do neither exactly: tokenizer(..., truncation=True, max_length=512) keeps
 * the first 512 ids, they append EOS and then keep input_ids[-512:], which drops the BOS: the
 * start of the text minus one token, plus EOS. An example left with no trained token after
 * position 0 (a prompt longer than max_length; an empty completion without EOS) gives no
 * loss: it is dropped, and counted. */
#ifndef TUNE_DATA_DATASET_H
#define TUNE_DATA_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "base/error.h"
#include "data/template.h"
#include "text/chat.h"
#include "text/tokenizer.h"

enum data_truncate {
    DATA_TRUNCATE_KEEP_START, /* drop the end of a long example (default) */
    DATA_TRUNCATE_KEEP_END,   /* drop its start */
};

struct data_options {
    const struct tokenizer *tok;
    int32_t eos_id;          /* appended after text and completions; -1: none. The caller
                                knows the model's eos (generation_config / tokenizer_config) */
    bool add_special;        /* apply the tokenizer's post-processor (the BOS of Llama's
                                tokenizer.json) to text and prompt/completion records, as
                                tokenizer(text) does; never to chats */
    bool chat;               /* chat_format is set: records with "messages" are allowed */
    enum chat_format chat_format;
    const struct chat_options *chat_opt;  /* NULL: the formats' defaults */
    const struct data_template *tmpl;     /* NULL: records must be of the shapes above */
    int64_t max_length;      /* tokens per example; 0: no limit */
    enum data_truncate truncate;
    int64_t max_file_bytes;  /* per source file; 0: DATA_SOURCE_DEFAULT_MAX_BYTES */
};

/* Defaults: add_special on, no EOS, no chat format, no template, no length limit. */
void data_options_init(struct data_options *o, const struct tokenizer *tok);

struct data_example {
    int64_t off;     /* first token in dataset.ids / .mask */
    int32_t len;     /* tokens, >= 2 */
    int32_t trained; /* mask[off + t] set for t in [1, len): the labels it gives */
};

struct data_stats {
    int64_t files, records;
    int64_t truncated; /* examples cut to max_length */
    int64_t dropped;   /* records with no trained token, not kept */
    int64_t tokens, trained, max_len;
};

struct dataset {
    int32_t *ids;             /* [tokens] every example's ids, end to end */
    uint8_t *mask;            /* [tokens] 1: the token is trained (is a label), 0: no loss */
    struct data_example *ex;  /* [n] */
    size_t n;
    struct data_stats stats;
    size_t ex_cap, tok_cap;
};

/* Loads every record of path (a .json / .jsonl file or a directory of them) into d, which it
 * initialises (free it with dataset_free, also after a failure). Errors name the file, the
 * line or record, and the field. No records, or none kept, is an error. */
int dataset_load(struct dataset *d, const char *path, const struct data_options *o,
                 tune_err *err);

/* Adds one record to d (zero-initialised or loaded); *kept (may be NULL) tells whether it
 * gave an example. Errors name the field, not the record: the caller knows where it is. */
int dataset_add_record(struct dataset *d, const cJSON *record, const struct data_options *o,
                       bool *kept, tune_err *err);

void dataset_free(struct dataset *d);

/* A deterministic split of a dataset's examples, as datasets' train_test_split(test_size,
 * seed) counts them: test_size in (0, 1) is a fraction, n_test = ceil(test_size * n); a
 * whole number >= 1 is a count. Either part empty is an error. The membership is a seeded
 * shuffle of our own, not numpy's: the same seed picks other examples than Hugging Face's.
 * Both lists are in dataset order. */
struct data_split {
    size_t *train, *test; /* example indices */
    size_t n_train, n_test;
};
int dataset_split(const struct dataset *d, double test_size, uint64_t seed,
                  struct data_split *out, tune_err *err);
void data_split_free(struct data_split *s);

/* Shuffles idx[0..n) by a Fisher-Yates driven by splitmix64 from (seed, stream): the same pair
 * gives the same order on every machine. The split uses stream 0, the packer 1 + the epoch. */
void data_shuffle(size_t *idx, size_t n, uint64_t seed, uint64_t stream);

#endif
