/* Chat formats: the table of formats, the checks every format shares, and the output the
 * renderers append to (text + loss spans). The formats themselves are in chat_<format>.c,
 * one file per template, so each reads next to the Jinja it mirrors. */
#include "text/chat_impl.h"
#include "text/tokenizer.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int (*chat_render_fn)(const struct chat_message *msgs, size_t n,
                              const struct chat_options *opt, struct chat_out *o, tune_err *err);

enum { MAX_MARKERS = 8 };

/* generation_prompt: what the template appends for add_generation_prompt=True (Mistral's
 * template has none: its text ends with the model's turn already open). markers: the
 * special tokens the rendered text writes literally, which the tokenizer must match whole.
 * turn_ends: the tokens the model ends its turn with. */
static const struct {
    const char *name;
    chat_render_fn render;
    const char *generation_prompt;
    const char *markers[MAX_MARKERS];
    const char *turn_ends[3];
} formats[] = {
    [CHAT_FORMAT_HARMONY] = {"harmony", chat_render_harmony, "<|start|>assistant",
                             {"<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|return|>", "<|call|>"},
                             {"<|return|>", "<|call|>"}},
    [CHAT_FORMAT_LLAMA3] = {"llama3", chat_render_llama3, "<|start_header_id|>assistant<|end_header_id|>\n\n",
                            {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"},
                            {"<|eot_id|>"}},
    [CHAT_FORMAT_CHATML] = {"chatml", chat_render_chatml, "<|im_start|>assistant\n",
                            {"<|im_start|>", "<|im_end|>"}, {"<|im_end|>"}},
    [CHAT_FORMAT_MISTRAL] = {"mistral", chat_render_mistral, "", {"<s>", "</s>"}, {"</s>"}},
};
static_assert(sizeof formats / sizeof formats[0] == CHAT_FORMAT_COUNT, "one entry per format");

static const char *const role_names[] = {
    [CHAT_ROLE_SYSTEM] = "system",       [CHAT_ROLE_DEVELOPER] = "developer",
    [CHAT_ROLE_USER] = "user",           [CHAT_ROLE_ASSISTANT] = "assistant",
    [CHAT_ROLE_TOOL] = "tool",
};
static_assert(sizeof role_names / sizeof role_names[0] == CHAT_ROLE_COUNT, "one name per role");

const char *const chat_month_abbrev[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

int chat_format_parse(const char *name, enum chat_format *out, tune_err *err)
{
    for (int f = 0; f < CHAT_FORMAT_COUNT; f++) {
        if (name && strcmp(name, formats[f].name) == 0) {
            *out = (enum chat_format)f;
            return 0;
        }
    }
    char shown[ERR_SHOWN_SIZE];
    return err_set(err, "chat format '%s': unknown (want harmony, llama3, chatml or mistral)",
                   err_shown(shown, name ? name : "(null)"));
}

const char *chat_format_name(enum chat_format format)
{
    return (unsigned)format < CHAT_FORMAT_COUNT ? formats[format].name : "?";
}

int chat_effort_check(const char *effort, tune_err *err)
{
    if (!effort || !strcmp(effort, "low") || !strcmp(effort, "medium") || !strcmp(effort, "high"))
        return 0;
    char shown[ERR_SHOWN_SIZE];
    return err_set(err, "'%s' is not low, medium or high", err_shown(shown, effort));
}

const char *chat_generation_prompt(enum chat_format format)
{
    return (unsigned)format < CHAT_FORMAT_COUNT ? formats[format].generation_prompt : "";
}

int chat_turn_end_ids(enum chat_format format, const struct tokenizer *tok, int32_t ids[CHAT_MAX_TURN_ENDS])
{
    int n = 0;
    for (int i = 0; (unsigned)format < CHAT_FORMAT_COUNT && i < CHAT_MAX_TURN_ENDS && formats[format].turn_ends[i]; i++)
        if ((ids[n] = tok_token_to_id(tok, formats[format].turn_ends[i])) >= 0)
            n++;
    return n;
}

int chat_check_tokenizer(enum chat_format format, const struct tokenizer *tok, tune_err *err)
{
    for (int i = 0; (unsigned)format < CHAT_FORMAT_COUNT && i < MAX_MARKERS && formats[format].markers[i]; i++) {
        const char *marker = formats[format].markers[i];
        if (!tok_is_special(tok, tok_token_to_id(tok, marker)))
            return err_set(err, "the %s chat format writes %s as one special token, which the tokenizer does "
                           "not have (is --chat-format the model's own?)", formats[format].name, marker);
    }
    return 0;
}

const char *chat_role_name(enum chat_role role)
{
    return (unsigned)role < CHAT_ROLE_COUNT ? role_names[role] : "?";
}

/* The vocabulary decides between templates that share a model_type: Llama 2 and Llama 3
 * are both "llama", Mistral v0.1/v0.2 and v0.3 (32768 tokens, another template) both
 * "mistral". */
int chat_format_for_model(const char *model_type, int64_t vocab, enum chat_format *out,
                          tune_err *err)
{
    const char *t = model_type ? model_type : "(null)";
    if (strcmp(t, "gpt_oss") == 0) {
        *out = CHAT_FORMAT_HARMONY;
    } else if (strcmp(t, "qwen2") == 0) {
        *out = CHAT_FORMAT_CHATML;
    } else if (strcmp(t, "llama") == 0) {
        if (vocab != 128256)
            return err_set(err, "model_type llama with a %lld-token vocabulary is not Llama 3 "
                           "(128256 tokens): its chat template is not built in",
                           (long long)vocab);
        *out = CHAT_FORMAT_LLAMA3;
    } else if (strcmp(t, "mistral") == 0) {
        if (vocab != 32000)
            return err_set(err, "model_type mistral with a %lld-token vocabulary is not "
                           "Mistral v0.1/v0.2 (32000 tokens): its chat template is not built in",
                           (long long)vocab);
        *out = CHAT_FORMAT_MISTRAL;
    } else {
        char shown[ERR_SHOWN_SIZE];
        return err_set(err, "model_type '%s': no built-in chat format (harmony for gpt_oss, "
                       "llama3, chatml for qwen2, mistral)", err_shown(shown, t));
    }
    return 0;
}

/* ---- output ---------------------------------------------------------------------------- */

void chat_putn(struct chat_out *o, const char *s, size_t len)
{
    if (o->oom)
        return;
    if (o->len + len + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->len + len + 1)
            cap *= 2;
        char *p = realloc(o->data, cap);
        if (!p) {
            o->oom = true;
            return;
        }
        o->data = p;
        o->cap = cap;
    }
    memcpy(o->data + o->len, s, len);
    o->len += len;
    o->data[o->len] = '\0';
}

void chat_put(struct chat_out *o, const char *s)
{
    chat_putn(o, s, strlen(s));
}

void chat_put_json_string(struct chat_out *o, const char *s)
{
    chat_put(o, "\"");
    const char *run = s; /* bytes copied as they are, up to the next one to escape */
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *esc = NULL;
        char hex[8];
        switch (*p) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (*p < 0x20) {
                static const char digits[] = "0123456789abcdef";
                memcpy(hex, "\\u00", 4);
                hex[4] = digits[*p >> 4];
                hex[5] = digits[*p & 15];
                hex[6] = '\0';
                esc = hex;
            }
        }
        if (esc) {
            chat_putn(o, run, (size_t)((const char *)p - run));
            chat_put(o, esc);
            run = (const char *)p + 1;
        }
    }
    chat_put(o, run);
    chat_put(o, "\"");
}

