/* Pre-tokenizer and normalizer patterns through PCRE2 (UTF, Unicode properties, JIT).
 * tokenizer.json patterns were written for Oniguruma, the engine tokenizers runs, and
 * tiktoken's for Rust's fancy-regex; PCRE2 reads both the same way except where this file
 * rewrites a pattern:
 *   - Oniguruma reads X{n,m}+ as (?:X{n,m})+, a greedy repeat, where PCRE2 and fancy-regex
 *     read a possessive interval (cl100k's \p{N}{1,3}+ keeps whole digit runs in
 *     tokenizers, threes in tiktoken);
 *   - \s and \S are spelled out as Unicode White_Space, which both engines mean, because
 *     PCRE2's \s also takes U+180E;
 *   - Oniguruma's X{,m} is X{0,m}.
 * Oniguruma's ^ and $ are line anchors (PCRE2_MULTILINE); fancy-regex's $ is the end of
 * the text (PCRE2_DOLLAR_ENDONLY). String patterns are searched as bytes, no regex. */
#include "text/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

/* White_Space, for use inside a character class. */
#define SPACE_RANGES "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}" \
                     "\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

/* End of the character class opening at p[i] == '['. Oniguruma classes nest. */
static size_t class_end(const char *p, size_t len, size_t i)
{
    size_t j = i + 1, depth = 0;
    if (j < len && p[j] == '^')
        j++;
    if (j < len && p[j] == ']')
        j++;
    while (j < len) {
        if (p[j] == '\\') {
            j += 2;
            continue;
        }
        if (p[j] == '[') {
            depth++;
        } else if (p[j] == ']') {
            if (depth == 0)
                return j + 1;
            depth--;
        }
        j++;
    }
    return len;
}

/* If p[i] opens an interval quantifier {n}, {n,}, {,m} or {n,m}, returns its end. */
static size_t interval_end(const char *p, size_t len, size_t i)
{
    size_t j = i + 1, digits = 0;
    while (j < len && p[j] >= '0' && p[j] <= '9')
        j++, digits++;
    if (j < len && p[j] == ',') {
        j++;
        while (j < len && p[j] >= '0' && p[j] <= '9')
            j++, digits++;
    }
    return (digits > 0 && j < len && p[j] == '}') ? j + 1 : 0;
}

/* Appends `in` with \s and \S replaced; inside a class only the ranges are added. */
static int append_spaces(struct tok_buf *out, const char *in, size_t len, bool in_class)
{
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\\' && i + 1 < len && (in[i + 1] == 's' || in[i + 1] == 'S')) {
            bool neg = in[i + 1] == 'S';
            if (in_class && neg)
                return -2; /* [\S...] has no spelling as a union; refuse it */
            const char *s = in_class ? SPACE_RANGES : neg ? "[^" SPACE_RANGES "]"
                                                          : "[" SPACE_RANGES "]";
            if (tok_buf_append(out, s, strlen(s)) != 0)
                return -1;
            i++;
            continue;
        }
        size_t n = (in[i] == '\\' && i + 1 < len) ? 2 : 1;
        if (tok_buf_append(out, in + i, n) != 0)
            return -1;
        i += n - 1;
    }
    return 0;
}

/* Rewrites pattern into out as described at the top of the file. Returns 0, -1 when out
 * of memory, -2 for a construct it cannot rewrite. */
static int translate(struct tok_buf *out, const char *p, size_t len, bool onig)
{
    size_t atom = SIZE_MAX; /* where the last atom starts in out */
    size_t groups[64], depth = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i + 1, mark = out->n;
        int rc = 0;
        if (p[i] == '\\') {
            j = i + 2 < len ? i + 2 : len;
            if (j < len && p[j] == '{' && strchr("pPx", p[i + 1]))
                while (j < len && p[j++] != '}') {
                }
            rc = append_spaces(out, p + i, j - i, false);
            atom = mark;
        } else if (p[i] == '[') {
            j = class_end(p, len, i);
            rc = append_spaces(out, p + i, j - i, true);
            atom = mark;
        } else if (p[i] == '(') {
            if (depth == sizeof groups / sizeof *groups)
                return -2;
            groups[depth++] = mark;
            rc = tok_buf_append(out, "(", 1);
            atom = SIZE_MAX;
        } else if (p[i] == ')') {
            rc = tok_buf_append(out, ")", 1);
            atom = depth ? groups[--depth] : SIZE_MAX;
        } else if (p[i] == '{' && interval_end(p, len, i) != 0) {
            j = interval_end(p, len, i);
            bool repeat = onig && atom != SIZE_MAX && j < len && p[j] == '+';
            if (repeat) { /* X{n,m}+ -> (?:X{n,m})+ */
                if (tok_buf_reserve(out, 3) != 0)
                    return -1;
                memmove(out->p + atom + 3, out->p + atom, out->n - atom);
                memcpy(out->p + atom, "(?:", 3);
                out->n += 3;
            }
            /* Oniguruma's {,m} is {0,m}; PCRE2 before 10.43 reads it as text. */
            if (onig && p[i + 1] == ',')
                rc = tok_buf_append(out, "{0", 2) || tok_buf_append(out, p + i + 1, j - i - 1)
                         ? -1 : 0;
            else
                rc = tok_buf_append(out, p + i, j - i);
            if (repeat && rc == 0) {
                rc = tok_buf_append(out, ")+", 2);
                j++;
            }
        } else if (p[i] == '*' || p[i] == '+' || p[i] == '?' || p[i] == '|') {
            rc = tok_buf_append(out, p + i, 1);
            if (p[i] == '|')
                atom = SIZE_MAX;
        } else {
            while (j < len && ((unsigned char)p[j] & 0xC0) == 0x80)
                j++; /* the rest of a UTF-8 character */
            rc = tok_buf_append(out, p + i, j - i);
            atom = mark;
        }
        if (rc != 0)
            return rc;
        i = j;
    }
    return 0;
}

