/* libFuzzer target: dataset files (data/source.c: .json arrays and .jsonl lines, with their
 * errors by file and line) into examples (data/example.c: text, prompt/completion, messages
 * through the chat formats, the grading template), truncation, and the split. The first
 * input byte sets the options, the rest is the file:
 *   bit 0   the file is .jsonl (else .json)
 *   bits 1-2 chat format (harmony, llama3, chatml, mistral); bit 3 chat records allowed
 *   bit 4   the grading template (tests/fixtures/data/grading.template.json) builds records
 *   bit 5   add-special (the tokenizer's BOS) on
 *   bit 6   max_length 32; bit 7 truncation keeps the end
 * The tokenizer is the llama3_style fixture, EOS <|end_of_text|>. */
#include "data/dataset.h"
#include "fuzz_dataset_check.h"
#include "fuzz_util.h"

static struct tokenizer *tok;
static struct data_template *grading;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    tune_err err;
    if (tok_load(&tok, "tests/fixtures/tokenizer/llama3_style.tokenizer.json", &err) != 0 ||
        data_template_load(&grading, "tests/fixtures/data/grading.template.json", &err) != 0)
        fuzz_fail("cannot load the fixtures (run from the repository root)", err.msg);
    return 0;
}

static void check_split(const struct dataset *d, uint64_t seed)
{
    struct data_split sp;
    tune_err err;
    if (dataset_split(d, 0.25, seed, &sp, &err) != 0) {
        fuzz_check_error(&err);
        if (d->n >= 2)
            fuzz_fail("a split of two or more examples failed", err.msg);
        return;
    }
    if (sp.n_train + sp.n_test != d->n || !sp.n_train || !sp.n_test)
        fuzz_fail("a split that is not a partition", NULL);
    uint8_t *seen = calloc(d->n, 1);
    if (!seen)
        abort();
    for (size_t k = 0; k < 2; k++) {
        const size_t *idx = k ? sp.test : sp.train;
        size_t n = k ? sp.n_test : sp.n_train;
        for (size_t i = 0; i < n; i++) {
            if (idx[i] >= d->n || seen[idx[i]]++ || (i && idx[i] <= idx[i - 1]))
                fuzz_fail("a split index out of range, repeated or out of order", NULL);
        }
    }
    free(seen);
    data_split_free(&sp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t opt = data[0];
    const char *path = fuzz_write_file(data + 1, size - 1, opt & 1 ? ".jsonl" : ".json");
    struct data_options o;
    data_options_init(&o, tok);
    o.eos_id = tok_token_to_id(tok, "<|end_of_text|>");
    o.chat_format = (enum chat_format)((opt >> 1) & 3);
    o.chat = opt & 8;
    o.tmpl = opt & 16 ? grading : NULL;
    o.add_special = opt & 32;
    o.max_length = opt & 64 ? 32 : 0;
    o.truncate = opt & 128 ? DATA_TRUNCATE_KEEP_END : DATA_TRUNCATE_KEEP_START;
    static const struct chat_options chat_opt = {"2025-06-28", NULL, NULL}; /* a fixed date */
    o.chat_opt = &chat_opt;
    struct dataset d;
    tune_err err;
    if (dataset_load(&d, path, &o, &err) != 0) {
        fuzz_check_error(&err);
    } else {
        if (d.n < 1 || d.stats.files != 1 || d.stats.records != (int64_t)d.n + d.stats.dropped)
            fuzz_fail("dataset_load's counts disagree", NULL);
        check_dataset(&d, o.max_length, tok_vocab_size(tok));
        check_split(&d, size);
    }
    dataset_free(&d);
    return 0;
}