/* Python's str.isspace() code points: the separators and controls Jinja's trim removes. */
static bool is_py_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Decodes the UTF-8 sequence at s[0..len); returns its length, 0 if it is not one whole
 * well-formed character (such bytes are never whitespace). */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
    size_t n = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3
             : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 0 || n > len)
        return 0;
    uint32_t c = n == 1 ? s[0] : s[0] & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3f);
    }
    *cp = c;
    return n;
}

void chat_put_trimmed(struct chat_out *o, const char *s)
{
    const unsigned char *b = (const unsigned char *)s, *e = b + strlen(s);
    uint32_t c;
    size_t n;
    while (b < e && (n = utf8_decode(b, (size_t)(e - b), &c)) && is_py_space(c))
        b += n;
    while (e > b) {
        const unsigned char *p = e - 1;
        while (p > b && (*p & 0xc0) == 0x80 && e - p < 4)
            p--;
        if (utf8_decode(p, (size_t)(e - p), &c) != (size_t)(e - p) || !is_py_space(c))
            break;
        e = p;
    }
    chat_putn(o, (const char *)b, (size_t)(e - b));
}

void chat_span_open(struct chat_out *o)
{
    if (o->span_open || o->oom)
        return;
    if (o->n_spans == o->cap_spans) {
        size_t cap = o->cap_spans ? 2 * o->cap_spans : 8;
        struct chat_span *p = realloc(o->spans, cap * sizeof *p);
        if (!p) {
            o->oom = true;
            return;
        }
        o->spans = p;
        o->cap_spans = cap;
    }
    o->spans[o->n_spans++] = (struct chat_span){o->len, o->len};
    o->span_open = true;
}

