/* JSON through cJSON: loading a file with bounded size, and typed field getters
 * whose errors name the file and the field ("config.json: hidden_size: ..."). */
#ifndef TUNE_IO_JSON_H
#define TUNE_IO_JSON_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "base/error.h"

/* Reads and parses a whole file of at most max_bytes. Returns NULL with err set
 * (naming path) when the file is missing, too large, or not valid JSON. */
cJSON *json_load_file(const char *path, int64_t max_bytes, tune_err *err);

/* Parses text; `origin` names it in errors. */
cJSON *json_parse_text(const char *text, const char *origin, tune_err *err);

/* text (a JSON object) without its top-level member `key`, everything else byte for byte as it was
 * (cJSON would print 7.0 as 7, which transformers' configs refuse): a malloc'd copy, or NULL when out
 * of memory. The caller has parsed text: it is valid JSON. Without the member, an unchanged copy. */
char *json_text_without_member(const char *text, const char *key);

/* Typed getters. A missing key leaves *out untouched and returns 0 unless
 * required; a key of the wrong type or out of range is an error naming it. */
int json_get_int(const cJSON *obj, const char *key, bool required, int64_t lo, int64_t hi,
                 int64_t *out, tune_err *err);
int json_get_real(const cJSON *obj, const char *key, bool required, double *out, tune_err *err);
int json_get_bool(const cJSON *obj, const char *key, bool *out, tune_err *err);
/* Copies the string into out (len bytes); too long is an error. */
int json_get_string(const cJSON *obj, const char *key, bool required, char *out, size_t len,
                    tune_err *err);

#endif
