/* Loading a Hugging Face Llama-family checkpoint into the plan's weight
 * buffers, and saving them back (full fine-tuning). Every tensor the
 * architecture needs must be present with its exact shape in a float dtype;
 * anything else is an error naming the tensor. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model/experts_load.h"
#include "model/llama.h"

static int load_one(struct llama *m, const struct st_model *st, const char *name, struct tensor *dst, int64_t rows,
                    int64_t cols, tune_err *err)
{
    const struct st_file *file;
    const struct st_tensor *t = st_model_find(st, name, &file);
    if (!t)
        return err_set(err, "%s: missing tensor '%s'", m->spec->name, name);
    int64_t numel = 1;
    for (int d = 0; d < t->rank; d++)
        numel *= t->shape[d];
    bool shape_ok = cols == 1 ? (t->rank == 1 && t->shape[0] == rows)
                              : (t->rank == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!shape_ok) {
        char want[64];
        if (cols == 1)
            snprintf(want, sizeof want, "[%lld]", (long long)rows);
        else
            snprintf(want, sizeof want, "[%lld, %lld]", (long long)rows, (long long)cols);
        return err_set(err, "%s: tensor '%s' has %d dims (%lld elements), expected %s", file->path, name, t->rank,
                       (long long)numel, want);
    }
    if (t->dtype != DTYPE_F32 && t->dtype != DTYPE_F16 && t->dtype != DTYPE_BF16)
        return err_set(err, "%s: tensor '%s' is %s; tune reads F32, F16 and BF16 weights here", file->path, name,
                       dtype_name(t->dtype));
    return llama_upload(llama_holder(m, dst->data), dst, t->data, t->dtype, numel, err) ? err_prefix(err, "'%s'", name)
                                                                                        : 0;
}

int llama_upload(struct backend *be, struct tensor *dst, const void *host, enum dtype from, int64_t numel,
                 tune_err *err)
{
    size_t bytes = (size_t)dtype_bytes(dst->dtype, numel);
    if (from == dst->dtype) {
        be->upload(be, dst->data, host, bytes);
        return 0;
    }
    void *converted = malloc(bytes);
    if (!converted)
        return err_set(err, "out of memory converting %lld values to %s", (long long)numel, dtype_name(dst->dtype));
    struct tensor src = tensor_1d((void *)host, from, numel), h = tensor_1d(converted, dst->dtype, numel);
    struct backend *cpu = backend_cpu();
    cpu->convert(cpu, &h, &src);
    be->upload(be, dst->data, converted, bytes);
    free(converted);
    return 0;
}

int llama_download_f32(struct backend *be, float *host, const struct tensor *t, tune_err *err)
{
    int64_t n = tensor_numel(t);
    if (t->dtype == DTYPE_F32) {
        be->download(be, host, t->data, sizeof(float) * (size_t)n);
        return 0;
    }
    size_t bytes = (size_t)dtype_bytes(t->dtype, n);
    void *raw = malloc(bytes);
    if (!raw)
        return err_set(err, "out of memory converting %lld values from %s", (long long)n, dtype_name(t->dtype));
    be->download(be, raw, t->data, bytes);
    struct tensor src = tensor_1d(raw, t->dtype, n), dst = tensor_1d(host, DTYPE_F32, n);
    struct backend *cpu = backend_cpu();
    cpu->convert(cpu, &dst, &src);
    free(raw);
    return 0;
}

int llama_load_weights(struct llama *m, const char *model_dir, tune_err *err)
{
    struct st_model st;
    if (st_model_open(&st, model_dir, err))
        return -1;
    const struct model_spec *s = m->spec;
    int64_t C = s->hidden;
    char name[192];
    int rc = load_one(m, &st, "model.embed_tokens.weight", &m->embed, s->vocab, C, err) ||
             load_one(m, &st, "model.norm.weight", &m->norm, C, 1, err) ||
             (!s->tie_embeddings && load_one(m, &st, "lm_head.weight", &m->head, s->vocab, C, err));
    for (int64_t l = 0; !rc && l < s->layers; l++) {
        struct llama_layer *ly = &m->layers[l];
        for (int i = 0; !rc && i < LAYOUT_MAX_LINEARS && m->lin[i].module; i++) {
            if (m->lin[i].component == COMPONENT_EXPERTS) {
                rc = experts_load(m, &st, l, i, err);
                continue;
            }
            snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l, m->lin[i].module);
            rc = load_one(m, &st, name, &ly->w[i], m->lin[i].out, m->lin[i].in, err);
            if (!rc && ly->bias[i].data) {
                snprintf(name, sizeof name, "model.layers.%lld.%s.bias", (long long)l, m->lin[i].module);
                rc = load_one(m, &st, name, &ly->bias[i], m->lin[i].out, 1, err);
            }
        }
        snprintf(name, sizeof name, "model.layers.%lld.input_layernorm.weight", (long long)l);
        rc = rc || load_one(m, &st, name, &ly->ln_attn, C, 1, err);
        snprintf(name, sizeof name, "model.layers.%lld.post_attention_layernorm.weight", (long long)l);
        rc = rc || load_one(m, &st, name, &ly->ln_mlp, C, 1, err);
        snprintf(name, sizeof name, "model.layers.%lld.self_attn.sinks", (long long)l);
        rc = rc || (ly->sinks.data && load_one(m, &st, name, &ly->sinks, s->heads, 1, err));
    }
    st_model_close(&st);
    if (rc)
        return -1;
    llama_init_masters(m);
    return 0;
}

/* Full fine-tuning's output: the working weights under transformers' names,
 * fp32, one file (sharding as merge does is left for models that need it). */
