/* Size parsing and formatting; see units.h. */
#include "base/units.h"

#include <ctype.h>
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
