/* Setting up a Llama-family model: the plan and its arena, views of the
 * weights and LoRA factors, the rotary table, and the initial values (from a
 * Hugging Face folder, random, or PEFT's LoRA init). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mxfp4.h"
#include "base/rng.h"
#include "io/safetensors.h"
#include "model/llama.h"

/* M_PI is POSIX, not C11. */
static const double PI = 3.14159265358979323846;

/* A [rows, cols] view at element `skip` of instance inst of a plan buffer
 * (data NULL if the run has no such buffer). */
static struct tensor param_view_at(const struct llama *m, const char *name, int64_t inst, int64_t skip, int64_t rows,
                                   int64_t cols)
{
    const struct plan_buffer *b = plan_find(&m->plan, name);
    char *p = b ? plan_arena_at(&m->arena, name, inst) : NULL;
    return tensor_2d(p ? p + dtype_bytes(b->dtype, skip) : NULL, b ? b->dtype : DTYPE_F32, rows, cols);
}

static struct tensor param_view(const struct llama *m, const char *name, int64_t inst, int64_t rows, int64_t cols)
{
    return param_view_at(m, name, inst, 0, rows, cols);
}

/* The master and gradient of a fully trained tensor, `skip` elements into
 * buffer name's instance. */
static struct trained trained_view(const struct llama *m, const char *name, int64_t inst, int64_t skip, int64_t rows,
                                   int64_t cols)
{
    char grad[160];
    snprintf(grad, sizeof grad, "%s.grad", name);
    return (struct trained){param_view_at(m, name, inst, skip, rows, cols),
                            param_view_at(m, grad, inst, skip, rows, cols)};
}

/* Calls fn(weight, trained) for every fully trained tensor. */
static void each_trained(struct llama *m, void (*fn)(struct llama *m, struct tensor *w, struct trained *t))
{
    struct trained *model[3] = {&m->full_embed, &m->full_norm, &m->full_head};
    struct tensor *weights[3] = {&m->embed, &m->norm, &m->head};
    for (int k = 0; k < 3; k++)
        if (model[k]->master.data)
            fn(m, weights[k], model[k]);
    for (int64_t l = 0; l < m->spec->layers; l++) {
        struct llama_layer *ly = &m->layers[l];
        for (int i = 0; i < LAYOUT_MAX_LINEARS; i++) {
            if (ly->full_w[i].master.data)
                fn(m, &ly->w[i], &ly->full_w[i]);
            if (ly->full_bias[i].master.data)
                fn(m, &ly->bias[i], &ly->full_bias[i]);
        }
        if (ly->full_ln_attn.master.data) {
            fn(m, &ly->ln_attn, &ly->full_ln_attn);
            fn(m, &ly->ln_mlp, &ly->full_ln_mlp);
        }
        if (ly->full_sinks.master.data)
            fn(m, &ly->sinks, &ly->full_sinks);
    }
}

static void to_weight(struct llama *m, struct tensor *w, struct trained *t)
{
    struct tensor dst = tensor_1d(w->data, w->dtype, tensor_numel(w));
    struct tensor src = tensor_1d(t->master.data, t->master.dtype, tensor_numel(w));
    m->be->convert(m->be, &dst, &src);
}

static void to_master(struct llama *m, struct tensor *w, struct trained *t)
{
    struct tensor dst = tensor_1d(t->master.data, t->master.dtype, tensor_numel(w));
    struct tensor src = tensor_1d(w->data, w->dtype, tensor_numel(w));
    m->be->convert(m->be, &dst, &src);
}

void llama_refresh_weights(struct llama *m) { each_trained(m, to_weight); }

/* After the weights are loaded: the masters start from them. */
void llama_init_masters(struct llama *m) { each_trained(m, to_master); }

/* Inverse frequencies of the rotary embedding, with the config's scaling
 * (transformers' _compute_default / _compute_llama3 / linear parameters). */
/* YaRN (gpt-oss), in fp32 as transformers computes it: each frequency a
 * blend of the plain one and the one divided by factor, the blend a ramp over
 * the correction range of dimensions (truncated to whole dimensions only
 * when the config says so). */
