/* Errors: library code returns a status and fills a tune_err with one line that
 * names the file, tensor or field at fault. Only cli/ prints and exits. */
#ifndef TUNE_BASE_ERROR_H
#define TUNE_BASE_ERROR_H

#include <stddef.h>

typedef struct tune_err {
    char msg[512];
} tune_err;

/* Sets err->msg from a printf format and returns -1, so callers can write
 * `return err_set(err, "...")`. A NULL err is allowed and ignored. */
int err_set(tune_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes the existing message with "prefix: " (e.g. the file being read)
 * and returns -1. */
int err_prefix(tune_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
