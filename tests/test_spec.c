/* Model specs: presets and config.json folders parse, parameter counts equal
 * what transformers reports (the published counts), bad configs fail with an
 * error naming the file and the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "io/json.h"
#include "model/layout.h"
#include "model/spec.h"

static int64_t count_of(const char *name)
{
    struct model_spec s;
    tune_err err = {{0}};
    assert_int_equal(spec_resolve(&s, name, &err), 0);
    struct param_counts pc;
    layout_count_params(&s, &pc);
    return pc.total;
}

/* The counts issue 3 names, as transformers' model.num_parameters() gives them. */
static void test_published_counts(void **state)
{
    (void)state;
    assert_int_equal(count_of("llama-2-7b"), 6738415616LL);
    assert_int_equal(count_of("llama-3.1-8b"), 8030261248LL);
    assert_int_equal(count_of("gpt-oss-20b"), 20914757184LL);
    assert_int_equal(count_of("gpt-oss-120b"), 116829156672LL);
}

/* Counts published on the model cards: Llama-2-13B 13,015,864,320,
 * Llama-2-70B 68,976,648,192, Mistral-7B 7,241,732,096, Llama-3.2-1B
 * 1,235,814,400, Llama-3.2-3B 3,212,749,824, Qwen2.5-7B 7,615,616,512,
 * Llama-3.1-70B 70,553,706,496. */
static void test_model_card_counts(void **state)
{
    (void)state;
    assert_int_equal(count_of("llama-2-13b"), 13015864320LL);
    assert_int_equal(count_of("llama-2-70b"), 68976648192LL);
    assert_int_equal(count_of("mistral-7b-v0.1"), 7241732096LL);
    assert_int_equal(count_of("llama-3.2-1b"), 1235814400LL);
    assert_int_equal(count_of("llama-3.2-3b"), 3212749824LL);
    assert_int_equal(count_of("qwen2.5-7b"), 7615616512LL);
    assert_int_equal(count_of("llama-3.1-70b"), 70553706496LL);
}

static void test_every_preset_parses(void **state)
{
    (void)state;
    assert_true(spec_preset_count() >= 11);
    for (int i = 0; i < spec_preset_count(); i++) {
        struct model_spec s;
        tune_err err = {{0}};
        assert_int_equal(spec_resolve(&s, spec_preset_name(i), &err), 0);
        assert_true(s.layers > 0 && s.hidden > 0 && s.vocab > 0);
    }
}

static void test_gpt_oss_spec(void **state)
{
    (void)state;
    struct model_spec s;
    tune_err err = {{0}};
    assert_int_equal(spec_resolve(&s, "gpt-oss-20b", &err), 0);
    assert_int_equal(s.arch, MODEL_ARCH_GPT_OSS);
    assert_int_equal(s.experts, 32);
    assert_int_equal(s.experts_per_token, 4);
    assert_int_equal(s.head_dim, 64);
    assert_int_equal(s.sliding_window, 128);
    assert_true(s.layer_sliding[0] && !s.layer_sliding[1] && s.layer_sliding[22] && !s.layer_sliding[23]);
    assert_true(s.attention_sinks);
    assert_int_equal(s.expert_quant, WEIGHT_QUANT_MXFP4);
    assert_int_equal(s.rope.type, ROPE_TYPE_YARN);
    assert_true(s.rope.factor == 32.0 && !s.rope.truncate && s.rope.original_max_position == 4096);
    assert_true(s.swiglu_limit == 7.0);
    assert_true(s.qkv_bias && s.o_bias);
}

static void test_llama3_rope_and_tying(void **state)
{
    (void)state;
    struct model_spec s;
    tune_err err = {{0}};
    assert_int_equal(spec_resolve(&s, "llama-3.1-8b", &err), 0);
    assert_int_equal(s.rope.type, ROPE_TYPE_LLAMA3);
    assert_true(s.rope.factor == 8.0 && s.rope.low_freq_factor == 1.0 && s.rope.high_freq_factor == 4.0);
    assert_true(s.rope.theta == 500000.0);
    assert_false(s.tie_embeddings);
    assert_int_equal(spec_resolve(&s, "llama-3.2-1b", &err), 0);
    assert_true(s.tie_embeddings);
    assert_int_equal(spec_resolve(&s, "mistral-7b", &err), 0);
    assert_int_equal(s.arch, MODEL_ARCH_MISTRAL);
    assert_int_equal(s.sliding_window, 4096);
    assert_true(s.layer_sliding[31]);
    assert_int_equal(spec_resolve(&s, "qwen2.5-7b", &err), 0);
    assert_true(s.qkv_bias && !s.o_bias);
    assert_int_equal(s.sliding_window, 0); /* use_sliding_window is false */
}

