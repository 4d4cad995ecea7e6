/* tok_load: a Hugging Face tokenizer.json into a tokenizer. The pipeline parts are read
 * first (the pre-tokenizer decides whether the vocab is byte-level, which decides how it
 * is stored), then added tokens (so an added token's text wins for its id, as in
 * tokenizers' id_to_token), then the BPE model. Added token ids are taken from the file;
 * tokenizers renumbers added tokens missing from the vocab by counting, which gives the
 * same ids for every file it wrote itself. */
#include "text/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#include "io/json.h"

static const char *str_field(const cJSON *j, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, key));
}

static bool valid_utf8(const char *s)
{
    size_t len = strlen(s);
    return tok_utf8_valid_prefix(s, len) == len;
}

static int load_added(struct tokenizer *tok, const cJSON *arr, tune_err *err)
{
    if (!arr || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr))
        return err_set(err, "added_tokens: expected an array");
    int i = 0;
    for (const cJSON *t = arr->child; t; t = t->next, i++) {
        int64_t id;
        const char *content = str_field(t, "content");
        bool special = false, lstrip = false, rstrip = false, single_word = false;
        if (json_get_int(t, "id", true, 0, TOK_MAX_ID - 1, &id, err) != 0 ||
            json_get_bool(t, "special", &special, err) != 0)
            return err_prefix(err, "added_tokens[%d]", i);
        bool normalized = !special;
        if (json_get_bool(t, "lstrip", &lstrip, err) != 0 ||
            json_get_bool(t, "rstrip", &rstrip, err) != 0 ||
            json_get_bool(t, "single_word", &single_word, err) != 0 ||
            json_get_bool(t, "normalized", &normalized, err) != 0)
            return err_prefix(err, "added_tokens[%d]", i);
        if (!content || !valid_utf8(content))
            return err_set(err, "added_tokens[%d]: content: expected a UTF-8 string", i);
        if (!*content)
            continue; /* tokenizers ignores empty added tokens */
        if (tok_add_added(tok, content, strlen(content), (int32_t)id, special, lstrip, rstrip,
                          single_word, normalized) != 0)
            return err_set(err, "out of memory");
    }
    return 0;
}

static int load_vocab(struct tokenizer *tok, const cJSON *vocab, tune_err *err)
{
    if (!cJSON_IsObject(vocab))
        return err_set(err, "model: vocab: expected an object");
    if (tok_strmap_init(&tok->bpe.vocab, (size_t)cJSON_GetArraySize(vocab)) != 0)
        return err_set(err, "out of memory");
    for (const cJSON *v = vocab->child; v; v = v->next) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= TOK_MAX_ID ||
            v->valuedouble != (double)(int32_t)v->valuedouble)
            return err_set(err, "model: vocab: \"%.100s\": expected an id in [0, %d)",
                           v->string, TOK_MAX_ID);
        if (!valid_utf8(v->string))
            return err_set(err, "model: vocab: a token is not valid UTF-8");
        if (tok_add_vocab(tok, v->string, strlen(v->string), (int32_t)v->valuedouble) != 0)
            return err_set(err, "out of memory");
    }
    return 0;
}

/* The two tokens of merges[i]: "a b" (the legacy form) or ["a", "b"]. */
static int merge_parts(const cJSON *m, struct tok_buf *buf, size_t *split, tune_err *err)
{
    buf->n = 0;
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' '))
            return err_set(err, "expected \"a b\" with one space");
        *split = (size_t)(sp - s);
        return tok_buf_append(buf, s, *split) || tok_buf_append(buf, sp + 1, strlen(sp + 1))
                   ? err_set(err, "out of memory") : 0;
    }
    const char *a = cJSON_GetStringValue(cJSON_GetArrayItem(m, 0));
    const char *b = cJSON_GetStringValue(cJSON_GetArrayItem(m, 1));
    if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) != 2 || !a || !b)
        return err_set(err, "expected \"a b\" or [\"a\", \"b\"]");
    *split = strlen(a);
    return tok_buf_append(buf, a, *split) || tok_buf_append(buf, b, strlen(b))
               ? err_set(err, "out of memory") : 0;
}

/* Merge rank r joins (a, b) into the token a+b, all three in the vocab. */
static int load_merges(struct tokenizer *tok, const cJSON *merges, tune_err *err)
{
    if (!cJSON_IsArray(merges))
        return err_set(err, "model: merges: expected an array");
    if (tok_pairmap_init(&tok->bpe.merges, (size_t)cJSON_GetArraySize(merges)) != 0)
        return err_set(err, "out of memory");
    struct tok_buf buf = {0};
    uint32_t rank = 0;
    int i = 0, rc = 0;
    for (const cJSON *m = merges->child; m && rc == 0; m = m->next, i++) {
        if (cJSON_IsString(m) && strncmp(m->valuestring, "#version", 8) == 0)
            continue; /* the header line of a merges.txt */
        size_t split = 0;
        if (merge_parts(m, &buf, &split, err) != 0) {
            rc = err_prefix(err, "model: merges[%d]", i);
            break;
        }
        if (tok_utf8_valid_prefix(buf.p, buf.n) != buf.n) {
            rc = err_set(err, "model: merges[%d]: not valid UTF-8", i);
            break;
        }
        int32_t a = tok_vocab_lookup(tok, buf.p, split);
        int32_t b = tok_vocab_lookup(tok, buf.p + split, buf.n - split);
        int32_t ab = tok_vocab_lookup(tok, buf.p, buf.n);
        if (a < 0 || b < 0 || ab < 0) {
            const char *what = a < 0 ? buf.p : b < 0 ? buf.p + split : buf.p;
            size_t n = a < 0 ? split : b < 0 ? buf.n - split : buf.n;
            char shown[ERR_SHOWN_SIZE];
            rc = err_set(err, "model: merges[%d]: token \"%s\" is not in the vocab", i,
                         err_shown_n(shown, what, n));
            break;
        }
        if (tok_pairmap_put(&tok->bpe.merges, a, b, rank++, ab) != 0)
            rc = err_set(err, "out of memory");
    }
    tok_buf_free(&buf);
    return rc;
}

