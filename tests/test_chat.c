/* Chat formats: every conversation of tests/fixtures/chat/<format>.json renders byte for
 * byte as the model's chat template renders it through jinja2/transformers
 * (tools/ref/make_chat_fixtures.py), with exactly the loss spans the fixture lists (found
 * there by string search, independently of the C renderers); harmony conversations, tokenized
 * with o200k_harmony, give the token ids openai-harmony renders; bad messages fail with errors
 * that name the message and field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "io/json.h"
#include "text/chat.h"
#include "text/tokenizer.h"

/* Renders one fixture case with its options into *t. */
static void render_case(enum chat_format format, const cJSON *c, struct chat_text *t)
{
    tune_err err = {{0}};
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    const cJSON *o = cJSON_GetObjectItem(c, "options");
    struct chat_options opt = {0};
    const cJSON *v;
    if ((v = cJSON_GetObjectItem(o, "date")))
        opt.date = v->valuestring;
    if ((v = cJSON_GetObjectItem(o, "reasoning_effort")))
        opt.reasoning_effort = v->valuestring;
    if ((v = cJSON_GetObjectItem(o, "model_identity")))
        opt.model_identity = v->valuestring;

    struct chat_messages msgs;
    if (chat_messages_from_json(cJSON_GetObjectItem(c, "messages"), &msgs, &err) ||
        chat_render(format, msgs.items, msgs.count, &opt, t, &err))
        fail_msg("%s/%s: %s", chat_format_name(format), name, err.msg);
    chat_messages_free(&msgs);
}

/* Renders one fixture case and compares; prints where the text first differs. */
static void check_case(enum chat_format format, const cJSON *c)
{
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    const char *want = cJSON_GetObjectItem(c, "text")->valuestring;
    struct chat_text t;
    render_case(format, c, &t);

    size_t n = strlen(want), at = 0;
    while (at < n && at < t.len && want[at] == t.text[at])
        at++;
    if (at != n || t.len != n)
        fail_msg("%s/%s: text differs at byte %zu (len %zu, want %zu):\n got: %.60s\nwant: %.60s",
                 chat_format_name(format), name, at, t.len, n, t.text + at, want + at);

    const cJSON *spans = cJSON_GetObjectItem(c, "spans");
    if ((size_t)cJSON_GetArraySize(spans) != t.n_spans)
        fail_msg("%s/%s: %zu spans, want %d", chat_format_name(format), name, t.n_spans,
                 cJSON_GetArraySize(spans));
    size_t k = 0;
    for (const cJSON *s = spans->child; s; s = s->next, k++) {
        size_t start = (size_t)cJSON_GetArrayItem(s, 0)->valuedouble;
        size_t end = (size_t)cJSON_GetArrayItem(s, 1)->valuedouble;
        if (t.spans[k].start != start || t.spans[k].end != end)
            fail_msg("%s/%s: span %zu is [%zu, %zu), want [%zu, %zu): '%.*s'",
                     chat_format_name(format), name, k, t.spans[k].start, t.spans[k].end,
                     start, end, (int)(t.spans[k].end - t.spans[k].start),
                     t.text + t.spans[k].start);
    }
    chat_text_free(&t);
}

static void check_fixture(const char *file, enum chat_format format)
{
    tune_err err = {{0}};
    cJSON *doc = json_load_file(file, 1 << 22, &err);
    if (!doc)
        fail_msg("%s", err.msg);
    enum chat_format named;
    assert_int_equal(chat_format_parse(cJSON_GetObjectItem(doc, "format")->valuestring, &named,
                                       &err), 0);
    assert_int_equal(named, format);
    const cJSON *cases = cJSON_GetObjectItem(doc, "cases");
    assert_true(cJSON_GetArraySize(cases) >= 10);
    for (const cJSON *c = cases->child; c; c = c->next)
        check_case(format, c);
    cJSON_Delete(doc);
}