void chat_span_close(struct chat_out *o)
{
    if (!o->span_open)
        return;
    o->spans[o->n_spans - 1].end = o->len;
    o->span_open = false;
}

/* ---- dates ----------------------------------------------------------------------------- */

int chat_date_get(const struct chat_options *opt, struct chat_date *out, tune_err *err)
{
    if (!opt->date) {
        time_t now = time(NULL);
        struct tm tm;
        if (!localtime_r(&now, &tm))
            return err_set(err, "chat date: cannot read today's date");
        *out = (struct chat_date){tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday};
        return 0;
    }
    const char *d = opt->date;
    static const char shape[] = "dddd-dd-dd";
    bool ok = strlen(d) == sizeof shape - 1;
    for (size_t i = 0; ok && shape[i]; i++)
        ok = shape[i] == '-' ? d[i] == '-' : d[i] >= '0' && d[i] <= '9';
    if (ok) {
        out->year = atoi(d);
        out->month = atoi(d + 5);
        out->day = atoi(d + 8);
        static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        bool leap = (out->year % 4 == 0 && out->year % 100 != 0) || out->year % 400 == 0;
        ok = out->month >= 1 && out->month <= 12 && out->day >= 1 &&
             out->day <= mdays[out->month - 1] - (out->month == 2 && !leap);
    }
    char shown[ERR_SHOWN_SIZE];
    if (!ok)
        return err_set(err, "chat date '%s': not a date of the form YYYY-MM-DD",
                       err_shown(shown, d));
    return 0;
}

/* ---- rendering ------------------------------------------------------------------------- */

/* What every format requires of a message, and what only harmony can render. */
static int check_message(enum chat_format format, const struct chat_message *m, size_t i,
                         tune_err *err)
{
    if ((unsigned)m->role >= CHAT_ROLE_COUNT)
        return err_set(err, "messages[%zu].role: %d is not a role", i, (int)m->role);
    bool assistant = m->role == CHAT_ROLE_ASSISTANT;
    if (m->tool_call.name && !assistant)
        return err_set(err, "messages[%zu].tool_calls: only assistant messages make tool calls", i);
    if (m->tool_call.name && !m->tool_call.arguments)
        return err_set(err, "messages[%zu].tool_calls[0]: no arguments", i);
    if (!m->content && !m->tool_call.name)
        return err_set(err, "messages[%zu].content: missing", i);
    if (m->thinking && !assistant)
        return err_set(err, "messages[%zu].thinking: only assistant messages have thinking", i);
    if (format == CHAT_FORMAT_HARMONY)
        return 0;
    if (m->thinking)
        return err_set(err, "messages[%zu].thinking: the %s format has no place for "
                       "reasoning (only harmony renders it)", i, formats[format].name);
    if (m->role == CHAT_ROLE_DEVELOPER)
        return err_set(err, "messages[%zu].role: developer is harmony's (gpt-oss) role; the %s "
                       "format takes a system message", i, formats[format].name);
    return 0;
}

int chat_render(enum chat_format format, const struct chat_message *msgs, size_t n,
                const struct chat_options *opt, struct chat_text *out, tune_err *err)
{
    static const struct chat_options defaults;
    memset(out, 0, sizeof *out);
    if ((unsigned)format >= CHAT_FORMAT_COUNT)
        return err_set(err, "chat format %d: unknown", (int)format);
    if (n == 0)
        return err_set(err, "messages: empty conversation");
    for (size_t i = 0; i < n; i++)
        if (check_message(format, &msgs[i], i, err))
            return -1;
    struct chat_out o = {0};
    int rc = formats[format].render(msgs, n, opt ? opt : &defaults, &o, err);
    chat_span_close(&o);
    if (rc == 0 && (o.oom || !o.data))
        rc = err_set(err, "chat_render: out of memory");
    if (rc) {
        free(o.data);
        free(o.spans);
        return -1;
    }
    *out = (struct chat_text){o.data, o.len, o.spans, o.n_spans};
    return 0;
}

void chat_text_free(struct chat_text *t)
{
    free(t->text);
    free(t->spans);
    memset(t, 0, sizeof *t);
}
