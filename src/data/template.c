/* Field templates; see template.h. A template string is compiled once into a flat list of
 * nodes (literal text, field, each, end of each), so syntax errors surface when the file is
 * loaded, not at record 4000, and rendering is a walk over the list with a stack of scopes
 * (the record, then the item of each enclosing {#each}). Values are printed through
 * chat_json_dump, the one place that knows how Python prints a JSON number. */
#include "data/template.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "text/chat.h"

/* Nesting of {#each}: deep enough for any record shape, small enough for a fixed stack. */
#define TMPL_MAX_DEPTH 16
#define TMPL_MAX_FILE_BYTES (1 << 20)

enum tnode_kind { TNODE_TEXT, TNODE_FIELD, TNODE_EACH, TNODE_END };
enum tpath_kind { TPATH_FIELD, TPATH_SELF, TPATH_INDEX, TPATH_NUMBER };

struct tstep {
    const char *name; /* NULL: a [index] step */
    int64_t index;
};

struct tnode {
    enum tnode_kind kind;
    const char *text;     /* TEXT: the literal (len bytes); FIELD, EACH: the path as written */
    size_t len;
    enum tpath_kind path;
    struct tstep *steps;  /* [n_steps], TPATH_FIELD only */
    size_t n_steps;
    bool optional;        /* written with a trailing '?' */
    size_t end;           /* EACH: index of its END node */
};

struct tpart {
    const char *name;     /* "prompt" or "completion", for errors */
    struct tnode *nodes;  /* [n] */
    size_t n, cap;
    char *buf;            /* literals (unescaped), paths and step names; 3x the source */
    size_t used;
};

struct data_template {
    bool has_prompt;
    struct tpart part[2]; /* prompt, completion */
};

static struct tnode *add_node(struct tpart *p, enum tnode_kind kind)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 16;
        struct tnode *grown = realloc(p->nodes, cap * sizeof *grown);
        if (!grown)
            return NULL;
        p->nodes = grown;
        p->cap = cap;
    }
    struct tnode *n = &p->nodes[p->n++];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    return n;
}

/* Copies s[0..len) into the part's buffer as a NUL-terminated string. */
static char *keep(struct tpart *p, const char *s, size_t len)
{
    char *d = p->buf + p->used;
    memcpy(d, s, len);
    d[len] = 0;
    p->used += len + 1;
    return d;
}

/* Parses the path of a field or each tag (s[0..len), spaces around it allowed) into n. */
static int parse_path(struct tpart *p, struct tnode *n, const char *s, size_t len, int depth,
                      tune_err *err)
{
    while (len && *s == ' ')
        s++, len--;
    while (len && s[len - 1] == ' ')
        len--;
    if (len && s[len - 1] == '?')
        n->optional = true, len--;
    n->text = keep(p, s, len);
    if (len == 0)
        return err_set(err, "empty field name");
    if (strcmp(n->text, ".") == 0 || strcmp(n->text, "@index") == 0 ||
        strcmp(n->text, "@number") == 0) {
        n->path = n->text[0] == '.' ? TPATH_SELF : n->text[1] == 'i' ? TPATH_INDEX : TPATH_NUMBER;
        if (n->path != TPATH_SELF && depth == 0)
            return err_set(err, "{%s} outside {#each}", n->text);
        if (n->path != TPATH_SELF && n->kind == TNODE_EACH)
            return err_set(err, "{#each %s}: not a list", n->text);
        return 0;
    }
    if (strchr("#/@", n->text[0]))
        return err_set(err, "unknown tag {%s} (tags: {#each LIST}, {/each}, {@index}, "
                       "{@number})", n->text);
    if (!(n->steps = calloc(len, sizeof *n->steps)))
        return err_set(err, "out of memory");
    const char *q = n->text, *end = n->text + len;
    while (q < end) {
        struct tstep *st = &n->steps[n->n_steps];
        if (*q == '[') {
            char *stop;
            long long v = strtoll(q + 1, &stop, 10);
            if (n->n_steps == 0 || stop == q + 1 || *stop != ']' || v < 0 || v > INT_MAX)
                return err_set(err, "{%s}: bad list index at '%s'", n->text, q);
            st->index = v;
            q = stop + 1;
        } else {
            if (n->n_steps > 0) {
                if (*q != '.')
                    return err_set(err, "{%s}: expected '.' or '[' at '%s'", n->text, q);
                q++;
            }
            size_t k = strcspn(q, ".[]{}");
            if (k == 0)
                return err_set(err, "{%s}: empty name at '%s'", n->text, q);
            st->name = keep(p, q, k);
            q += k;
        }
        n->n_steps++;
    }
    return 0;
}

