/* Size parsing and formatting; see units.h. */
#include "base/units.h"

#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int units_parse_count(const char *s, const char *what, int64_t *out, tune_err *err)
{
    char digits[64];
    size_t n = 0;
    for (const char *p = s; *p && n + 1 < sizeof digits; p++)
        if (*p != ',' && *p != '_')
            digits[n++] = *p;
    digits[n] = 0;
    if (n == 0 || strlen(s) >= sizeof digits)
        return err_set(err, "%s: '%s' is not a count (e.g. 7B, 70e9, 6738415616)", what, s);

    errno = 0;
    char *end;
    double v = strtod(digits, &end);
    double scale = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': scale = 1e3; end++; break;
    case 'M': scale = 1e6; end++; break;
    case 'B': case 'G': scale = 1e9; end++; break;
    case 'T': scale = 1e12; end++; break;
    default: break;
    }
    if (errno || end == digits || *end || !isfinite(v))
        return err_set(err, "%s: '%s' is not a count (e.g. 7B, 70e9, 6738415616)", what, s);
    v *= scale;
    if (v < 1)
        return err_set(err, "%s: '%s' must be at least 1", what, s);
    if (v > 1e15)
        return err_set(err, "%s: '%s' is absurdly large (more than 1e15)", what, s);
    *out = (int64_t)llround(v);
    return 0;
}

int units_parse_bytes(const char *s, const char *what, int64_t *out, tune_err *err)
{
    size_t n = strlen(s);
    char head[64];
    static const char prefixes[] = "KMGT";
    const char *p = n >= 2 && n < sizeof head ? strchr(prefixes, toupper((unsigned char)s[n - 2])) : NULL;
    bool binary = n >= 3 && n < sizeof head && toupper((unsigned char)s[n - 1]) == 'B' && s[n - 2] == 'i' &&
                  strchr(prefixes, toupper((unsigned char)s[n - 3]));
    if (binary) { /* "141GiB": the number times 1024^k */
        snprintf(head, sizeof head, "%.*s", (int)(n - 3), s);
        char *end;
        errno = 0;
        double v = strtod(head, &end), scale = 1;
        for (const char *q = prefixes; *q; q++) {
            scale *= 1024;
            if (*q == toupper((unsigned char)s[n - 3]))
                break;
        }
        if (errno || end == head || *end || !isfinite(v) || v * scale < 1 || v * scale > 1e15)
            return err_set(err, "%s: '%s' is not a byte amount (e.g. 5GB, 141GiB, 5e9)", what, s);
        *out = (int64_t)llround(v * scale);
        return 0;
    }
    bool plain = n >= 2 && n < sizeof head && isdigit((unsigned char)s[n - 2]); /* "100B": bytes, not billions */
    if ((p || plain) && toupper((unsigned char)s[n - 1]) == 'B') { /* "5GB": the count "5G" */
        snprintf(head, sizeof head, "%.*s", (int)(n - 1), s);
    } else {
        snprintf(head, sizeof head, "%s", s);
    }
    tune_err count_err;
    if (n >= sizeof head || units_parse_count(head, what, out, &count_err))
        return err_set(err, "%s: '%s' is not a byte amount (e.g. 5GB, 141GiB, 5e9)", what, s);
    return 0;
}

int units_parse_int(const char *s, const char *what, int64_t lo, int64_t hi, int64_t *out,
                    tune_err *err)
{
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return err_set(err, "%s: '%s' is not an integer", what, s);
    if (v < lo || v > hi)
        return err_set(err, "%s: %lld is out of range [%lld, %lld]", what, v, (long long)lo,
                       (long long)hi);
    *out = v;
    return 0;
}

int units_parse_real(const char *s, const char *what, double lo, double hi, double *out,
                     tune_err *err)
{
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        return err_set(err, "%s: '%s' is not a number", what, s);
    if (v < lo || v > hi)
        return err_set(err, "%s: %g is out of range [%g, %g]", what, v, lo, hi);
    *out = v;
    return 0;
}

char *units_fmt_count(int64_t n, char *buf, size_t len)
{
    char raw[32];
    int k = snprintf(raw, sizeof raw, "%lld", (long long)(n < 0 ? -n : n));
    size_t o = 0;
    if (n < 0 && o + 1 < len)
        buf[o++] = '-';
    for (int i = 0; i < k && o + 1 < len; i++) {
        buf[o++] = raw[i];
        if ((k - i - 1) % 3 == 0 && i != k - 1 && o + 1 < len)
            buf[o++] = ',';
    }
    buf[o] = 0;
    return buf;
}

char *units_fmt_bytes(int64_t bytes, char *buf, size_t len)
{
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (fabs(v) >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%lld B", (long long)bytes);
    else
        snprintf(buf, len, "%.2f %s", v, unit[u]);
    return buf;
}
