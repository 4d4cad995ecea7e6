/* Records -> ids + loss mask; see example.h and, for the rules, dataset.h. The mask is found
 * without token offsets (the tokenizer gives none): the tokens before a byte boundary are the
 * longest common prefix of the ids of the whole text and of the text cut there. That needs
 * nothing from the tokenizer beyond encode, so it holds for byte-level and SentencePiece-style
 * tokenizers alike, normalizers and post-processors included. */
#include "data/example.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void example_buf_free(struct example_buf *b)
{
    tok_ids_free(&b->ids);
    tok_ids_free(&b->prefix);
    free(b->mask);
    memset(b, 0, sizeof *b);
}

/* Number of tokens of b->ids that lie wholly before byte `at` of text. */
static int tokens_before(struct example_buf *b, const struct tokenizer *tok, const char *text,
                         size_t len, size_t at, unsigned flags, size_t *out, tune_err *err)
{
    if (at >= len) {
        *out = b->ids.n;
        return 0;
    }
    b->prefix.n = 0;
    if (tok_encode(tok, text, at, flags, &b->prefix, err))
        return -1;
    size_t k = 0;
    while (k < b->prefix.n && k < b->ids.n && b->prefix.v[k] == b->ids.v[k])
        k++;
    *out = k;
    return 0;
}

/* Room for the ids and one more (the EOS). */
static int reserve_mask(struct example_buf *b, size_t n, tune_err *err)
{
    if (n <= b->mask_cap)
        return 0;
    uint8_t *grown = realloc(b->mask, n);
    if (!grown)
        return err_set(err, "out of memory for %zu tokens", n);
    b->mask = grown;
    b->mask_cap = n;
    return 0;
}

int example_encode_spans(struct example_buf *b, const struct tokenizer *tok, const char *text,
                         size_t len, const struct chat_span *spans, size_t n_spans,
                         unsigned flags, tune_err *err)
{
    b->ids.n = 0;
    if (tok_encode(tok, text, len, flags, &b->ids, err) || reserve_mask(b, b->ids.n + 1, err))
        return -1;
    memset(b->mask, 0, b->ids.n);
    for (size_t s = 0; s < n_spans; s++) {
        size_t from, to;
        if (tokens_before(b, tok, text, len, spans[s].start, flags, &from, err) ||
            tokens_before(b, tok, text, len, spans[s].end, flags, &to, err))
            return -1;
        for (size_t t = from; t < to; t++)
            b->mask[t] = 1;
    }
    return 0;
}

/* Appends the EOS, trained (reserve_mask made room in the mask). */
static int push_eos(struct example_buf *b, int32_t eos, tune_err *err)
{
    if (b->ids.n == b->ids.cap) {
        size_t cap = b->ids.cap ? 2 * b->ids.cap : 64;
        int32_t *v = realloc(b->ids.v, cap * sizeof *v);
        if (!v)
            return err_set(err, "out of memory for %zu tokens", cap);
        b->ids.v = v;
        b->ids.cap = cap;
    }
    b->ids.v[b->ids.n] = eos;
    b->mask[b->ids.n++] = 1;
    return 0;
}

/* Tokenizes prompt + completion with the completion (and the EOS) trained. */
static int encode_prompt_completion(struct example_buf *b, const char *prompt,
                                    const char *completion, const struct data_options *o,
                                    tune_err *err)
{
    size_t np = strlen(prompt), nc = strlen(completion);
    char *text = malloc(np + nc + 1);
    if (!text)
        return err_set(err, "out of memory for %zu bytes of text", np + nc);
    memcpy(text, prompt, np);
    memcpy(text + np, completion, nc + 1);
    struct chat_span span = {np, np + nc};
    int rc = example_encode_spans(b, o->tok, text, np + nc, &span, 1,
                                  o->add_special ? TOK_ENCODE_ADD_SPECIAL : 0, err);
    free(text);
    if (rc)
        return -1;
    if (o->eos_id >= 0 && (b->ids.n == 0 || b->ids.v[b->ids.n - 1] != o->eos_id))
        return push_eos(b, o->eos_id, err);
    return 0;
}

static int encode_chat(struct example_buf *b, const cJSON *messages,
                       const struct data_options *o, tune_err *err)
{
    if (!o->chat)
        return err_set(err, "messages: a chat record, but no chat format was given");
    struct chat_messages msgs = {0};
    struct chat_text t = {0};
    int rc = chat_messages_from_json(messages, &msgs, err);
    if (rc == 0)
        rc = chat_check_tokenizer(o->chat_format, o->tok, err);
    if (rc == 0)
        rc = chat_render(o->chat_format, msgs.items, msgs.count, o->chat_opt, &t, err);
    if (rc == 0)
        rc = example_encode_spans(b, o->tok, t.text, t.len, t.spans, t.n_spans, 0, err);
    chat_text_free(&t);
    chat_messages_free(&msgs);
    return rc;
}

/* A string field, or an error naming it. */
static int get_text(const cJSON *record, const char *key, const char **out, tune_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(record, key);
    if (!cJSON_IsString(v))
        return err_set(err, "%s: not a string", key);
    *out = v->valuestring;
    return 0;
}

/* Lists a record's first fields, to say what shape it has. */
static void field_names(const cJSON *record, char *buf, size_t len)
{
    size_t k = 0;
    int i = 0;
    buf[0] = 0;
    for (const cJSON *f = record->child; f && k < len; f = f->next, i++)
        k += (size_t)snprintf(buf + k, len - k, i == 0 ? "%s" : i < 6 ? ", %s" : ", ...",
                              i < 6 ? f->string : "");
}

int example_from_record(struct example_buf *b, const cJSON *record, const struct data_options *o,
                        tune_err *err)
{
    if (o->tmpl) {
        char *prompt, *completion;
        int rc = data_template_render(o->tmpl, record, &prompt, &completion, err);
        if (rc == 0)
            rc = encode_prompt_completion(b, prompt, completion, o, err);
        free(prompt);
        free(completion);
        return rc;
    }
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(record, "messages");
    if (messages)
        return encode_chat(b, messages, o, err);
    const char *prompt = NULL, *completion = NULL;
    if (cJSON_GetObjectItemCaseSensitive(record, "prompt") ||
        cJSON_GetObjectItemCaseSensitive(record, "completion")) {
        if (get_text(record, "prompt", &prompt, err) ||
            get_text(record, "completion", &completion, err))
            return -1;
        return encode_prompt_completion(b, prompt, completion, o, err);
    }
    if (cJSON_GetObjectItemCaseSensitive(record, "text")) {
        if (get_text(record, "text", &completion, err))
            return -1;
        return encode_prompt_completion(b, "", completion, o, err);
    }
    char names[200];
    field_names(record, names, sizeof names);
    return err_set(err, "no text, prompt/completion or messages field (it has: %s); give a "
                   "template for this shape", names[0] ? names : "nothing");
}
