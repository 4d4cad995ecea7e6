/* Dataset sources; see source.h. Each file is read whole (bounded) before parsing: a .json
 * file must be anyway, and for .jsonl it gives the line numbers of errors for free. Parse
 * errors are reported by line and column, since byte offsets are useless in an editor. */
#include "data/source.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/str.h"
#include "io/read_file.h"

void data_origin_format(const struct data_origin *o, char *buf, size_t len)
{
    if (o->line > 0)
        snprintf(buf, len, "%s:%lld", o->path, (long long)o->line);
    else
        snprintf(buf, len, "%s: record %lld", o->path, (long long)o->index);
}

/* Line and column (1-based) of byte `at` in text. */
static void line_col(const char *text, size_t at, int64_t *line, int64_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < at && text[i]; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static int call_record(data_record_fn fn, void *ctx, const cJSON *rec,
                       const struct data_origin *o, tune_err *err)
{
    char where[300];
    data_origin_format(o, where, sizeof where);
    if (!cJSON_IsObject(rec))
        return err_set(err, "%s: not an object (a record is a JSON object of fields)", where);
    if (fn(ctx, rec, o, err))
        return err_prefix(err, "%s", where);
    return 0;
}

static int read_json(const char *path, const char *text, data_record_fn fn, void *ctx,
                     tune_err *err)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (!root) {
        int64_t line, col;
        line_col(text, end ? (size_t)(end - text) : 0, &line, &col);
        return err_set(err, "%s:%lld: invalid JSON (near column %lld)", path, (long long)line,
                       (long long)col);
    }
    int rc = 0;
    if (!cJSON_IsArray(root)) {
        rc = err_set(err, "%s: expected a list of records (a JSON array) at the top; a file of "
                     "one record per line is a .jsonl file", path);
    } else {
        struct data_origin o = {path, 0, 0};
        for (const cJSON *r = root->child; r && rc == 0; r = r->next, o.index++)
            rc = call_record(fn, ctx, r, &o, err);
    }
    cJSON_Delete(root);
    return rc;
}

static int read_jsonl(const char *path, char *text, size_t len, data_record_fn fn, void *ctx,
                      tune_err *err)
{
    struct data_origin o = {path, 0, 0};
    for (size_t at = 0; at < len;) {
        char *nl = memchr(text + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - text) : len;
        text[end] = 0; /* the line is parsed in place */
        o.line++;
        const char *p = text + at;
        while (*p == ' ' || *p == '\t' || *p == '\r')
            p++;
        if (*p) {
            const char *stop = NULL;
            cJSON *rec = cJSON_ParseWithOpts(p, &stop, 1);
            if (!rec)
                return err_set(err, "%s:%lld: invalid JSON (near column %lld)", path,
                               (long long)o.line,
                               (long long)((stop ? stop : p) - (text + at) + 1));
            int rc = call_record(fn, ctx, rec, &o, err);
            cJSON_Delete(rec);
            if (rc)
                return -1;
            o.index++;
        }
        at = end + 1;
    }
    return 0;
}

static int read_file(const char *path, int64_t max_bytes, data_record_fn fn, void *ctx,
                     tune_err *err)
{
    bool jsonl = str_ends_with(path, ".jsonl");
    if (!jsonl && !str_ends_with(path, ".json"))
        return err_set(err, "%s: not a .json or .jsonl file (or a directory of them)", path);
    size_t len = 0;
    char *text = io_read_file(path, max_bytes, &len, err);
    if (!text)
        return -1;
    if (strlen(text) != len) {
        free(text);
        return err_set(err, "%s: contains a NUL byte; not a JSON text file", path);
    }
    int rc = jsonl ? read_jsonl(path, text, len, fn, ctx, err)
                   : read_json(path, text, fn, ctx, err);
    free(text);
    return rc;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the .json/.jsonl files of dir (not hidden ones), sorted. */
static int list_dir(const char *dir, char ***names, size_t *n, tune_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return err_set(err, "%s: cannot open directory: %s", dir, strerror(errno));
    size_t cap = 0;
    *names = NULL;
    *n = 0;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        const char *name = e->d_name;
        if (name[0] == '.' || !(str_ends_with(name, ".json") || str_ends_with(name, ".jsonl")))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            char **grown = realloc(*names, cap * sizeof *grown);
            if (!grown) {
                rc = err_set(err, "%s: out of memory listing files", dir);
                break;
            }
            *names = grown;
        }
        size_t k = strlen(dir) + strlen(name) + 2;
        if (!((*names)[*n] = malloc(k))) {
            rc = err_set(err, "%s: out of memory listing files", dir);
            break;
        }
        snprintf((*names)[*n], k, "%s/%s", dir, name);
        (*n)++;
    }
    closedir(d);
    if (rc == 0 && *n == 0)
        rc = err_set(err, "%s: no .json or .jsonl files in this directory", dir);
    if (rc == 0)
        qsort(*names, *n, sizeof **names, cmp_names);
    return rc;
}

int data_source_read(const char *path, int64_t max_bytes, data_record_fn fn, void *ctx,
                     int64_t *files, tune_err *err)
{
    struct stat st;
    if (max_bytes <= 0)
        max_bytes = DATA_SOURCE_DEFAULT_MAX_BYTES;
    if (files)
        *files = 0;
    if (stat(path, &st) != 0)
        return err_set(err, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        if (files)
            *files = 1;
        return read_file(path, max_bytes, fn, ctx, err);
    }
    char **names = NULL;
    size_t n = 0;
    int rc = list_dir(path, &names, &n, err);
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = read_file(names[i], max_bytes, fn, ctx, err);
        if (rc == 0 && files)
            (*files)++;
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}
