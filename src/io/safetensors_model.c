/* safetensors models: one file or the shards a model.safetensors.index.json
 * lists, opened once each and checked against the index; see safetensors.h. */
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

char *st_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Gathers the tensors of every open shard into m->tensors, sorted by name;
 * a name in two shards is an error. */
static int model_build_table(struct st_model *m, tune_err *err)
{
    int64_t n = 0;
    for (int i = 0; i < m->n_files; i++)
        n += m->files[i].n_tensors;
    m->tensors = malloc((n ? (size_t)n : 1) * sizeof *m->tensors);
    if (!m->tensors)
        return err_set(err, "out of memory for %lld tensors", (long long)n);
    for (int i = 0; i < m->n_files; i++)
        for (int j = 0; j < m->files[i].n_tensors; j++)
            m->tensors[m->n_tensors++] = (struct st_model_tensor){
                m->files[i].tensors[j].name, &m->files[i].tensors[j], &m->files[i]};
    int dup = st_sort_find_dup(m->tensors, m->n_tensors, sizeof *m->tensors);
    if (dup >= 0)
        return st_tensor_err(err, m->tensors[dup].file->path, m->tensors[dup].name, "also in shard %s",
                          m->tensors[dup - 1].file->path);
    return 0;
}

struct index_entry {
    const char *tensor, *shard;
};

