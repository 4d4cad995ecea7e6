/* Mistral [INST] format: the template of mistralai/Mistral-7B-Instruct-v0.2 (mistralai's
 * "v1" tokenizer template with an optional system message, also set on v0.1 and Mixtral
 * 8x7B in 2024; tools/ref/chat_templates/mistral-v0.2.jinja):
 *   <s> [INST] system\n\nuser [/INST] answer</s> [INST] user [/INST] answer</s>
 * The system message goes before the first user message; after it, turns must alternate
 * user/assistant, and the template raises otherwise. Contents are not trimmed. The original
 * 2023 v0.1 template ("[INST] " without the leading space, "</s> " after answers, no system
 * message) is not built in. */
#include "text/chat_impl.h"

int chat_render_mistral(const struct chat_message *msgs, size_t n,
                        const struct chat_options *opt, struct chat_out *o, tune_err *err)
{
    (void)opt;
    const char *system = msgs[0].role == CHAT_ROLE_SYSTEM ? msgs[0].content : NULL;
    size_t first = system != NULL;
    chat_put(o, "<s>");
    for (size_t i = first; i < n; i++) {
        const struct chat_message *m = &msgs[i];
        bool user_turn = (i - first) % 2 == 0;
        if (m->role != CHAT_ROLE_USER && m->role != CHAT_ROLE_ASSISTANT)
            return err_set(err, "messages[%zu].role: mistral takes only user and assistant "
                           "messages after an optional first system message, not %s",
                           i, chat_role_name(m->role));
        if ((m->role == CHAT_ROLE_USER) != user_turn)
            return err_set(err, "messages[%zu].role: mistral needs turns alternating user/"
                           "assistant after the optional system message; expected %s",
                           i, user_turn ? "user" : "assistant");
        if (m->tool_call.name)
            return err_set(err, "messages[%zu].tool_calls: the mistral format has no tool calls",
                           i);
        if (m->role == CHAT_ROLE_USER) {
            chat_put(o, " [INST] ");
            if (i == first && system) {
                chat_put(o, system);
                chat_put(o, "\n\n");
            }
            chat_put(o, m->content);
            chat_put(o, " [/INST]");
        } else {
            chat_span_open(o);
            chat_put(o, " ");
            chat_put(o, m->content);
            chat_put(o, "</s>");
            chat_span_close(o);
        }
    }
    return 0;
}
