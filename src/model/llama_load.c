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

/* One tensor of the saved file: a working tensor, and for gpt-oss's experts
 * the stacked linear it belongs to (its weight is turned, its bias shaped). */
struct saved {
    char name[192];
    const struct tensor *t;
    const struct linear_shape *experts;
    bool bias;
};

/* Full fine-tuning's output: the working weights under transformers' names,
 * fp32, one file (sharding as merge does is left for models that need it).
 * gpt-oss's experts go back to transformers' layout: gate_up_proj [E, C, 2I]
 * and down_proj [E, I, C] (the plan holds them [E, out, in]), their biases
 * gate_up_proj_bias [E, 2I] and down_proj_bias [E, C]. */
int llama_save_weights(const struct llama *m, const char *dir, const char *base_dir, tune_err *err)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return err_set(err, "%s: cannot create: %s", dir, strerror(errno));
    const struct model_spec *s = m->spec;
    int64_t n_max = 3 + s->layers * (2 * LAYOUT_MAX_LINEARS + 3);
    struct saved *out = calloc((size_t)n_max, sizeof *out);
    float **host = calloc((size_t)n_max, sizeof *host);
    int64_t n = 0;
    int rc = out && host ? 0 : err_set(err, "out of memory");
#define ADD(tensor, stacked, is_bias, ...)                                                                 \
    (snprintf(out[n].name, sizeof out[n].name, __VA_ARGS__), out[n].t = (tensor), out[n].experts = (stacked), \
     out[n++].bias = (is_bias))
    if (!rc) {
        ADD(&m->embed, NULL, false, "model.embed_tokens.weight");
        ADD(&m->norm, NULL, false, "model.norm.weight");
        if (!s->tie_embeddings)
            ADD(&m->head, NULL, false, "lm_head.weight");
        for (int64_t l = 0; l < s->layers; l++) {
            const struct llama_layer *ly = &m->layers[l];
            for (int i = 0; i < LAYOUT_MAX_LINEARS && m->lin[i].module; i++) {
                /* transformers names the experts' parameters without ".weight" */
                const struct linear_shape *e = m->lin[i].component == COMPONENT_EXPERTS ? &m->lin[i] : NULL;
                ADD(&ly->w[i], e, false, "model.layers.%lld.%s%s", (long long)l, m->lin[i].module, e ? "" : ".weight");
                if (ly->bias[i].data)
                    ADD(&ly->bias[i], e, true, "model.layers.%lld.%s%s", (long long)l, m->lin[i].module,
                        e ? "_bias" : ".bias");
            }
            ADD(&ly->ln_attn, NULL, false, "model.layers.%lld.input_layernorm.weight", (long long)l);
            ADD(&ly->ln_mlp, NULL, false, "model.layers.%lld.post_attention_layernorm.weight", (long long)l);
            if (ly->sinks.data)
                ADD(&ly->sinks, NULL, false, "model.layers.%lld.self_attn.sinks", (long long)l);
        }
    }
#undef ADD
    struct st_writer w;
    st_writer_init(&w);
    struct backend *cpu = backend_cpu();
    for (int64_t k = 0; !rc && k < n; k++) {
        const struct tensor *t = out[k].t;
        const struct linear_shape *e = out[k].experts;
        int64_t numel = tensor_numel(t);
        bool turned = e && !out[k].bias; /* an expert weight: [E, out, in] through f32, then transposed */
        void *raw = malloc((size_t)dtype_bytes(t->dtype, numel));
        float *f32 = turned ? malloc(sizeof(float) * (size_t)numel) : NULL;
        host[k] = malloc(sizeof(float) * (size_t)numel);
        if (!raw || (turned && !f32) || !host[k]) {
            free(raw);
            free(f32);
            rc = err_set(err, "out of memory");
            break;
        }
        struct backend *holder = llama_holder(m, t->data);
        holder->download(holder, raw, t->data, (size_t)dtype_bytes(t->dtype, numel));
        struct tensor src = tensor_1d(raw, t->dtype, numel), dst = tensor_1d(turned ? f32 : host[k], DTYPE_F32, numel);
        cpu->convert(cpu, &dst, &src);
        free(raw);
        if (turned)
            experts_transpose(host[k], f32, e->stack, e->out, e->in);
        free(f32);
        /* norms, biases and sinks 1-D, as transformers saves them; the experts' weights [E, in, out],
         * their biases [E, out] */
        int64_t shape[3] = {t->shape[0], t->shape[1], 0};
        int rank = t->rank == 1 || t->shape[1] == 1 ? 1 : 2;
        if (e && out[k].bias)
            shape[0] = e->stack, shape[1] = e->out, rank = 2;
        else if (e)
            shape[0] = e->stack, shape[1] = e->in, shape[2] = e->out, rank = 3;
        rc = st_writer_add(&w, out[k].name, DTYPE_F32, rank, shape, host[k], err);
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
    free(out);
    return rc ? -1 : 0;
}
