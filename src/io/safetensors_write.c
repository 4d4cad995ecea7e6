/* safetensors writing, single file and sharded; see safetensors.h. The header
 * JSON is printed here rather than by cJSON, which prints integers above
 * INT_MAX through %g, and so that the layout is the reference writer's byte for
 * byte: serde_json's compact form and string escapes, tensors ordered by
 * alignment then name, header padded with spaces to a multiple of 8. */
#include "io/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/atomic_file.h"
#include "io/safetensors_internal.h"

/* Position of each dtype in the reference's Dtype enum, which is ordered by
 * alignment; its writer sorts tensors by it (descending), then by name. */
static const int ref_order[DTYPE_COUNT] = {
    [DTYPE_U8] = 4,   [DTYPE_I8] = 5,   [DTYPE_F8_E5M2] = 6, [DTYPE_F8_E4M3] = 7,
    [DTYPE_I16] = 11, [DTYPE_F16] = 13, [DTYPE_BF16] = 14,   [DTYPE_I32] = 15,
    [DTYPE_F32] = 17, [DTYPE_F64] = 19, [DTYPE_I64] = 20,
};

#define SHARD_NAME "model-%05d-of-%05d.safetensors" /* transformers' names */

struct strbuf {
    char *p;
    size_t len, cap;
    bool oom; /* sticky: checked once at the end */
};

static void sb_put(struct strbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct strbuf *b, const char *fmt, ...)
{
    char tmp[128]; /* numbers and fixed words only; never user strings */
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, n < (int)sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string with serde_json's escapes: \" \\ \b \f \n \r \t, other control
 * bytes as \u00XX, everything else (UTF-8 included) as is. */
static void sb_json_string(struct strbuf *b, const char *s)
{
    static const char *const short_esc[0x20] = {
        ['\b'] = "\\b", ['\f'] = "\\f", ['\n'] = "\\n", ['\r'] = "\\r", ['\t'] = "\\t"};
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            sb_put(b, "\\", 1);
        if (c < 0x20 && short_esc[c])
            sb_put(b, short_esc[c], 2);
        else if (c < 0x20)
            sb_printf(b, "\\u%04x", c);
        else
            sb_put(b, s, 1);
    }
    sb_put(b, "\"", 1);
}

void st_writer_init(struct st_writer *w) { memset(w, 0, sizeof *w); }

void st_writer_free(struct st_writer *w)
{
    for (int i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    for (int i = 0; i < w->n_meta; i++) {
        free((char *)w->meta[i].key);
        free((char *)w->meta[i].value);
    }
    free(w->tensors);
    free(w->meta);
    memset(w, 0, sizeof *w);
}

/* st_writer_add's checks and entry, with the tensor's data or its maker. */
static int add_tensor(struct st_writer *w, const char *name, enum dtype dtype, int rank, const int64_t *shape,
                      const void *data, st_make_fn make, void *make_ctx, tune_err *err)
{
    if (!strcmp(name, "__metadata__"))
        return err_set(err, "tensor '__metadata__': the name is reserved for the metadata");
    if ((unsigned)dtype >= DTYPE_COUNT || dtype_bits(dtype) % 8)
        return err_set(err, "tensor '%s': dtype %s has no safetensors name", name,
                       dtype_name(dtype));
    if (rank < 0 || rank > ST_MAX_RANK)
        return err_set(err, "tensor '%s': rank %d is outside [0, %d]", name, rank, ST_MAX_RANK);
    int64_t numel = 1, esize = dtype_bits(dtype) / 8;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0)
            return err_set(err, "tensor '%s': shape[%d] = %lld is negative", name, i,
                           (long long)shape[i]);
        if (shape[i] && numel > INT64_MAX / esize / shape[i])
            return err_set(err, "tensor '%s': the byte size of the shape overflows", name);
        numel *= shape[i];
    }
    if (!data && !make && numel)
        return err_set(err, "tensor '%s': no data", name);
    if (w->n_tensors == w->cap_tensors) {
        int cap = w->cap_tensors ? 2 * w->cap_tensors : 16;
        struct st_writer_tensor *p = realloc(w->tensors, (size_t)cap * sizeof *p);
        if (!p)
            return err_set(err, "tensor '%s': out of memory", name);
        w->tensors = p;
        w->cap_tensors = cap;
    }
    struct st_writer_tensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name)))
        return err_set(err, "tensor '%s': out of memory", name);
    t->dtype = dtype;
    t->rank = rank;
    for (int i = 0; i < rank; i++)
        t->shape[i] = shape[i];
    t->nbytes = numel * esize;
    t->data = data;
    t->make = make;
    t->make_ctx = make_ctx;
    w->n_tensors++;
    return 0;
}