/* A string field that must be null, absent or empty: a feature tune does not implement. */
static int refuse_string(const cJSON *model, const char *key, tune_err *err)
{
    const char *s = str_field(model, key);
    char shown[ERR_SHOWN_SIZE];
    if (s && *s)
        return err_set(err, "model: %s \"%s\" is not supported", key, err_shown(shown, s));
    return 0;
}

static int load_model(struct tokenizer *tok, const cJSON *model, tune_err *err)
{
    struct tok_bpe *bpe = &tok->bpe;
    double dropout = 0;
    if (json_get_real(model, "dropout", false, &dropout, err) != 0)
        return err_prefix(err, "model");
    if (dropout > 0)
        return err_set(err, "model: dropout %g is not supported", dropout);
    if (refuse_string(model, "continuing_subword_prefix", err) != 0 ||
        refuse_string(model, "end_of_word_suffix", err) != 0)
        return -1;
    if (json_get_bool(model, "fuse_unk", &bpe->fuse_unk, err) != 0 ||
        json_get_bool(model, "byte_fallback", &bpe->byte_fallback, err) != 0 ||
        json_get_bool(model, "ignore_merges", &bpe->ignore_merges, err) != 0)
        return err_prefix(err, "model");
    if (bpe->byte_fallback && bpe->byte_mode)
        return err_set(err, "model: byte_fallback with a ByteLevel pre-tokenizer is not "
                            "supported");
    if (load_vocab(tok, cJSON_GetObjectItemCaseSensitive(model, "vocab"), err) != 0 ||
        load_merges(tok, cJSON_GetObjectItemCaseSensitive(model, "merges"), err) != 0)
        return -1;
    const char *unk = str_field(model, "unk_token");
    if (unk && !valid_utf8(unk))
        return err_set(err, "model: unk_token: not valid UTF-8");
    bpe->unk_id = unk ? tok_vocab_lookup(tok, unk, strlen(unk)) : -1;
    bpe->unk_missing = unk && bpe->unk_id < 0;
    return 0;
}

/* An added token also in the vocab must carry the vocab's id. */
static int check_added(const struct tokenizer *tok, tune_err *err)
{
    for (size_t i = 0; i < tok->n_added; i++) {
        const struct tok_added *a = &tok->added[i];
        int32_t v = tok_vocab_lookup(tok, a->content, a->len);
        char shown[ERR_SHOWN_SIZE];
        if (v >= 0 && v != a->id)
            return err_set(err, "added_tokens: \"%s\" has id %d but the vocab gives it %d",
                           err_shown_n(shown, a->content, a->len), (int)a->id, (int)v);
    }
    return 0;
}

static int load_root(struct tokenizer *tok, const cJSON *root, tune_err *err)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model))
        return err_set(err, "model: missing");
    const char *type = str_field(model, "type");
    char shown[ERR_SHOWN_SIZE];
    if (!type)
        return err_set(err, "model: type: missing");
    if (strcmp(type, "BPE") != 0)
        return err_set(err, "model: type \"%s\" is not supported (only BPE is)",
                       err_shown(shown, type));
    if (tok_load_normalizer(tok, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), err) ||
        tok_load_pre_tokenizer(tok, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"),
                               err) ||
        tok_load_post_processor(tok, cJSON_GetObjectItemCaseSensitive(root, "post_processor"),
                                err) ||
        tok_load_decoder(tok, cJSON_GetObjectItemCaseSensitive(root, "decoder"), err))
        return -1;
    if (load_added(tok, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), err) != 0 ||
        load_model(tok, model, err) != 0 || check_added(tok, err) != 0)
        return -1;
    return tok_finish(tok, err);
}

int tok_load(struct tokenizer **out, const char *path, tune_err *err)
{
    *out = NULL;
    /* gpt-oss's tokenizer.json is 27 MiB; a bound keeps a wrong path from reading a disk
     * image into memory. */
    cJSON *root = json_load_file(path, (int64_t)1 << 30, err);
    if (!root)
        return -1;
    struct tokenizer *tok = calloc(1, sizeof *tok);
    int rc = tok ? load_root(tok, root, err) : err_set(err, "out of memory");
    cJSON_Delete(root);
    if (rc != 0) {
        tok_free(tok);
        return err_prefix(err, "%s", path);
    }
    *out = tok;
    return 0;
}