int llama_save_weights(const struct llama *m, const char *dir, const char *base_dir, tune_err *err)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return err_set(err, "%s: cannot create: %s", dir, strerror(errno));
    const struct model_spec *s = m->spec;
    int64_t n_max = 3 + s->layers * (2 * LAYOUT_MAX_LINEARS + 2);
    char (*names)[192] = calloc((size_t)n_max, sizeof *names);
    void **host = calloc((size_t)n_max, sizeof *host);
    const struct tensor **tensors = calloc((size_t)n_max, sizeof *tensors);
    int64_t n = 0;
    int rc = names && host && tensors ? 0 : err_set(err, "out of memory");
#define ADD(t, ...) (snprintf(names[n], sizeof names[n], __VA_ARGS__), tensors[n++] = (t))
    if (!rc) {
        ADD(&m->embed, "model.embed_tokens.weight");
        ADD(&m->norm, "model.norm.weight");
        if (!s->tie_embeddings)
            ADD(&m->head, "lm_head.weight");
        for (int64_t l = 0; l < s->layers; l++) {
            const struct llama_layer *ly = &m->layers[l];
            for (int i = 0; i < LAYOUT_MAX_LINEARS && m->lin[i].module; i++) {
                ADD(&ly->w[i], "model.layers.%lld.%s.weight", (long long)l, m->lin[i].module);
                if (ly->bias[i].data)
                    ADD(&ly->bias[i], "model.layers.%lld.%s.bias", (long long)l, m->lin[i].module);
            }
            ADD(&ly->ln_attn, "model.layers.%lld.input_layernorm.weight", (long long)l);
            ADD(&ly->ln_mlp, "model.layers.%lld.post_attention_layernorm.weight", (long long)l);
        }
    }
#undef ADD
    struct st_writer w;
    st_writer_init(&w);
    struct backend *cpu = backend_cpu();
    for (int64_t k = 0; !rc && k < n; k++) {
        const struct tensor *t = tensors[k];
        int64_t numel = tensor_numel(t);
        void *raw = malloc((size_t)dtype_bytes(t->dtype, numel));
        host[k] = malloc(sizeof(float) * (size_t)numel);
        if (!raw || !host[k]) {
            free(raw);
            rc = err_set(err, "out of memory");
            break;
        }
        struct backend *holder = llama_holder(m, t->data);
        holder->download(holder, raw, t->data, (size_t)dtype_bytes(t->dtype, numel));
        struct tensor src = tensor_1d(raw, t->dtype, numel), dst = tensor_1d(host[k], DTYPE_F32, numel);
        cpu->convert(cpu, &dst, &src);
        free(raw);
        bool vector = t->rank == 1 || t->shape[1] == 1; /* norms and biases: 1-D, as transformers saves them */
        int64_t shape[2] = {t->shape[0], vector ? 1 : t->shape[1]};
        rc = st_writer_add(&w, names[k], DTYPE_F32, vector ? 1 : 2, shape, host[k], err);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!rc)
        rc = st_writer_set_metadata(&w, "format", "pt", err) || st_writer_write(&w, path, err) ||
             atomic_file_copy_model_files(base_dir, dir, err);
    st_writer_free(&w);
    for (int64_t k = 0; host && k < n; k++)
        free(host[k]);
    free(host);
    free(names);
    free(tensors);
    return rc ? -1 : 0;
}
