/* Tokenizer: text <-> token ids for the BPE tokenizers of the models tune trains: the
 * Hugging Face tokenizer.json BPE family (GPT-2, Llama 2/3, Mistral, gpt-oss) and tiktoken
 * rank files (o200k_harmony, o200k_base, cl100k_base, r50k_base). The ids equal those of the
 * `tokenizers` library (and of tiktoken for rank files): tests/test_tokenizer.c holds the
 * parity cases and tools/ref/make_tokenizer_fixtures.py makes them.
 *
 * Supported pieces of tokenizer.json (anything else is refused at load, naming it):
 *   model          BPE: vocab, merges ("a b" strings or [a, b] pairs), unk_token, fuse_unk,
 *                  byte_fallback, ignore_merges (dropout, subword prefix/suffix refused)
 *   normalizer     Prepend, Replace (string or regex), NFC, NFD, NFKC, NFKD, Sequence of them
 *   pre_tokenizer  Split (regex or string; Isolated or Removed), ByteLevel, Metaspace,
 *                  Sequence of them
 *   post_processor TemplateProcessing (single template), ByteLevel, Sequence of them
 *   decoder        ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence
 *   added_tokens   special, lstrip, rstrip, single_word, normalized
 * A loaded tokenizer is immutable: every function taking a const tokenizer may be called
 * from several threads at once. */
#ifndef TUNE_TEXT_TOKENIZER_H
#define TUNE_TEXT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

struct tokenizer;

enum tok_encode_flags {
    /* Apply the post-processor template: BOS for Llama. tokenizers' add_special_tokens. */
    TOK_ENCODE_ADD_SPECIAL = 1u << 0,
    /* Special added tokens written in the text are encoded as plain text, as tokenizers'
     * encode_special_tokens=True and tiktoken's encode_ordinary do. Without the flag they
     * are recognised, as tokenizers' encode always does (and tiktoken's
     * encode(allowed_special="all")). Non-special added tokens are recognised either way. */
    TOK_ENCODE_SPECIAL_AS_TEXT = 1u << 1,
};

enum tok_decode_flags {
    TOK_DECODE_SKIP_SPECIAL = 1u << 0, /* drop special added tokens from the text */
};

/* A growable list of ids; zero-initialise it, reuse it across calls, free it with
 * tok_ids_free. */
struct tok_ids {
    int32_t *v;
    size_t n, cap;
};

/* Loads a tokenizer.json. Errors name the file and the field ("tokenizer.json: model:
 * merges[12]: token "xy" is not in the vocab"). */
int tok_load(struct tokenizer **out, const char *path, tune_err *err);

/* Loads a tiktoken rank file (lines of "<base64 token> <rank>") as the named encoding,
 * which supplies the split pattern and special tokens tiktoken pairs with that file:
 * "o200k_harmony" (gpt-oss), "o200k_base", "cl100k_base", "r50k_base" or "gpt2".
 * Encodes like tiktoken. */
int tok_load_tiktoken(struct tokenizer **out, const char *path, const char *encoding,
                      tune_err *err);

void tok_free(struct tokenizer *tok);

/* Appends the ids of text[0..len) to ids (ids->n grows; earlier ids are kept). text must
 * be valid UTF-8 (NUL bytes allowed); invalid UTF-8 is an error naming the byte offset.
 * flags: enum tok_encode_flags. On error ids->n is restored. */
int tok_encode(const struct tokenizer *tok, const char *text, size_t len, unsigned flags,
               struct tok_ids *ids, tune_err *err);

void tok_ids_free(struct tok_ids *ids);

/* Decodes ids to UTF-8 text through the tokenizer's decoder, as tokenizers' decode does
 * (invalid byte sequences become U+FFFD). *text is malloc'd, NUL-terminated, *len bytes;
 * the caller frees it. An id outside the vocabulary is an error (tokenizers skips it).
 * flags: enum tok_decode_flags. */
int tok_decode(const struct tokenizer *tok, const int32_t *ids, size_t n, unsigned flags,
               char **text, size_t *len, tune_err *err);

/* The id of a token written as in tokenizer.json ("Ġthe", "<|eot_id|>", "▁the"), added
 * tokens first; -1 when there is none. */
int32_t tok_token_to_id(const struct tokenizer *tok, const char *token);

/* The token of an id as tokenizer.json writes it (byte-level tokens in GPT-2's printable
 * form, also for rank files), or NULL when the id is unused. Valid until tok_free. */
const char *tok_id_to_token(const struct tokenizer *tok, int32_t id);

/* One more than the largest id (model vocab and added tokens). */
int32_t tok_vocab_size(const struct tokenizer *tok);

/* Whether id is a special added token (<|eot_id|>, <s>). */
bool tok_is_special(const struct tokenizer *tok, int32_t id);

#endif
