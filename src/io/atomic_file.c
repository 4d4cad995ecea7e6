/* Atomic file replacement through a temporary file and rename(2); see
 * atomic_file.h. The temporary file lives next to the destination because
 * rename is only atomic within one file system. */
#include "io/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void atomic_file_release(struct atomic_file *af)
{
    free(af->path);
    free(af->tmp_path);
    af->path = af->tmp_path = NULL;
    af->fd = -1;
}

int atomic_file_open(struct atomic_file *af, const char *path, tune_err *err)
{
    size_t len = strlen(path);
    af->fd = -1;
    af->path = malloc(len + 1);
    af->tmp_path = malloc(len + sizeof ".tmp-XXXXXX");
    if (!af->path || !af->tmp_path) {
        atomic_file_release(af);
        return err_set(err, "%s: out of memory", path);
    }
    memcpy(af->path, path, len + 1);
    snprintf(af->tmp_path, len + sizeof ".tmp-XXXXXX", "%s.tmp-XXXXXX", path);
    af->fd = mkstemp(af->tmp_path);
    if (af->fd < 0) {
        int e = errno;
        atomic_file_release(af);
        return err_set(err, "%s: cannot create a temporary file beside it: %s", path, strerror(e));
    }
    /* mkstemp makes the file private (0600); the files we write (weights,
     * adapters, JSON) are meant to be read like any other output. */
    if (fchmod(af->fd, 0644) != 0) {
        int e = errno;
        atomic_file_abort(af);
        return err_set(err, "%s: cannot set the mode of the temporary file: %s", path, strerror(e));
    }
    return 0;
}

int atomic_file_write(struct atomic_file *af, const void *buf, size_t n, tune_err *err)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(af->fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return err_set(err, "%s: write failed: %s", af->path, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync of the directory makes the rename itself durable: without it a power
 * loss can bring back the old name even though the data was flushed. */
static int fsync_parent_dir(const char *path, tune_err *err)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return err_set(err, "%s: out of memory", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    int rc = 0;
    if (fd < 0 || fsync(fd) != 0)
        rc = err_set(err, "%s: cannot flush directory %s: %s", path, dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(dir);
    return rc;
}

int atomic_file_commit(struct atomic_file *af, tune_err *err)
{
    if (fsync(af->fd) != 0) {
        err_set(err, "%s: fsync failed: %s", af->path, strerror(errno));
        atomic_file_abort(af);
        return -1;
    }
    int rc = close(af->fd);
    af->fd = -1;
    if (rc != 0) {
        err_set(err, "%s: close failed: %s", af->path, strerror(errno));
        atomic_file_abort(af);
        return -1;
    }
    if (rename(af->tmp_path, af->path) != 0) {
        err_set(err, "%s: cannot rename %s over it: %s", af->path, af->tmp_path, strerror(errno));
        atomic_file_abort(af);
        return -1;
    }
    rc = fsync_parent_dir(af->path, err);
    atomic_file_release(af);
    return rc;
}

void atomic_file_abort(struct atomic_file *af)
{
    if (af->fd >= 0)
        close(af->fd);
    if (af->tmp_path)
        unlink(af->tmp_path);
    atomic_file_release(af);
}

int atomic_file_save(const char *path, const void *buf, size_t n, tune_err *err)
{
    struct atomic_file af;
    if (atomic_file_open(&af, path, err) != 0)
        return -1;
    if (atomic_file_write(&af, buf, n, err) != 0) {
        atomic_file_abort(&af);
        return -1;
    }
    return atomic_file_commit(&af, err);
}

int atomic_file_copy_if_exists(const char *dir, const char *out, const char *name, tune_err *err)
{
    char src[4096], dst[4096];
    snprintf(src, sizeof src, "%s/%s", dir, name);
    snprintf(dst, sizeof dst, "%s/%s", out, name);
    FILE *f = fopen(src, "rb");
    if (!f)
        return errno == ENOENT ? 0 : err_set(err, "%s: cannot read: %s", src, strerror(errno));
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    char chunk[65536];
    size_t n;
    while (mem && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, mem);
    int bad = ferror(f);
    fclose(f);
    if (mem)
        fclose(mem);
    int rc = bad || !mem ? err_set(err, "%s: read failed", src) : atomic_file_save(dst, buf, len, err);
    free(buf);
    return rc;
}

int atomic_file_copy_model_files(const char *src_dir, const char *dst_dir, tune_err *err)
{
    static const char *const files[] = {"config.json", "generation_config.json", "tokenizer.json",
                                        "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++)
        if (atomic_file_copy_if_exists(src_dir, dst_dir, files[k], err))
            return -1;
    return 0;
}