int tok_regex_compile(struct tok_regex *re, const char *pattern, size_t len,
                      enum tok_regex_dialect dialect, tune_err *err)
{
    *re = (struct tok_regex){0};
    if (dialect == TOK_REGEX_LITERAL) {
        re->literal = malloc(len + 1);
        if (!re->literal)
            return err_set(err, "out of memory");
        memcpy(re->literal, pattern, len);
        re->literal[len] = 0;
        re->literal_len = len;
        return 0;
    }
    struct tok_buf pat = {0};
    char shown[ERR_SHOWN_SIZE];
    int rc = translate(&pat, pattern, len, dialect == TOK_REGEX_ONIG);
    if (rc != 0) {
        tok_buf_free(&pat);
        return rc == -1 ? err_set(err, "out of memory")
                        : err_set(err, "pattern /%s/: [\\S...] or nesting too deep is not "
                                       "supported", err_shown_n(shown, pattern, len));
    }
    uint32_t opts = PCRE2_UTF | PCRE2_UCP |
                    (dialect == TOK_REGEX_ONIG ? PCRE2_MULTILINE : PCRE2_DOLLAR_ENDONLY);
    int code;
    PCRE2_SIZE at;
    re->code = pcre2_compile((PCRE2_SPTR)(pat.p ? pat.p : ""), pat.n, opts, &code, &at, NULL);
    tok_buf_free(&pat);
    if (!re->code) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(code, msg, sizeof msg);
        return err_set(err, "pattern /%s/: %s", err_shown_n(shown, pattern, len),
                       (const char *)msg);
    }
    /* Without JIT (a platform PCRE2 lacks it for) matching still works, only slower. */
    pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
    return 0;
}

void tok_regex_free(struct tok_regex *re)
{
    pcre2_code_free(re->code);
    free(re->literal);
    *re = (struct tok_regex){0};
}

static int find_literal(const struct tok_regex *re, const char *s, size_t len, size_t from,
                        size_t *start, size_t *end)
{
    size_t n = re->literal_len;
    if (n == 0 || len < n)
        return 0;
    for (size_t i = from; i + n <= len; i++) {
        const char *hit = memchr(s + i, re->literal[0], len - n + 1 - i);
        if (!hit)
            return 0;
        i = (size_t)(hit - s);
        if (memcmp(hit, re->literal, n) == 0) {
            *start = i;
            *end = i + n;
            return 1;
        }
    }
    return 0;
}

int tok_regex_find(const struct tok_regex *re, struct tok_match_scratch *ms, const char *s,
                   size_t len, size_t from, size_t *start, size_t *end, tune_err *err)
{
    if (!re->code)
        return find_literal(re, s, len, from, start, end);
    if (!ms->md && !(ms->md = pcre2_match_data_create(1, NULL)))
        return err_set(err, "out of memory");
    /* The text was validated once by tok_encode; PCRE2 would recheck it on every call. */
    int rc = pcre2_match(re->code, (PCRE2_SPTR)s, len, from, PCRE2_NO_UTF_CHECK, ms->md,
                         ms->mc);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !ms->stack) {
        /* Long runs (a megabyte of spaces under \s+(?!\S)) outgrow the default 32 KiB. */
        ms->mc = pcre2_match_context_create(NULL);
        ms->stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL);
        if (!ms->mc || !ms->stack)
            return err_set(err, "out of memory");
        pcre2_jit_stack_assign(ms->mc, NULL, ms->stack);
        rc = pcre2_match(re->code, (PCRE2_SPTR)s, len, from, PCRE2_NO_UTF_CHECK, ms->md,
                         ms->mc);
    }
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return err_set(err, "regex match at byte %zu: %s", from, (const char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(ms->md);
    *start = ov[0];
    *end = ov[1];
    return 1;
}

int tok_regex_replace_all(const struct tok_regex *re, struct tok_match_scratch *ms,
                          const char *s, size_t len, const char *with, size_t with_len,
                          struct tok_buf *out, tune_err *err)
{
    size_t pos = 0, from = 0, a, b;
    int found;
    while ((found = tok_regex_find(re, ms, s, len, from, &a, &b, err)) == 1) {
        if (tok_buf_append(out, s + pos, a - pos) != 0 || tok_buf_append(out, with, with_len))
            return err_set(err, "out of memory");
        pos = from = b;
        if (a == b) { /* an empty match: step over one character */
            if (a == len)
                break;
            size_t k;
            tok_utf8_decode(s + a, &k);
            from = a + k;
        }
    }
    if (found < 0)
        return -1;
    return tok_buf_append(out, s + pos, len - pos) == 0 ? 0 : err_set(err, "out of memory");
}

void tok_match_scratch_free(struct tok_match_scratch *ms)
{
    pcre2_match_data_free(ms->md);
    pcre2_match_context_free(ms->mc);
    pcre2_jit_stack_free(ms->stack);
    *ms = (struct tok_match_scratch){0};
}
