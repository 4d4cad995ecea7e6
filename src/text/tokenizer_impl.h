/* Internals of the tokenizer shared by the files of src/text/: the tables a loaded
 * tokenizer holds and the scratch one encode call works in. Nothing outside text/ includes
 * this header.
 *
 * The choice that shapes it: byte-level tokenizers (GPT-2, Llama 3, gpt-oss) run BPE on raw
 * bytes, not on GPT-2's printable characters. Their vocab is converted once at load
 * ("Ġthe" -> " the"), so encoding never maps text to "Ġ" characters and tiktoken rank files
 * (raw bytes already) load into the same tables. SentencePiece-style tokenizers (Llama 2,
 * Mistral) run BPE on UTF-8 characters of the normalized text. */
#ifndef TUNE_TEXT_TOKENIZER_IMPL_H
#define TUNE_TEXT_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "text/tokenizer.h"

/* ---- containers (tok_map.c) ---- */

struct tok_buf {
    char *p;
    size_t n, cap;
};

/* Makes room for `extra` more bytes; -1 when out of memory. */
int tok_buf_reserve(struct tok_buf *b, size_t extra);
int tok_buf_append(struct tok_buf *b, const void *s, size_t len);
void tok_buf_free(struct tok_buf *b);
int tok_ids_push(struct tok_ids *ids, int32_t id);

/* Bytes -> id, open addressing. Keys are copied into the map. */
struct tok_strmap_slot {
    uint32_t hash, len, off; /* len == UINT32_MAX: empty */
    int32_t val;
};
struct tok_strmap {
    struct tok_strmap_slot *slots; /* (mask + 1) */
    uint32_t mask, count;
    struct tok_buf keys;
};

/* Sizes the map for about `expected` keys (it grows past that). */
int tok_strmap_init(struct tok_strmap *m, size_t expected);
/* Sets key -> val, replacing an existing value. -1 when out of memory. */
int tok_strmap_put(struct tok_strmap *m, const char *key, size_t len, int32_t val);
/* The value of key, or -1. An uninitialised (zeroed) map is empty. */
int32_t tok_strmap_get(const struct tok_strmap *m, const char *key, size_t len);
void tok_strmap_free(struct tok_strmap *m);

/* BPE merges: (left id, right id) -> (rank, merged id). */
struct tok_merge {
    uint64_t pair; /* left << 32 | right; UINT64_MAX: empty */
    uint32_t rank;
    int32_t id;
};
struct tok_pairmap {
    struct tok_merge *slots; /* (mask + 1) */
    uint32_t mask, count;
};

int tok_pairmap_init(struct tok_pairmap *m, size_t expected);
/* Sets the merge of (a, b), replacing an earlier one as tokenizers does. */
int tok_pairmap_put(struct tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id);
/* The merge of (a, b) or NULL. */
const struct tok_merge *tok_pairmap_get(const struct tok_pairmap *m, int32_t a, int32_t b);
void tok_pairmap_free(struct tok_pairmap *m);

/* ---- UTF-8 (utf8.c) ---- */

/* Length of the longest valid UTF-8 prefix of s (len when all of s is valid). */
size_t tok_utf8_valid_prefix(const char *s, size_t len);
/* Decodes the character at s (valid UTF-8, at least one byte), setting *n to its length. */
uint32_t tok_utf8_decode(const char *s, size_t *n);
/* Writes cp as UTF-8 into out; returns the byte count (1..4). */
size_t tok_utf8_encode(uint32_t cp, char out[4]);
/* Appends s, replacing each maximal invalid subsequence by U+FFFD (Rust's
 * String::from_utf8_lossy, which tokenizers' decoders use). */
int tok_utf8_append_lossy(struct tok_buf *b, const char *s, size_t len);
/* Unicode White_Space (what Rust's regex \s means, used around added tokens). */
bool tok_utf8_is_space(uint32_t cp);

/* ---- GPT-2 byte <-> character map (byte_level.c) ---- */

