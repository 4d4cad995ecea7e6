/* Helpers shared by the libFuzzer targets of tests/fuzz/: the input as a C string or a
 * file, the one-line error rule, and a UTF-8 check written apart from the library's. A
 * broken expectation calls fuzz_fail, which aborts so that libFuzzer keeps the input. */
#ifndef TUNE_TESTS_FUZZ_UTIL_H
#define TUNE_TESTS_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static inline void fuzz_fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

/* Every failure explains itself in a non-empty message of one line (err_set escapes the
 * control bytes of whatever it quotes). */
static inline void fuzz_check_error(const tune_err *err)
{
    if (!err->msg[0])
        fuzz_fail("an error without a message", NULL);
    if (strchr(err->msg, '\n') || strchr(err->msg, '\r'))
        fuzz_fail("an error message of more than one line", err->msg);
}

/* data[0..size) as a malloc'd NUL-terminated string (NUL bytes inside are kept). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = 0;
    return s;
}

/* Writes data to this process's scratch file, in a folder made once and removed at exit,
 * and returns its path, which ends with `suffix` (some loaders look at it). For the parsers
 * that open a path rather than take bytes. */
static char fuzz_dir[64], fuzz_path[96];
static inline void fuzz_remove_file(void)
{
    unlink(fuzz_path);
    rmdir(fuzz_dir);
}
static inline const char *fuzz_write_file(const uint8_t *data, size_t size, const char *suffix)
{
    if (!fuzz_dir[0]) {
        const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(fuzz_dir, sizeof fuzz_dir, "%.40s/tune-fuzz-XXXXXX", tmp);
        if (!mkdtemp(fuzz_dir))
            fuzz_fail("cannot make a scratch folder", fuzz_dir);
        atexit(fuzz_remove_file);
    }
    unlink(fuzz_path);
    snprintf(fuzz_path, sizeof fuzz_path, "%s/input%.16s", fuzz_dir, suffix);
    FILE *f = fopen(fuzz_path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        fuzz_fail("cannot write the scratch file", fuzz_path);
    return fuzz_path;
}

/* Whether s[0..n) is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF), by decoding each code point and checking its range. */
static inline bool fuzz_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = s[i], cp, min;
        size_t len;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

#endif