/* A transformers 5.x config (rope_parameters, dtype) read from a folder gives
 * the same model as the 4.x preset. */
static void test_folder_v5_config(void **state)
{
    (void)state;
    struct model_spec s;
    tune_err err = {{0}};
    assert_int_equal(spec_resolve(&s, "tests/fixtures/configs/llama-v5-rope-parameters", &err), 0);
    assert_int_equal(s.rope.type, ROPE_TYPE_LLAMA3);
    assert_true(s.rope.theta == 500000.0);
    struct param_counts pc;
    layout_count_params(&s, &pc);
    assert_int_equal(pc.total, count_of("llama-3.2-1b"));
}

/* Qwen2.5-0.5B's shape: 494,032,768 parameters on its model card; windows on
 * layers >= max_window_layers. */
static void test_folder_qwen2(void **state)
{
    (void)state;
    struct model_spec s;
    tune_err err = {{0}};
    assert_int_equal(spec_resolve(&s, "tests/fixtures/configs/qwen2-sliding/config.json", &err), 0);
    struct param_counts pc;
    layout_count_params(&s, &pc);
    assert_int_equal(pc.total, 494032768LL);
    assert_false(s.layer_sliding[20]);
    assert_true(s.layer_sliding[21]);
}

static void expect_error(const char *path, const char *needle1, const char *needle2)
{
    struct model_spec s;
    tune_err err = {{0}};
    assert_int_equal(spec_resolve(&s, path, &err), -1);
    if (!strstr(err.msg, needle1) || !strstr(err.msg, needle2))
        fail_msg("error '%s' lacks '%s' or '%s'", err.msg, needle1, needle2);
}

static void test_bad_configs(void **state)
{
    (void)state;
    expect_error("tests/fixtures/configs/malformed", "malformed/config.json", "invalid JSON");
    expect_error("tests/fixtures/configs/unknown-arch", "unknown-arch/config.json", "MambaForCausalLM");
    expect_error("tests/fixtures/configs/negative", "negative/config.json", "hidden_size");
    expect_error("tests/fixtures/configs/absurd", "absurd/config.json", "num_hidden_layers");
    expect_error("tests/fixtures/configs/bad-rope", "bad-rope/config.json", "dynamic-magic");
    expect_error("tests/fixtures/configs/heads-mismatch", "heads-mismatch/config.json", "num_key_value_heads");
    expect_error("tests/fixtures/configs/no-such-model", "no-such-model", "no such model");
}

static void test_generic_shapes(void **state)
{
    (void)state;
    struct model_spec s;
    tune_err err = {{0}};
    assert_int_equal(spec_generic(&s, 7000000000LL, &err), 0);
    assert_int_equal(s.hidden, 4096);
    assert_int_equal(s.layers, 32);
    assert_int_equal(s.nominal_params, 7000000000LL);
    assert_int_equal(spec_generic(&s, 70000000000LL, &err), 0);
    assert_int_equal(s.hidden, 8192);
    assert_int_equal(s.layers, 80);
    /* Between published sizes the depth scales: 20B sits at width 5120. */
    assert_int_equal(spec_generic(&s, 20000000000LL, &err), 0);
    assert_int_equal(s.hidden, 5120);
    struct param_counts pc;
    layout_count_params(&s, &pc);
    assert_true(pc.total > 19e9 && pc.total < 21e9);
    assert_int_equal(spec_generic(&s, 10, &err), -1);
    assert_non_null(strstr(err.msg, "--params"));
}

/* Every preset, component by component, against transformers' own count of
 * the model built from the same config.json (tools/ref/param_counts.py). */
