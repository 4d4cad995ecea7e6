/* libFuzzer target: chat messages (chat_messages_from_json) rendered in every format
 * (chat_render). Input: JSON, either a messages array or an object with "messages" and
 * optional "options" {"date", "reasoning_effort", "model_identity"} (the shape of the cases
 * in tests/fixtures/chat/, which seed it). A rendered text must be NUL-free up to its
 * length and its loss spans in order, non-empty, non-overlapping and inside it. */
#include "fuzz_util.h"
#include "text/chat.h"

static const char *opt_string(const cJSON *opts, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(opts, key));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root)
        return 0;
    const cJSON *messages = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "messages") : root;
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(root, "options");
    struct chat_options opt = {opt_string(opts, "date"), opt_string(opts, "reasoning_effort"),
                               opt_string(opts, "model_identity")};
    if (!opt.date)
        opt.date = "2025-06-28"; /* not today's: the same input renders the same */
    struct chat_messages msgs;
    tune_err err;
    if (chat_messages_from_json(messages, &msgs, &err) != 0) {
        fuzz_check_error(&err);
        chat_messages_free(&msgs);
        cJSON_Delete(root);
        return 0;
    }
    for (int f = 0; f < CHAT_FORMAT_COUNT; f++) {
        struct chat_text t = {0};
        if (chat_render((enum chat_format)f, msgs.items, msgs.count, &opt, &t, &err) != 0) {
            fuzz_check_error(&err);
        } else {
            if (!t.text || strlen(t.text) != t.len)
                fuzz_fail("a rendered text whose length is not its string's", chat_format_name((enum chat_format)f));
            for (size_t i = 0; i < t.n_spans; i++)
                if (t.spans[i].start >= t.spans[i].end || t.spans[i].end > t.len ||
                    (i && t.spans[i].start < t.spans[i - 1].end))
                    fuzz_fail("loss spans empty, out of order or outside the text",
                              chat_format_name((enum chat_format)f));
        }
        chat_text_free(&t);
    }
    chat_messages_free(&msgs);
    cJSON_Delete(root);
    return 0;
}
