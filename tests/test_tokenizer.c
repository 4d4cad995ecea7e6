/* Tokenizer tests. Parity: for every fixture tokenizer and every corpus line the ids (in
 * each special-token mode) and the decoded text equal what tokenizers or tiktoken produced
 * (tools/ref/make_tokenizer_fixtures.py). Round trips: decode(encode(x)) == x for the
 * byte-level tokenizers on the corpus and on random text. The full o200k and cl100k
 * vocabularies are too large to commit: their tests run when the script has written them
 * under build/ref-vocab/ (or $TUNE_REF_VOCAB) and are skipped, saying so, otherwise. Bad
 * inputs: each error names the file and the problem. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "text/tokenizer.h"
#include "text/tokenizer_impl.h" /* the regex dialects are tested directly */

#define FIX "tests/fixtures/tokenizer/"

/* Prints both lists when they differ; returns whether they are equal. */
static bool ids_equal(const struct tok_ids *got, const cJSON *want, const char *name,
                      const char *mode, const char *text)
{
    size_t n = (size_t)cJSON_GetArraySize(want), i = 0;
    bool same = n == got->n;
    for (const cJSON *v = want ? want->child : NULL; same && v; v = v->next, i++)
        same = (int32_t)v->valuedouble == got->v[i];
    if (!same) {
        fprintf(stderr, "%s: %s ids differ for \"%s\"\n  want:", name, mode, text);
        for (const cJSON *v = want ? want->child : NULL; v; v = v->next)
            fprintf(stderr, " %d", (int)v->valuedouble);
        fprintf(stderr, "\n  got: ");
        for (size_t k = 0; k < got->n; k++)
            fprintf(stderr, " %d", (int)got->v[k]);
        fprintf(stderr, "\n");
    }
    return same;
}

static void encode_ok(const struct tokenizer *tok, const char *text, unsigned flags,
                      struct tok_ids *ids)
{
    tune_err err = {{0}};
    ids->n = 0;
    if (tok_encode(tok, text, strlen(text), flags, ids, &err) != 0)
        fail_msg("encode \"%s\": %s", text, err.msg);
}

static char *decode_ok(const struct tokenizer *tok, const struct tok_ids *ids, unsigned flags)
{
    tune_err err = {{0}};
    char *text = NULL;
    size_t len;
    if (tok_decode(tok, ids->v, ids->n, flags, &text, &len, &err) != 0)
        fail_msg("decode: %s", err.msg);
    assert_int_equal(len, strlen(text));
    return text;
}

static bool text_equal(const char *got, const char *want, const char *name, const char *what)
{
    if (strcmp(got, want) == 0)
        return true;
    fprintf(stderr, "%s: %s differs\n  want: \"%s\"\n  got:  \"%s\"\n", name, what, want, got);
    return false;
}

/* Id lists no encode makes (lone bytes, broken UTF-8, specials anywhere): the decoded text
 * must still be the reference's. Returns the number of mismatches. */
static int check_decode_cases(const struct tokenizer *tok, const char *name,
                              const cJSON *cases)
{
    struct tok_ids ids = {0};
    int bad = 0;
    for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next) {
        ids.n = 0;
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(c, "ids");
        for (const cJSON *v = list ? list->child : NULL; v; v = v->next) {
            if (ids.n == ids.cap) {
                ids.cap = ids.cap ? 2 * ids.cap : 16;
                ids.v = realloc(ids.v, ids.cap * sizeof *ids.v);
                assert_non_null(ids.v);
            }
            ids.v[ids.n++] = (int32_t)v->valuedouble;
        }
        const char *want = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "decoded"));
        const char *want_skip =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "decoded_skip_special"));
        assert_non_null(want);
        char *got = decode_ok(tok, &ids, 0);
        bad += !text_equal(got, want, name, "decode of random ids");
        free(got);
        if (want_skip) {
            got = decode_ok(tok, &ids, TOK_DECODE_SKIP_SPECIAL);
            bad += !text_equal(got, want_skip, name, "decode of random ids, skipping specials");
            free(got);
        }
    }
    tok_ids_free(&ids);
    return bad;
}