static void yarn_inv_freq(const struct model_spec *s, float *inv, int64_t half)
{
    const struct rope_spec *r = &s->rope;
    double dim = (double)s->head_dim, base = r->theta, orig = (double)r->original_max_position;
    double low = dim * log(orig / (r->beta_fast * 2 * PI)) / (2 * log(base));
    double high = dim * log(orig / (r->beta_slow * 2 * PI)) / (2 * log(base));
    if (r->truncate)
        low = floor(low), high = ceil(high);
    low = low > 0 ? low : 0;
    high = high < dim - 1 ? high : dim - 1;
    if (low == high)
        high += 0.001; /* as transformers: no division by zero */
    for (int64_t i = 0; i < half; i++) {
        float pos = powf((float)base, (float)(2 * i) / (float)dim);
        float extrapolation = 1.0f / pos, interpolation = 1.0f / ((float)r->factor * pos);
        float ramp = ((float)i - (float)low) / (float)(high - low);
        float keep = 1.0f - (ramp < 0 ? 0 : ramp > 1 ? 1 : ramp);
        inv[i] = interpolation * (1 - keep) + extrapolation * keep;
    }
}

/* YaRN's attention factor, which transformers multiplies into cos and sin. */
static float yarn_attention_factor(const struct rope_spec *r)
{
    return r->type == ROPE_TYPE_YARN && r->factor > 1 ? (float)(0.1 * log(r->factor) + 1.0) : 1.0f;
}

static void rope_inv_freq(const struct model_spec *s, float *inv, int64_t half)
{
    const struct rope_spec *r = &s->rope;
    for (int64_t i = 0; i < half; i++) {
        float f = 1.0f / powf((float)r->theta, (float)(2 * i) / (float)s->head_dim);
        if (r->type == ROPE_TYPE_LINEAR) {
            f /= (float)r->factor;
        } else if (r->type == ROPE_TYPE_LLAMA3) {
            double old = (double)r->original_max_position;
            double low_wavelen = old / r->low_freq_factor, high_wavelen = old / r->high_freq_factor;
            double wavelen = 2 * PI / f;
            if (wavelen > low_wavelen) {
                f = (float)(f / r->factor);
            } else if (wavelen >= high_wavelen) {
                double smooth = (old / wavelen - r->low_freq_factor) / (r->high_freq_factor - r->low_freq_factor);
                f = (float)((1 - smooth) * f / r->factor + smooth * f);
            }
        }
        inv[i] = f;
    }
    if (r->type == ROPE_TYPE_YARN)
        yarn_inv_freq(s, inv, half);
}

static int build_rope(struct llama *m, tune_err *err)
{
    const struct model_spec *s = m->spec;
    int64_t half = s->head_dim / 2, P = m->rc.seq;
    float *inv = malloc(sizeof(float) * (size_t)half), *tab = malloc(sizeof(float) * (size_t)(P * half * 2));
    if (!inv || !tab) {
        free(inv);
        free(tab);
        return err_set(err, "out of memory for the rotary table");
    }
    rope_inv_freq(s, inv, half);
    /* Scaling both cos and sin scales q and k, and the rope's backward (the
     * same table, sin negated) is then still its transpose. */
    float scale = yarn_attention_factor(&s->rope);
    for (int64_t p = 0; p < P; p++)
        for (int64_t i = 0; i < half; i++) {
            float angle = (float)p * inv[i]; /* in fp32, as transformers computes it */
            tab[(p * half + i) * 2] = cosf(angle) * scale;
            tab[(p * half + i) * 2 + 1] = sinf(angle) * scale;
        }
    void *dst = plan_arena_at(&m->arena, "rope.cos_sin", 0);
    m->be->upload(m->be, dst, tab, sizeof(float) * (size_t)(P * half * 2));
    free(inv);
    free(tab);
    m->rope = (struct rope_table){dst, P, half, 1.0f};
    return 0;
}

/* m->ones, where the plan has it: every value 1 in its dtype. */
static int fill_ones(struct llama *m, tune_err *err)
{
    const struct plan_buffer *b = plan_find(&m->plan, "experts.ones");
    if (!b)
        return 0;
    float *f = malloc(sizeof(float) * (size_t)b->elems);
    void *raw = malloc((size_t)dtype_bytes(b->dtype, b->elems));
    if (f && raw) {
        for (int64_t i = 0; i < b->elems; i++)
            f[i] = 1.0f;
        struct tensor src = tensor_1d(f, DTYPE_F32, b->elems), dst = tensor_1d(raw, b->dtype, b->elems);
        backend_cpu()->convert(backend_cpu(), &dst, &src);
        m->ones = tensor_2d(plan_arena_at(&m->arena, b->name, 0), b->dtype, b->elems, 1);
        m->be->upload(m->be, m->ones.data, raw, (size_t)dtype_bytes(b->dtype, b->elems));
    }
    free(f);
    free(raw);
    return m->ones.data ? 0 : err_set(err, "out of memory filling %s", b->name);
}

