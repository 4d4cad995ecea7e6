/* Llama 3.1 instruct format, as meta-llama/Llama-3.1-8B-Instruct's chat template renders it
 * without tool schemas (tools=None; tools/ref/chat_templates/llama-3.1.jinja). The template
 * always writes a system header with "Cutting Knowledge Date: December 2023" and "Today
 * Date:" (its date_string, "26 Jul 2024" unless given), trims every message with Jinja's
 * trim, lets a later system message through as its own header, writes a tool call as
 * {"name": ..., "parameters": ...} JSON (dropping any content of that message, as the
 * template does) and a tool result as an "ipython" message holding the
 * result as a JSON string (a string is "iterable" to the template, so it goes through
 * tojson). Llama 3.0 (no date block) and 3.2 (today's date by default) differ: pass a date
 * for 3.2; 3.0 is not built in. */
#include "text/chat_impl.h"

#include <stdio.h>

static void put_header(struct chat_out *o, const char *role)
{
    chat_put(o, "<|start_header_id|>");
    chat_put(o, role);
    chat_put(o, "<|end_header_id|>\n\n");
}

int chat_render_llama3(const struct chat_message *msgs, size_t n,
                       const struct chat_options *opt, struct chat_out *o, tune_err *err)
{
    struct chat_date date = {2024, 7, 26}; /* the template's date_string default */
    if (opt->date && chat_date_get(opt, &date, err))
        return -1;
    char line[64];
    snprintf(line, sizeof line, "Today Date: %02d %s %04d\n\n", date.day,
             chat_month_abbrev[date.month - 1], date.year);

    chat_put(o, "<|begin_of_text|>");
    put_header(o, "system");
    chat_put(o, "Cutting Knowledge Date: December 2023\n");
    chat_put(o, line);
    size_t first = 0;
    if (msgs[0].role == CHAT_ROLE_SYSTEM) {
        chat_put_trimmed(o, msgs[0].content);
        first = 1;
    }
    chat_put(o, "<|eot_id|>");

    for (size_t i = first; i < n; i++) {
        const struct chat_message *m = &msgs[i];
        if (m->role == CHAT_ROLE_TOOL) {
            put_header(o, "ipython");
            chat_put_json_string(o, m->content);
        } else if (m->tool_call.name) {
            put_header(o, "assistant");
            chat_span_open(o);
            chat_put(o, "{\"name\": \"");
            chat_put(o, m->tool_call.name);
            chat_put(o, "\", \"parameters\": ");
            chat_put(o, m->tool_call.arguments);
            chat_put(o, "}");
        } else {
            put_header(o, chat_role_name(m->role));
            if (m->role == CHAT_ROLE_ASSISTANT)
                chat_span_open(o);
            chat_put_trimmed(o, m->content);
        }
        chat_put(o, "<|eot_id|>");
        chat_span_close(o);
    }
    return 0;
}