/* The byte GPT-2's character cp stands for, or -1. */
int tok_char_to_byte(uint32_t cp);
/* Appends the GPT-2 form of raw bytes. */
int tok_byte_level_encode(struct tok_buf *out, const char *raw, size_t len);
/* Appends the raw bytes of a GPT-2 form string. Returns 1, or 0 (out unchanged) when a
 * character is outside the map, or -1 when out of memory. */
int tok_byte_level_decode(struct tok_buf *out, const char *s, size_t len);

/* ---- regexes (regex.c) ---- */

enum tok_regex_dialect {
    TOK_REGEX_ONIG,     /* tokenizer.json patterns, read as tokenizers' Oniguruma reads them */
    TOK_REGEX_TIKTOKEN, /* tiktoken patterns (Rust fancy-regex) */
    TOK_REGEX_LITERAL,  /* a plain string ("String" patterns) */
};

struct tok_regex {
    pcre2_code *code; /* NULL for a literal */
    char *literal;
    size_t literal_len;
};

/* Per-call match state: the regexes are shared read-only, matching needs these. */
struct tok_match_scratch {
    pcre2_match_data *md;
    pcre2_match_context *mc;
    pcre2_jit_stack *stack; /* made on the first JIT stack overflow */
};

/* Compiles pattern (len bytes) with Unicode properties and JIT; errors quote the pattern. */
int tok_regex_compile(struct tok_regex *re, const char *pattern, size_t len,
                      enum tok_regex_dialect dialect, tune_err *err);
void tok_regex_free(struct tok_regex *re);
/* Finds the first match in s[0..len) starting at or after `from` (s is valid UTF-8).
 * Returns 1 with [*start, *end), 0 when there is none, -1 on a matching failure. */
int tok_regex_find(const struct tok_regex *re, struct tok_match_scratch *ms, const char *s,
                   size_t len, size_t from, size_t *start, size_t *end, tune_err *err);
/* Appends s with every match of re replaced by `with`. */
int tok_regex_replace_all(const struct tok_regex *re, struct tok_match_scratch *ms,
                          const char *s, size_t len, const char *with, size_t with_len,
                          struct tok_buf *out, tune_err *err);
void tok_match_scratch_free(struct tok_match_scratch *ms);

/* ---- the model: BPE (bpe.c) ---- */

struct tok_bpe {
    bool byte_mode;           /* units are bytes (ByteLevel), else UTF-8 characters */
    struct tok_strmap vocab;  /* model token (raw bytes in byte mode) -> id */
    int32_t byte_id[256];     /* byte mode: id of each one-byte token, -1 if none */
    int32_t fallback_id[256]; /* id of <0xNN>, -1 if none */
    struct tok_pairmap merges;
    int32_t unk_id; /* -1: no unk_token */
    bool unk_missing; /* unk_token named but not in the vocab: an error when needed */
    bool fuse_unk, byte_fallback, ignore_merges;
};

struct tok_bpe_sym {
    int32_t id, prev, next; /* id -1: merged into its left neighbour */
};
struct tok_bpe_cand {
    uint64_t key; /* rank << 32 | position of the left symbol: the merge order */
    int32_t id;
};
struct tok_bpe_scratch {
    struct tok_bpe_sym *sym;
    struct tok_bpe_cand *heap;
    size_t cap; /* symbols; the heap holds 2 * cap candidates */
};

/* Appends the ids of one pre-token w[0..len) (model space: raw bytes in byte mode). */
int tok_bpe_encode_word(const struct tok_bpe *bpe, struct tok_bpe_scratch *s, const char *w,
                        size_t len, struct tok_ids *out, tune_err *err);
void tok_bpe_scratch_free(struct tok_bpe_scratch *s);

/* ---- normalizers, pre-tokenizers, decoders ---- */

