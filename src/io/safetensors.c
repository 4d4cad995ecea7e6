/* safetensors reading and sharded models; see safetensors.h. Everything in the
 * header is checked before any tensor is handed out, with the reference Rust
 * implementation's rules (tensor.rs: read_metadata, Metadata::validate) plus
 * what cJSON lets through and serde would not: duplicate keys, raw control
 * bytes and malformed UTF-8. Files are mapped, never read into memory. */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "io/json.h"
#include "io/safetensors_internal.h"

void st_shape_format(char *out, size_t n, int rank, const int64_t *shape)
{
    size_t at = (size_t)snprintf(out, n, "[");
    for (int i = 0; i < rank && at < n; i++)
        at += (size_t)snprintf(out + at, n - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (at < n)
        snprintf(out + at, n - at, "]");
}

/* "origin: tensor 'name': problem" */
int st_tensor_err(tune_err *err, const char *origin, const char *name, const char *fmt, ...)
{
    char msg[384], nm[ERR_SHOWN_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set(err, "%s: tensor '%s': %s", origin, err_shown(nm, name), msg);
}

/* Index of the first byte of s[0..n) that cannot appear in a UTF-8 JSON text
 * (a malformed, overlong or surrogate sequence, or a raw control byte), or n.
 * cJSON checks neither: it takes any byte below 0x21 for whitespace. */
static size_t json_text_check(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
                return i;
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0)
            len = 2, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0)
            len = 3, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0)
            len = 4, cp = c & 0x07, min = 0x10000;
        else
            return i;
        if (n - i < len)
            return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += len;
    }
    return n;
}

/* Offsets and dims are integers below 2^53, where doubles are exact; no real
 * file needs more. Rejects negatives, fractions, NaN and infinities. */
static bool json_uint(const cJSON *v, int64_t *out)
{
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != floor(d))
        return false;
    *out = (int64_t)d;
    return true;
}

/* Fills t from one header entry {"dtype", "shape", "data_offsets"}; checks
 * everything that concerns the entry alone. Unknown keys are ignored, as serde
 * does for the reference. */
static int parse_tensor(const cJSON *e, struct st_tensor *t, const char *origin, int64_t data_start,
                        int64_t data_size, tune_err *err)
{
    const char *name = t->name;
    if (!cJSON_IsObject(e))
        return st_tensor_err(err, origin, name, "expected an object with dtype, shape, data_offsets");
    const cJSON *dt = NULL, *sh = NULL, *off = NULL, *c;
    cJSON_ArrayForEach(c, e)
    {
        const cJSON **slot = !strcmp(c->string, "dtype")          ? &dt
                             : !strcmp(c->string, "shape")        ? &sh
                             : !strcmp(c->string, "data_offsets") ? &off
                                                                  : NULL;
        if (slot && *slot)
            return st_tensor_err(err, origin, name, "key '%s' appears twice", c->string);
        if (slot)
            *slot = c;
    }
    const char *missing = !dt ? "dtype" : !sh ? "shape" : !off ? "data_offsets" : NULL;
    if (missing)
        return st_tensor_err(err, origin, name, "missing %s", missing);

    char buf[ERR_SHOWN_SIZE];
    int d = cJSON_IsString(dt) ? dtype_parse(dt->valuestring) : -1;
    /* dtype_parse also takes aliases and tune's 4-bit types; a file must use
     * the exact safetensors name of a whole-byte type. */
    if (d < 0 || strcmp(dtype_name((enum dtype)d), dt->valuestring) ||
        dtype_bits((enum dtype)d) % 8)
        return st_tensor_err(err, origin, name, "unknown dtype \"%s\"",
                          cJSON_IsString(dt) ? err_shown(buf, dt->valuestring) : "(not a string)");
    t->dtype = (enum dtype)d;

    if (!cJSON_IsArray(sh))
        return st_tensor_err(err, origin, name, "shape is not an array");
    int rank = cJSON_GetArraySize(sh);
    if (rank > ST_MAX_RANK)
        return st_tensor_err(err, origin, name, "rank %d exceeds %d", rank, ST_MAX_RANK);
    t->rank = rank;
    int64_t numel = 1, esize = dtype_bits(t->dtype) / 8;
    int i = 0;
    cJSON_ArrayForEach(c, sh)
    {
        if (!json_uint(c, &t->shape[i]))
            return st_tensor_err(err, origin, name, "shape[%d] is not a non-negative integer", i);
        if (t->shape[i] != 0 && numel > INT64_MAX / t->shape[i])
            return st_tensor_err(err, origin, name, "the product of the shape overflows");
        numel *= t->shape[i++];
    }
    if (numel > INT64_MAX / esize)
        return st_tensor_err(err, origin, name, "the byte size of the shape overflows");
    t->nbytes = numel * esize;

    int64_t begin, end;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(off->child, &begin) ||
        !json_uint(off->child->next, &end))
        return st_tensor_err(err, origin, name,
                          "data_offsets is not [begin, end] of non-negative integers");
    if (end < begin)
        return st_tensor_err(err, origin, name, "data_offsets [%lld, %lld] end before they begin",
                          (long long)begin, (long long)end);
    if (end > data_size)
        return st_tensor_err(err, origin, name,
                          "data_offsets [%lld, %lld] run past the data section (%lld bytes)",
                          (long long)begin, (long long)end, (long long)data_size);
    if (end - begin != t->nbytes) {
        st_shape_format(buf, sizeof buf, t->rank, t->shape);
        return st_tensor_err(err, origin, name,
                          "data_offsets [%lld, %lld] hold %lld bytes but %s %s needs %lld",
                          (long long)begin, (long long)end, (long long)(end - begin),
                          dtype_name(t->dtype), buf, (long long)t->nbytes);
    }
    t->file_offset = data_start + begin;
    return 0;
}