/* Checks every case of an expected.json; round_trip adds decode(encode(x)) == x. */
static void check_cases(const struct tokenizer *tok, const char *name, const char *expected,
                        bool round_trip)
{
    tune_err err = {{0}};
    cJSON *root = json_load_file(expected, 1 << 24, &err);
    if (!root)
        fail_msg("%s", err.msg);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases");
    assert_true(cJSON_GetArraySize(cases) > 0);
    static const struct {
        const char *key;
        unsigned flags;
    } modes[] = {{"ids", 0},
                 {"ids_add_special", TOK_ENCODE_ADD_SPECIAL},
                 {"ids_special_as_text", TOK_ENCODE_SPECIAL_AS_TEXT}};
    struct tok_ids ids = {0};
    int bad = 0, lines = 0;
    size_t compared = 0;
    for (const cJSON *c = cases->child; c; c = c->next, lines++) {
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "text"));
        assert_non_null(text);
        for (size_t m = 0; m < sizeof modes / sizeof *modes; m++) {
            const cJSON *want = cJSON_GetObjectItemCaseSensitive(c, modes[m].key);
            if (!want)
                continue; /* tiktoken has no template: no ids_add_special */
            encode_ok(tok, text, modes[m].flags, &ids);
            bad += !ids_equal(&ids, want, name, modes[m].key, text);
            compared += ids.n;
        }
        encode_ok(tok, text, 0, &ids);
        static const struct {
            const char *key;
            unsigned flags;
        } decodes[] = {{"decoded", 0}, {"decoded_skip_special", TOK_DECODE_SKIP_SPECIAL}};
        for (size_t d = 0; d < sizeof decodes / sizeof *decodes; d++) {
            const char *want =
                cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, decodes[d].key));
            if (!want)
                continue;
            char *got = decode_ok(tok, &ids, decodes[d].flags);
            bad += !text_equal(got, want, name, decodes[d].key);
            free(got);
        }
        if (round_trip) {
            encode_ok(tok, text, TOK_ENCODE_SPECIAL_AS_TEXT, &ids);
            char *got = decode_ok(tok, &ids, 0);
            bad += !text_equal(got, text, name, "decode(encode(text))");
            free(got);
        }
    }
    bad += check_decode_cases(tok, name, cJSON_GetObjectItemCaseSensitive(root, "decode_cases"));
    printf("%s: %d lines, %zu ids compared, %d decode cases, %d mismatches\n", name, lines,
           compared, cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "decode_cases")),
           bad);
    tok_ids_free(&ids);
    cJSON_Delete(root);
    assert_int_equal(bad, 0);
}

/* decode(encode(x)) == x on random strings of letters, marks, digits, CJK, emoji,
 * punctuation and every kind of space: the byte-level promise that nothing is lost. */
