/* Data pipeline tests, with the llama3_style test tokenizer. Parity: the seed-style grading
 * records (through tests/fixtures/data/grading.template.json) and the prompt/completion
 * records give the ids and loss masks that tokenizers gives for the same text
 * (tools/ref/make_data_fixtures.py writes the Python side of the template independently), and
 * the seeds' prompt-length mask where no token straddles the boundary. Then: each record
 * shape and source kind, template rendering and its errors, truncation, shifted labels on a
 * hand-checked batch, packing (whole examples, row capacity), deterministic shuffle and
 * split, resume, and each bad input with the error it must name. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/pack.h"
#include "data/source.h"
#include "data/template.h"
#include "io/json.h"

#define FIX "tests/fixtures/data/"

static struct tokenizer *tok; /* llama3_style, loaded once by setup */
static int32_t bos, eos, eot;

static int setup(void **state)
{
    (void)state;
    tune_err err = {{0}};
    if (tok_load(&tok, "tests/fixtures/tokenizer/llama3_style.tokenizer.json", &err))
        return fprintf(stderr, "%s\n", err.msg), -1;
    bos = tok_token_to_id(tok, "<|begin_of_text|>");
    eos = tok_token_to_id(tok, "<|end_of_text|>");
    eot = tok_token_to_id(tok, "<|eot_id|>");
    return bos < 0 || eos < 0 || eot < 0;
}

static int teardown(void **state)
{
    (void)state;
    tok_free(tok);
    return 0;
}

static struct data_options options(void)
{
    struct data_options o;
    data_options_init(&o, tok);
    o.eos_id = eos;
    return o;
}

static void load_ok(struct dataset *d, const char *path, const struct data_options *o)
{
    tune_err err = {{0}};
    if (dataset_load(d, path, o, &err))
        fail_msg("%s: %s", path, err.msg);
}

static void expect_load_error(const char *path, const struct data_options *o, const char *needle)
{
    struct dataset d;
    tune_err err = {{0}};
    assert_int_equal(dataset_load(&d, path, o, &err), -1);
    dataset_free(&d);
    if (!strstr(err.msg, needle))
        fail_msg("%s: error '%s' lacks '%s'", path, err.msg, needle);
}

/* Renders record with t and compares with the wanted prompt and completion. */
static void render_ok(const struct data_template *t, const cJSON *record, const char *want_prompt,
                      const char *want_completion)
{
    tune_err err = {{0}};
    char *prompt, *completion;
    if (data_template_render(t, record, &prompt, &completion, &err))
        fail_msg("%s", err.msg);
    assert_string_equal(prompt, want_prompt);
    assert_string_equal(completion, want_completion);
    free(prompt);
    free(completion);
}

/* Decodes tokens [from, to) of example e and compares with want. */
static void expect_text_of(const struct tokenizer *t, const struct dataset *d, size_t e, int32_t from, int32_t to,
                           const char *want)
{
    tune_err err = {{0}};
    char *text;
    size_t len;
    if (tok_decode(t, d->ids + d->ex[e].off + from, (size_t)(to - from), 0, &text, &len, &err))
        fail_msg("%s", err.msg);
    assert_string_equal(text, want);
    free(text);
}

static void expect_text(const struct dataset *d, size_t e, int32_t from, int32_t to, const char *want)
{
    expect_text_of(tok, d, e, from, to, want);
}

/* ---- templates --------------------------------------------------------------------------- */

static void test_template_seed_records(void **state)
{
    (void)state;
    tune_err err = {{0}};
    struct data_template *t;
    if (data_template_load(&t, FIX "grading.template.json", &err))
        fail_msg("%s", err.msg);
    cJSON *records = json_load_file(FIX "grading/train_1.json", 1 << 20, &err);
    assert_non_null(records);
    render_ok(t, cJSON_GetArrayItem(records, 0),
              "Grade the student's answers.\n"
              "Q1: What gas do plants take in for photosynthesis?\nA: Oxygen\n(10 points)\n"
              "Q2: Where in the cell does photosynthesis happen?\nA: In the chloroplasts\n"
              "(10 points)\n"
              "Q3: Name one product of photosynthesis.\nA: Sugar, I think\n(10 points)\n"
              "Grade:\n",
              "Score: 11/30 (0.37)\nQ1: 0/10\nQ2: 10/10\nQ3: 1/10\n"
              "Feedback: Review the inputs of photosynthesis: plants take in carbon dioxide, not "
              "oxygen.");
    /* feedback null, written {feedback?}; normalized_score 1 */
    render_ok(t, cJSON_GetArrayItem(records, 2),
              "Grade the student's answers.\nQ1: Who wrote Hamlet?\nA: William Shakespeare\n"
              "(5 points)\nGrade:\n",
              "Score: 5/5 (1)\nQ1: 5/5\nFeedback: ");
    cJSON_Delete(records);
    data_template_free(t);
}