enum tok_norm_kind {
    TOK_NORM_PREPEND,
    TOK_NORM_REPLACE,
    TOK_NORM_NFC, /* the Unicode normalization forms (libutf8proc) */
    TOK_NORM_NFD,
    TOK_NORM_NFKC,
    TOK_NORM_NFKD,
};
struct tok_norm {
    enum tok_norm_kind kind;
    struct tok_regex pattern; /* Replace */
    char *text;               /* Prepend: the prefix; Replace: the replacement */
    size_t text_len;
};

enum tok_pretok_kind { TOK_PRETOK_SPLIT, TOK_PRETOK_BYTE_LEVEL, TOK_PRETOK_METASPACE };
enum tok_prepend { TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST, TOK_PREPEND_NEVER };
#define TOK_MAX_PRETOK 8

struct tok_pretok {
    enum tok_pretok_kind kind;
    struct tok_regex re;   /* Split: the pattern; ByteLevel with use_regex: GPT-2's */
    bool has_re;
    bool remove_matches;   /* Split: behavior Removed (else Isolated) */
    bool add_prefix_space; /* ByteLevel */
    char rep[4];           /* Metaspace: the replacement character, UTF-8 */
    size_t rep_len;
    enum tok_prepend prepend; /* Metaspace */
    bool split;               /* Metaspace */
};

enum tok_dec_kind {
    TOK_DEC_BYTE_LEVEL,
    TOK_DEC_REPLACE,
    TOK_DEC_BYTE_FALLBACK,
    TOK_DEC_FUSE,
    TOK_DEC_STRIP,
    TOK_DEC_METASPACE,
};
struct tok_dec {
    enum tok_dec_kind kind;
    struct tok_regex pattern; /* Replace */
    char *text;               /* Replace: the replacement */
    size_t text_len;
    uint32_t ch;              /* Strip: the character; Metaspace: the replacement */
    size_t start, stop;       /* Strip */
    enum tok_prepend prepend; /* Metaspace */
};

/* ---- added tokens (added_tokens.c) ---- */

struct tok_added {
    char *content;
    size_t len;
    char *key; /* what is matched: content, or content normalized when `normalized` */
    size_t key_len;
    int32_t id;
    bool special, lstrip, rstrip, single_word, normalized;
};

/* Leftmost-longest matcher over some added tokens: a hash of keys tried at each
 * position whose byte can start one, for each distinct key length, longest first. */
struct tok_added_set {
    struct tok_strmap keys; /* key -> index into tokenizer.added */
    size_t *lens;           /* distinct key lengths, longest first */
    size_t n_lens;
    uint8_t first[32]; /* bitmap of first bytes */
};

struct tok_added_match {
    size_t start, end; /* the split, whitespace taken by lstrip/rstrip included */
    int32_t id;
};

/* Builds the matcher of the added tokens whose `normalized` flag equals `normalized`. */
int tok_added_set_build(struct tokenizer *tok, struct tok_added_set *set, bool normalized);
void tok_added_set_free(struct tok_added_set *set);
/* The next added token of s[0..len) as tokenizers splits it: *pos is where the search
 * resumes (start at 0; advanced here), done where the previous split ended (lstrip stops
 * there). Returns true with m filled, false at the end. Special tokens are skipped when
 * skip_special. */
bool tok_added_next(const struct tokenizer *tok, const struct tok_added_set *set,
                    struct tok_match_scratch *ms, const char *s, size_t len, bool skip_special,
                    size_t *pos, size_t done, struct tok_added_match *m);

/* ---- the tokenizer ---- */

enum tok_id_flag {
    TOK_ID_SPECIAL = 1u << 0, /* a special added token */
    /* An added token that matches normalized text and whose normalized text differs from its
     * content: tokenizers decodes it as the normalized text (its decoder inverts that). */
    TOK_ID_DECODES_NORMALIZED = 1u << 1,
};