static void check_random_round_trips(const struct tokenizer *tok, const char *name)
{
    static const uint32_t alphabet[] = {
        'a', 'b', 'Z', 'e', 's', 't', '0', '7', ' ', ' ', ' ', '\n', '\r', '\t', '\'', '.',
        ',', '!', '<', '|', '>', '_', '-', '/', 0x7F, 0x01, 0xA0, 0xAD, 0xE9, 0xDF, 0x301,
        0x200D, 0x3000, 0x2028, 0x180E, 0x65E5, 0x672C, 0xD55C, 0x0416, 0x05D0, 0x1F600,
        0x1F44D, 0x1F3FD, 0x2764, 0xFE0F};
    uint64_t state = 0x9e3779b97f4a7c15ull;
    struct tok_ids ids = {0};
    char text[64 * 4 + 1];
    for (int round = 0; round < 300; round++) {
        size_t n = 0, chars;
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        chars = state % 48;
        for (size_t i = 0; i < chars; i++) {
            state ^= state << 13, state ^= state >> 7, state ^= state << 17;
            uint32_t cp = alphabet[state % (sizeof alphabet / sizeof *alphabet)];
            if (cp < 0x80) {
                text[n++] = (char)cp;
            } else if (cp < 0x800) {
                text[n++] = (char)(0xC0 | cp >> 6);
                text[n++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                text[n++] = (char)(0xE0 | cp >> 12);
                text[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
                text[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                text[n++] = (char)(0xF0 | cp >> 18);
                text[n++] = (char)(0x80 | (cp >> 12 & 0x3F));
                text[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
                text[n++] = (char)(0x80 | (cp & 0x3F));
            }
        }
        text[n] = 0;
        encode_ok(tok, text, TOK_ENCODE_SPECIAL_AS_TEXT, &ids);
        char *got = decode_ok(tok, &ids, 0);
        if (!text_equal(got, text, name, "random decode(encode(text))"))
            fail();
        free(got);
    }
    tok_ids_free(&ids);
}

static struct tokenizer *load_ok(const char *path)
{
    struct tokenizer *tok = NULL;
    tune_err err = {{0}};
    if (tok_load(&tok, path, &err) != 0)
        fail_msg("%s", err.msg);
    return tok;
}

static struct tokenizer *load_tiktoken_ok(const char *path, const char *encoding)
{
    struct tokenizer *tok = NULL;
    tune_err err = {{0}};
    if (tok_load_tiktoken(&tok, path, encoding, &err) != 0)
        fail_msg("%s", err.msg);
    return tok;
}

/* A tokenizer.json fixture and its expected ids; round_trip for byte-level ones that add
 * no prefix space. */
static void check_json_fixture(const char *name, bool round_trip)
{
    char path[256], expected[256];
    snprintf(path, sizeof path, FIX "%s.tokenizer.json", name);
    snprintf(expected, sizeof expected, FIX "%s.expected.json", name);
    struct tokenizer *tok = load_ok(path);
    check_cases(tok, name, expected, round_trip);
    if (round_trip)
        check_random_round_trips(tok, name);
    tok_free(tok);
}

/* Llama 3 style: Split regex + ByteLevel, ignore_merges, BOS template, added tokens with
 * lstrip, rstrip and single_word. Its rstrip token swallows spaces, so the corpus round
 * trip is left to the other byte-level tokenizers; random text has no [TOOL]. */
static void test_llama3_style(void **state)
{
    (void)state;
    struct tokenizer *tok = load_ok(FIX "llama3_style.tokenizer.json");
    check_cases(tok, "llama3_style", FIX "llama3_style.expected.json", false);
    check_random_round_trips(tok, "llama3_style");
    tok_free(tok);
}

/* GPT-2 style: ByteLevel with its own regex and add_prefix_space, legacy "a b" merges. The
 * prefix space comes back out of decode (as in tokenizers), so no round trip. */
static void test_gpt2_style(void **state)
{
    (void)state;
    check_json_fixture("gpt2_style", false);
}

static void test_llama2_style(void **state)
{
    (void)state;
    check_json_fixture("llama2_style", false);
}

static void test_metaspace_style(void **state)
{
    (void)state;
    check_json_fixture("metaspace_style", false);
}

/* Qwen2 style: NFC normalizer (libutf8proc), Qwen2's Split regex + ByteLevel. Its corpus adds
 * decomposed accents and compatibility characters, where NFC changes the ids; no round trip,
 * since NFC does not give those texts back. */
static void test_qwen2_style(void **state)
{
    (void)state;
    check_json_fixture("qwen2_style", false);
}

/* The other Unicode forms behind byte-only models (the ids spell the normalized bytes): NFD,
 * NFKC inside a Sequence, NFKD, with an added token that matches normalized text. */
static void test_unicode_forms(void **state)
{
    (void)state;
    check_json_fixture("nfd_bytes", false);
    check_json_fixture("nfkc_bytes", false);
    check_json_fixture("nfkd_bytes", false);
}

static void test_o200k_harmony_subset(void **state)
{
    (void)state;
    struct tokenizer *tok = load_tiktoken_ok(FIX "o200k_harmony.tiktoken", "o200k_harmony");
    check_cases(tok, "o200k_harmony.tiktoken", FIX "o200k_harmony.expected.json", true);
    check_random_round_trips(tok, "o200k_harmony.tiktoken");
    assert_int_equal(tok_vocab_size(tok), 201088);
    assert_int_equal(tok_token_to_id(tok, "<|start|>"), 200006);
    assert_int_equal(tok_token_to_id(tok, "<|reserved_200018|>"), 200018);
    assert_string_equal(tok_id_to_token(tok, 200018), "<|endofprompt|>");
    assert_true(tok_is_special(tok, 200006));
    assert_int_equal(tok_token_to_id(tok, "Ġ"), 220); /* the space, in GPT-2 form */
    assert_string_equal(tok_id_to_token(tok, 220), "Ġ");
    assert_null(tok_id_to_token(tok, 5000)); /* not in the subset */
    tok_free(tok);
    check_json_fixture("o200k_harmony_hf", true);
    /* transformers' converter numbers the specials by counting; the script sets tiktoken's. */
    tok = load_ok(FIX "o200k_harmony_hf.tokenizer.json");
    assert_int_equal(tok_token_to_id(tok, "<|start|>"), 200006);
    assert_int_equal(tok_token_to_id(tok, "<|startoftext|>"), 199998);
    assert_int_equal(tok_token_to_id(tok, "<|endofprompt|>"), 200018);
    assert_int_equal(tok_token_to_id(tok, "<|reserved_201087|>"), 201087);
    assert_int_equal(tok_vocab_size(tok), 201088);
    tok_free(tok);
}

static void test_cl100k_base_subset(void **state)
{
    (void)state;
    struct tokenizer *tok = load_tiktoken_ok(FIX "cl100k_base.tiktoken", "cl100k_base");
    check_cases(tok, "cl100k_base.tiktoken", FIX "cl100k_base.expected.json", true);
    check_random_round_trips(tok, "cl100k_base.tiktoken");
    tok_free(tok);
    /* tokenizers reads \p{N}{1,3}+ as Oniguruma does; its ids differ from tiktoken's on
     * digit runs, and the _hf expectations are tokenizers'. */
    check_json_fixture("cl100k_base_hf", true);
}

/* GPT-2's real vocabulary: its rank file read by tiktoken, and the tokenizer.json that
 * tokenizers makes of encoder.json + vocab.bpe (ByteLevel's own regex, merges by rank). */
static void test_gpt2_subset(void **state)
{
    (void)state;
    struct tokenizer *tok = load_tiktoken_ok(FIX "gpt2.tiktoken", "gpt2");
    check_cases(tok, "gpt2.tiktoken", FIX "gpt2.expected.json", true);
    check_random_round_trips(tok, "gpt2.tiktoken");
    tok_free(tok);
    check_json_fixture("gpt2_hf", true);
}

/* Full vocabulary files written by the fixture script, or NULL (test skipped). */
static const char *ref_vocab(const char *file, char *path, size_t len)
{
    const char *dir = getenv("TUNE_REF_VOCAB");
    snprintf(path, len, "%s/%s", dir && *dir ? dir : "build/ref-vocab", file);
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("skipped: %s is absent (tools/ref/make_tokenizer_fixtures.py writes it)\n",
               path);
        return NULL;
    }
    fclose(f);
    return path;
}

static void check_full(const char *name, const char *rank_file)
{
    char path[512], file[256], expected[512];
    snprintf(file, sizeof file, "%s/%s", name, rank_file);
    if (!ref_vocab(file, path, sizeof path))
        skip();
    struct tokenizer *tok = load_tiktoken_ok(path, name);
    snprintf(expected, sizeof expected, FIX "%s.expected.json", name);
    check_cases(tok, path, expected, true);
    tok_free(tok);
    snprintf(file, sizeof file, "%s/tokenizer.json", name);
    if (!ref_vocab(file, path, sizeof path))
        skip();
    tok = load_ok(path);
    snprintf(file, sizeof file, "%s/expected.json", name);
    ref_vocab(file, expected, sizeof expected);
    check_cases(tok, path, expected, true);
    tok_free(tok);
}

static void test_o200k_harmony_full(void **state)
{
    (void)state;
    check_full("o200k_harmony", "o200k_base.tiktoken");
}

static void test_cl100k_base_full(void **state)
{
    (void)state;
    check_full("cl100k_base", "cl100k_base.tiktoken");
}

static void test_gpt2_full(void **state)
{
    (void)state;
    check_full("gpt2", "r50k_base.tiktoken");
}

static void expect_load_error(const char *path, const char *encoding, const char *needle)
{
    struct tokenizer *tok = (struct tokenizer *)1;
    tune_err err = {{0}};
    int rc = encoding ? tok_load_tiktoken(&tok, path, encoding, &err)
                      : tok_load(&tok, path, &err);
    assert_int_equal(rc, -1);
    assert_null(tok);
    if (!strstr(err.msg, path) || !strstr(err.msg, needle))
        fail_msg("error \"%s\" should name %s and say \"%s\"", err.msg, path, needle);
}

static void test_bad_input(void **state)
{
    (void)state;
    expect_load_error(FIX "bad/missing.json", NULL, "cannot open");
    expect_load_error(FIX "bad/invalid.json", NULL, "invalid JSON");
    expect_load_error(FIX "bad/wordpiece.json", NULL, "model: type \"WordPiece\" is not");
    expect_load_error(FIX "bad/unknown_merge.json", NULL,
                      "merges[1]: token \"zz\" is not in the vocab");
    expect_load_error(FIX "bad/unsupported_normalizer.json", NULL, "type \"BertNormalizer\"");
    expect_load_error(FIX "bad/missing.tiktoken", "o200k_base", "cannot open");
    expect_load_error(FIX "bad/bad_rank.tiktoken", "o200k_base", "line 2");
    /* Ranks for bytes 0x00-0x40 and "BC": a byte-level BPE could not spell "A". */
    expect_load_error(FIX "bad/missing_byte.tiktoken", "o200k_base", "byte 0x41 has no rank");
    expect_load_error(FIX "o200k_harmony.tiktoken", "p50k", "unknown tiktoken encoding");

    struct tokenizer *tok = load_ok(FIX "llama3_style.tokenizer.json");
    struct tok_ids ids = {0};
    tune_err err = {{0}};
    assert_int_equal(tok_encode(tok, "ab\xC3(", 4, 0, &ids, &err), -1);
    assert_non_null(strstr(err.msg, "not valid UTF-8 at byte 2"));
    assert_int_equal(ids.n, 0);
    int32_t bad_id[] = {1, tok_vocab_size(tok)};
    char *text = NULL;
    size_t len;
    assert_int_equal(tok_decode(tok, bad_id, 2, 0, &text, &len, &err), -1);
    assert_non_null(strstr(err.msg, "is not in the vocabulary"));
    assert_null(text);
    tok_ids_free(&ids);
    tok_free(tok);
}

/* The pattern rewrites of regex.c. The expected spans are what tokenizers' Split (Oniguruma)
 * and tiktoken (fancy-regex) find for the same pattern and text. */
static void test_regex_dialects(void **state)
{
    (void)state;
    static const struct {
        const char *pattern, *text;
        enum tok_regex_dialect dialect;
        int found;
        size_t start, end;
    } cases[] = {
        {"\\p{N}{1,3}+", "12345", TOK_REGEX_ONIG, 1, 0, 5},     /* (?:\p{N}{1,3})+ */
        {"\\p{N}{1,3}+", "12345", TOK_REGEX_TIKTOKEN, 1, 0, 3}, /* possessive */
        {"(ab){1}+", "ababx", TOK_REGEX_ONIG, 1, 0, 4},
        {"[a-c]{2}+", "abcab", TOK_REGEX_ONIG, 1, 0, 4},
        {"\\s+", "x\xE1\xA0\x8E y", TOK_REGEX_ONIG, 1, 4, 5}, /* U+180E is no space */
        {"[^\\s\\p{L}]+", "\xE1\xA0\x8E!", TOK_REGEX_TIKTOKEN, 1, 0, 4},
        {"\\S+", "\xC2\xA0" "ab", TOK_REGEX_ONIG, 1, 2, 4}, /* U+00A0 is one */
        {"a{", "a{", TOK_REGEX_ONIG, 1, 0, 2},                /* not an interval */
        {"x{,2}+", "xxxxx", TOK_REGEX_ONIG, 1, 0, 5},
        {"$", "ab\n", TOK_REGEX_TIKTOKEN, 1, 3, 3},
        {"b$", "ab\nc", TOK_REGEX_ONIG, 1, 1, 2},               /* a line anchor */
        {"a.b", "a.b axb", TOK_REGEX_LITERAL, 1, 0, 3},
        {"", "abc", TOK_REGEX_LITERAL, 0, 0, 0},
    };
    struct tok_match_scratch ms = {0};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct tok_regex re;
        tune_err err = {{0}};
        size_t a = 0, b = 0;
        if (tok_regex_compile(&re, cases[i].pattern, strlen(cases[i].pattern),
                              cases[i].dialect, &err) != 0)
            fail_msg("%s", err.msg);
        int found = tok_regex_find(&re, &ms, cases[i].text, strlen(cases[i].text), 0, &a, &b,
                                   &err);
        if (found != cases[i].found || (found && (a != cases[i].start || b != cases[i].end)))
            fail_msg("/%s/ on case %zu: found %d at [%zu, %zu)", cases[i].pattern, i, found,
                     a, b);
        tok_regex_free(&re);
    }
    static const char *const refused[] = {"[\\S]", "(", "\\p{Nope}"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        struct tok_regex re;
        tune_err err = {{0}};
        assert_int_equal(tok_regex_compile(&re, refused[i], strlen(refused[i]),
                                           TOK_REGEX_ONIG, &err), -1);
        assert_non_null(strstr(err.msg, "pattern /"));
    }
    tok_match_scratch_free(&ms);
}

/* The API around the ids: appending, the id <-> token maps, NUL bytes in text. */
static void test_api(void **state)
{
    (void)state;
    struct tokenizer *tok = load_ok(FIX "llama3_style.tokenizer.json");
    struct tok_ids ids = {0};
    tune_err err = {{0}};
    assert_int_equal(tok_encode(tok, "Hello world", 11, 0, &ids, &err), 0);
    size_t n = ids.n;
    assert_int_equal(tok_encode(tok, "Hello world", 11, 0, &ids, &err), 0);
    assert_int_equal(ids.n, 2 * n);
    assert_memory_equal(ids.v, ids.v + n, n * sizeof *ids.v);

    int32_t bos = tok_token_to_id(tok, "<|begin_of_text|>");
    assert_true(bos >= 0 && tok_is_special(tok, bos));
    ids.n = 0;
    assert_int_equal(tok_encode(tok, "hi", 2, TOK_ENCODE_ADD_SPECIAL, &ids, &err), 0);
    assert_int_equal(ids.v[0], bos);
    for (int32_t id = 0; id < tok_vocab_size(tok); id++) {
        const char *t = tok_id_to_token(tok, id);
        assert_non_null(t);
        assert_int_equal(tok_token_to_id(tok, t), id);
    }
    assert_int_equal(tok_token_to_id(tok, "no such token"), -1);
    assert_null(tok_id_to_token(tok, -1));

    ids.n = 0;
    assert_int_equal(tok_encode(tok, "a\0b", 3, 0, &ids, &err), 0);
    char *text = NULL;
    size_t len;
    assert_int_equal(tok_decode(tok, ids.v, ids.n, 0, &text, &len, &err), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(text, "a\0b", 3);
    free(text);
    tok_ids_free(&ids);
    tok_free(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama3_style),
        cmocka_unit_test(test_gpt2_style),
        cmocka_unit_test(test_llama2_style),
        cmocka_unit_test(test_metaspace_style),
        cmocka_unit_test(test_qwen2_style),
        cmocka_unit_test(test_unicode_forms),
        cmocka_unit_test(test_o200k_harmony_subset),
        cmocka_unit_test(test_cl100k_base_subset),
        cmocka_unit_test(test_gpt2_subset),
        cmocka_unit_test(test_o200k_harmony_full),
        cmocka_unit_test(test_cl100k_base_full),
        cmocka_unit_test(test_gpt2_full),
        cmocka_unit_test(test_regex_dialects),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
