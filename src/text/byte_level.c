/* GPT-2's byte <-> printable character map (tokenizers' ByteLevel): bytes that are
 * printable Latin-1 stand for themselves, the other 68 map in order to U+0100..U+0143
 * ("Ġ" is the space). It is computed from three ranges rather than kept as a table, so
 * there is nothing to initialise and nothing shared between threads. */
#include "text/tokenizer_impl.h"

static bool is_self(uint32_t b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* The printable character GPT-2 writes for byte b ('Ġ' for ' '). */
static uint32_t byte_to_char(uint8_t b)
{
    if (is_self(b))
        return b;
    if (b <= 0x20)
        return 0x100 + b;         /* 33 control bytes and the space: U+0100..U+0120 */
    if (b >= 0x7F && b <= 0xA0)
        return 0x121 + (b - 0x7F); /* DEL and C1 controls, NBSP: U+0121..U+0142 */
    return 0x143;                  /* the soft hyphen 0xAD */
}

int tok_char_to_byte(uint32_t cp)
{
    if (cp <= 0xFF)
        return is_self(cp) ? (int)cp : -1;
    if (cp <= 0x120)
        return (int)(cp - 0x100);
    if (cp <= 0x142)
        return (int)(cp - 0x121 + 0x7F);
    return cp == 0x143 ? 0xAD : -1;
}

int tok_byte_level_encode(struct tok_buf *out, const char *raw, size_t len)
{
    if (tok_buf_reserve(out, 2 * len) != 0)
        return -1;
    for (size_t i = 0; i < len; i++)
        out->n += tok_utf8_encode(byte_to_char((uint8_t)raw[i]), out->p + out->n);
    return 0;
}

int tok_byte_level_decode(struct tok_buf *out, const char *s, size_t len)
{
    size_t mark = out->n;
    if (tok_buf_reserve(out, len) != 0)
        return -1;
    for (size_t i = 0; i < len;) {
        size_t n;
        int b = tok_char_to_byte(tok_utf8_decode(s + i, &n));
        if (b < 0) {
            out->n = mark;
            return 0;
        }
        out->p[out->n++] = (char)b;
        i += n;
    }
    return 1;
}