/* Compiles one template string into p. */
static int parse_part(struct tpart *p, const char *name, const char *src, tune_err *err)
{
    size_t L = strlen(src), stack[TMPL_MAX_DEPTH];
    int depth = 0;
    p->name = name;
    if (!(p->buf = malloc(3 * L + 1)))
        return err_set(err, "%s: out of memory", name);
    for (size_t i = 0; i < L;) {
        char *lit = p->buf + p->used;
        size_t n_lit = 0;
        while (i < L && !(src[i] == '{' && src[i + 1] != '{')) {
            if (src[i] == '}' && src[i + 1] != '}')
                return err_set(err, "%s: offset %zu: a lone '}' (write }} for a literal one)",
                               name, i);
            lit[n_lit++] = src[i];
            i += (src[i] == '{' || src[i] == '}') ? 2 : 1;
        }
        if (n_lit) {
            struct tnode *t = add_node(p, TNODE_TEXT);
            if (!t)
                return err_set(err, "%s: out of memory", name);
            t->text = lit;
            t->len = n_lit;
            p->used += n_lit;
        }
        if (i >= L)
            break;
        const char *tag = src + i + 1, *close = strpbrk(tag, "{}");
        if (!close || *close == '{')
            return err_set(err, "%s: offset %zu: '{' without its '}' (write {{ for a literal "
                           "one)", name, i);
        size_t k = (size_t)(close - tag);
        bool each = k >= 5 && strncmp(tag, "#each", 5) == 0 && (k == 5 || tag[5] == ' ');
        bool end = k == 5 && strncmp(tag, "/each", 5) == 0;
        struct tnode *t = add_node(p, each ? TNODE_EACH : end ? TNODE_END : TNODE_FIELD);
        if (!t)
            return err_set(err, "%s: out of memory", name);
        if (end) {
            if (depth == 0)
                return err_set(err, "%s: offset %zu: {/each} without {#each}", name, i);
            p->nodes[stack[--depth]].end = p->n - 1;
        } else if (parse_path(p, t, each ? tag + 5 : tag, each ? k - 5 : k, depth, err)) {
            return err_prefix(err, "%s: offset %zu", name, i);
        } else if (each) {
            if (depth == TMPL_MAX_DEPTH)
                return err_set(err, "%s: offset %zu: {#each} nested more than %d deep", name, i,
                               TMPL_MAX_DEPTH);
            stack[depth++] = p->n - 1;
        }
        i += k + 2;
    }
    if (depth)
        return err_set(err, "%s: {#each %s} without {/each}", name,
                       p->nodes[stack[depth - 1]].text);
    return 0;
}

void data_template_free(struct data_template *t)
{
    if (!t)
        return;
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < t->part[k].n; i++)
            free(t->part[k].nodes[i].steps);
        free(t->part[k].nodes);
        free(t->part[k].buf);
    }
    free(t);
}

int data_template_parse(struct data_template **out, const char *prompt, const char *completion,
                        const char *origin, tune_err *err)
{
    *out = NULL;
    struct data_template *t = calloc(1, sizeof *t);
    if (!t)
        return err_set(err, "%s: out of memory", origin);
    t->has_prompt = prompt != NULL;
    if ((prompt && parse_part(&t->part[0], "prompt", prompt, err)) ||
        parse_part(&t->part[1], prompt ? "completion" : "text", completion, err)) {
        data_template_free(t);
        return err_prefix(err, "%s", origin);
    }
    *out = t;
    return 0;
}

int data_template_load(struct data_template **out, const char *path, tune_err *err)
{
    *out = NULL;
    cJSON *doc = json_load_file(path, TMPL_MAX_FILE_BYTES, err);
    if (!doc)
        return -1;
    const char *s[3] = {NULL, NULL, NULL}; /* prompt, completion, text */
    static const char *const keys[3] = {"prompt", "completion", "text"};
    int rc = 0;
    if (!cJSON_IsObject(doc))
        rc = err_set(err, "%s: a template is a JSON object {\"prompt\", \"completion\"} or "
                     "{\"text\"}", path);
    for (const cJSON *f = cJSON_IsObject(doc) ? doc->child : NULL; f && rc == 0; f = f->next) {
        int k = 0;
        while (k < 3 && strcmp(f->string, keys[k]))
            k++;
        char shown[ERR_SHOWN_SIZE];
        if (k == 3 && strcmp(f->string, "comment"))
            rc = err_set(err, "%s: unknown key '%s' (want prompt, completion, text or comment)",
                         path, err_shown(shown, f->string));
        else if (k < 3 && !cJSON_IsString(f))
            rc = err_set(err, "%s: %s: not a string", path, f->string);
        else if (k < 3)
            s[k] = f->valuestring;
    }
    if (rc == 0 && s[2] && (s[0] || s[1]))
        rc = err_set(err, "%s: give either text, or prompt and completion, not both", path);
    else if (rc == 0 && !s[2] && !s[1])
        rc = err_set(err, "%s: no completion (or text): nothing would be trained", path);
    if (rc == 0)
        rc = data_template_parse(out, s[0], s[2] ? s[2] : s[1], path, err);
    cJSON_Delete(doc);
    return rc;
}

/* ---- rendering --------------------------------------------------------------------------- */

struct scope {
    const cJSON *v;
    const struct tnode *each; /* NULL for the record */
    size_t index;
};

struct render {
    const struct tpart *p;
    struct scope scopes[TMPL_MAX_DEPTH + 1];
    int depth; /* scopes[0..depth] are live */
    char *out;
    size_t len, cap;
    tune_err *err;
};

