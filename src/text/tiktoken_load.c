/* tok_load_tiktoken: a tiktoken rank file ("<base64 token> <rank>" a line) plus the
 * split pattern and special tokens tiktoken pairs with it, as a byte-level tokenizer.
 * tiktoken merges any adjacent pair whose concatenation is a token, lowest token rank
 * first; entering every split of every token as a merge ranked by the token gives the
 * BPE loop exactly that rule, and tiktoken's lookup of whole pieces first is
 * ignore_merges. The presets mirror tiktoken_ext/openai_public.py (gpt2 and r50k_base share
 * ranks and pattern). */
#include "text/tokenizer_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct special {
    const char *text;
    int32_t id;
};

struct preset {
    const char *name;
    const char *pattern;
    const struct special *specials;
    size_t n_specials;
    int32_t reserved_from, reserved_to; /* [from, to) named <|reserved_N|> */
};

#define O200K_PATTERN                                                                          \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+" \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"                                                            \
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*" \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"                                                            \
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* GPT-2's pattern as tiktoken writes it (equal to tokenizers' ByteLevel regex). */
#define R50K_PATTERN                                                                  \
    "'(?:[sdmt]|ll|ve|re)| ?\\p{L}++| ?\\p{N}++| ?[^\\s\\p{L}\\p{N}]++|\\s++$|\\s+(?!\\S)|\\s"

static const struct special o200k_base_specials[] = {
    {"<|endoftext|>", 199999},
    {"<|endofprompt|>", 200018},
};

/* gpt-oss. tiktoken also names 200018 <|reserved_200018|>; both texts encode to it and
 * <|endofprompt|>, entered first, is what it decodes to. */
static const struct special o200k_harmony_specials[] = {
    {"<|startoftext|>", 199998},     {"<|endoftext|>", 199999},
    {"<|reserved_200000|>", 200000}, {"<|reserved_200001|>", 200001},
    {"<|return|>", 200002},          {"<|constrain|>", 200003},
    {"<|reserved_200004|>", 200004}, {"<|channel|>", 200005},
    {"<|start|>", 200006},           {"<|end|>", 200007},
    {"<|message|>", 200008},         {"<|reserved_200009|>", 200009},
    {"<|reserved_200010|>", 200010}, {"<|reserved_200011|>", 200011},
    {"<|call|>", 200012},            {"<|endofprompt|>", 200018},
};

static const struct special r50k_specials[] = {
    {"<|endoftext|>", 50256},
};

static const struct special cl100k_specials[] = {
    {"<|endoftext|>", 100257}, {"<|fim_prefix|>", 100258}, {"<|fim_middle|>", 100259},
    {"<|fim_suffix|>", 100260}, {"<|endofprompt|>", 100276},
};

#define COUNT(a) (sizeof(a) / sizeof *(a))

static const struct preset presets[] = {
    {"o200k_harmony", O200K_PATTERN, o200k_harmony_specials, COUNT(o200k_harmony_specials),
     200013, 201088},
    {"o200k_base", O200K_PATTERN, o200k_base_specials, COUNT(o200k_base_specials), 0, 0},
    {"cl100k_base",
     "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++"
     "[\\r\\n]*+|\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s",
     cl100k_specials, COUNT(cl100k_specials), 0, 0},
    {"r50k_base", R50K_PATTERN, r50k_specials, COUNT(r50k_specials), 0, 0},
    {"gpt2", R50K_PATTERN, r50k_specials, COUNT(r50k_specials), 0, 0},
};

static int base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decodes standard base64 (with padding) into out; false on a bad character or length. */
static bool base64_decode(const char *s, size_t len, struct tok_buf *out)
{
    if (len % 4 != 0)
        return false;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '=')
            return i + 2 >= len && (i + 1 == len || s[i + 1] == '=');
        int v = base64_value((unsigned char)s[i]);
        if (v < 0)
            return false;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            char c = (char)(acc >> bits & 0xFF);
            if (tok_buf_append(out, &c, 1) != 0)
                return false;
        }
    }
    return true;
}

static int read_file(const char *path, struct tok_buf *out, tune_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(err, "cannot open: %s", strerror(errno));
    char chunk[1 << 16];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = out->n + n > ((size_t)1 << 28) ? err_set(err, "larger than 256 MiB")
             : tok_buf_append(out, chunk, n) != 0 ? err_set(err, "out of memory") : 0;
    if (rc == 0 && ferror(f))
        rc = err_set(err, "read error");
    fclose(f);
    return rc;
}

/* The rank in [p, end), digits only (the file is not NUL-terminated, so no
 * strtol): true with *rank when it is below TOK_MAX_ID. */
static bool parse_rank(const char *p, const char *end, long *rank)
{
    long v = 0;
    if (p == end)
        return false;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9' || (v = v * 10 + (*p - '0')) >= TOK_MAX_ID)
            return false;
    }
    *rank = v;
    return true;
}

/* Parses the rank lines into the vocab, keeping each token's raw bytes in raw (token i
 * of the file at raw.p + off[i]) for the merges. */
