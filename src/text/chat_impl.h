/* Internals shared by the chat format files (chat.c, chat_json.c, chat_<format>.c): the
 * output being built and the per-format renderers. Nothing outside text/chat*.c includes it.
 *
 * The choice that shapes it: an out-of-memory while appending sets a flag instead of
 * returning a status, so each renderer reads as its template does, one append per piece,
 * and chat_render checks the flag once at the end. */
#ifndef TUNE_TEXT_CHAT_IMPL_H
#define TUNE_TEXT_CHAT_IMPL_H

#include <stdbool.h>

#include "text/chat.h"

struct chat_out {
    char *data;
    size_t len, cap;
    struct chat_span *spans;
    size_t n_spans, cap_spans;
    bool span_open; /* spans[n_spans - 1] is still growing */
    bool oom;
};

void chat_put(struct chat_out *o, const char *s);
void chat_putn(struct chat_out *o, const char *s, size_t len);
/* Appends s as a JSON string literal, escaped as Python's json.dumps(s, ensure_ascii=False). */
void chat_put_json_string(struct chat_out *o, const char *s);
/* Appends s without the leading and trailing whitespace Python's str.strip() removes
 * (Unicode White_Space, as Jinja's trim filter does). */
void chat_put_trimmed(struct chat_out *o, const char *s);

/* Opens a loss span at the current end of the text, unless one is open. */
void chat_span_open(struct chat_out *o);
/* Closes the open span at the current end of the text. */
void chat_span_close(struct chat_out *o);

/* The date to render: opt->date checked, or today's local date when it is NULL (harmony's
 * default). Fails on a date that is not a real YYYY-MM-DD. */
struct chat_date {
    int year, month, day; /* month 1..12 */
};
int chat_date_get(const struct chat_options *opt, struct chat_date *out, tune_err *err);
extern const char *const chat_month_abbrev[12]; /* "Jan".."Dec", as strftime's %b in C */

/* The renderers: msgs were checked by chat_render for what every format shares (role in
 * range, content present unless a tool call, thinking and tool calls only on assistants).
 * opt is never NULL. */
int chat_render_harmony(const struct chat_message *msgs, size_t n,
                        const struct chat_options *opt, struct chat_out *o, tune_err *err);
int chat_render_llama3(const struct chat_message *msgs, size_t n,
                       const struct chat_options *opt, struct chat_out *o, tune_err *err);
int chat_render_chatml(const struct chat_message *msgs, size_t n,
                       const struct chat_options *opt, struct chat_out *o, tune_err *err);
int chat_render_mistral(const struct chat_message *msgs, size_t n,
                        const struct chat_options *opt, struct chat_out *o, tune_err *err);

#endif
