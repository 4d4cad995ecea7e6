/* ChatML as Qwen2.5 renders it: Qwen/Qwen2.5-7B-Instruct's chat template without tool
 * schemas (tools/ref/chat_templates/qwen2.5.jinja). The template writes Qwen's default
 * system prompt when the conversation has none, lets later system messages through, writes
 * tool calls inside the assistant message as <tool_call> JSON, and groups consecutive tool
 * results into one user message of <tool_response> blocks. Qwen2 (not 2.5) has another
 * default system prompt and is not built in. Only one tool call per message is supported
 * (chat_message holds one). */
#include "text/chat_impl.h"

int chat_render_chatml(const struct chat_message *msgs, size_t n,
                       const struct chat_options *opt, struct chat_out *o, tune_err *err)
{
    (void)opt, (void)err; /* the template takes no options and raises nothing */
    chat_put(o, "<|im_start|>system\n");
    chat_put(o, msgs[0].role == CHAT_ROLE_SYSTEM
                    ? msgs[0].content
                    : "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
    chat_put(o, "<|im_end|>\n");

    for (size_t i = msgs[0].role == CHAT_ROLE_SYSTEM; i < n; i++) {
        const struct chat_message *m = &msgs[i];
        if (m->role == CHAT_ROLE_TOOL) {
            if (i == 0 || msgs[i - 1].role != CHAT_ROLE_TOOL)
                chat_put(o, "<|im_start|>user");
            chat_put(o, "\n<tool_response>\n");
            chat_put(o, m->content);
            chat_put(o, "\n</tool_response>");
            if (i == n - 1 || msgs[i + 1].role != CHAT_ROLE_TOOL)
                chat_put(o, "<|im_end|>\n");
            continue;
        }
        chat_put(o, "<|im_start|>");
        chat_put(o, chat_role_name(m->role));
        chat_put(o, "\n");
        if (m->role == CHAT_ROLE_ASSISTANT)
            chat_span_open(o);
        if (m->tool_call.name) {
            /* The template writes "\n" + content only when there is content, then
             * "\n<tool_call>"; the first "\n" above is one of those two. */
            if (m->content && *m->content) {
                chat_put(o, m->content);
                chat_put(o, "\n");
            }
            chat_put(o, "<tool_call>\n{\"name\": \"");
            chat_put(o, m->tool_call.name);
            chat_put(o, "\", \"arguments\": ");
            chat_put(o, m->tool_call.arguments);
            chat_put(o, "}\n</tool_call>");
        } else {
            chat_put(o, m->content);
        }
        chat_put(o, "<|im_end|>");
        chat_span_close(o);
        chat_put(o, "\n");
    }
    return 0;
}