/* A shard must be a file in the index's folder: no path into other folders. */
static bool plain_file_name(const char *s)
{
    return *s && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

/* Opens the shards the index names (each once) and checks the weight_map and
 * the shards agree exactly. `index` is the index file's path. */
static int model_open_index(struct st_model *m, const char *index, tune_err *err)
{
    cJSON *root = json_load_file(index, ST_MAX_HEADER_BYTES, err);
    if (!root)
        return -1;
    struct index_entry *ents = NULL;
    const char **shards = NULL;
    char *dir = NULL;
    char nm[ERR_SHOWN_SIZE];
    int rc = 0, n = 0, n_shards = 0;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map"), *c;
    if (!cJSON_IsObject(wm)) {
        rc = err_set(err, "%s: weight_map is missing or not an object", index);
        goto out;
    }
    int count = cJSON_GetArraySize(wm);
    const char *slash = strrchr(index, '/');
    dir = slash ? strndup(index, (size_t)(slash - index) + (slash == index)) : strdup(".");
    ents = malloc((count ? (size_t)count : 1) * sizeof *ents);
    shards = malloc((count ? (size_t)count : 1) * sizeof *shards);
    if (!dir || !ents || !shards) {
        rc = err_set(err, "%s: out of memory", index);
        goto out;
    }
    cJSON_ArrayForEach(c, wm)
    {
        if (!cJSON_IsString(c) || !plain_file_name(c->valuestring)) {
            rc = err_set(err, "%s: weight_map: tensor '%s': shard is not a file name in the folder",
                         index, err_shown(nm, c->string));
            goto out;
        }
        ents[n++] = (struct index_entry){c->string, c->valuestring};
        shards[n_shards++] = c->valuestring;
    }
    int dup = st_sort_find_dup(ents, n, sizeof *ents), u = 0;
    if (dup >= 0) {
        rc = err_set(err, "%s: weight_map: tensor '%s' is listed twice", index,
                     err_shown(nm, ents[dup].tensor));
        goto out;
    }
    st_sort_find_dup(shards, n_shards, sizeof *shards); /* then keep one of each */
    for (int i = 0; i < n_shards; i++)
        if (!u || strcmp(shards[u - 1], shards[i]))
            shards[u++] = shards[i];
    n_shards = u;

    m->files = calloc(n_shards ? (size_t)n_shards : 1, sizeof *m->files);
    if (!m->files) {
        rc = err_set(err, "%s: out of memory", index);
        goto out;
    }
    for (int i = 0; i < n_shards; i++) {
        char *p = st_path_join(dir, shards[i]);
        if (!p) {
            rc = err_set(err, "%s: out of memory", index);
            goto out;
        }
        rc = st_file_open(&m->files[i], p, err);
        free(p);
        if (rc) {
            err_prefix(err, "%s: shard '%s'", index, shards[i]);
            goto out;
        }
        m->n_files++;
    }
    if ((rc = model_build_table(m, err)) != 0)
        goto out;
    for (int i = 0; i < n; i++) {
        const struct st_file *f = NULL;
        const struct st_tensor *t = st_model_find(m, ents[i].tensor, &f);
        const char *const *s = st_find_name(shards, n_shards, sizeof *shards, ents[i].shard);
        if (!t) {
            rc = err_set(err, "%s: weight_map: tensor '%s' is not in shard '%s'", index,
                         err_shown(nm, ents[i].tensor), ents[i].shard);
            goto out;
        }
        if (f != &m->files[s - shards]) {
            rc = err_set(err, "%s: weight_map: tensor '%s' is in %s, not in shard '%s'", index,
                         err_shown(nm, ents[i].tensor), f->path, ents[i].shard);
            goto out;
        }
    }
    /* Every entry matched a distinct tensor, so a surplus is a tensor the
     * weight_map leaves out: the first where the two sorted lists part. */
    if (m->n_tensors != n) {
        int i = 0;
        while (i < n && !strcmp(m->tensors[i].name, ents[i].tensor))
            i++;
        rc = st_tensor_err(err, m->tensors[i].file->path, m->tensors[i].name,
                        "not in the weight_map of %s", index);
    }
out:
    free(ents);
    free(shards);
    free(dir);
    cJSON_Delete(root);
    return rc;
}

static int model_open_single(struct st_model *m, const char *path, tune_err *err)
{
    if (!(m->files = calloc(1, sizeof *m->files)))
        return err_set(err, "%s: out of memory", path);
    if (st_file_open(&m->files[0], path, err) != 0)
        return -1;
    m->n_files = 1;
    return model_build_table(m, err);
}

/* Whether folder dir holds transformers' older pickle weights (one file or shards and their index). */
static bool pickle_weights(const char *dir)
{
    static const char *const names[] = {"pytorch_model.bin", "pytorch_model.bin.index.json"};
    for (int i = 0; i < 2; i++) {
        char *p = st_path_join(dir, names[i]);
        bool there = p && access(p, F_OK) == 0;
        free(p);
        if (there)
            return true;
    }
    return false;
}

int st_model_open(struct st_model *m, const char *path, tune_err *err)
{
    memset(m, 0, sizeof *m);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return err_set(err, "%s: cannot open: %s", path, strerror(errno));
    char *index = NULL, *single = NULL;
    const char *use_index = NULL, *use_file = path;
    size_t len = strlen(path);
    int rc = 0;
    if (S_ISDIR(sb.st_mode)) {
        index = st_path_join(path, ST_INDEX_NAME);
        single = st_path_join(path, ST_SINGLE_NAME);
        if (!index || !single)
            rc = err_set(err, "%s: out of memory", path);
        else if (access(index, F_OK) == 0)
            use_index = index;
        else if (access(single, F_OK) == 0)
            use_file = single;
        else if (pickle_weights(path))
            rc = err_set(err, "%s: holds PyTorch pickle weights (pytorch_model.bin), which tune does not read "
                         "(loading one can run code): save the model with safetensors (transformers' "
                         "save_pretrained does by default)", path);
        else
            rc = err_set(err, "%s: holds neither %s nor %s", path, ST_INDEX_NAME, ST_SINGLE_NAME);
    } else if (len >= 5 && !strcmp(path + len - 5, ".json")) {
        use_index = path;
    }
    if (!rc)
        rc = use_index ? model_open_index(m, use_index, err) : model_open_single(m, use_file, err);
    free(index);
    free(single);
    if (rc)
        st_model_close(m);
    return rc;
}

void st_model_close(struct st_model *m)
{
    for (int i = 0; i < m->n_files; i++)
        st_file_close(&m->files[i]);
    free(m->files);
    free(m->tensors);
    memset(m, 0, sizeof *m);
}

const struct st_tensor *st_model_find(const struct st_model *m, const char *name,
                                      const struct st_file **file)
{
    const struct st_model_tensor *e = st_find_name(m->tensors, m->n_tensors, sizeof *m->tensors, name);
    if (file)
        *file = e ? e->file : NULL;
    return e ? e->tensor : NULL;
}

int st_model_find_mxfp4(const struct st_model *m, const char *base, const struct st_tensor **blocks,
                        const struct st_tensor **scales, tune_err *err)
{
    char bn[512], sn[512], nm[ERR_SHOWN_SIZE], bs[160], ss[160];
    if (snprintf(bn, sizeof bn, "%s_blocks", base) >= (int)sizeof bn ||
        snprintf(sn, sizeof sn, "%s_scales", base) >= (int)sizeof sn)
        return err_set(err, "MXFP4 weight '%s': name too long", err_shown(nm, base));
    const struct st_file *fb, *fs;
    const struct st_tensor *b = st_model_find(m, bn, &fb), *s = st_model_find(m, sn, &fs);
    if (!b || !s)
        return err_set(err, "MXFP4 weight '%s': tensor '%s' not found", err_shown(nm, base),
                       !b ? bn : sn);
    const struct st_tensor *not_u8 = b->dtype != DTYPE_U8 ? b : s->dtype != DTYPE_U8 ? s : NULL;
    if (not_u8)
        return st_tensor_err(err, (not_u8 == b ? fb : fs)->path, not_u8->name,
                          "MXFP4 blocks and scales must be U8, not %s", dtype_name(not_u8->dtype));
    bool ok = s->rank >= 1 && b->rank == s->rank + 1 && b->shape[s->rank] == 16 &&
              !memcmp(b->shape, s->shape, (size_t)s->rank * sizeof *s->shape);
    if (!ok) {
        st_shape_format(bs, sizeof bs, b->rank, b->shape);
        st_shape_format(ss, sizeof ss, s->rank, s->shape);
        return st_tensor_err(err, fb->path, b->name, "shape %s is not that of '%s' %s + [16]", bs,
                          s->name, ss);
    }
    *blocks = b;
    *scales = s;
    return 0;
}