static int parse_metadata(struct st_file *f, const cJSON *md, tune_err *err)
{
    char k[ERR_SHOWN_SIZE];
    if (cJSON_IsNull(md))
        return 0; /* the reference reads it as an Option */
    if (!cJSON_IsObject(md))
        return err_set(err, "%s: __metadata__ is not an object of strings", f->path);
    int n = cJSON_GetArraySize(md);
    f->meta = calloc(n ? (size_t)n : 1, sizeof *f->meta);
    if (!f->meta)
        return err_set(err, "%s: out of memory", f->path);
    const cJSON *c;
    cJSON_ArrayForEach(c, md)
    {
        if (!cJSON_IsString(c))
            return err_set(err, "%s: __metadata__: value of '%s' is not a string", f->path,
                           err_shown(k, c->string));
        struct st_meta *m = &f->meta[f->n_meta];
        m->key = strdup(c->string);
        m->value = strdup(c->valuestring);
        f->n_meta += m->key || m->value; /* counted as soon as something needs freeing */
        if (!m->key || !m->value)
            return err_set(err, "%s: out of memory", f->path);
    }
    return 0;
}

/* Every table here is sorted by a string that is its first member
 * (st_tensor.name, st_meta.key, st_model_tensor.name, index_entry.tensor, or a
 * bare string), so one comparator and one duplicate check serve them all. */
static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_key_name(const void *key, const void *elem)
{
    return strcmp(key, *(const char *const *)elem);
}

/* Sorts base[0..n) by name; the index of the first element whose name
 * repeats the previous one's, or -1. */
int st_sort_find_dup(void *base, int n, size_t size)
{
    if (n == 0) /* qsort's base may be NULL then, which it must not get */
        return -1;
    qsort(base, (size_t)n, size, cmp_name);
    for (int i = 1; i < n; i++)
        if (!cmp_name((char *)base + (size_t)(i - 1) * size, (char *)base + (size_t)i * size))
            return i;
    return -1;
}

const void *st_find_name(const void *base, int n, size_t size, const char *name)
{
    return n ? bsearch(name, base, (size_t)n, size, cmp_key_name) : NULL;
}

static int cmp_offsets(const void *a, const void *b)
{
    const struct st_tensor *x = a, *y = b;
    if (x->file_offset != y->file_offset)
        return x->file_offset < y->file_offset ? -1 : 1;
    return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

/* The reference's rule: ordered by data_offsets, each tensor starts where the
 * previous ended, the first at 0, and the last ends at the end of the file.
 * Reorders f->tensors by offset. */
static int check_coverage(struct st_file *f, int64_t data_start, tune_err *err)
{
    if (f->n_tensors)
        qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_offsets);
    int64_t at = data_start;
    char nm[ERR_SHOWN_SIZE];
    for (int i = 0; i < f->n_tensors; i++) {
        const struct st_tensor *t = &f->tensors[i];
        long long b = (long long)(t->file_offset - data_start), e = b + (long long)t->nbytes;
        if (t->file_offset < at)
            return st_tensor_err(err, f->path, t->name,
                              "data_offsets [%lld, %lld] overlap tensor '%s'", b, e,
                              err_shown(nm, f->tensors[i - 1].name));
        if (t->file_offset > at)
            return st_tensor_err(err, f->path, t->name,
                              "data_offsets [%lld, %lld] leave a hole after byte %lld of the data",
                              b, e, (long long)(at - data_start));
        at = t->file_offset + t->nbytes;
    }
    if (at != (int64_t)f->size)
        return err_set(err, "%s: the tensors cover %lld bytes of a %lld-byte data section", f->path,
                       (long long)(at - data_start), (long long)(f->size - data_start));
    return 0;
}