int st_writer_add(struct st_writer *w, const char *name, enum dtype dtype, int rank, const int64_t *shape,
                  const void *data, tune_err *err)
{
    return add_tensor(w, name, dtype, rank, shape, data, NULL, NULL, err);
}

int st_writer_add_made(struct st_writer *w, const char *name, enum dtype dtype, int rank, const int64_t *shape,
                       st_make_fn make, void *ctx, tune_err *err)
{
    return add_tensor(w, name, dtype, rank, shape, NULL, make, ctx, err);
}

int st_writer_set_metadata(struct st_writer *w, const char *key, const char *value, tune_err *err)
{
    char *v = strdup(value);
    if (!v)
        return err_set(err, "__metadata__: '%s': out of memory", key);
    for (int i = 0; i < w->n_meta; i++)
        if (!strcmp(w->meta[i].key, key)) {
            free((char *)w->meta[i].value);
            w->meta[i].value = v;
            return 0;
        }
    if (w->n_meta == w->cap_meta) {
        int cap = w->cap_meta ? 2 * w->cap_meta : 8;
        struct st_meta *p = realloc(w->meta, (size_t)cap * sizeof *p);
        if (!p) {
            free(v);
            return err_set(err, "__metadata__: '%s': out of memory", key);
        }
        w->meta = p;
        w->cap_meta = cap;
    }
    if (!(w->meta[w->n_meta].key = strdup(key))) {
        free(v);
        return err_set(err, "__metadata__: '%s': out of memory", key);
    }
    w->meta[w->n_meta++].value = v;
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const struct st_writer_tensor *const *)a)->name,
                  (*(const struct st_writer_tensor *const *)b)->name);
}

static int cmp_layout(const void *a, const void *b)
{
    const struct st_writer_tensor *x = *(const struct st_writer_tensor *const *)a;
    const struct st_writer_tensor *y = *(const struct st_writer_tensor *const *)b;
    if (ref_order[x->dtype] != ref_order[y->dtype])
        return ref_order[y->dtype] - ref_order[x->dtype];
    return strcmp(x->name, y->name);
}

static int cmp_meta(const void *a, const void *b)
{
    return strcmp((*(const struct st_meta *const *)a)->key,
                  (*(const struct st_meta *const *)b)->key);
}

/* Every tensor of w, sorted by name, after checking no name is used twice.
 * The caller frees the array. */
static const struct st_writer_tensor **writer_by_name(const struct st_writer *w, tune_err *err)
{
    const struct st_writer_tensor **v =
        malloc((w->n_tensors ? (size_t)w->n_tensors : 1) * sizeof *v);
    if (!v) {
        err_set(err, "out of memory for %d tensors", w->n_tensors);
        return NULL;
    }
    for (int i = 0; i < w->n_tensors; i++)
        v[i] = &w->tensors[i];
    qsort(v, (size_t)w->n_tensors, sizeof *v, cmp_name);
    for (int i = 1; i < w->n_tensors; i++)
        if (!strcmp(v[i - 1]->name, v[i]->name)) {
            err_set(err, "tensor '%s': added twice", v[i]->name);
            free(v);
            return NULL;
        }
    return v;
}

