/* JSON helpers over cJSON; see json.h. cJSON is the well-kept small parser the
 * Debian archive carries; tune never writes its own JSON lexer. */
#include "io/json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cJSON *json_load_file(const char *path, int64_t max_bytes, tune_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *text = NULL;
    cJSON *root = NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        err_set(err, "%s: cannot seek: %s", path, strerror(errno));
        goto out;
    }
    long size = ftell(f);
    if (size < 0 || size > max_bytes) {
        err_set(err, "%s: size %ld is outside [0, %lld] bytes", path, size, (long long)max_bytes);
        goto out;
    }
    rewind(f);
    text = malloc((size_t)size + 1);
    if (!text) {
        err_set(err, "%s: out of memory reading %ld bytes", path, size);
        goto out;
    }
    if (fread(text, 1, (size_t)size, f) != (size_t)size) {
        err_set(err, "%s: short read", path);
        goto out;
    }
    text[size] = 0;
    root = json_parse_text(text, path, err);
out:
    free(text);
    fclose(f);
    return root;
}

cJSON *json_parse_text(const char *text, const char *origin, tune_err *err)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (!root) {
        long at = end ? (long)(end - text) : 0;
        err_set(err, "%s: invalid JSON near byte %ld", origin, at);
    }
    return root;
}

int json_get_int(const cJSON *obj, const char *key, bool required, int64_t lo, int64_t hi,
                 int64_t *out, tune_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v))
        return required ? err_set(err, "%s: missing", key) : 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return err_set(err, "%s: expected an integer", key);
    if (v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return err_set(err, "%s: %.0f is out of range [%lld, %lld]", key, v->valuedouble,
                       (long long)lo, (long long)hi);
    *out = (int64_t)v->valuedouble;
    return 0;
}

int json_get_real(const cJSON *obj, const char *key, bool required, double *out, tune_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v))
        return required ? err_set(err, "%s: missing", key) : 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return err_set(err, "%s: expected a number", key);
    *out = v->valuedouble;
    return 0;
}

int json_get_bool(const cJSON *obj, const char *key, bool *out, tune_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsBool(v))
        return err_set(err, "%s: expected true or false", key);
    *out = cJSON_IsTrue(v);
    return 0;
}

int json_get_string(const cJSON *obj, const char *key, bool required, char *out, size_t len,
                    tune_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v))
        return required ? err_set(err, "%s: missing", key) : 0;
    if (!cJSON_IsString(v))
        return err_set(err, "%s: expected a string", key);
    if (strlen(v->valuestring) >= len)
        return err_set(err, "%s: string longer than %zu bytes", key, len - 1);
    strcpy(out, v->valuestring);
    return 0;
}

static bool json_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

/* Just past the JSON value that starts at p (text the caller has parsed: valid JSON). */
static const char *value_end(const char *p)
{
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++)
            if (*p == '\\' && p[1])
                p++;
        return *p ? p + 1 : p;
    }
    if (*p == '{' || *p == '[') {
        int depth = 0;
        for (; *p; p++) {
            if (*p == '"')
                p = value_end(p) - 1;
            else if (*p == '{' || *p == '[')
                depth++;
            else if ((*p == '}' || *p == ']') && --depth == 0)
                return p + 1;
        }
        return p;
    }
    while (*p && *p != ',' && *p != '}' && *p != ']' && !json_space(*p))
        p++;
    return p;
}

char *json_text_without_member(const char *text, const char *key)
{
    const char *p = strchr(text, '{'), *start = NULL, *end = NULL;
    size_t klen = strlen(key);
    /* members of the top-level object: "name" : value [,] */
    for (p = p ? p + 1 : text + strlen(text); *p && *p != '}';) {
        while (json_space(*p) || *p == ',')
            p++;
        if (*p != '"')
            break;
        const char *name = p + 1, *name_end = value_end(p);
        bool match = (size_t)(name_end - 1 - name) == klen && !strncmp(name, key, klen);
        p = name_end;
        while (*p && *p != ':')
            p++;
        if (*p)
            p++;
        while (json_space(*p))
            p++;
        const char *v_end = value_end(p);
        if (match) {
            start = name - 1, end = v_end;
            break;
        }
        p = v_end;
    }
    if (!start)
        return strdup(text);
    /* take the comma after the member, or else the one before it (the last member) */
    const char *after = end;
    while (json_space(*after))
        after++;
    if (*after == ',') { /* and a line of its own, indent and newline included */
        end = after + 1;
        while (*end == ' ' || *end == '\t')
            end++;
        if (*end == '\n')
            end++;
        while (start > text && (start[-1] == ' ' || start[-1] == '\t'))
            start--;
    } else {
        const char *before = start;
        while (before > text && json_space(before[-1]))
            before--;
        if (before > text && before[-1] == ',')
            start = before - 1;
    }
    size_t head = (size_t)(start - text), tail = strlen(end);
    char *out = malloc(head + tail + 1);
    if (out) {
        memcpy(out, text, head);
        memcpy(out + head, end, tail + 1);
    }
    return out;
}
