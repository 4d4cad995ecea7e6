/* UTF-8 for the tokenizer: validation, one-character decode and encode, and the lossy
 * conversion of decoded bytes. One step function classifies the sequence at a position,
 * so validation and lossy replacement agree on where a bad sequence ends (the Unicode
 * "maximal subpart" rule that Rust's from_utf8_lossy and Python's errors="replace" share,
 * which keeps decode output equal to tokenizers' and tiktoken's). */
#include "text/tokenizer_impl.h"

static bool is_cont(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

/* Length of the valid sequence at s (> 0), or minus the length of the maximal invalid
 * subpart there (< 0). */
static int utf8_step(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    int need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return -1;
    }
    if (len < 2 || s[1] < lo || s[1] > hi)
        return -1;
    for (int i = 2; i <= need; i++)
        if ((size_t)i >= len || !is_cont(s[i]))
            return -i;
    return need + 1;
}

size_t tok_utf8_valid_prefix(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int n = utf8_step(u + i, len - i);
        if (n < 0)
            return i;
        i += (size_t)n;
    }
    return len;
}

uint32_t tok_utf8_decode(const char *s, size_t *n)
{
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) {
        *n = 1;
        return u[0];
    }
    if (u[0] < 0xE0) {
        *n = 2;
        return (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F);
    }
    if (u[0] < 0xF0) {
        *n = 3;
        return (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F);
    }
    *n = 4;
    return (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 |
           (uint32_t)(u[2] & 0x3F) << 6 | (u[3] & 0x3F);
}

size_t tok_utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int tok_utf8_append_lossy(struct tok_buf *b, const char *s, size_t len)
{
    if (len == 0) /* s may be NULL then */
        return 0;
    static const char replacement[] = "\xEF\xBF\xBD";
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0; /* [run, i) is valid and not yet copied */
    while (i < len) {
        int n = u[i] < 0x80 ? 1 : utf8_step(u + i, len - i);
        if (n > 0) {
            i += (size_t)n;
            continue;
        }
        if (tok_buf_append(b, s + run, i - run) != 0 || tok_buf_append(b, replacement, 3) != 0)
            return -1;
        i += (size_t)-n;
        run = i;
    }
    return tok_buf_append(b, s + run, len - run);
}

bool tok_utf8_is_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000;
}
