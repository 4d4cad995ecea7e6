/* Atomic file replacement: a writer fills a temporary file in the destination's
 * directory, and only a successful commit (fsync, rename, fsync of the directory)
 * puts it in place. A crash or kill at any point before the rename leaves the
 * previous file untouched; the cost is a stray "<name>.tmp-XXXXXX" file, which
 * is safe to delete. */
#ifndef TUNE_IO_ATOMIC_FILE_H
#define TUNE_IO_ATOMIC_FILE_H

#include <stddef.h>

#include "base/error.h"

struct atomic_file {
    int fd;         /* the temporary file, open for writing; -1 when closed */
    char *path;     /* final destination */
    char *tmp_path; /* "<path>.tmp-XXXXXX", same directory so rename is atomic */
};

/* Creates the temporary file for `path` (mode 0644). The directory must exist.
 * On failure nothing is left behind and af needs no cleanup. */
int atomic_file_open(struct atomic_file *af, const char *path, tune_err *err);

/* Appends n bytes, retrying short writes and EINTR. Errors name the final path. */
int atomic_file_write(struct atomic_file *af, const void *buf, size_t n, tune_err *err);

/* Flushes the data to disk, renames the temporary file over `path` and flushes
 * the directory entry. Always releases af: on failure the temporary file is
 * removed and the previous file (if any) is still in place. */
int atomic_file_commit(struct atomic_file *af, tune_err *err);

/* Drops the temporary file without touching `path` and releases af. Does
 * nothing on an af already committed or aborted. */
void atomic_file_abort(struct atomic_file *af);

/* Convenience for small files (JSON): open, write buf, commit. */
int atomic_file_save(const char *path, const void *buf, size_t n, tune_err *err);

/* Copies DIR/name to OUT/name (atomically) when it exists; a missing source
 * is not an error. */
int atomic_file_copy_if_exists(const char *dir, const char *out, const char *name, tune_err *err);

/* Copies a model folder's non-weight files (config.json, generation_config.json,
 * the tokenizer's files, chat_template.jinja) that exist. */
int atomic_file_copy_model_files(const char *src_dir, const char *dst_dir, tune_err *err);

#endif
