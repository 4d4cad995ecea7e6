/* See read_file.h. */
#include "io/read_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

char *io_read_file(const char *path, int64_t max_bytes, size_t *len, tune_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *text = NULL;
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        err_set(err, "%s: cannot stat: %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        err_set(err, "%s: not a regular file", path);
    } else if (max_bytes > 0 && (int64_t)st.st_size > max_bytes) {
        err_set(err, "%s: %lld bytes is more than the limit of %lld per file", path, (long long)st.st_size,
                (long long)max_bytes);
    } else if (!(text = malloc((size_t)st.st_size + 1))) {
        err_set(err, "%s: out of memory reading %lld bytes", path, (long long)st.st_size);
    } else if (fread(text, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        err_set(err, "%s: short read", path);
        free(text);
        text = NULL;
    } else {
        text[st.st_size] = 0;
        *len = (size_t)st.st_size;
    }
    fclose(f);
    return text;
}