static void test_harmony_fixtures(void **state)
{
    (void)state;
    check_fixture("tests/fixtures/chat/harmony.json", CHAT_FORMAT_HARMONY);
}

static void test_llama3_fixtures(void **state)
{
    (void)state;
    check_fixture("tests/fixtures/chat/llama3.json", CHAT_FORMAT_LLAMA3);
}

static void test_chatml_fixtures(void **state)
{
    (void)state;
    check_fixture("tests/fixtures/chat/chatml.json", CHAT_FORMAT_CHATML);
}

static void test_mistral_fixtures(void **state)
{
    (void)state;
    check_fixture("tests/fixtures/chat/mistral.json", CHAT_FORMAT_MISTRAL);
}

/* Every harmony conversation rendered and tokenized with o200k_harmony (the rank file
 * through tok_load_tiktoken, and the tokenizer.json transformers' converter makes of it)
 * gives the ids openai-harmony's render_conversation_for_training gives ("harmony_ids"; the
 * fixture's o200k_harmony subset holds every token these texts need). */
static void test_harmony_ids(void **state)
{
    (void)state;
    tune_err err = {{0}};
    struct tokenizer *toks[2];
    if (tok_load_tiktoken(&toks[0], "tests/fixtures/tokenizer/o200k_harmony.tiktoken",
                          "o200k_harmony", &err) ||
        tok_load(&toks[1], "tests/fixtures/tokenizer/o200k_harmony_hf.tokenizer.json", &err))
        fail_msg("%s", err.msg);
    cJSON *doc = json_load_file("tests/fixtures/chat/harmony.json", 1 << 22, &err);
    if (!doc)
        fail_msg("%s", err.msg);
    struct tok_ids ids = {0};
    int cases = 0, compared = 0;
    for (const cJSON *c = cJSON_GetObjectItem(doc, "cases")->child; c; c = c->next, cases++) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        const cJSON *want = cJSON_GetObjectItem(c, "harmony_ids");
        if (!want)
            fail_msg("harmony/%s: no harmony_ids (make_chat_fixtures.py without openai-harmony?)",
                     name);
        struct chat_text t;
        render_case(CHAT_FORMAT_HARMONY, c, &t);
        for (int k = 0; k < 2; k++) {
            ids.n = 0;
            if (tok_encode(toks[k], t.text, t.len, 0, &ids, &err) != 0)
                fail_msg("harmony/%s: %s", name, err.msg);
            size_t i = 0;
            const cJSON *v = want->child;
            while (v && i < ids.n && (int32_t)v->valuedouble == ids.v[i])
                v = v->next, i++;
            if (v || i != ids.n)
                fail_msg("harmony/%s (%s): ids differ from openai-harmony's at token %zu of %d "
                         "(got %d, want %d)", name, k ? "tokenizer.json" : "tiktoken", i,
                         cJSON_GetArraySize(want), i < ids.n ? (int)ids.v[i] : -1,
                         v ? (int)v->valuedouble : -1);
        }
        compared++;
        chat_text_free(&t);
    }
    printf("harmony: %d of %d conversations give openai-harmony's ids\n", compared, cases);
    assert_true(cases >= 10);
    tok_ids_free(&ids);
    cJSON_Delete(doc);
    tok_free(toks[0]);
    tok_free(toks[1]);
}

/* Renders messages given as JSON text; returns the status and leaves the error in *err. */
static int render_json(enum chat_format format, const char *json,
                       const struct chat_options *opt, struct chat_text *t, tune_err *err)
{
    cJSON *doc = cJSON_Parse(json);
    assert_non_null(doc);
    memset(t, 0, sizeof *t); /* chat_render is not reached when the messages are bad */
    struct chat_messages msgs;
    int rc = chat_messages_from_json(doc, &msgs, err);
    if (rc == 0)
        rc = chat_render(format, msgs.items, msgs.count, opt, t, err);
    chat_messages_free(&msgs);
    cJSON_Delete(doc);
    return rc;
}

