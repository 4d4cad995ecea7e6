/* libFuzzer target: field templates (data/template.h) and records through them into
 * examples. Input: PROMPT \0 COMPLETION \0 RECORD (a text template when there is one \0
 * only: COMPLETION \0 RECORD). The template is parsed; if it parses and the record is JSON,
 * it is rendered, and the record goes through dataset_add_record with the template and the
 * llama3_style fixture tokenizer (EOS <|end_of_text|>), whose example is checked. */
#include "data/dataset.h"
#include "data/template.h"
#include "fuzz_dataset_check.h"
#include "fuzz_util.h"

static struct tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    tune_err err;
    if (tok_load(&tok, "tests/fixtures/tokenizer/llama3_style.tokenizer.json", &err) != 0)
        fuzz_fail("cannot load the fixture tokenizer (run from the repository root)", err.msg);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    char *a = memchr(s, 0, size), *b = a ? memchr(a + 1, 0, size - (size_t)(a + 1 - s)) : NULL;
    if (!a) {
        free(s);
        return 0;
    }
    const char *prompt = b ? s : NULL, *completion = b ? a + 1 : s, *record_text = b ? b + 1 : a + 1;
    struct data_template *t = NULL;
    tune_err err;
    if (data_template_parse(&t, prompt, completion, "fuzz", &err) != 0) {
        fuzz_check_error(&err);
        free(s);
        return 0;
    }
    cJSON *record = cJSON_Parse(record_text);
    if (record) {
        char *p = NULL, *c = NULL;
        if (data_template_render(t, record, &p, &c, &err) != 0)
            fuzz_check_error(&err);
        else if (!p || !c || (!prompt && *p))
            fuzz_fail("a rendered template without its strings", NULL);
        free(p);
        free(c);
        struct data_options o;
        data_options_init(&o, tok);
        o.tmpl = t;
        o.eos_id = tok_token_to_id(tok, "<|end_of_text|>");
        o.max_length = size & 1 ? 0 : 24;
        o.truncate = size & 2 ? DATA_TRUNCATE_KEEP_END : DATA_TRUNCATE_KEEP_START;
        struct dataset d = {0};
        bool kept = false;
        if (dataset_add_record(&d, record, &o, &kept, &err) != 0)
            fuzz_check_error(&err);
        else if (kept != (d.n == 1) || d.stats.records != 1)
            fuzz_fail("dataset_add_record's kept flag disagrees with the dataset", NULL);
        else
            check_dataset(&d, o.max_length, tok_vocab_size(tok));
        dataset_free(&d);
        cJSON_Delete(record);
    }
    data_template_free(t);
    free(s);
    return 0;
}
