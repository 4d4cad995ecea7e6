/* Loading a Hugging Face Llama-family checkpoint into the plan's weight
 * buffers. Every tensor the architecture needs must be present with its exact
 * shape in a float dtype; anything else is an error naming the tensor. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
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
    if (!shape_ok)
        return err_set(err, "%s: tensor '%s' has %d dims (%lld elements), expected [%lld%s%lld]", file->path, name,
                       t->rank, (long long)numel, (long long)rows, cols == 1 ? "" : ", ",
                       cols == 1 ? 0LL : (long long)cols);
    if (t->dtype != DTYPE_F32 && t->dtype != DTYPE_F16 && t->dtype != DTYPE_BF16)
        return err_set(err, "%s: tensor '%s' is %s; tune reads F32, F16 and BF16 weights here", file->path, name,
                       dtype_name(t->dtype));
    struct backend *be = m->be;
    if (t->dtype == dst->dtype) {
        be->upload(be, dst->data, t->data, (size_t)t->nbytes);
        return 0;
    }
    /* Converted on the host, so the device holds nothing beyond the plan. */
    size_t bytes = (size_t)dtype_bytes(dst->dtype, numel);
    void *host = malloc(bytes);
    if (!host)
        return err_set(err, "out of memory converting '%s'", name);
    struct tensor src = tensor_1d((void *)t->data, t->dtype, numel), h = tensor_1d(host, dst->dtype, numel);
    struct backend *cpu = backend_cpu();
    cpu->convert(cpu, &h, &src);
    be->upload(be, dst->data, host, bytes);
    free(host);
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
    }
    st_model_close(&st);
    return rc ? -1 : 0;
}
