/* safetensors: reading (mmap, every header field validated before use),
 * sharded models (model.safetensors.index.json), and writing (atomic files).
 *
 * The validation follows the reference Rust implementation (huggingface/
 * safetensors, tensor.rs): header length <= 100,000,000 bytes, a UTF-8 JSON
 * object, and tensors that, sorted by data_offsets, tile the data section from
 * byte 0 to its end with no hole, no overlap and no trailing byte. A file that
 * passes can be read through st_tensor.data without further checks.
 *
 * Layout of a file: u64 little-endian N | N bytes of JSON header | data section.
 */
#ifndef TUNE_IO_SAFETENSORS_H
#define TUNE_IO_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/error.h"

#define ST_MAX_RANK 8
#define ST_MAX_HEADER_BYTES 100000000 /* the reference implementation's limit */
#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"

struct st_tensor {
    const char *name;           /* owned by the st_file; first, the sorts rely on it */
    enum dtype dtype;           /* a whole-byte type: F64..U8, never NF4/MXFP4 */
    int rank;                   /* 0 (scalar) .. ST_MAX_RANK */
    int64_t shape[ST_MAX_RANK]; /* shape[0..rank) */
    int64_t nbytes;             /* product(shape) * element size */
    int64_t file_offset;        /* of the first byte, from the start of the file */
    /* nbytes of read-only data inside the mapping. Aligned to the element size
     * when the writer padded the header to 8 bytes (Python's package and ours
     * do); other writers may leave it unaligned, so check before casting. */
    const void *data;
};

struct st_meta {
    const char *key, *value; /* owned by the st_file or st_writer */
};

struct st_file {
    char *path;           /* as given to open, or the memory origin */
    const uint8_t *bytes; /* the whole file: [size] */
    size_t size;
    bool mapped; /* bytes is our mmap, unmapped by close */
    int n_tensors;
    struct st_tensor *tensors; /* [n_tensors], sorted by name (strcmp) */
    int n_meta;
    struct st_meta *meta; /* [n_meta] from __metadata__, sorted by key */
};

/* Maps `path` read-only and validates it. On failure f needs no close and err
 * names the file, the tensor and the problem in one line. The mapping stays
 * valid until st_file_close; truncating the file meanwhile is undefined (the
 * kernel raises SIGBUS), as with every mmap reader. */
int st_file_open(struct st_file *f, const char *path, tune_err *err);

/* Same validation over bytes already in memory, which are borrowed, not
 * copied, and must outlive f. `origin` names the buffer in errors. */
int st_file_open_memory(struct st_file *f, const void *bytes, size_t size, const char *origin,
                        tune_err *err);

/* Releases what open allocated and unmaps the file. Safe on a zeroed f. */
void st_file_close(struct st_file *f);

/* The tensor called `name`, or NULL. Binary search: O(log n_tensors). */
const struct st_tensor *st_file_find(const struct st_file *f, const char *name);

/* The __metadata__ value for `key`, or NULL. */
const char *st_file_metadata(const struct st_file *f, const char *key);

/* ---- models: one file, or shards listed by an index ---- */

struct st_model_tensor {
    const char *name; /* tensor->name; first, for sorting */
    const struct st_tensor *tensor;
    const struct st_file *file; /* the shard holding it, for errors and paths */
};

struct st_model {
    int n_files;
    struct st_file *files; /* [n_files], each shard opened once */
    int n_tensors;
    struct st_model_tensor *tensors; /* [n_tensors] of all shards, sorted by name */
};

/* Opens a model. `path` is a folder (holding model.safetensors.index.json, else
 * model.safetensors), an index .json file, or one .safetensors file. With an
 * index, the weight_map and the shards must agree exactly: every listed tensor
 * is in the named shard, every tensor of a shard is listed, no tensor is in two
 * shards, shard names are plain file names in the index's folder. The index's
 * "metadata" is not read. On failure m needs no close. */