int llama_supports(const struct model_spec *spec, const struct run_config *rc, const struct backend *be,
                   tune_err *err)
{
    /* the router and the experts are bare parameters in transformers 5: PEFT's target_parameters */
    if (spec->experts && rc->lora_dropout > 0 &&
        rc->targets & (1u << TARGET_GATE_UP | 1u << TARGET_DOWN | 1u << TARGET_ROUTER))
        return err_set(err, "%s: LoRA dropout on the router and the experts: PEFT has none there "
                            "(target_parameters); use --dropout 0", spec->name);
    if (spec->experts && !be->moe_matmul)
        return err_set(err, "%s: the %s backend has no mixture-of-experts ops yet", spec->name, be->name);
    if (rc->method == METHOD_QLORA)
        return err_set(err, "qlora is not implemented yet on %s: use --method lora or full", be->name);
    if (rc->method == METHOD_LORA && rc->targets & 1u << TARGET_LM_HEAD)
        return err_set(err, "LoRA on lm_head is not implemented yet");
    return 0;
}

/* A LoRA factor's twin in the compute copy of the trainable block (the same
 * element offset), or the factor itself when there is no copy. */
static struct tensor compute_twin(const struct llama *m, const struct tensor *factor)
{
    if (!m->lora_compute.data)
        return *factor;
    int64_t at = ((const char *)factor->data - (const char *)m->arena.block[PLAN_TRAINABLE]) / (int64_t)sizeof(float);
    struct tensor t = *factor;
    t.dtype = m->lora_compute.dtype;
    t.data = (char *)m->lora_compute.data + dtype_bytes(t.dtype, at);
    return t;
}

