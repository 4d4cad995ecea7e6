/* Reading and writing the sizes users type and read: parameter counts ("70B",
 * "6,738,415,616"), byte amounts ("80GB", "141GiB") and their printed forms. */
#ifndef TUNE_BASE_UNITS_H
#define TUNE_BASE_UNITS_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* Parses a positive count with an optional K/M/B/T suffix (powers of 1000) and
 * optional thousands separators: "7B", "1.5T", "6,738,415,616", "7e9".
 * Rejects zero, negatives, garbage and values above 1e15. */
int units_parse_count(const char *s, const char *what, int64_t *out, tune_err *err);

/* Parses a positive byte amount: a count as above, or one with a byte unit,
 * decimal (KB, MB, GB, TB: powers of 1000, as transformers' max_shard_size
 * "5GB") or binary (KiB, MiB, GiB, TiB). */
int units_parse_bytes(const char *s, const char *what, int64_t *out, tune_err *err);

/* Parses a positive integer in [lo, hi] ("--seq 2048"); names `what` on error. */
int units_parse_int(const char *s, const char *what, int64_t lo, int64_t hi, int64_t *out,
                    tune_err *err);

/* Parses a positive real number in (0, hi] ("--alpha 32", "--dropout 0.05" with lo 0). */
int units_parse_real(const char *s, const char *what, double lo, double hi, double *out,
                     tune_err *err);

/* "1,234,567": the count with thousands separators. Returns buf. */
char *units_fmt_count(int64_t n, char *buf, size_t len);

/* "12.34 GiB" / "512.0 MiB" / "3.0 KiB" / "17 B": bytes in binary units. Returns buf. */
char *units_fmt_bytes(int64_t bytes, char *buf, size_t len);

#define UNITS_GIB (1024.0 * 1024.0 * 1024.0)
#define UNITS_GB 1e9

#endif
