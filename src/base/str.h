/* Small string tests shared across the program. */
#ifndef TUNE_BASE_STR_H
#define TUNE_BASE_STR_H

#include <stdbool.h>
#include <string.h>

/* Whether s ends with suffix ("model.safetensors", ".safetensors"). */
static inline bool str_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

#endif