int llama_init(struct llama *m, const struct model_spec *spec, const struct run_config *rc, struct backend *be,
               uint64_t seed, tune_err *err)
{
    memset(m, 0, sizeof *m);
    m->spec = spec;
    m->rc = *rc;
    m->be = be;
    m->seed = seed;
    if (llama_supports(spec, rc, be, err))
        return -1;
    if (plan_build(&m->plan, spec, rc, err))
        return -1;
    if (plan_arena_alloc(&m->arena, &m->plan, be, err)) {
        plan_free(&m->plan);
        return -1;
    }
    int n = layout_layer_linears(spec, m->lin);
    int64_t C = spec->hidden, L = spec->layers;
    m->layers = calloc((size_t)L, sizeof *m->layers);
    if (!m->layers) {
        llama_free(m);
        return err_set(err, "out of memory for %lld layers", (long long)L);
    }
    m->embed = param_view(m, "embed_tokens.weight", 0, spec->vocab, C);
    const struct plan_buffer *rows = plan_find(&m->plan, "embed_tokens.rows");
    if (rows)
        m->embed_rows = tensor_2d(plan_arena_at(&m->arena, rows->name, 0), rows->dtype, rows->elems / C, C);
    m->norm = param_view(m, "norm.weight", 0, C, 1);
    m->head = spec->tie_embeddings ? m->embed : param_view(m, "lm_head.weight", 0, spec->vocab, C);
    m->full_embed = trained_view(m, "embed_tokens.weight.master", 0, 0, spec->vocab, C);
    m->full_norm = trained_view(m, "norm.weight.master", 0, 0, C, 1);
    m->full_head = spec->tie_embeddings ? m->full_embed : trained_view(m, "lm_head.weight.master", 0, 0, spec->vocab, C);
    const struct plan_buffer *copy = plan_find(&m->plan, "lora.compute_copy");
    if (copy && !copy->on_host && m->plan.per_gpu[PLAN_TRAINABLE] <= dtype_bytes(DTYPE_F32, copy->elems))
        m->lora_compute = tensor_1d(plan_arena_at(&m->arena, copy->name, 0), copy->dtype,
                                    m->plan.per_gpu[PLAN_TRAINABLE] / (int64_t)sizeof(float));
    int64_t ordinal[LAYOUT_MAX_LINEARS] = {0};
    char name[160];
    for (int64_t l = 0; l < L; l++) {
        struct llama_layer *ly = &m->layers[l];
        for (int i = 0; i < n; i++) {
            const struct linear_shape *li = &m->lin[i];
            snprintf(name, sizeof name, "layers.*.%s.weight", li->module);
            ly->w[i] = param_view(m, name, l, li->stack * li->out, li->in);
            if (!ly->w[i].data) { /* experts kept in MXFP4: codes, then the scales beside them */
                snprintf(name, sizeof name, "layers.*.%s.weight_blocks", li->module);
                ly->w[i] = param_view(m, name, l, li->stack * li->out, li->in);
                snprintf(name, sizeof name, "layers.*.%s.weight_scales", li->module);
                ly->w[i].scales = plan_arena_at(&m->arena, name, l);
            }
            snprintf(name, sizeof name, "layers.*.%s.bias", li->module);
            ly->bias[i] = param_view(m, name, l, li->stack * li->out, 1);
            if (!run_layer_targeted(rc, l, li->target))
                continue;
            if (rc->method == METHOD_FULL) { /* master = weight then bias, one buffer */
                snprintf(name, sizeof name, "layers.*.%s.weight.master", li->module);
                ly->full_w[i] = trained_view(m, name, ordinal[i], 0, li->stack * li->out, li->in);
                if (li->bias)
                    ly->full_bias[i] =
                        trained_view(m, name, ordinal[i], li->stack * li->out * li->in, li->stack * li->out, 1);
                ordinal[i]++;
                continue;
            }
            struct lora *lo = &ly->lora[i];
            lo->on = true;
            snprintf(name, sizeof name, "layers.*.%s.lora_A", li->module);
            /* experts: one factor per expert, stacked: A [E * r, in], B [E * out, r] */
            lo->A = param_view(m, name, ordinal[i], li->stack * rc->lora_r, li->in);
            snprintf(name, sizeof name, "layers.*.%s.lora_A.grad", li->module);
            lo->dA = param_view(m, name, ordinal[i], li->stack * rc->lora_r, li->in);
            snprintf(name, sizeof name, "layers.*.%s.lora_B", li->module);
            lo->B = param_view(m, name, ordinal[i], li->stack * li->out, rc->lora_r);
            snprintf(name, sizeof name, "layers.*.%s.lora_B.grad", li->module);
            lo->dB = param_view(m, name, ordinal[i], li->stack * li->out, rc->lora_r);
            lo->Ac = compute_twin(m, &lo->A);
            lo->Bc = compute_twin(m, &lo->B);
            ordinal[i]++;
        }
        char *norms = plan_arena_at(&m->arena, "layers.*.{input,post_attention}_layernorm.weight", l);
        enum dtype nd = plan_find(&m->plan, "layers.*.{input,post_attention}_layernorm.weight")->dtype;
        ly->ln_attn = tensor_1d(norms, nd, C);
        ly->ln_mlp = tensor_1d(norms + dtype_bytes(nd, C), nd, C);
        ly->full_ln_attn = trained_view(m, "layers.*.norms_and_sinks.master", l, 0, C, 1);
        ly->full_ln_mlp = trained_view(m, "layers.*.norms_and_sinks.master", l, C, C, 1);
        if (spec->attention_sinks)
            ly->full_sinks = trained_view(m, "layers.*.norms_and_sinks.master", l, 2 * C, spec->heads, 1);
        ly->window = spec->layer_sliding[l] ? spec->sliding_window : 0;
        ly->sinks = param_view(m, "layers.*.self_attn.sinks", l, spec->heads, 1);
    }
    m->attn_scale = 1.0f / sqrtf((float)spec->head_dim);
    m->lora_scale = (float)(rc->lora_alpha / (rc->use_rslora ? sqrt((double)rc->lora_r) : (double)rc->lora_r));
    if (fill_ones(m, err) || build_rope(m, err)) {
        llama_free(m);
        return -1;
    }
    return 0;
}

struct backend *llama_holder(const struct llama *m, const void *data)
{
    return plan_arena_on_host(&m->arena, data) ? backend_cpu() : m->be;
}

void llama_free(struct llama *m)
{
    for (int k = 0; k < 2; k++)
        if (m->records[k].graph)
            m->be->graph_free(m->be, m->records[k].graph);
    memset(m->records, 0, sizeof m->records);
    plan_arena_free(&m->arena);
    plan_free(&m->plan);
    free(m->layers);
    m->layers = NULL;
}

void llama_zero_grads(struct llama *m)
{
    for (int i = 0; i < m->plan.n; i++) {
        const struct plan_buffer *b = &m->plan.buf[i];
        if (b->category != PLAN_GRADS)
            continue;
        struct tensor t = tensor_1d(plan_arena_at(&m->arena, b->name, 0), DTYPE_U8, b->bytes);
        m->be->zero(m->be, &t);
    }
}