/* Writes the n tensors of `list` (reordered in place into the layout order)
 * and w's metadata to path. */
static int write_file(const struct st_writer *w, const struct st_writer_tensor **list, int n,
                      const char *path, tune_err *err)
{
    qsort(list, (size_t)n, sizeof *list, cmp_layout);
    struct strbuf h = {0};
    const struct st_meta **meta = malloc((w->n_meta ? (size_t)w->n_meta : 1) * sizeof *meta);
    if (!meta)
        return err_set(err, "%s: out of memory", path);
    sb_put(&h, "{", 1);
    if (w->n_meta) {
        for (int i = 0; i < w->n_meta; i++)
            meta[i] = &w->meta[i];
        qsort(meta, (size_t)w->n_meta, sizeof *meta, cmp_meta);
        sb_put(&h, "\"__metadata__\":{", 16);
        for (int i = 0; i < w->n_meta; i++) {
            sb_put(&h, ",", i > 0);
            sb_json_string(&h, meta[i]->key);
            sb_put(&h, ":", 1);
            sb_json_string(&h, meta[i]->value);
        }
        sb_put(&h, "}", 1);
    }
    free(meta);
    int64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const struct st_writer_tensor *t = list[i];
        sb_put(&h, ",", i > 0 || w->n_meta > 0);
        sb_json_string(&h, t->name);
        sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", dtype_name(t->dtype));
        for (int d = 0; d < t->rank; d++)
            sb_printf(&h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        sb_printf(&h, "],\"data_offsets\":[%lld,%lld]}", (long long)offset,
                  (long long)(offset + t->nbytes));
        offset += t->nbytes;
    }
    sb_put(&h, "}", 1);
    /* Padding to 8 keeps every tensor aligned to its element size, since data
     * is ordered by alignment and the mapping is page-aligned. */
    while (!h.oom && h.len % 8)
        sb_put(&h, " ", 1);
    int rc = 0;
    struct atomic_file af;
    if (h.oom)
        rc = err_set(err, "%s: out of memory for the header", path);
    else if (h.len > ST_MAX_HEADER_BYTES)
        rc = err_set(err, "%s: header of %zu bytes exceeds the %d-byte limit of readers", path,
                     h.len, ST_MAX_HEADER_BYTES);
    else if ((rc = atomic_file_open(&af, path, err)) == 0) {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++)
            len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
        rc = atomic_file_write(&af, len8, 8, err);
        if (!rc)
            rc = atomic_file_write(&af, h.p, h.len, err);
        for (int i = 0; i < n && !rc; i++) {
            const struct st_writer_tensor *t = list[i];
            void *made = NULL;
            if (t->make && t->make(t->make_ctx, &made, err)) {
                free(made);
                rc = err_prefix(err, "%s: tensor '%s'", path, t->name);
                break;
            }
            rc = atomic_file_write(&af, t->make ? made : t->data, (size_t)t->nbytes, err);
            free(made);
        }
        if (rc)
            atomic_file_abort(&af);
        else
            rc = atomic_file_commit(&af, err);
    }
    free(h.p);
    return rc;
}

int st_writer_write(const struct st_writer *w, const char *path, tune_err *err)
{
    const struct st_writer_tensor **list = writer_by_name(w, err);
    if (!list)
        return err_prefix(err, "%s", path);
    int rc = write_file(w, list, w->n_tensors, path, err);
    free(list);
    return rc;
}

/* Removes from dir the model files an earlier write left there that one of n_shards did not write
 * (model.safetensors, model-*-of-*.safetensors of another count, the index), as transformers'
 * save_pretrained does: else a loader would find two models in one folder. */
