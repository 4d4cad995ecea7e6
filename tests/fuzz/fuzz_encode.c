/* libFuzzer target: encoding arbitrary bytes with fixed tokenizers (the llama3_style,
 * llama2_style, gpt2_style, metaspace_style, o200k_harmony_hf, qwen2_style (NFC) and
 * nfkc_bytes fixtures of tests/fixtures/tokenizer, loaded once). The first input byte picks the tokenizer (bits
 * 0-2) and the flags (bit 3 TOK_ENCODE_ADD_SPECIAL, bit 4 TOK_ENCODE_SPECIAL_AS_TEXT); the
 * rest is the text. Checked against what tokenizers does (verified on its outputs):
 *   - invalid UTF-8 (by a checker written apart from the library's) is an error, valid
 *     UTF-8 never is, and a failed encode leaves no ids;
 *   - every id is inside the vocabulary and has a token;
 *   - decode(encode(text)) == text for the byte-level tokenizers without a post-processor
 *     (add-special off), except where an added token strips the whitespace beside it
 *     (llama3_style's "<mask>" when specials are matched, "[TOOL]"); for llama2_style the
 *     same holds when the text has no U+2581 and, unless specials are text, no "<s>",
 *     "</s>", "<unk>". gpt2_style, metaspace_style and the normalizing qwen2_style and
 *     nfkc_bytes are not round-trip tokenizers. */
#include "fuzz_util.h"
#include "text/tokenizer.h"

enum { T_LLAMA3, T_LLAMA2, T_GPT2, T_METASPACE, T_O200K, T_QWEN2, T_NFKC, T_COUNT };

static const char *const files[T_COUNT] = {
    "tests/fixtures/tokenizer/llama3_style.tokenizer.json",
    "tests/fixtures/tokenizer/llama2_style.tokenizer.json",
    "tests/fixtures/tokenizer/gpt2_style.tokenizer.json",
    "tests/fixtures/tokenizer/metaspace_style.tokenizer.json",
    "tests/fixtures/tokenizer/o200k_harmony_hf.tokenizer.json",
    "tests/fixtures/tokenizer/qwen2_style.tokenizer.json",
    "tests/fixtures/tokenizer/nfkc_bytes.tokenizer.json",
};
static struct tokenizer *toks[T_COUNT];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    for (int i = 0; i < T_COUNT; i++) {
        tune_err err;
        if (tok_load(&toks[i], files[i], &err) != 0)
            fuzz_fail("cannot load a fixture tokenizer (run from the repository root)", err.msg);
    }
    return 0;
}

static bool has(const char *s, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(s + i, needle, k) == 0)
            return true;
    return false;
}

static bool round_trips(int t, unsigned flags, const char *s, size_t n)
{
    if (flags & TOK_ENCODE_ADD_SPECIAL)
        return false;
    bool specials_matched = !(flags & TOK_ENCODE_SPECIAL_AS_TEXT);
    switch (t) {
    case T_LLAMA3:
        return !has(s, n, "[TOOL]") && !(specials_matched && has(s, n, "<mask>"));
    case T_LLAMA2:
        return !has(s, n, "\xe2\x96\x81") &&
               !(specials_matched && (has(s, n, "<s>") || has(s, n, "</s>") || has(s, n, "<unk>")));
    case T_O200K:
        return true;
    default:
        return false;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int t = (data[0] & 7) % T_COUNT;
    unsigned flags = (data[0] & 8 ? TOK_ENCODE_ADD_SPECIAL : 0) | (data[0] & 16 ? TOK_ENCODE_SPECIAL_AS_TEXT : 0);
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    const struct tokenizer *tok = toks[t];
    struct tok_ids ids = {0};
    tune_err err;
    int rc = tok_encode(tok, text, len, flags, &ids, &err);
    bool valid = fuzz_utf8_valid((const uint8_t *)text, len);
    if (rc != 0) {
        fuzz_check_error(&err);
        if (valid)
            fuzz_fail("valid UTF-8 refused", err.msg);
        if (ids.n)
            fuzz_fail("a failed encode left ids behind", NULL);
        tok_ids_free(&ids);
        return 0;
    }
    if (!valid)
        fuzz_fail("invalid UTF-8 encoded", NULL);
    int32_t vocab = tok_vocab_size(tok);
    for (size_t i = 0; i < ids.n; i++)
        if (ids.v[i] < 0 || ids.v[i] >= vocab || !tok_id_to_token(tok, ids.v[i]))
            fuzz_fail("an id outside the vocabulary", NULL);
    char *out = NULL;
    size_t out_len = 0;
    if (tok_decode(tok, ids.v, ids.n, 0, &out, &out_len, &err) != 0) {
        fuzz_check_error(&err);
        fuzz_fail("the ids of an encode do not decode", err.msg);
    }
    if (round_trips(t, flags, text, len) && (out_len != len || memcmp(out, text, len) != 0))
        fuzz_fail("decode(encode(text)) != text", files[t]);
    free(out);
    tok_ids_free(&ids);
    return 0;
}