/* Fills t (fp32 on the host, then uploaded) from gen, which takes `draws`
 * numbers of the stream per element: element i starts i * draws draws in,
 * so the threads split the work and the values are those of one loop. */
static void fill(struct llama *m, struct tensor *t, uint64_t *rng, double (*gen)(uint64_t *, double), int draws,
                 double arg)
{
    int64_t n = tensor_numel(t);
    float *host = malloc(sizeof(float) * (size_t)n);
    if (!host)
        abort(); /* init-time and small next to the tensors themselves */
    const uint64_t base = *rng, per = (uint64_t)draws * RNG_GAMMA;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        uint64_t s = base + (uint64_t)i * per;
        host[i] = (float)gen(&s, arg);
    }
    *rng = base + (uint64_t)n * per;
    tune_err err;
    if (llama_upload(llama_holder(m, t->data), t, host, DTYPE_F32, n, &err))
        abort();
    free(host);
}

/* MXFP4 weights at about N(0, 0.02)'s scale: uniform codes (std 2.9 in FP4
 * units) under the scale 2^-7; codes drawn eight per number of the stream. */
static void fill_mxfp4(struct llama *m, struct tensor *t, uint64_t *rng)
{
    int64_t n = tensor_numel(t), code_bytes = n / 2, words = code_bytes / 8;
    uint64_t *codes = malloc(sizeof(uint64_t) * (size_t)words);
    uint8_t *scales = malloc((size_t)(n / MXFP4_BLOCK));
    if (!codes || !scales)
        abort();
    const uint64_t base = *rng;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < words; i++) {
        uint64_t s = base + (uint64_t)i * RNG_GAMMA;
        codes[i] = rng_next(&s);
    }
    *rng = base + (uint64_t)words * RNG_GAMMA;
    memset(scales, 127 - 7, (size_t)(n / MXFP4_BLOCK));
    m->be->upload(m->be, t->data, codes, (size_t)code_bytes);
    m->be->upload(m->be, t->scales, scales, (size_t)(n / MXFP4_BLOCK));
    free(codes);
    free(scales);
}

static double gen_normal(uint64_t *s, double std)
{
    double u1 = rng_uniform(s), u2 = rng_uniform(s);
    return std * sqrt(-2 * log(u1 > 0 ? u1 : 1e-300)) * cos(2 * PI * u2);
}
static double gen_uniform(uint64_t *s, double bound) { return bound * (2 * rng_uniform(s) - 1); }
static double gen_const(uint64_t *s, double v) { (void)s; return v; }

void llama_init_random(struct llama *m, uint64_t seed)
{
    uint64_t rng = seed;
    fill(m, &m->embed, &rng, gen_normal, 2, 0.02);
    fill(m, &m->norm, &rng, gen_const, 0, 1.0);
    if (!m->spec->tie_embeddings)
        fill(m, &m->head, &rng, gen_normal, 2, 0.02);
    for (int64_t l = 0; l < m->spec->layers; l++) {
        struct llama_layer *ly = &m->layers[l];
        for (int i = 0; i < LAYOUT_MAX_LINEARS; i++) {
            if (ly->w[i].dtype == DTYPE_MXFP4)
                fill_mxfp4(m, &ly->w[i], &rng);
            else if (ly->w[i].data)
                fill(m, &ly->w[i], &rng, gen_normal, 2, 0.02);
            if (ly->bias[i].data)
                fill(m, &ly->bias[i], &rng, gen_const, 0, 0.0);
        }
        fill(m, &ly->ln_attn, &rng, gen_const, 0, 1.0);
        fill(m, &ly->ln_mlp, &rng, gen_const, 0, 1.0);
    }
    llama_init_masters(m);
}

void llama_init_lora(struct llama *m)
{
    uint64_t rng = m->seed ^ 0x10a4a11ULL;
    for (int64_t l = 0; l < m->spec->layers; l++)
        for (int i = 0; i < LAYOUT_MAX_LINEARS; i++) {
            struct lora *lo = &m->layers[l].lora[i];
            if (!lo->on)
                continue;
            /* kaiming_uniform_(a=sqrt(5)): gain sqrt(1/3) x sqrt(3 / fan_in) = 1 / sqrt(fan_in). */
            fill(m, &lo->A, &rng, gen_uniform, 1, 1.0 / sqrt((double)lo->A.shape[1]));
            m->be->zero(m->be, &lo->B);
        }
}