static int remove_stale_shards(const char *dir, int n_shards, tune_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return err_set(err, "%s: cannot list: %s", dir, strerror(errno));
    int rc = 0;
    for (struct dirent *e; !rc && (e = readdir(d));) {
        int index, of;
        char tail[2];
        bool shard =
            sscanf(e->d_name, "model-%5d-of-%5d.safetensor%1s", &index, &of, tail) == 3 && !strcmp(tail, "s");
        bool stale = shard ? n_shards <= 1 || of != n_shards
                           : n_shards > 1 ? !strcmp(e->d_name, ST_SINGLE_NAME) : !strcmp(e->d_name, ST_INDEX_NAME);
        if (!stale)
            continue;
        char *path = st_path_join(dir, e->d_name);
        if (!path) {
            rc = err_set(err, "%s: out of memory", dir);
            break;
        }
        if (unlink(path) != 0)
            rc = err_set(err, "%s: cannot remove the earlier write's file: %s", path, strerror(errno));
        free(path);
    }
    closedir(d);
    return rc;
}

int st_writer_write_sharded(const struct st_writer *w, const char *dir, int64_t max_shard_bytes,
                            tune_err *err)
{
    if (max_shard_bytes <= 0)
        return err_set(err, "%s: max shard bytes %lld is not positive", dir,
                       (long long)max_shard_bytes);
    const struct st_writer_tensor **by_name = writer_by_name(w, err);
    if (!by_name)
        return err_prefix(err, "%s", dir);
    const struct st_writer_tensor **list =
        malloc((w->n_tensors ? (size_t)w->n_tensors : 1) * sizeof *list);
    int *shard_of = malloc((w->n_tensors ? (size_t)w->n_tensors : 1) * sizeof *shard_of);
    size_t plen = strlen(dir) + 64;
    char *path = malloc(plen);
    struct strbuf idx = {0};
    int rc = 0;
    if (!list || !shard_of || !path) {
        rc = err_set(err, "%s: out of memory", dir);
        goto out;
    }
    int n_shards = 0;
    int64_t fill = 0, total = 0;
    for (int i = 0; i < w->n_tensors; i++) {
        int64_t nb = w->tensors[i].nbytes;
        if (n_shards == 0 || (fill > 0 && fill + nb > max_shard_bytes)) {
            n_shards++;
            fill = 0;
        }
        fill += nb;
        total += nb;
        shard_of[i] = n_shards - 1;
    }
    if (n_shards <= 1) {
        snprintf(path, plen, "%s/%s", dir, ST_SINGLE_NAME);
        for (int i = 0; i < w->n_tensors; i++)
            list[i] = &w->tensors[i];
        rc = write_file(w, list, w->n_tensors, path, err);
        if (!rc)
            rc = remove_stale_shards(dir, 1, err);
        goto out;
    }
    for (int s = 0; s < n_shards && !rc; s++) {
        int n = 0;
        for (int i = 0; i < w->n_tensors; i++)
            if (shard_of[i] == s)
                list[n++] = &w->tensors[i];
        snprintf(path, plen, "%s/" SHARD_NAME, dir, s + 1, n_shards);
        rc = write_file(w, list, n, path, err);
    }
    if (rc)
        goto out;
    /* The layout of transformers' index (json.dumps, indent 2, sorted keys). */
    sb_printf(&idx, "{\n  \"metadata\": {\n    \"total_size\": %lld\n  },\n  \"weight_map\": {",
              (long long)total);
    for (int i = 0; i < w->n_tensors; i++) {
        sb_put(&idx, i ? ",\n    " : "\n    ", i ? 6 : 5);
        sb_json_string(&idx, by_name[i]->name);
        sb_printf(&idx, ": \"" SHARD_NAME "\"", shard_of[by_name[i] - w->tensors] + 1, n_shards);
    }
    sb_put(&idx, "\n  }\n}\n", 7);
    snprintf(path, plen, "%s/%s", dir, ST_INDEX_NAME);
    rc = idx.oom ? err_set(err, "%s: out of memory", path)
                 : atomic_file_save(path, idx.p, idx.len, err);
    if (!rc)
        rc = remove_stale_shards(dir, n_shards, err);
out:
    free(idx.p);
    free(path);
    free(shard_of);
    free(list);
    free(by_name);
    return rc;
}