static int put(struct render *r, const char *s, size_t n)
{
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 256;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *grown = realloc(r->out, cap);
        if (!grown)
            return err_set(r->err, "%s: out of memory", r->p->name);
        r->out = grown;
        r->cap = cap;
    }
    memcpy(r->out + r->len, s, n);
    r->len += n;
    r->out[r->len] = 0;
    return 0;
}

/* Fails naming the field and the enclosing items: "(in rubric_alignment[2])". */
static int field_error(struct render *r, const struct tnode *n, const char *what)
{
    char ctx[256] = "";
    size_t k = 0;
    for (int s = 1; s <= r->depth && k < sizeof ctx; s++)
        k += (size_t)snprintf(ctx + k, sizeof ctx - k, "%s%s[%zu]", s == 1 ? " (in " : ", ",
                              r->scopes[s].each->text, r->scopes[s].index);
    if (r->depth && k < sizeof ctx)
        snprintf(ctx + k, sizeof ctx - k, ")");
    return err_set(r->err, "%s: field '%s' %s%s", r->p->name, n->text, what, ctx);
}

/* Finds the value of n's path: *v NULL when it is optional and missing or null. */
static int resolve(struct render *r, const struct tnode *n, const cJSON **v)
{
    *v = NULL;
    if (n->path == TPATH_SELF) {
        *v = r->scopes[r->depth].v;
        return 0;
    }
    const cJSON *cur = NULL;
    for (int s = r->depth; s >= 0 && !cur; s--)
        if (cJSON_IsObject(r->scopes[s].v))
            cur = cJSON_GetObjectItemCaseSensitive(r->scopes[s].v, n->steps[0].name);
    for (size_t k = 1; k < n->n_steps && cur; k++) {
        const struct tstep *st = &n->steps[k];
        if (st->name)
            cur = cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, st->name) : NULL;
        else
            cur = cJSON_IsArray(cur) ? cJSON_GetArrayItem(cur, (int)st->index) : NULL;
    }
    if (!cur || cJSON_IsNull(cur)) {
        if (n->optional)
            return 0;
        return field_error(r, n, cur ? "is null (write {NAME?} to print nothing)" : "is missing");
    }
    *v = cur;
    return 0;
}

/* Prints v as Python's str() prints the value json.load gives. */
static int put_value(struct render *r, const cJSON *v)
{
    if (cJSON_IsString(v))
        return put(r, v->valuestring, strlen(v->valuestring));
    if (cJSON_IsBool(v))
        return cJSON_IsTrue(v) ? put(r, "True", 4) : put(r, "False", 5);
    if (cJSON_IsNumber(v) && !isfinite(v->valuedouble)) { /* 1e400: str(float) says inf */
        const char *s = isnan(v->valuedouble) ? "nan" : v->valuedouble < 0 ? "-inf" : "inf";
        return put(r, s, strlen(s));
    }
    char *s = chat_json_dump(v);
    if (!s)
        return err_set(r->err, "%s: out of memory", r->p->name);
    int rc = put(r, s, strlen(s));
    free(s);
    return rc;
}

static int render_range(struct render *r, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        const struct tnode *n = &r->p->nodes[i];
        const cJSON *v;
        if (n->kind == TNODE_TEXT) {
            if (put(r, n->text, n->len))
                return -1;
        } else if (n->kind == TNODE_FIELD && (n->path == TPATH_INDEX || n->path == TPATH_NUMBER)) {
            char num[24];
            int k = snprintf(num, sizeof num, "%zu",
                             r->scopes[r->depth].index + (n->path == TPATH_NUMBER));
            if (put(r, num, (size_t)k))
                return -1;
        } else if (n->kind == TNODE_FIELD) {
            if (resolve(r, n, &v) || (v && put_value(r, v)))
                return -1;
        } else if (n->kind == TNODE_EACH) {
            if (resolve(r, n, &v))
                return -1;
            if (v && !cJSON_IsArray(v))
                return field_error(r, n, "is not a list ({#each} needs one)");
            size_t k = 0;
            for (const cJSON *item = v ? v->child : NULL; item; item = item->next, k++) {
                r->scopes[++r->depth] = (struct scope){item, n, k};
                int rc = render_range(r, i + 1, n->end);
                r->depth--;
                if (rc)
                    return -1;
            }
            i = n->end; /* past the body and its END */
        }
    }
    return 0;
}

static int render_part(const struct tpart *p, const cJSON *record, char **out, tune_err *err)
{
    struct render r = {.p = p, .err = err};
    r.scopes[0] = (struct scope){record, NULL, 0};
    int rc = put(&r, "", 0) || render_range(&r, 0, p->n) ? -1 : 0;
    *out = r.out;
    return rc;
}

int data_template_render(const struct data_template *t, const cJSON *record, char **prompt,
                         char **completion, tune_err *err)
{
    *prompt = *completion = NULL;
    if (t->has_prompt) {
        if (render_part(&t->part[0], record, prompt, err))
            return -1;
    } else if (!(*prompt = calloc(1, 1))) {
        return err_set(err, "out of memory");
    }
    return render_part(&t->part[1], record, completion, err);
}