static void expect_error(enum chat_format format, const char *json, const char *want)
{
    tune_err err = {{0}};
    struct chat_text t;
    assert_int_equal(render_json(format, json, NULL, &t, &err), -1);
    if (!strstr(err.msg, want))
        fail_msg("error '%s' does not say '%s'", err.msg, want);
    chat_text_free(&t);
}

static void test_bad_messages(void **state)
{
    (void)state;
    const enum chat_format H = CHAT_FORMAT_HARMONY, L = CHAT_FORMAT_LLAMA3,
                           C = CHAT_FORMAT_CHATML, M = CHAT_FORMAT_MISTRAL;
    expect_error(C, "{}", "messages: not a list");
    expect_error(C, "[]", "messages: empty list");
    expect_error(C, "[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":\"b\"},"
                    "{\"role\":\"bot\",\"content\":\"c\"}]",
                 "messages[2].role: unknown role 'bot'");
    /* Quoted input stays on one line and short enough for the rest of the message. */
    expect_error(C, "[{\"role\":\"a\\nb\\u0001\",\"content\":\"c\"}]",
                 "messages[0].role: unknown role 'a\\nb\\x01' (want system");
    char long_role[600];
    snprintf(long_role, sizeof long_role, "[{\"role\":\"%0300d\",\"content\":\"c\"}]", 0);
    expect_error(C, long_role, "0000...' (want system, developer, user, assistant or tool)");
    expect_error(C, "[\"hi\"]", "messages[0]: not an object");
    expect_error(C, "[{\"content\":\"hi\"}]", "messages[0].role: missing");
    expect_error(C, "[{\"role\":\"user\"}]", "messages[0].content: missing");
    expect_error(C, "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}]",
                 "messages[0].content: not a string");
    expect_error(C, "[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\","
                    "\"arguments\":{}}},{\"function\":{\"name\":\"g\",\"arguments\":{}}}]}]",
                 "messages[0].tool_calls: 2 calls");
    expect_error(C, "[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\"}}]}]",
                 "messages[0].tool_calls[0].function.arguments: missing");
    expect_error(C, "[{\"role\":\"user\",\"content\":\"a\",\"tool_calls\":[{\"name\":\"f\","
                    "\"arguments\":{}}]}]",
                 "messages[0].tool_calls: only assistant");
    expect_error(L, "[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\","
                    "\"content\":\"b\",\"thinking\":\"t\"}]",
                 "messages[1].thinking: the llama3 format has no place");
    expect_error(C, "[{\"role\":\"developer\",\"content\":\"a\"}]",
                 "messages[0].role: developer is harmony's");
    expect_error(M, "[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"assistant\","
                    "\"content\":\"a\"}]",
                 "messages[1].role: mistral needs turns alternating");
    expect_error(M, "[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"system\",\"content\":\"s\"}]",
                 "messages[1].role: mistral takes only user and assistant");
    expect_error(H, "[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"system\",\"content\":\"s\"}]",
                 "messages[1].role: harmony takes a system message only first");
    expect_error(H, "[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"tool\",\"content\":\"r\"}]",
                 "messages[1]: a tool result without an assistant tool call");
    expect_error(H, "[{\"role\":\"assistant\",\"content\":\"<|channel|>final<|message|>x\"}]",
                 "messages[0].content: contains <|channel|> tags");
    expect_error(H, "[{\"role\":\"assistant\",\"content\":\"c\",\"thinking\":\"t\",\"tool_calls\":"
                    "[{\"name\":\"f\",\"arguments\":{}}]}]",
                 "messages[0]: a tool call with both content and thinking");
}

