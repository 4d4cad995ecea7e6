/* Checkpoints: OUTPUT/checkpoint-N/ holds the adapter (PEFT layout; the whole
 * model under full fine-tuning), the
 * optimizer states (optimizer.safetensors, one tensor per plan buffer
 * instance) and trainer_state.json (step, data position, seed). The scheduler
 * is a function of the step and every random draw is keyed by (seed, step),
 * so nothing else is needed to resume exactly. The directory is built under a
 * temporary name and renamed into place: a kill at any moment leaves the
 * previous checkpoint as it was. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/atomic_file.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "model/peft.h"
#include "train/metrics.h"
#include "train/trainer.h"

static int unlink_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int remove_tree(const char *path)
{
    return nftw(path, unlink_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int save_optimizer(const struct trainer *t, const char *path, tune_err *err)
{
    const struct mem_plan *p = &t->m->plan;
    struct st_writer w;
    st_writer_init(&w);
    int n = 0;
    for (int i = 0; i < p->n; i++)
        n += p->buf[i].category == PLAN_OPTIMIZER ? (int)p->buf[i].count : 0;
    char (*names)[160] = calloc((size_t)(n ? n : 1), sizeof *names);
    void **host = calloc((size_t)(n ? n : 1), sizeof *host);
    int rc = names && host ? 0 : err_set(err, "out of memory");
    int k = 0;
    for (int i = 0; !rc && i < p->n; i++) {
        const struct plan_buffer *b = &p->buf[i];
        for (int64_t inst = 0; !rc && b->category == PLAN_OPTIMIZER && inst < b->count; inst++, k++) {
            size_t bytes = (size_t)dtype_bytes(b->dtype, b->elems);
            snprintf(names[k], sizeof names[k], "%s.%lld", b->name, (long long)inst);
            if (!(host[k] = malloc(bytes))) {
                rc = err_set(err, "out of memory");
                break;
            }
            t->m->be->download(t->m->be, host[k], plan_arena_at(&t->m->arena, b->name, inst), bytes);
            int64_t shape[1] = {b->elems};
            rc = st_writer_add(&w, names[k], b->dtype, 1, shape, host[k], err);
        }
    }
    if (!rc)
        rc = st_writer_write(&w, path, err);
    st_writer_free(&w);
    for (int j = 0; host && j < n; j++)
        free(host[j]);
    free(host);
    free(names);
    return rc;
}

static int save_state(const struct trainer *t, const char *path, tune_err *err)
{
    char text[1024];
    int n = snprintf(text, sizeof text,
                     "{\n  \"format\": \"tune-checkpoint-1\",\n  \"global_step\": %lld,\n  \"epoch\": %lld,\n"
                     "  \"batch_index\": %lld,\n  \"total_steps\": %lld,\n  \"seed\": %llu,\n"
                     "  \"last_loss\": %.17g\n}\n",
                     (long long)t->step, (long long)t->epoch, (long long)t->index, (long long)t->total_steps,
                     (unsigned long long)t->cfg.seed, t->last_loss);
    return atomic_file_save(path, text, (size_t)n, err);
}

/* checkpoint-N directories of dir, sorted by N; returns how many (at most max). */
static int list_checkpoints(const char *dir, int64_t *steps, int max)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        char *end;
        if (strncmp(e->d_name, "checkpoint-", 11))
            continue;
        long long s = strtoll(e->d_name + 11, &end, 10);
        if (*end == 0 && end != e->d_name + 11)
            steps[n++] = s;
    }
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && steps[j - 1] > steps[j]; j--) {
            int64_t x = steps[j];
            steps[j] = steps[j - 1];
            steps[j - 1] = x;
        }
    return n;
}

int trainer_last_checkpoint(const char *dir, char *path, size_t size)
{
    int64_t steps[4096];
    int n = list_checkpoints(dir, steps, 4096);
    if (n)
        snprintf(path, size, "%s/checkpoint-%lld", dir, (long long)steps[n - 1]);
    return n > 0;
}

