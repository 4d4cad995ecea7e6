/* Errors: library code returns a status and fills a tune_err with one line that
 * names the file, tensor or field at fault. Only cli/ prints and exits. */
#ifndef TUNE_BASE_ERROR_H
#define TUNE_BASE_ERROR_H

#include <stddef.h>

typedef struct tune_err {
    char msg[512];
} tune_err;

/* Sets err->msg from a printf format and returns -1, so callers can write
 * `return err_set(err, "...")`. A NULL err is allowed and ignored. Control bytes in the
 * result are escaped as err_shown does, so the message is one line whatever it quotes. */
int err_set(tune_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes the existing message with "prefix: " (e.g. the file being read)
 * and returns -1. */
int err_prefix(tune_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The buffer of err_shown: a quoted piece of input stays short enough for the rest of
 * the message to fit. */
#define ERR_SHOWN_SIZE 128

/* Input text (a name, value or pattern read from a file) made fit to quote in a message:
 * control bytes escaped (\n, \r, \t, \xNN), cut at a character boundary with "..." when
 * longer than out holds (out has ERR_SHOWN_SIZE bytes: not spelled [static N],
 * which C++ sources including this header cannot parse). Returns out. err_shown_n takes s[0..len) (NUL bytes shown as
 * \x00). */
const char *err_shown(char *out, const char *s);
const char *err_shown_n(char *out, const char *s, size_t len);

#endif