static void test_dates(void **state)
{
    (void)state;
    const char *user = "[{\"role\":\"user\",\"content\":\"hi\"}]";
    tune_err err = {{0}};
    struct chat_text t;
    struct chat_options opt = {.date = "2024-02-29"};
    assert_int_equal(render_json(CHAT_FORMAT_LLAMA3, user, &opt, &t, &err), 0);
    assert_non_null(strstr(t.text, "\nToday Date: 29 Feb 2024\n\n"));
    chat_text_free(&t);
    const char *bad[] = {"2023-02-29", "2024-13-01", "2024-1-01", "24-01-01", "2024-01-01x", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        opt.date = bad[i];
        assert_int_equal(render_json(CHAT_FORMAT_HARMONY, user, &opt, &t, &err), -1);
        assert_non_null(strstr(err.msg, "not a date of the form YYYY-MM-DD"));
    }
    /* Without a date harmony writes today's, as the template's strftime_now does. */
    char today[64];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(today, sizeof today, "\nCurrent date: %Y-%m-%d\n\n", &tm);
    assert_int_equal(render_json(CHAT_FORMAT_HARMONY, user, NULL, &t, &err), 0);
    assert_non_null(strstr(t.text, today));
    chat_text_free(&t);
}

static void test_format_names(void **state)
{
    (void)state;
    tune_err err = {{0}};
    enum chat_format f;
    for (int i = 0; i < CHAT_FORMAT_COUNT; i++) {
        assert_int_equal(chat_format_parse(chat_format_name((enum chat_format)i), &f, &err), 0);
        assert_int_equal(f, i);
    }
    assert_int_equal(chat_format_parse("jinja", &f, &err), -1);
    assert_non_null(strstr(err.msg, "chat format 'jinja': unknown"));

    assert_int_equal(chat_format_for_model("gpt_oss", 201088, &f, &err), 0);
    assert_int_equal(f, CHAT_FORMAT_HARMONY);
    assert_int_equal(chat_format_for_model("llama", 128256, &f, &err), 0);
    assert_int_equal(f, CHAT_FORMAT_LLAMA3);
    assert_int_equal(chat_format_for_model("qwen2", 152064, &f, &err), 0);
    assert_int_equal(f, CHAT_FORMAT_CHATML);
    assert_int_equal(chat_format_for_model("mistral", 32000, &f, &err), 0);
    assert_int_equal(f, CHAT_FORMAT_MISTRAL);
    assert_int_equal(chat_format_for_model("llama", 32000, &f, &err), -1);
    assert_non_null(strstr(err.msg, "not Llama 3"));
    assert_int_equal(chat_format_for_model("mistral", 32768, &f, &err), -1);
    assert_int_equal(chat_format_for_model("gpt2", 50257, &f, &err), -1);
    assert_non_null(strstr(err.msg, "model_type 'gpt2': no built-in chat format"));
}

/* tojson output as Python's json.dumps(v, ensure_ascii=False) prints it (checked there). */
static void test_json_dump(void **state)
{
    (void)state;
    cJSON *v = cJSON_Parse("[1, 2.5, 1e-05, 0.0001, 1e16, 123456789.123, -0.001, 1e22, 0.1, "
                           "1.7976931348623157e308, 5e-324, true, false, null, {}, [], "
                           "{\"k\\u00e9\": [\"\\u0001\\u001f\\u007f\\\"\\\\/\\b\\f\\n\\r\\t\"]}]");
    assert_non_null(v);
    char *s = chat_json_dump(v);
    assert_string_equal(s, "[1, 2.5, 1e-05, 0.0001, 1e+16, 123456789.123, -0.001, 1e+22, 0.1, "
                           "1.7976931348623157e+308, 5e-324, true, false, null, {}, [], "
                           "{\"k\xc3\xa9\": [\"\\u0001\\u001f\x7f\\\"\\\\/\\b\\f\\n\\r\\t\"]}]");
    free(s);
    cJSON_Delete(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_harmony_fixtures), cmocka_unit_test(test_llama3_fixtures),
        cmocka_unit_test(test_chatml_fixtures),  cmocka_unit_test(test_mistral_fixtures),
        cmocka_unit_test(test_harmony_ids),
        cmocka_unit_test(test_bad_messages),     cmocka_unit_test(test_dates),
        cmocka_unit_test(test_format_names),     cmocka_unit_test(test_json_dump),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
