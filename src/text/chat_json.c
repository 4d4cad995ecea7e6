/* Chat messages from JSON: reading a dataset record's `messages` list, and printing JSON
 * values the way the templates' tojson does (Python's json.dumps with ensure_ascii=False,
 * the filter transformers installs), since tool-call arguments reach the text through it.
 * Field names follow what transformers' apply_chat_template reads, so a dataset made for it
 * renders the same here. */
#include "text/chat_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tojson ---------------------------------------------------------------------------- */

/* Python's repr of a double: the shortest digits that read back to it, positional when the
 * decimal exponent is in [-4, 16), otherwise d.ddde+XX with at least two exponent digits. */
static void put_py_float(struct chat_out *o, double v)
{
    if (!isfinite(v)) { /* 1e400 parses to inf; json.dumps writes Infinity */
        chat_put(o, isnan(v) ? "NaN" : v < 0 ? "-Infinity" : "Infinity");
        return;
    }
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    /* buf is "[-]d[.ddd]e(+|-)XX": split into sign, digits and exponent. */
    char digits[24], out[64];
    size_t nd = 0, k = 0;
    const char *p = buf;
    if (*p == '-')
        out[k++] = *p++;
    for (; *p != 'e'; p++)
        if (*p != '.')
            digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            k += (size_t)snprintf(out + k, sizeof out - k, "0.%.*s%.*s", -exp10 - 1,
                                  "0000", (int)nd, digits);
        } else if ((size_t)exp10 + 1 >= nd) {
            k += (size_t)snprintf(out + k, sizeof out - k, "%.*s%.*s.0", (int)nd, digits,
                                  exp10 + 1 - (int)nd, "0000000000000000");
        } else {
            k += (size_t)snprintf(out + k, sizeof out - k, "%.*s.%.*s", exp10 + 1, digits,
                                  (int)nd - exp10 - 1, digits + exp10 + 1);
        }
    } else {
        k += (size_t)snprintf(out + k, sizeof out - k, "%c%s%.*se%c%02d", digits[0],
                              nd > 1 ? "." : "", (int)nd - 1, digits + 1,
                              exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
    chat_putn(o, out, k);
}

static void put_json(struct chat_out *o, const cJSON *v)
{
    if (cJSON_IsString(v)) {
        chat_put_json_string(o, v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d > -9007199254740992.0 && d < 9007199254740992.0 && d == (double)(long long)d) {
            char buf[24];
            snprintf(buf, sizeof buf, "%lld", (long long)d);
            chat_put(o, buf);
        } else {
            put_py_float(o, d);
        }
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        bool object = cJSON_IsObject(v);
        chat_put(o, object ? "{" : "[");
        for (const cJSON *c = v->child; c; c = c->next) {
            if (object) {
                chat_put_json_string(o, c->string);
                chat_put(o, ": ");
            }
            put_json(o, c);
            if (c->next)
                chat_put(o, ", ");
        }
        chat_put(o, object ? "}" : "]");
    } else {
        chat_put(o, cJSON_IsTrue(v) ? "true" : cJSON_IsFalse(v) ? "false" : "null");
    }
}

char *chat_json_dump(const cJSON *v)
{
    struct chat_out o = {0};
    put_json(&o, v);
    if (o.oom) {
        free(o.data);
        return NULL;
    }
    return o.data;
}

/* ---- messages -------------------------------------------------------------------------- */

/* Fetches an optional string field: NULL when absent or null, an error when another type. */
static int get_string(const cJSON *obj, const char *key, size_t i, const char **out,
                      tune_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v))
        return err_set(err, "messages[%zu].%s: not a string", i, key);
    *out = v->valuestring;
    return 0;
}

static int read_role(const cJSON *m, size_t i, enum chat_role *out, tune_err *err)
{
    const char *role;
    if (get_string(m, "role", i, &role, err))
        return -1;
    if (!role)
        return err_set(err, "messages[%zu].role: missing", i);
    for (int r = 0; r < CHAT_ROLE_COUNT; r++) {
        if (strcmp(role, chat_role_name((enum chat_role)r)) == 0) {
            *out = (enum chat_role)r;
            return 0;
        }
    }
    char shown[ERR_SHOWN_SIZE];
    return err_set(err, "messages[%zu].role: unknown role '%s' (want system, developer, user, "
                   "assistant or tool)", i, err_shown(shown, role));
}

/* Reads the one call of "tool_calls": OpenAI's {"function": {"name", "arguments"}} or the
 * bare {"name", "arguments"} the templates also take. */
static int read_tool_call(const cJSON *m, size_t i, struct chat_tool_call *call, char **owned,
                          tune_err *err)
{
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
    if (!calls || cJSON_IsNull(calls))
        return 0;
    if (!cJSON_IsArray(calls))
        return err_set(err, "messages[%zu].tool_calls: not a list", i);
    int count = cJSON_GetArraySize(calls);
    if (count != 1)
        return err_set(err, "messages[%zu].tool_calls: %d calls; one call per message is "
                       "supported", i, count);
    const cJSON *c = calls->child, *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
    const char *path = fn ? "tool_calls[0].function" : "tool_calls[0]";
    if (fn)
        c = fn;
    if (!cJSON_IsObject(c))
        return err_set(err, "messages[%zu].%s: not an object", i, path);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(c, "arguments");
    if (!cJSON_IsString(name))
        return err_set(err, "messages[%zu].%s.name: missing or not a string", i, path);
    if (!args)
        return err_set(err, "messages[%zu].%s.arguments: missing", i, path);
    if (!(*owned = chat_json_dump(args)))
        return err_set(err, "messages[%zu].%s.arguments: out of memory", i, path);
    call->name = name->valuestring;
    call->arguments = *owned;
    return 0;
}

static int read_message(const cJSON *m, size_t i, struct chat_message *msg, char **owned,
                        tune_err *err)
{
    if (!cJSON_IsObject(m))
        return err_set(err, "messages[%zu]: not an object", i);
    if (read_role(m, i, &msg->role, err))
        return -1;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (content && !cJSON_IsNull(content) && !cJSON_IsString(content))
        return err_set(err, "messages[%zu].content: not a string (lists of content parts are "
                       "not supported)", i);
    if (get_string(m, "content", i, &msg->content, err))
        return -1;
    /* transformers copies reasoning_content or reasoning into thinking when it is absent. */
    static const char *const thinking_keys[] = {"thinking", "reasoning_content", "reasoning"};
    for (size_t k = 0; k < 3 && !msg->thinking; k++)
        if (get_string(m, thinking_keys[k], i, &msg->thinking, err))
            return -1;
    return read_tool_call(m, i, &msg->tool_call, owned, err);
}

int chat_messages_from_json(const cJSON *messages, struct chat_messages *out, tune_err *err)
{
    memset(out, 0, sizeof *out);
    if (!cJSON_IsArray(messages))
        return err_set(err, "messages: not a list");
    size_t n = (size_t)cJSON_GetArraySize(messages);
    if (n == 0)
        return err_set(err, "messages: empty list");
    out->items = calloc(n, sizeof *out->items);
    out->owned = calloc(n, sizeof *out->owned);
    if (!out->items || !out->owned)
        return err_set(err, "messages: out of memory");
    for (const cJSON *m = messages->child; m; m = m->next) {
        size_t i = out->count++;
        if (read_message(m, i, &out->items[i], &out->owned[i], err))
            return -1;
    }
    return 0;
}

void chat_messages_free(struct chat_messages *m)
{
    for (size_t i = 0; m->owned && i < m->count; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->items);
    memset(m, 0, sizeof *m);
}
