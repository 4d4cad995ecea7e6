/* Dataset sources: the records of a `.json` file (one JSON array of records), a `.jsonl` file
 * (one record per line; blank lines allowed) or a directory of such files, read in name order
 * (strcmp: the order of the sorted glob the seeds load their data directory with). A record
 * is a JSON object; what its fields mean is decided by the caller (data/example.c).
 *
 * Every error names where it happened: "data/a.jsonl:12: invalid JSON (near column 7)",
 * "data/b.json: record 3: not an object". Errors of the per-record callback get the same
 * prefix, so the callback writes only the field part ("prompt: not a string"). */
#ifndef TUNE_DATA_SOURCE_H
#define TUNE_DATA_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "base/error.h"

/* Largest file read when the caller gives 0: a .json file is parsed whole, and cJSON's tree
 * takes several times the file's size. */
#define DATA_SOURCE_DEFAULT_MAX_BYTES ((int64_t)256 << 20)

/* Where a record came from. */
struct data_origin {
    const char *path; /* the file */
    int64_t line;     /* .jsonl: its 1-based line; 0 for a .json file */
    int64_t index;    /* 0-based record index within the file */
};

/* Writes "path:line" (jsonl) or "path: record N" (json) into buf. */
void data_origin_format(const struct data_origin *o, char *buf, size_t len);

/* Called once per record, in order. Returns 0, or -1 with err set (without the origin: the
 * reader prefixes it). record is valid only during the call. */
typedef int (*data_record_fn)(void *ctx, const cJSON *record, const struct data_origin *origin,
                              tune_err *err);

/* Reads every record of path (a .json or .jsonl file, or a directory of them; other files in
 * a directory are skipped, a directory without any is an error) and calls fn on each.
 * max_bytes bounds each file (0: DATA_SOURCE_DEFAULT_MAX_BYTES). *files gets the number of
 * files read (may be NULL). Stops at the first error. Does not follow subdirectories. */
int data_source_read(const char *path, int64_t max_bytes, data_record_fn fn, void *ctx,
                     int64_t *files, tune_err *err);

#endif
