/* Harmony, the gpt-oss chat format, as openai/gpt-oss-20b's chat_template.jinja renders it
 * (tools/ref/chat_templates/gpt-oss.jinja; openai-harmony agrees apart from the "\n\n" the
 * template leaves after developer instructions). Choices that follow the template, since
 * training text should be what the model sees at inference:
 *   - a system message is always written (identity, knowledge cutoff, date, reasoning
 *     effort, valid channels); a first system or developer message becomes the developer
 *     message "# Instructions\n\n...";
 *   - the last message, when an assistant answer, keeps its thinking on the analysis channel
 *     and ends with <|return|>; earlier answers drop their thinking and end with <|end|>;
 *   - a tool call's reasoning is kept only while no later plain answer exists.
 * Not built in: tool schemas (the "# Tools" namespaces), builtin tools, content_type. */
#include "text/chat_impl.h"

#include <stdio.h>
#include <string.h>

static const char *const default_identity =
    "You are ChatGPT, a large language model trained by OpenAI.";

static void put_system(struct chat_out *o, const struct chat_options *opt,
                       const struct chat_date *date)
{
    char line[64];
    chat_put(o, "<|start|>system<|message|>");
    chat_put(o, opt->model_identity ? opt->model_identity : default_identity);
    chat_put(o, "\nKnowledge cutoff: 2024-06\n");
    snprintf(line, sizeof line, "Current date: %04d-%02d-%02d\n\n", date->year, date->month,
             date->day);
    chat_put(o, line);
    chat_put(o, "Reasoning: ");
    chat_put(o, opt->reasoning_effort ? opt->reasoning_effort : "medium");
    chat_put(o, "\n\n# Valid channels: analysis, commentary, final. Channel must be included "
                "for every message.<|end|>");
}

/* The template refuses channel tags inside a field: they belong in thinking vs content. */
static int check_no_channel_tags(const char *s, size_t i, const char *field, tune_err *err)
{
    if (s && (strstr(s, "<|channel|>analysis<|message|>") || strstr(s, "<|channel|>final<|message|>")))
        return err_set(err, "messages[%zu].%s: contains <|channel|> tags; put the analysis in "
                       "thinking and the final answer in content", i, field);
    return 0;
}

/* Opens the model's part: "<|start|>assistant" is the generation prompt, so the span begins
 * after the first one of a run of assistant messages and covers any later ones. */
static void start_assistant(struct chat_out *o)
{
    chat_put(o, "<|start|>assistant");
    chat_span_open(o);
}

static void put_analysis(struct chat_out *o, const char *text)
{
    start_assistant(o);
    chat_put(o, "<|channel|>analysis<|message|>");
    chat_put(o, text);
    chat_put(o, "<|end|>");
}

/* True when a later message is an assistant answer without a tool call. */
static bool final_answer_follows(const struct chat_message *msgs, size_t n, size_t i)
{
    for (size_t j = i + 1; j < n; j++)
        if (msgs[j].role == CHAT_ROLE_ASSISTANT && !msgs[j].tool_call.name)
            return true;
    return false;
}

static void put_tool_call(struct chat_out *o, const struct chat_message *msgs, size_t n,
                          size_t i)
{
    const struct chat_message *m = &msgs[i];
    bool content = m->content && *m->content, thinking = m->thinking && *m->thinking;
    bool keep = !final_answer_follows(msgs, n, i);
    if (content && keep)
        put_analysis(o, m->content);
    else if (thinking && keep)
        put_analysis(o, m->thinking);
    start_assistant(o);
    chat_put(o, " to=functions.");
    chat_put(o, m->tool_call.name);
    chat_put(o, "<|channel|>commentary json<|message|>");
    chat_put(o, m->tool_call.arguments);
    chat_put(o, "<|call|>");
}

int chat_render_harmony(const struct chat_message *msgs, size_t n,
                        const struct chat_options *opt, struct chat_out *o, tune_err *err)
{
    struct chat_date date;
    if (chat_date_get(opt, &date, err))
        return -1;
    put_system(o, opt, &date);

    size_t first = 0;
    if (msgs[0].role == CHAT_ROLE_SYSTEM || msgs[0].role == CHAT_ROLE_DEVELOPER) {
        first = 1;
        if (*msgs[0].content) {
            chat_put(o, "<|start|>developer<|message|># Instructions\n\n");
            chat_put(o, msgs[0].content);
            chat_put(o, "\n\n<|end|>");
        }
    }

    const char *last_call = NULL; /* the tool a tool message answers */
    for (size_t i = first; i < n; i++) {
        const struct chat_message *m = &msgs[i];
        if (m->role != CHAT_ROLE_ASSISTANT)
            chat_span_close(o);
        switch (m->role) {
        case CHAT_ROLE_SYSTEM:
        case CHAT_ROLE_DEVELOPER:
            return err_set(err, "messages[%zu].role: harmony takes a %s message only first",
                           i, chat_role_name(m->role));
        case CHAT_ROLE_USER:
            chat_put(o, "<|start|>user<|message|>");
            chat_put(o, m->content);
            chat_put(o, "<|end|>");
            break;
        case CHAT_ROLE_TOOL:
            if (!last_call)
                return err_set(err, "messages[%zu]: a tool result without an assistant tool "
                               "call before it", i);
            chat_put(o, "<|start|>functions.");
            chat_put(o, last_call);
            chat_put(o, " to=assistant<|channel|>commentary<|message|>");
            chat_put_json_string(o, m->content);
            chat_put(o, "<|end|>");
            break;
        case CHAT_ROLE_ASSISTANT:
            if (check_no_channel_tags(m->content, i, "content", err) ||
                check_no_channel_tags(m->thinking, i, "thinking", err))
                return -1;
            if (m->tool_call.name) {
                if (m->content && *m->content && m->thinking && *m->thinking)
                    return err_set(err, "messages[%zu]: a tool call with both content and "
                                   "thinking; harmony has one analysis message for it", i);
                put_tool_call(o, msgs, n, i);
                last_call = m->tool_call.name;
            } else if (i == n - 1) {
                if (m->thinking)
                    put_analysis(o, m->thinking);
                start_assistant(o);
                chat_put(o, "<|channel|>final<|message|>");
                chat_put(o, m->content);
                chat_put(o, "<|return|>");
            } else {
                start_assistant(o);
                chat_put(o, "<|channel|>final<|message|>");
                chat_put(o, m->content);
                chat_put(o, "<|end|>");
                last_call = NULL;
            }
            break;
        case CHAT_ROLE_COUNT:
            break;
        }
    }
    return 0;
}
