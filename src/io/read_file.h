/* Reading a whole regular file into memory, bounded, with errors that name the
 * file: one reader for every text input (datasets, tokenize's --file). */
#ifndef TUNE_IO_READ_FILE_H
#define TUNE_IO_READ_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* The file's bytes, NUL-terminated (malloc'd; *len excludes the NUL), or NULL
 * with err set when it cannot be opened, is not a regular file, holds more
 * than max_bytes (max_bytes <= 0: no limit), or cannot be read whole. */
char *io_read_file(const char *path, int64_t max_bytes, size_t *len, tune_err *err);

#endif