static int load_ranks(struct tokenizer *tok, const struct tok_buf *file, struct tok_buf *raw,
                      struct tok_buf *offs, tune_err *err)
{
    struct tok_buf text = {0};
    int line = 0, rc = 0;
    for (size_t i = 0; rc == 0 && i < file->n; line++) {
        const char *s = file->p + i, *end = memchr(s, '\n', file->n - i);
        size_t len = end ? (size_t)(end - s) : file->n - i;
        i += len + 1;
        if (len == 0)
            continue;
        const char *sp = memchr(s, ' ', len);
        long rank = -1;
        size_t start = raw->n, off[2] = {raw->n, 0};
        if (!sp || !parse_rank(sp + 1, s + len, &rank) || !base64_decode(s, (size_t)(sp - s), raw) ||
            raw->n == start) {
            rc = err_set(err, "line %d: expected \"<base64 token> <rank>\"", line + 1);
            break;
        }
        off[1] = raw->n - start;
        text.n = 0;
        if (tok_buf_append(offs, off, sizeof off) != 0 ||
            tok_byte_level_encode(&text, raw->p + start, off[1]) != 0 ||
            tok_set_id_text(tok, (int32_t)rank, text.p, text.n) != 0 ||
            tok_strmap_put(&tok->bpe.vocab, raw->p + start, off[1], (int32_t)rank) != 0)
            rc = err_set(err, "out of memory");
    }
    tok_buf_free(&text);
    return rc;
}

/* A byte-level BPE spells any text from its 256 one-byte tokens; without one of them the
 * pieces holding that byte could not be encoded (tiktoken's own files rank all 256). */
static int check_bytes(const struct tokenizer *tok, tune_err *err)
{
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        if (tok_strmap_get(&tok->bpe.vocab, &c, 1) < 0)
            return err_set(err, "byte 0x%02X has no rank (a rank file must rank all 256 single "
                                "bytes)", b);
    }
    return 0;
}

static int add_merges(struct tokenizer *tok, const struct tok_buf *raw,
                      const struct tok_buf *offs, tune_err *err)
{
    const size_t *off = (const size_t *)(const void *)offs->p;
    size_t n = offs->n / (2 * sizeof *off);
    if (tok_pairmap_init(&tok->bpe.merges, 4 * n) != 0)
        return err_set(err, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *t = raw->p + off[2 * i];
        size_t len = off[2 * i + 1];
        int32_t id = tok_strmap_get(&tok->bpe.vocab, t, len);
        for (size_t k = 1; k < len; k++) {
            int32_t a = tok_strmap_get(&tok->bpe.vocab, t, k);
            int32_t b = tok_strmap_get(&tok->bpe.vocab, t + k, len - k);
            if (a >= 0 && b >= 0 && tok_pairmap_put(&tok->bpe.merges, a, b, (uint32_t)id, id))
                return err_set(err, "out of memory");
        }
    }
    return 0;
}

static int add_specials(struct tokenizer *tok, const struct preset *p, tune_err *err)
{
    for (size_t i = 0; i < p->n_specials; i++)
        if (tok_add_added(tok, p->specials[i].text, strlen(p->specials[i].text),
                          p->specials[i].id, true, false, false, false, false) != 0)
            return err_set(err, "out of memory");
    for (int32_t id = p->reserved_from; id < p->reserved_to; id++) {
        char name[32];
        int len = snprintf(name, sizeof name, "<|reserved_%d|>", (int)id);
        if (tok_add_added(tok, name, (size_t)len, id, true, false, false, false, false) != 0)
            return err_set(err, "out of memory");
    }
    return 0;
}

static int load(struct tokenizer *tok, const char *path, const struct preset *p, tune_err *err)
{
    struct tok_buf file = {0}, raw = {0}, offs = {0};
    tok->bpe.byte_mode = true;
    tok->bpe.ignore_merges = true;
    tok->bpe.unk_id = -1;
    tok->n_pretok = 1;
    tok->pretok[0] = (struct tok_pretok){.kind = TOK_PRETOK_SPLIT, .has_re = true};
    tok->dec = calloc(1, sizeof *tok->dec);
    if (!tok->dec)
        return err_set(err, "out of memory");
    tok->dec[0].kind = TOK_DEC_BYTE_LEVEL;
    tok->n_dec = 1;
    int rc = tok_regex_compile(&tok->pretok[0].re, p->pattern, strlen(p->pattern),
                               TOK_REGEX_TIKTOKEN, err);
    if (rc == 0)
        rc = add_specials(tok, p, err);
    if (rc == 0)
        rc = read_file(path, &file, err);
    if (rc == 0 && tok_strmap_init(&tok->bpe.vocab, file.n / 12) != 0)
        rc = err_set(err, "out of memory");
    if (rc == 0)
        rc = load_ranks(tok, &file, &raw, &offs, err);
    if (rc == 0)
        rc = check_bytes(tok, err);
    if (rc == 0)
        rc = add_merges(tok, &raw, &offs, err);
    tok_buf_free(&file);
    tok_buf_free(&raw);
    tok_buf_free(&offs);
    return rc == 0 ? tok_finish(tok, err) : -1;
}

int tok_load_tiktoken(struct tokenizer **out, const char *path, const char *encoding,
                      tune_err *err)
{
    *out = NULL;
    const struct preset *p = NULL;
    for (size_t i = 0; i < COUNT(presets); i++)
        if (strcmp(presets[i].name, encoding) == 0)
            p = &presets[i];
    char shown[ERR_SHOWN_SIZE];
    if (!p)
        return err_set(err, "%s: unknown tiktoken encoding \"%s\" (o200k_harmony, o200k_base, "
                            "cl100k_base, r50k_base and gpt2 are known)", path,
                       err_shown(shown, encoding));
    struct tokenizer *tok = calloc(1, sizeof *tok);
    int rc = tok ? load(tok, path, p, err) : err_set(err, "out of memory");
    if (rc != 0) {
        tok_free(tok);
        return err_prefix(err, "%s", path);
    }
    *out = tok;
    return 0;
}
