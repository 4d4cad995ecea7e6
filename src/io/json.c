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
