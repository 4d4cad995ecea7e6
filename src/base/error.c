/* Error buffer helpers; see error.h. Every message goes through one escaping copy, so
 * quoted input can make it long but never more than one line. */
#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Copies s[0..len) into out[0..cap) with control bytes escaped; when it does not fit, cuts
 * at a UTF-8 character boundary and ends with "...". Always NUL-terminates. */
static void escape(char *out, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t at = 0, i = 0;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char piece[4];
        size_t n = 1;
        piece[0] = (char)c;
        if (c == '\n' || c == '\r' || c == '\t') {
            piece[0] = '\\', piece[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't', n = 2;
        } else if (c < 0x20 || c == 0x7f) {
            piece[0] = '\\', piece[1] = 'x', piece[2] = hex[c >> 4], piece[3] = hex[c & 15];
            n = 4;
        }
        if (at + n > cap - 1 || (i + 1 < len && at + n > cap - 4))
            break;
        memcpy(out + at, piece, n);
        at += n;
    }
    if (i < len) {
        /* Drop a character whose bytes were not all copied, then mark the cut. */
        size_t k = at;
        while (k > 0 && ((unsigned char)out[k - 1] & 0xC0) == 0x80 && at - k < 3)
            k--;
        if (k > 0 && (unsigned char)out[k - 1] >= 0xC0) {
            unsigned char lead = (unsigned char)out[k - 1];
            size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
            if (at - (k - 1) < want)
                at = k - 1;
        }
        memcpy(out + at, "...", 3);
        at += 3;
    }
    out[at] = 0;
}

const char *err_shown_n(char *out, const char *s, size_t len)
{
    escape(out, ERR_SHOWN_SIZE, s, len);
    return out;
}

const char *err_shown(char *out, const char *s)
{
    return err_shown_n(out, s, strlen(s));
}

int err_set(tune_err *err, const char *fmt, ...)
{
    if (err) {
        char text[2 * sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
        size_t len = n < 0 ? 0 : (size_t)n < sizeof text ? (size_t)n : sizeof text - 1;
        escape(err->msg, sizeof err->msg, text, len);
    }
    return -1;
}

int err_prefix(tune_err *err, const char *fmt, ...)
{
    if (err) {
        char prefix[256], old[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        err_set(err, "%s: %s", prefix, old);
    }
    return -1;
}