struct tokenizer {
    int32_t n_ids;       /* one more than the largest id */
    size_t id_cap;       /* allocated length of id_off and id_flags */
    uint32_t *id_off;    /* (n_ids) offset of the id's text in id_text; UINT32_MAX: unused */
    uint8_t *id_flags;   /* (n_ids) enum tok_id_flag bits */
    struct tok_buf id_text;      /* tokenizer.json form of each token, NUL-terminated */
    struct tok_strmap odd_text;  /* byte mode: vocab tokens not in GPT-2 form, text -> id */

    struct tok_bpe bpe;

    struct tok_added *added;
    size_t n_added;
    struct tok_strmap added_ids; /* content -> id */
    struct tok_added_set raw_set, norm_set;
    struct tok_regex word_re; /* \w, for single_word tokens */
    bool has_word_re;

    struct tok_norm *norm;
    size_t n_norm;
    struct tok_pretok pretok[TOK_MAX_PRETOK];
    size_t n_pretok;
    struct tok_dec *dec; /* none: tokens are joined by spaces, as tokenizers does */
    size_t n_dec;

    int32_t *prefix_ids, *suffix_ids; /* the template around $A */
    size_t n_prefix, n_suffix;
};

/* ---- building a tokenizer (tokenizer.c) ---- */

/* Ids are below this: real vocabularies stay under 300k, and a bound keeps a corrupt id
 * from allocating gigabytes. */
#define TOK_MAX_ID (1 << 24)

/* Records the tokenizer.json text of id (the first text given for an id is kept). */
int tok_set_id_text(struct tokenizer *tok, int32_t id, const char *text, size_t len);
/* Adds a model vocab entry given in tokenizer.json form: its text and its model key
 * (converted to raw bytes in byte mode). */
int tok_add_vocab(struct tokenizer *tok, const char *text, size_t len, int32_t id);
/* The id of a model token given in tokenizer.json form, or -1. */
int32_t tok_vocab_lookup(const struct tokenizer *tok, const char *text, size_t len);
/* Appends an added token (copying its strings); its key is filled by tok_finish. */
int tok_add_added(struct tokenizer *tok, const char *content, size_t len, int32_t id,
                  bool special, bool lstrip, bool rstrip, bool single_word, bool normalized);
/* Completes a loaded tokenizer: byte tables, normalized keys and matchers of added
 * tokens. Errors are prefixed by the caller with the file. */
int tok_finish(struct tokenizer *tok, tune_err *err);

/* ---- loading the pipeline of a tokenizer.json (pipeline_load.c) ---- */

struct cJSON;
int tok_load_normalizer(struct tokenizer *tok, const struct cJSON *j, tune_err *err);
int tok_load_pre_tokenizer(struct tokenizer *tok, const struct cJSON *j, tune_err *err);
int tok_load_post_processor(struct tokenizer *tok, const struct cJSON *j, tune_err *err);
int tok_load_decoder(struct tokenizer *tok, const struct cJSON *j, tune_err *err);

/* ---- encoding (normalize.c, pretokenize.c, encode.c) ---- */

struct tok_encode_ctx {
    const struct tokenizer *tok;
    struct tok_ids *out;
    tune_err *err;
    struct tok_match_scratch ms;
    struct tok_bpe_scratch bpe;
    struct tok_buf step_buf[TOK_MAX_PRETOK]; /* rewritten pieces, one buffer per step */
    struct tok_buf norm, norm_tmp;
};

/* Normalizes s[0..len) into *out (replacing its contents); *tmp is scratch. */
int tok_normalize(const struct tokenizer *tok, struct tok_match_scratch *ms, const char *s,
                  size_t len, struct tok_buf *out, struct tok_buf *tmp, tune_err *err);
/* Runs pre-tokenizer steps [step, n_pretok) on one piece and BPE on what comes out.
 * at_start: the piece begins at offset 0 of the original text (Metaspace "first"). */
int tok_pretokenize(struct tok_encode_ctx *c, size_t step, const char *s, size_t len,
                    bool at_start);

#endif
