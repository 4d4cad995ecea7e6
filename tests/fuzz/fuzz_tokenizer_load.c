/* libFuzzer target: loading a tokenizer (tok_load for a tokenizer.json, tok_load_tiktoken for
 * a rank file: an input starting with '{' is the former). The loaders read a path, so the
 * input goes to a scratch file. A tokenizer that loads is then used: a fixed mixed text and
 * the input's own first bytes are encoded with each flag, every id decoded and looked up,
 * so ASan and UBSan see whatever the load let through. */
#include "fuzz_util.h"
#include "text/tokenizer.h"

static const char *const encodings[] = {"o200k_harmony", "cl100k_base", "r50k_base", "o200k_base"};

/* Mixed text: ASCII, accents, CJK, emoji, code, digits, runs of spaces and newlines, the
 * special tokens of the families the fixtures come from. */
static const char sample[] =
    "Hello, world! caf\xc3\xa9 na\xc3\xafve \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd "
    "int main(void) { return 0; }\n\n\n   x = 12345678;\t\ty\r\n"
    "<|begin_of_text|><|eot_id|><s></s><unk><|endoftext|><|start|>user<|message|>hi<|end|> "
    "\xe2\x96\x81 metaspace  \xe2\x96\x81\xe2\x96\x81 <0x41> [TOOL] foo <mask>";

static void use(const struct tokenizer *tok, const char *text, size_t len)
{
    int32_t vocab = tok_vocab_size(tok);
    static const unsigned flag_sets[] = {0, TOK_ENCODE_ADD_SPECIAL, TOK_ENCODE_SPECIAL_AS_TEXT};
    for (size_t f = 0; f < sizeof flag_sets / sizeof flag_sets[0]; f++) {
        struct tok_ids ids = {0};
        tune_err err;
        if (tok_encode(tok, text, len, flag_sets[f], &ids, &err) != 0) {
            fuzz_check_error(&err);
            if (ids.n != 0)
                fuzz_fail("a failed encode left ids behind", NULL);
        } else {
            for (size_t i = 0; i < ids.n; i++)
                if (ids.v[i] < 0 || ids.v[i] >= vocab)
                    fuzz_fail("an id outside the vocabulary", NULL);
            char *out = NULL;
            size_t out_len = 0;
            for (unsigned d = 0; d < 2; d++) {
                if (tok_decode(tok, ids.v, ids.n, d ? TOK_DECODE_SKIP_SPECIAL : 0, &out, &out_len, &err) != 0)
                    fuzz_check_error(&err);
                else if (strlen(out) > out_len)
                    fuzz_fail("decode's length is short of its text", NULL);
                free(out);
                out = NULL;
            }
        }
        tok_ids_free(&ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t lead = 0;
    while (lead < size && (data[lead] == ' ' || data[lead] == '\n' || data[lead] == '\t' || data[lead] == '\r'))
        lead++;
    bool json = lead < size && data[lead] == '{';
    const char *path = fuzz_write_file(data, size, json ? ".json" : ".tiktoken");
    struct tokenizer *tok = NULL;
    tune_err err;
    int rc = json ? tok_load(&tok, path, &err)
                  : tok_load_tiktoken(&tok, path, encodings[size % (sizeof encodings / sizeof encodings[0])], &err);
    if (rc != 0) {
        fuzz_check_error(&err);
        return 0;
    }
    int32_t vocab = tok_vocab_size(tok);
    if (vocab < 1)
        fuzz_fail("a tokenizer without ids", NULL);
    for (int32_t id = 0; id < vocab; id++) {
        if (id == 4096 && vocab > 8192)
            id = vocab - 4096; /* the first and last ids: added tokens sit at the end */
        const char *t = tok_id_to_token(tok, id);
        if (t && tok_token_to_id(tok, t) < 0)
            fuzz_fail("a token that does not map back to an id", t);
        (void)tok_is_special(tok, id);
    }
    if (tok_id_to_token(tok, -1) || tok_id_to_token(tok, vocab))
        fuzz_fail("a token for an id outside the vocabulary", NULL);
    use(tok, sample, sizeof sample - 1);
    use(tok, (const char *)data, size < 512 ? size : 512);
    tok_free(tok);
    return 0;
}