int trainer_save_checkpoint(struct trainer *t, const struct batch_stream *train, tune_err *err)
{
    (void)train;
    const char *out = t->cfg.output_dir;
    char tmp[4096], final[4096], path[4200], old[4200];
    snprintf(tmp, sizeof tmp, "%s/.checkpoint-%lld.tmp", out, (long long)t->step);
    snprintf(final, sizeof final, "%s/checkpoint-%lld", out, (long long)t->step);
    remove_tree(tmp); /* left by a run killed while saving */
    if (mkdir(tmp, 0755) != 0)
        return err_set(err, "%s: cannot create: %s", tmp, strerror(errno));
    snprintf(path, sizeof path, "%s/optimizer.safetensors", tmp);
    int rc = trainer_save_model(t, tmp, err) || save_optimizer(t, path, err);
    snprintf(path, sizeof path, "%s/trainer_state.json", tmp);
    rc = rc || save_state(t, path, err);
    if (rc) {
        remove_tree(tmp);
        return -1;
    }
    /* A checkpoint of the same step from an earlier, interrupted run is replaced. */
    snprintf(old, sizeof old, "%s/.checkpoint-%lld.old", out, (long long)t->step);
    bool had = access(final, F_OK) == 0;
    if (had && rename(final, old) != 0)
        return err_set(err, "%s: cannot move aside: %s", final, strerror(errno));
    if (rename(tmp, final) != 0)
        return err_set(err, "%s: cannot rename into place: %s", final, strerror(errno));
    fsync_dir(out);
    if (had)
        remove_tree(old);
    if (t->cfg.save_total_limit > 0) {
        int64_t steps[4096];
        int n = list_checkpoints(out, steps, 4096);
        for (int i = 0; i + t->cfg.save_total_limit < n; i++) {
            /* Renamed out of sight first: a kill while deleting leaves no half checkpoint. */
            snprintf(path, sizeof path, "%s/checkpoint-%lld", out, (long long)steps[i]);
            snprintf(old, sizeof old, "%s/.checkpoint-%lld.pruned", out, (long long)steps[i]);
            remove_tree(old);
            if (rename(path, old) == 0)
                remove_tree(old);
        }
    }
    return 0;
}

static int load_optimizer(struct trainer *t, const char *path, tune_err *err)
{
    struct st_file f;
    if (st_file_open(&f, path, err))
        return -1;
    const struct mem_plan *p = &t->m->plan;
    char name[200];
    int rc = 0;
    for (int i = 0; !rc && i < p->n; i++) {
        const struct plan_buffer *b = &p->buf[i];
        for (int64_t inst = 0; !rc && b->category == PLAN_OPTIMIZER && inst < b->count; inst++) {
            snprintf(name, sizeof name, "%s.%lld", b->name, (long long)inst);
            const struct st_tensor *st = st_file_find(&f, name);
            if (!st || st->dtype != b->dtype || st->nbytes != dtype_bytes(b->dtype, b->elems))
                rc = err_set(err, "%s: tensor '%s' is missing or not %s [%lld]: the checkpoint is of another run",
                             path, name, dtype_name(b->dtype), (long long)b->elems);
            else
                t->m->be->upload(t->m->be, plan_arena_at(&t->m->arena, b->name, inst), st->data, (size_t)st->nbytes);
        }
    }
    st_file_close(&f);
    return rc;
}

int trainer_resume(struct trainer *t, const char *dir, tune_err *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    cJSON *s = json_load_file(path, 1 << 20, err);
    if (!s)
        return -1;
    char format[64] = "";
    int64_t seed = 0;
    int rc = json_get_string(s, "format", true, format, sizeof format, err) ||
             json_get_int(s, "global_step", true, 0, INT64_MAX / 2, &t->step, err) ||
             json_get_int(s, "epoch", true, 0, INT64_MAX / 2, &t->epoch, err) ||
             json_get_int(s, "batch_index", true, 0, INT64_MAX / 2, &t->index, err) ||
             json_get_int(s, "seed", true, 0, INT64_MAX, &seed, err);
    cJSON_Delete(s);
    if (rc)
        return err_prefix(err, "%s", path);
    if (strcmp(format, "tune-checkpoint-1"))
        return err_set(err, "%s: format '%s' is not a tune checkpoint this version reads", path, format);
    if ((uint64_t)seed != t->cfg.seed)
        return err_set(err, "%s: seed %lld differs from the run's %llu", path, (long long)seed,
                       (unsigned long long)t->cfg.seed);
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    return trainer_load_model(t, dir, err) || load_optimizer(t, path, err) ? -1 : 0;
}