int st_model_open(struct st_model *m, const char *path, tune_err *err);

/* Closes every shard. Safe on a zeroed m. */
void st_model_close(struct st_model *m);

/* The tensor called `name` in any shard, or NULL; *file (if file is not NULL)
 * gets its shard. */
const struct st_tensor *st_model_find(const struct st_model *m, const char *name,
                                      const struct st_file **file);

/* gpt-oss MXFP4 weights: `<base>_blocks` U8 [..., n_blocks, 16] (32 FP4 values
 * per 16 bytes) and `<base>_scales` U8 [..., n_blocks] (one E8M0 exponent per
 * block). Finds both and checks dtypes and that blocks.shape == scales.shape +
 * [16]. Does not dequantize. */
int st_model_find_mxfp4(const struct st_model *m, const char *base, const struct st_tensor **blocks,
                        const struct st_tensor **scales, tune_err *err);

/* ---- writing ---- */

/* Makes a tensor's bytes when the writer reaches it (st_writer_add_made):
 * *data gets its nbytes, malloc'd, which the writer frees once they are
 * written; so a writer of made tensors holds one of them at a time. */
typedef int (*st_make_fn)(void *ctx, void **data, tune_err *err);

struct st_writer_tensor {
    char *name;
    enum dtype dtype;
    int rank;
    int64_t shape[ST_MAX_RANK];
    int64_t nbytes;
    const void *data; /* borrowed: must stay valid until the last write; NULL when made */
    st_make_fn make;  /* or made, by make(make_ctx, ...) */
    void *make_ctx;
};

struct st_writer {
    int n_tensors, cap_tensors;
    struct st_writer_tensor *tensors; /* in the order added */
    int n_meta, cap_meta;
    struct st_meta *meta; /* in the order set; written sorted by key */
};

void st_writer_init(struct st_writer *w);
void st_writer_free(struct st_writer *w);

/* Adds a tensor of shape[0..rank), whose nbytes = product(shape) * element
 * size are read from `data` at write time (not copied now). Checks the dtype is
 * storable, rank <= ST_MAX_RANK, dims >= 0 and no overflow; duplicate names are
 * found by the write. */
int st_writer_add(struct st_writer *w, const char *name, enum dtype dtype, int rank,
                  const int64_t *shape, const void *data, tune_err *err);

/* The same for a tensor whose bytes make(ctx, ...) gives when it is written
 * (ctx must stay valid until then). */
int st_writer_add_made(struct st_writer *w, const char *name, enum dtype dtype, int rank, const int64_t *shape,
                       st_make_fn make, void *ctx, tune_err *err);

/* Sets a __metadata__ entry (copied), replacing an earlier value of the key. */
int st_writer_set_metadata(struct st_writer *w, const char *key, const char *value, tune_err *err);

/* Writes every tensor to `path` through atomic_file: the previous file stays
 * intact until the new one is complete on disk. The layout is the reference
 * writer's (data ordered by element alignment then name, header padded with
 * spaces to a multiple of 8), so tensors are aligned and, with at most one
 * metadata key, the bytes equal those of Python's safetensors. */
int st_writer_write(const struct st_writer *w, const char *path, tune_err *err);

/* Writes shards of at most max_shard_bytes of tensor data each (a larger
 * tensor gets a shard of its own), filled in the order tensors were added, as
 * dir/model-0000i-of-0000n.safetensors plus dir/model.safetensors.index.json
 * (written last), like transformers. When everything fits in one shard it
 * writes dir/model.safetensors alone. Each file is atomic; the set is not.
 * Then the model files of an earlier write to dir that this one did not
 * write (a lone model.safetensors, shards of another count, the index) are
 * removed, as transformers' save_pretrained does. */
int st_writer_write_sharded(const struct st_writer *w, const char *dir, int64_t max_shard_bytes,
                            tune_err *err);

#endif