static void test_template_syntax(void **state)
{
    (void)state;
    tune_err err = {{0}};
    cJSON *r = cJSON_Parse("{\"a\": {\"b\": [10, {\"x\": \"y\"}]}, \"f\": 0.1, \"g\": 1e-05, "
                           "\"big\": 1e16, \"t\": true, \"n\": null, \"list\": [\"p\", \"q\"], "
                           "\"items\": [{\"name\": \"i1\", \"sub\": [1, 2]}, {\"name\": \"i2\", "
                           "\"sub\": []}], \"name\": \"outer\", \"obj\": {\"k\": [1, \"s\"]}}");
    assert_non_null(r);
    struct data_template *t;
    assert_int_equal(data_template_parse(&t, NULL, "{a.b[0]} {a.b[1].x} {f} {g} {big} {t} {n?}|"
                                         "{{lit}} {#each list}{@index}{.}{@number},{/each} "
                                         "{#each items}{ name }:{#each sub}{.}/{name}{/each};"
                                         "{/each} {obj} {#each nope?}x{/each}", "t", &err), 0);
    render_ok(t, r, "", "10 y 0.1 1e-05 1e+16 True |{lit} 0p1,1q2, i1:1/i12/i1;i2:; "
              "{\"k\": [1, \"s\"]} ");
    data_template_free(t);

    static const struct { const char *src, *needle; } bad[] = {
        {"{#each x}abc", "{#each x} without {/each}"},
        {"abc}", "offset 3: a lone '}'"},
        {"{/each}", "{/each} without {#each}"},
        {"{@index}", "{@index} outside {#each}"},
        {"{#if x}", "unknown tag {#if x}"},
        {"{a[x]}", "bad list index"},
        {"{[0]}", "bad list index"},
        {"{a", "'{' without its '}'"},
        {"{}", "empty field name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(data_template_parse(&t, "ok", bad[i].src, "t.json", &err), -1);
        if (!strstr(err.msg, bad[i].needle) || strncmp(err.msg, "t.json: completion: ", 20))
            fail_msg("'%s': error '%s' lacks '%s'", bad[i].src, err.msg, bad[i].needle);
    }
    static const struct { const char *src, *needle; } fails[] = {
        {"{nope}", "prompt: field 'nope' is missing"},
        {"{#each items}{#each sub}{nope}{/each}{/each}",
         "field 'nope' is missing (in items[0], sub[0])"},
        {"{n}", "field 'n' is null"},
        {"{#each name}{/each}", "field 'name' is not a list"},
        {"{a.b[5]}", "field 'a.b[5]' is missing"},
        {"{name.x}", "field 'name.x' is missing"},
    };
    for (size_t i = 0; i < sizeof fails / sizeof fails[0]; i++) {
        char *prompt, *text;
        assert_int_equal(data_template_parse(&t, fails[i].src, "c", "t", &err), 0);
        assert_int_equal(data_template_render(t, r, &prompt, &text, &err), -1);
        free(prompt);
        free(text);
        data_template_free(t);
        if (!strstr(err.msg, fails[i].needle))
            fail_msg("'%s': error '%s' lacks '%s'", fails[i].src, err.msg, fails[i].needle);
    }
    assert_int_equal(data_template_load(&t, FIX "grading/train_1.json", &err), -1);
    assert_non_null(strstr(err.msg, "a template is a JSON object"));
    cJSON_Delete(r);
}

/* ---- parity with tokenizers and the seeds ----------------------------------------------- */

/* Compares example i of d with a fixture case (ids and trained flags). */
static void check_case(const struct dataset *d, size_t i, const cJSON *c)
{
    const cJSON *ids = cJSON_GetObjectItem(c, "ids"), *trained = cJSON_GetObjectItem(c, "trained");
    const struct data_example *e = &d->ex[i];
    if (e->len != cJSON_GetArraySize(ids))
        fail_msg("example %zu: %d tokens, want %d", i, e->len, cJSON_GetArraySize(ids));
    int32_t t = 0;
    for (const cJSON *v = ids->child, *m = trained->child; v; v = v->next, m = m->next, t++)
        if (d->ids[e->off + t] != (int32_t)v->valuedouble || d->mask[e->off + t] != m->valueint)
            fail_msg("example %zu token %d: id %d mask %d, want id %d mask %d", i, t,
                     d->ids[e->off + t], d->mask[e->off + t], (int)v->valuedouble, m->valueint);
}

struct render_check { const struct data_template *t; const cJSON *cases; int n; };

/* A data_record_fn: renders each record and compares with the next fixture case. */
static int check_render(void *ctx, const cJSON *record, const struct data_origin *o, tune_err *err)
{
    (void)o, (void)err;
    struct render_check *rc = ctx;
    const cJSON *c = cJSON_GetArrayItem(rc->cases, rc->n++);
    render_ok(rc->t, record, cJSON_GetObjectItem(c, "prompt")->valuestring,
              cJSON_GetObjectItem(c, "completion")->valuestring);
    return 0;
}

static void test_parity(void **state)
{
    (void)state;
    tune_err err = {{0}};
    cJSON *fx = json_load_file(FIX "expected.json", 1 << 22, &err);
    assert_non_null(fx);
    assert_int_equal(cJSON_GetObjectItem(fx, "eos_id")->valueint, eos);
    const cJSON *grading = cJSON_GetObjectItem(fx, "grading");
    const cJSON *pc = cJSON_GetObjectItem(fx, "prompt_completion");

    struct data_options o = options();
    struct data_template *tmpl;
    assert_int_equal(data_template_load(&tmpl, FIX "grading.template.json", &err), 0);
    o.tmpl = tmpl;
    struct render_check rc = {tmpl, grading, 0};
    int64_t files;
    assert_int_equal(data_source_read(FIX "grading", 0, check_render, &rc, &files, &err), 0);
    assert_true(rc.n == cJSON_GetArraySize(grading) && files == 2);

    struct dataset d;
    load_ok(&d, FIX "grading", &o);
    assert_int_equal(d.n, (size_t)cJSON_GetArraySize(grading));
    assert_true(d.stats.files == 2 && d.stats.records == 7);
    for (size_t i = 0; i < d.n; i++)
        check_case(&d, i, cJSON_GetArrayItem(grading, (int)i));
    dataset_free(&d);
    data_template_free(tmpl);

    /* prompt/completion: our rule equals the seeds' prompt length unless a token straddles */
    o.tmpl = NULL;
    load_ok(&d, FIX "prompt_completion.jsonl", &o);
    assert_int_equal(d.n, (size_t)cJSON_GetArraySize(pc));
    int straddles = 0;
    for (size_t i = 0; i < d.n; i++) {
        const cJSON *c = cJSON_GetArrayItem(pc, (int)i);
        check_case(&d, i, c);
        int32_t first = 0;
        while (!d.mask[d.ex[i].off + first])
            first++;
        int seed_len = cJSON_GetObjectItem(c, "seed_prompt_len")->valueint;
        bool straddle = cJSON_IsTrue(cJSON_GetObjectItem(c, "straddle"));
        straddles += straddle; /* where a token straddles, the seeds mask completion tokens */
        assert_true(straddle ? first < seed_len : first == seed_len);
    }
    assert_int_equal(straddles, 1);
    /* "The opposite of hot is col" + "d": the merged token "ld" is trained, with the EOS */
    expect_text(&d, 2, d.ex[2].len - 2, d.ex[2].len, "ld<|end_of_text|>");
    assert_int_equal(d.mask[d.ex[2].off + d.ex[2].len - 2], 1);
    /* packed, " Paris." + EOS are the labels of the tokens before them, shifted by one */
    struct packer p;
    struct packed_batch b;
    size_t one = 1;
    int seed_len = cJSON_GetObjectItem(cJSON_GetArrayItem(pc, 1), "seed_prompt_len")->valueint;
    struct packer_options po = {.seq = 64, .rows = 1};
    assert_int_equal(packer_init(&p, &d, &one, 1, &po, &err), 0);
    packer_next(&p, &b);
    for (int t = 0; t < b.batch.tokens; t++)
        assert_int_equal(b.batch.labels[t], t + 1 >= seed_len && t + 1 < b.batch.tokens
                                                ? b.batch.ids[t + 1] : -100);
    expect_text(&d, 1, seed_len, d.ex[1].len, " Paris.<|end_of_text|>");
    packer_free(&p);
    dataset_free(&d);
    cJSON_Delete(fx);
}

/* ---- record shapes ----------------------------------------------------------------------- */

static void test_text_and_chat_records(void **state)
{
    (void)state;
    struct data_options o = options();
    struct dataset d;
    load_ok(&d, FIX "text.jsonl", &o); /* blank and whitespace-only lines between records */
    assert_int_equal(d.n, 3);
    for (size_t i = 0; i < d.n; i++) {
        const struct data_example *e = &d.ex[i];
        assert_true(d.ids[e->off] == bos && d.ids[e->off + e->len - 1] == eos);
        assert_true(d.mask[e->off] == 0 && e->trained == e->len - 1);
    }
    expect_text(&d, 0, 0, d.ex[0].len, "<|begin_of_text|>The cat sat on the mat.<|end_of_text|>");
    dataset_free(&d);

    o.add_special = false; /* no BOS; no EOS either */
    o.eos_id = -1;
    load_ok(&d, FIX "text.jsonl", &o);
    expect_text(&d, 1, 0, d.ex[1].len, "Water boils at 100 degrees.");
    assert_int_equal(d.ex[1].trained, d.ex[1].len - 1);
    dataset_free(&d);

    /* chats: loss on each assistant span, through the end of its turn, with a tokenizer
     * that has llama3's special tokens (llama3_style lacks the header ones: refused) */
    o = options();
    o.chat = true;
    o.chat_format = CHAT_FORMAT_LLAMA3;
    struct chat_options co = {.date = "2024-07-26"};
    o.chat_opt = &co;
    expect_load_error(FIX "chat.jsonl", &o, "chat.jsonl:1: the llama3 chat format writes <|start_header_id|> as "
                      "one special token, which the tokenizer does not have");
    struct tokenizer *chat_tok;
    tune_err err = {{0}};
    if (tok_load(&chat_tok, "examples/models/tiny-llama/tokenizer.json", &err))
        fail_msg("%s", err.msg);
    o.tok = chat_tok;
    int32_t chat_bos = tok_token_to_id(chat_tok, "<|begin_of_text|>");
    int32_t chat_eot = tok_token_to_id(chat_tok, "<|eot_id|>");
    load_ok(&d, FIX "chat.jsonl", &o);
    assert_int_equal(d.n, 2);
    static const char *const want[2][2] = {{"Correct: 5/5.<|eot_id|>", NULL},
                                           {"144<|eot_id|>", "169<|eot_id|>"}};
    for (size_t i = 0; i < d.n; i++) {
        const struct data_example *e = &d.ex[i];
        /* the template's BOS, once; no EOS after the turn's end */
        assert_true(d.ids[e->off] == chat_bos && d.ids[e->off + 1] != chat_bos);
        assert_int_equal(d.ids[e->off + e->len - 1], chat_eot);
        int k = 0; /* each run of trained tokens is one assistant span */
        for (int32_t t = 0, end; t < e->len; t = end > t ? end : t + 1) {
            for (end = t; end < e->len && d.mask[e->off + end]; end++) {
            }
            if (end > t) {
                assert_true(k < 2 && want[i][k]);
                expect_text_of(chat_tok, &d, i, t, end, want[i][k++]);
            }
        }
        assert_true(k == 2 || !want[i][k]);
    }
    dataset_free(&d);
    tok_free(chat_tok);
}

/* ---- truncation -------------------------------------------------------------------------- */

static void test_truncation(void **state)
{
    (void)state;
    struct data_options o = options();
    struct dataset full, d;
    load_ok(&full, FIX "prompt_completion.jsonl", &o); /* 27, 21, 19, 32 tokens */
    o.max_length = 20;
    load_ok(&d, FIX "prompt_completion.jsonl", &o);
    /* keep the start: 27 and 32 lose their whole completion and are dropped */
    assert_true(d.stats.truncated == 3 && d.stats.dropped == 2 && d.n == 2 && d.ex[0].len == 20);
    assert_memory_equal(d.ids + d.ex[0].off, full.ids + full.ex[1].off, 20 * sizeof(int32_t));
    assert_int_equal(d.ex[1].len, full.ex[2].len);
    dataset_free(&d);

    o.max_length = 5;
    o.truncate = DATA_TRUNCATE_KEEP_END;
    load_ok(&d, FIX "prompt_completion.jsonl", &o);
    assert_true(d.stats.truncated == 4 && d.n == 4);
    for (size_t i = 0; i < d.n; i++) {
        const struct data_example *f = &full.ex[i];
        assert_int_equal(d.ex[i].len, 5);
        assert_memory_equal(d.ids + d.ex[i].off, full.ids + f->off + f->len - 5, 5 * 4);
        assert_memory_equal(d.mask + d.ex[i].off, full.mask + f->off + f->len - 5, 5);
    }
    dataset_free(&d);

    o.max_length = 10;
    o.truncate = DATA_TRUNCATE_KEEP_START;
    expect_load_error(FIX "prompt_completion.jsonl", &o,
                      "none of the 4 records has a trained token (prompts longer than "
                      "max_length 10?)");
    dataset_free(&full);
}

/* ---- packing ----------------------------------------------------------------------------- */

static void test_shifted_labels(void **state)
{
    (void)state;
    int32_t ids[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    uint8_t mask[] = {0, 0, 1, 1, 0, 1, 1, 0, 1};
    struct data_example ex[] = {{0, 4, 2}, {4, 3, 2}, {7, 2, 1}};
    struct dataset d = {.ids = ids, .mask = mask, .ex = ex, .n = 3};
    struct packer p;
    struct packed_batch b;
    tune_err err = {{0}};
    struct packer_options po = {.seq = 8, .rows = 1};
    assert_int_equal(packer_init(&p, &d, NULL, 0, &po, &err), 0);
    packer_next(&p, &b);
    const int32_t want_labels[] = {-100, 3, 4, -100, 6, 7, -100}, want_starts[] = {0, 4, 7};
    assert_true(b.batch.tokens == 7 && b.batch.sequences == 2 && b.trained == 4 && !b.epoch_end);
    assert_memory_equal(b.batch.ids, ids, 7 * sizeof(int32_t));
    assert_memory_equal(b.batch.labels, want_labels, sizeof want_labels);
    assert_memory_equal(b.batch.starts, want_starts, sizeof want_starts);
    packer_next(&p, &b); /* the third example did not fit the row: the next batch */
    assert_true(b.batch.tokens == 2 && b.batch.labels[0] == 9 && b.batch.labels[1] == -100);
    assert_true(b.epoch_end && b.epoch == 0);
    assert_true(packer_tell(&p).epoch == 1 && packer_tell(&p).index == 0);
    packer_free(&p);

    po.rows = 2; /* a second row takes it */
    assert_int_equal(packer_init(&p, &d, NULL, 0, &po, &err), 0);
    packer_next(&p, &b);
    assert_true(b.batch.sequences == 3 && b.rows == 2 && b.epoch_end);
    packer_free(&p);

    po.seq = 3; /* the first example does not fit a row */
    assert_int_equal(packer_init(&p, &d, NULL, 0, &po, &err), -1);
    assert_non_null(strstr(err.msg, "example 0 has 4 tokens, more than a row of 3"));
}

/* A dataset of n examples of lengths 2..41 whose ids say which example they come from. */
static void synthetic(struct dataset *d, size_t n)
{
    memset(d, 0, sizeof *d);
    d->ex = calloc(n, sizeof *d->ex);
    d->ids = calloc(n * 41, sizeof *d->ids);
    d->mask = calloc(n * 41, 1);
    for (size_t i = 0; i < n; i++) {
        int32_t len = 2 + (int32_t)((i * 7919) % 40);
        d->ex[i] = (struct data_example){d->stats.tokens, len, len - 1};
        for (int32_t t = 0; t < len; t++) {
            d->ids[d->stats.tokens + t] = (int32_t)(i * 100 + (size_t)t);
            d->mask[d->stats.tokens + t] = t > 0;
        }
        d->stats.tokens += len;
    }
    d->n = n;
}

static uint64_t batch_hash(const struct packed_batch *b)
{
    uint64_t h = 1469598103934665603ull;
    for (int64_t t = 0; t < b->batch.tokens; t++)
        h = (h ^ (uint64_t)(b->batch.ids[t] * 31 + b->batch.labels[t])) * 1099511628211ull;
    for (int64_t s = 0; s <= b->batch.sequences; s++)
        h = (h ^ (uint64_t)b->batch.starts[s]) * 1099511628211ull;
    return h ^ (uint64_t)b->epoch;
}

static void test_packing(void **state)
{
    (void)state;
    struct dataset d;
    synthetic(&d, 50);
    size_t idx[45]; /* pack a subset, as for a split */
    for (size_t i = 0; i < 45; i++)
        idx[i] = i + 5;
    struct packer_options po = {.seq = 64, .rows = 2, .seed = 7, .shuffle = true};
    struct packer p;
    struct packed_batch b;
    tune_err err = {{0}};
    assert_int_equal(packer_init(&p, &d, idx, 45, &po, &err), 0);
    int64_t want_batches = packer_batches_in_epoch(&p, 0), batches = 0;
    int seen[50] = {0}, order[2][45], k[2] = {0, 0};
    for (int epoch = 0; epoch < 2; epoch++) {
        do {
            packer_next(&p, &b);
            assert_int_equal(b.epoch, epoch);
            batches += epoch == 0;
            assert_true(b.batch.tokens <= po.rows * po.seq);
            int64_t rows = 1, fill = 0;
            for (int64_t s = 0; s < b.batch.sequences; s++) {
                int32_t from = b.batch.starts[s], len = b.batch.starts[s + 1] - from;
                size_t e = (size_t)b.batch.ids[from] / 100;
                order[epoch][k[epoch]++] = (int)e;
                assert_int_equal(len, d.ex[e].len); /* whole examples, never split */
                assert_memory_equal(b.batch.ids + from, d.ids + d.ex[e].off, (size_t)len * 4);
                assert_int_equal(b.batch.labels[from + len - 1], -100);
                if (epoch == 0)
                    seen[e]++;
                if (fill + len > po.seq) /* the rows the batch's sequences fill, in order */
                    rows++, fill = 0;
                fill += len;
            }
            assert_int_equal(rows, b.rows);
            assert_true(rows <= po.rows);
        } while (!b.epoch_end);
    }
    assert_int_equal(batches, want_batches);
    for (int i = 0; i < 50; i++)
        assert_int_equal(seen[i], i >= 5);
    assert_memory_not_equal(order[0], order[1], sizeof order[0]); /* each epoch its own order */
    packer_free(&p);

    /* same seed, same batches; resuming at a saved position continues exactly */
    struct packer q;
    uint64_t want[12];
    assert_int_equal(packer_init(&p, &d, idx, 45, &po, &err), 0);
    for (int i = 0; i < 3; i++)
        packer_next(&p, &b);
    struct packer_pos pos = packer_tell(&p);
    for (int i = 0; i < 12; i++) { /* past the end of epoch 0 */
        packer_next(&p, &b);
        want[i] = batch_hash(&b);
    }
    assert_int_equal(packer_init(&q, &d, idx, 45, &po, &err), 0);
    assert_int_equal(packer_seek(&q, pos, &err), 0);
    for (int i = 0; i < 12; i++) {
        packer_next(&q, &b);
        assert_true(batch_hash(&b) == want[i]);
    }
    assert_int_equal(packer_seek(&q, (struct packer_pos){0, 46}, &err), -1);
    packer_free(&q);
    packer_free(&p);
    dataset_free(&d);
}

static void test_split(void **state)
{
    (void)state;
    struct dataset d = {.n = 38}; /* the split looks only at the count */
    struct data_split s, t;
    tune_err err = {{0}};
    assert_int_equal(dataset_split(&d, 0.1, 42, &s, &err), 0);
    assert_int_equal(s.n_test, 4); /* as train_test_split(test_size=0.1) on the seeds' 38 */
    assert_int_equal(s.n_train, 34);
    int seen[38] = {0};
    for (size_t i = 0; i < s.n_test; i++)
        seen[s.test[i]]++, assert_true(i == 0 || s.test[i - 1] < s.test[i]);
    for (size_t i = 0; i < s.n_train; i++)
        seen[s.train[i]]++, assert_true(i == 0 || s.train[i - 1] < s.train[i]);
    for (int i = 0; i < 38; i++)
        assert_int_equal(seen[i], 1);
    assert_int_equal(dataset_split(&d, 0.1, 42, &t, &err), 0);
    assert_memory_equal(s.test, t.test, 4 * sizeof(size_t));
    data_split_free(&t);
    assert_int_equal(dataset_split(&d, 0.1, 43, &t, &err), 0);
    assert_memory_not_equal(s.test, t.test, 4 * sizeof(size_t));
    data_split_free(&t);
    data_split_free(&s);

    d.n = 100; /* 0.07 * 100 is 7.000000000000001 in doubles: 8, in datasets too */
    assert_int_equal(dataset_split(&d, 0.07, 42, &s, &err), 0);
    assert_int_equal(s.n_test, 8);
    data_split_free(&s);
    d.n = 30;
    assert_int_equal(dataset_split(&d, 5, 42, &s, &err), 0);
    assert_int_equal(s.n_test, 5);
    data_split_free(&s);
    assert_int_equal(dataset_split(&d, 0, 42, &s, &err), -1);
    assert_int_equal(dataset_split(&d, 1.5, 42, &s, &err), -1);
    assert_int_equal(dataset_split(&d, 30, 42, &s, &err), -1);
    assert_non_null(strstr(err.msg, "leaves none to train on"));
}

/* ---- bad inputs -------------------------------------------------------------------------- */

static void test_bad_inputs(void **state)
{
    (void)state;
    struct data_options o = options();
    expect_load_error(FIX "no-such-file.jsonl", &o, "no-such-file.jsonl: cannot open");
    expect_load_error(FIX "bad/invalid.jsonl", &o, "bad/invalid.jsonl:3: invalid JSON");
    expect_load_error(FIX "bad/invalid.json", &o, "bad/invalid.json:4: invalid JSON");
    expect_load_error(FIX "bad/not_object.json", &o, "not_object.json: record 1: not an object");
    expect_load_error(FIX "bad/top_object.json", &o, "top_object.json: expected a list of records");
    expect_load_error(FIX "bad/no_shape.jsonl", &o,
                      "no_shape.jsonl:1: no text, prompt/completion or messages field (it has: "
                      "question, answer)");
    expect_load_error(FIX "chat.jsonl", &o, "chat.jsonl:1: messages: a chat record, but no chat "
                      "format was given");
    expect_load_error(FIX "grading.template.json", &o, "expected a list of records");
    expect_load_error("tests/fixtures/tokenizer/gpt2.tiktoken", &o, "not a .json or .jsonl file");
    o.max_file_bytes = 100;
    expect_load_error(FIX "prompt_completion.jsonl", &o, "more than the limit of 100 per file");
    o.max_file_bytes = 0, o.eos_id = 1 << 20;
    expect_load_error(FIX "text.jsonl", &o, "eos id 1048576 is outside");
    o.eos_id = eos;

    tune_err err = {{0}};
    struct data_template *tmpl;
    assert_int_equal(data_template_load(&tmpl, FIX "grading.template.json", &err), 0);
    o.tmpl = tmpl;
    expect_load_error(FIX "bad/missing_field.json", &o, "bad/missing_field.json: record 1: "
                      "prompt: field 'answer' is missing (in rubric_alignment[1])");
    data_template_free(tmpl);
    o.tmpl = NULL, o.chat = true, o.chat_format = CHAT_FORMAT_LLAMA3;
    expect_load_error(FIX "bad/unknown_role.jsonl", &o,
                      "bad/unknown_role.jsonl:1: messages[1].role: unknown role 'bot'");

    expect_load_error("tests/fixtures/ops", &o, "no .json or .jsonl files in this directory");
    expect_load_error(FIX "bad/empty.jsonl", &o, "bad/empty.jsonl: no records");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_template_seed_records),
        cmocka_unit_test(test_template_syntax),
        cmocka_unit_test(test_parity),
        cmocka_unit_test(test_text_and_chat_records),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_shifted_labels),
        cmocka_unit_test(test_packing),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