/* Validates f->bytes[0..size) and builds the tensor and metadata tables. */
static int st_parse(struct st_file *f, tune_err *err)
{
    if (f->size < 8)
        return err_set(err, "%s: file is %zu bytes, too short for the 8-byte header length",
                       f->path, f->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | f->bytes[i];
    if (n > ST_MAX_HEADER_BYTES)
        return err_set(err, "%s: header length %llu exceeds the limit of %d bytes", f->path,
                       (unsigned long long)n, ST_MAX_HEADER_BYTES);
    if (n > f->size - 8)
        return err_set(err, "%s: header length %llu runs past the end of the file (%zu bytes)",
                       f->path, (unsigned long long)n, f->size);
    size_t bad = json_text_check(f->bytes + 8, n);
    if (bad < n)
        return err_set(err, "%s: header byte %zu (0x%02x) is not valid UTF-8 JSON text", f->path,
                       bad, f->bytes[8 + bad]);

    char *text = malloc(n + 1);
    if (!text)
        return err_set(err, "%s: out of memory for a %llu-byte header", f->path,
                       (unsigned long long)n);
    memcpy(text, f->bytes + 8, n);
    text[n] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    int rc = 0;
    if (!root) {
        rc = err_set(err, "%s: header is not valid JSON (near byte %ld)", f->path,
                     end ? (long)(end - text) : 0L);
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        rc = err_set(err, "%s: header is not a JSON object", f->path);
        goto out;
    }
    int count = cJSON_GetArraySize(root);
    f->tensors = calloc(count ? (size_t)count : 1, sizeof *f->tensors);
    if (!f->tensors) {
        rc = err_set(err, "%s: out of memory", f->path);
        goto out;
    }
    int64_t data_start = 8 + (int64_t)n, data_size = (int64_t)f->size - data_start;
    bool seen_meta = false;
    const cJSON *c;
    cJSON_ArrayForEach(c, root)
    {
        if (!strcmp(c->string, "__metadata__")) {
            if (seen_meta) {
                rc = err_set(err, "%s: __metadata__ appears twice", f->path);
                goto out;
            }
            seen_meta = true;
            if ((rc = parse_metadata(f, c, err)) != 0)
                goto out;
            continue;
        }
        struct st_tensor *t = &f->tensors[f->n_tensors];
        if (!(t->name = strdup(c->string))) {
            rc = err_set(err, "%s: out of memory", f->path);
            goto out;
        }
        f->n_tensors++;
        if ((rc = parse_tensor(c, t, f->path, data_start, data_size, err)) != 0)
            goto out;
        t->data = f->bytes + t->file_offset;
    }

    /* cJSON keeps every duplicate key; serde would fail on them. Names are
     * checked first, so that a repeated entry is not reported as an overlap. */
    char k[ERR_SHOWN_SIZE];
    int dup = st_sort_find_dup(f->tensors, f->n_tensors, sizeof *f->tensors);
    if (dup >= 0)
        rc = st_tensor_err(err, f->path, f->tensors[dup].name, "named twice in the header");
    else if ((dup = st_sort_find_dup(f->meta, f->n_meta, sizeof *f->meta)) >= 0)
        rc = err_set(err, "%s: __metadata__: key '%s' appears twice", f->path,
                     err_shown(k, f->meta[dup].key));
    else if ((rc = check_coverage(f, data_start, err)) == 0)
        st_sort_find_dup(f->tensors, f->n_tensors, sizeof *f->tensors); /* back to name order */
out:
    cJSON_Delete(root);
    free(text);
    return rc;
}

/* Takes over `bytes` (and its mapping, if mapped) whatever the outcome. */
static int st_file_init(struct st_file *f, const char *origin, const void *bytes, size_t size,
                        bool mapped, tune_err *err)
{
    memset(f, 0, sizeof *f);
    f->bytes = bytes;
    f->size = size;
    f->mapped = mapped;
    int rc =
        (f->path = strdup(origin)) ? st_parse(f, err) : err_set(err, "%s: out of memory", origin);
    if (rc)
        st_file_close(f);
    return rc;
}

int st_file_open_memory(struct st_file *f, const void *bytes, size_t size, const char *origin,
                        tune_err *err)
{
    return st_file_init(f, origin, bytes, size, false, err);
}

int st_file_open(struct st_file *f, const char *path, tune_err *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        memset(f, 0, sizeof *f);
        return err_set(err, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat sb;
    void *map = NULL;
    const char *why = fstat(fd, &sb) != 0    ? strerror(errno)
                      : !S_ISREG(sb.st_mode) ? "not a regular file"
                                             : NULL;
    /* mmap refuses length 0; st_parse reports the size */
    if (!why && sb.st_size > 0 &&
        (map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED)
        why = strerror(errno);
    if (why) {
        close(fd);
        memset(f, 0, sizeof *f);
        return err_set(err, "%s: cannot map: %s", path, why);
    }
    close(fd); /* the mapping keeps the file alive */
    return st_file_init(f, path, map, (size_t)sb.st_size, map != NULL, err);
}

void st_file_close(struct st_file *f)
{
    for (int i = 0; i < f->n_tensors; i++)
        free((char *)f->tensors[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        free((char *)f->meta[i].key);
        free((char *)f->meta[i].value);
    }
    free(f->tensors);
    free(f->meta);
    if (f->mapped)
        munmap((void *)f->bytes, f->size);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const struct st_tensor *st_file_find(const struct st_file *f, const char *name)
{
    return st_find_name(f->tensors, f->n_tensors, sizeof *f->tensors, name);
}

const char *st_file_metadata(const struct st_file *f, const char *key)
{
    const struct st_meta *m = st_find_name(f->meta, f->n_meta, sizeof *f->meta, key);
    return m ? m->value : NULL;
}