static void test_counts_match_transformers(void **state)
{
    (void)state;
    tune_err err = {{0}};
    cJSON *ref = json_load_file("tests/fixtures/param_counts.json", 1 << 20, &err);
    if (!ref)
        fail_msg("%s", err.msg);
    for (int p = 0; p < spec_preset_count(); p++) {
        const char *name = spec_preset_name(p);
        const cJSON *entry = cJSON_GetObjectItemCaseSensitive(ref, name);
        if (!entry)
            fail_msg("fixture lacks %s", name);
        struct model_spec s;
        assert_int_equal(spec_resolve(&s, name, &err), 0);
        struct param_counts pc;
        layout_count_params(&s, &pc);
        int64_t want = 0;
        assert_int_equal(json_get_int(entry, "total", true, 1, INT64_MAX / 2, &want, &err), 0);
        assert_int_equal(pc.total, want);
        const cJSON *comps = cJSON_GetObjectItemCaseSensitive(entry, "components");
        for (int c = 0; c < COMPONENT_COUNT; c++) {
            want = 0;
            assert_int_equal(json_get_int(comps, layout_component_name((enum component)c), false, 0,
                                          INT64_MAX / 2, &want, &err), 0);
            if (pc.component[c] != want)
                fail_msg("%s %s: tune %lld, transformers %lld", name, layout_component_name((enum component)c),
                         (long long)pc.component[c], (long long)want);
        }
    }
    cJSON_Delete(ref);
}

/* A short deterministic fuzz of the config parser: truncations and byte
 * changes of every preset's config.json either parse to a valid spec or fail
 * with a message; under `make SAN=1 test` any memory error aborts. */
static void test_config_mutations(void **state)
{
    (void)state;
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    char buf[8192];
    for (int p = 0; p < spec_preset_count(); p++) {
        const char *text = spec_preset_config(spec_preset_name(p));
        size_t len = strlen(text);
        assert_true(len < sizeof buf);
        for (int round = 0; round < 400; round++) {
            memcpy(buf, text, len + 1);
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            if (round % 4 == 0) {
                buf[rng % len] = 0; /* truncation */
            } else {
                for (int k = 0; k < 1 + round % 3; k++) {
                    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                    buf[rng % len] = "0123456789-.e\"{}[],:x "[(rng >> 32) % 23];
                }
            }
            tune_err err = {{0}};
            cJSON *root = json_parse_text(buf, "fuzz", &err);
            if (!root) {
                assert_true(err.msg[0] != 0);
                continue;
            }
            struct model_spec s;
            if (spec_from_json(&s, root, "fuzz", &err) == 0)
                assert_true(s.layers >= 1 && s.layers <= SPEC_MAX_LAYERS && s.hidden >= 1 && s.heads >= 1);
            else
                assert_true(err.msg[0] != 0);
            cJSON_Delete(root);
        }
    }
}

/* json_text_without_member: the top-level member out, with its comma and its own line; every
 * other byte kept (numbers as written); a nested member of that name untouched. */
static void test_json_without_member(void **state)
{
    (void)state;
    static const char *const cases[][3] = {
        {"{\n  \"a\": 7.0,\n  \"q\": {\n    \"m\": [\"x\", \"}\"]\n  },\n  \"b\": 2\n}\n", "q",
         "{\n  \"a\": 7.0,\n  \"b\": 2\n}\n"},
        {"{\"a\": 1, \"q\": 3.5}", "q", "{\"a\": 1}"},
        {"{\"q\": \"s,\\\"}\", \"b\": [1, {\"q\": 1}]}", "q", "{\"b\": [1, {\"q\": 1}]}"},
        {"{\"a\": {\"q\": 1}, \"qq\": 2}", "q", "{\"a\": {\"q\": 1}, \"qq\": 2}"},
        {"{\"q\": null}", "q", "{}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = json_text_without_member(cases[i][0], cases[i][1]);
        assert_non_null(got);
        assert_string_equal(got, cases[i][2]);
        tune_err err = {{0}};
        cJSON *back = json_parse_text(got, "case", &err);
        assert_non_null(back);
        cJSON_Delete(back);
        free(got);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_published_counts),   cmocka_unit_test(test_model_card_counts),
        cmocka_unit_test(test_every_preset_parses), cmocka_unit_test(test_gpt_oss_spec),
        cmocka_unit_test(test_llama3_rope_and_tying), cmocka_unit_test(test_folder_v5_config),
        cmocka_unit_test(test_folder_qwen2),       cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_generic_shapes),     cmocka_unit_test(test_config_mutations),
        cmocka_unit_test(test_counts_match_transformers), cmocka_unit_test(test_json_without_member),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
