/* Llama-family forward and backward against the op table; see llama.h. The
 * saved activations, their layout and which of them exist are the plan's
 * (model/buffers.c): this file only takes views. Under full checkpointing a
 * layer's working set is recomputed into the "recompute" buffers from the
 * layer's saved input before its backward. */
#include "model/llama.h"
#include "model/buffers.h"
#include "model/moe.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A [rows, cols] view at element `skip` of instance `inst` of a plan buffer,
 * or a tensor with NULL data if the plan has no such buffer. */
static struct tensor view(const struct llama *m, const char *name, int64_t inst, int64_t skip, int64_t rows,
                          int64_t cols)
{
    const struct plan_buffer *b = plan_find(&m->plan, name);
    char *p = b ? plan_arena_at(&m->arena, name, inst) : NULL;
    enum dtype dt = b ? b->dtype : DTYPE_F32;
    return tensor_2d(p ? p + dtype_bytes(dt, skip) : NULL, dt, rows, cols);
}

static struct tensor viewf(const struct llama *m, int64_t inst, int64_t rows, int64_t cols, const char *fmt,
                           const char *a)
{
    char name[128];
    snprintf(name, sizeof name, fmt, a);
    return view(m, name, inst, 0, rows, cols);
}

/* A table the plan keeps in host memory: the rows of the n token ids
 * gathered (and converted to the compute dtype) into the page-locked
 * m->embed_rows, for embed_tokens to send. Every caller reads a result back
 * (the loss, the logits) before it gathers again, so the last send is done
 * when the rows are overwritten. */
static void embed_gather(struct llama *m, const int32_t *host_ids, int64_t n)
{
    int64_t C = m->spec->hidden;
    enum dtype to_dtype = m->embed_rows.dtype;
    assert(n <= m->embed_rows.shape[0]);
    size_t from = (size_t)dtype_bytes(m->embed.dtype, C), to = (size_t)dtype_bytes(to_dtype, C);
    /* Rows from all over a table of ~1 GB: threads keep more of them in flight (the device waits meanwhile). */
#pragma omp parallel for
    for (int64_t t = 0; t < n; t++) {
        char *dst = (char *)m->embed_rows.data + (size_t)t * to;
        const char *src = (const char *)m->embed.data + (size_t)host_ids[t] * from;
        if (to_dtype == m->embed.dtype) {
            memcpy(dst, src, to);
        } else {
            struct tensor d = tensor_1d(dst, to_dtype, C), s = tensor_1d((void *)src, m->embed.dtype, C);
            backend_cpu()->convert(backend_cpu(), &d, &s);
        }
    }
}

/* x [n, C] = the input embedding's rows of the n token ids (on the device):
 * looked up there, or, for a table in host memory, sent from where
 * embed_gather put them, in order with the ops after (the host not waiting). */
static void embed_tokens(struct llama *m, struct tensor *x, const struct tensor *ids)
{
    struct backend *be = m->be;
    if (!m->embed_rows.data) {
        be->embedding(be, x, &m->embed, ids);
        return;
    }
    assert(m->embed_rows.dtype == x->dtype);
    be->copy(be, x->data, m->embed_rows.data, (size_t)dtype_bytes(x->dtype, tensor_numel(x)));
}

/* One layer's working set: what its backward reads, and where forward writes. */
struct layer_acts {
    struct tensor x, rstd1, xn1, q, k, v, att, lse, mid, rstd2, xn2, gate, up, h;
    struct tensor xa[LAYOUT_MAX_LINEARS];
    struct moe_acts moe; /* mixture-of-experts models: the block's instead of gate, up, h */
};

/* The MoE block's saved tensors (under prefix pre, instance in), or its
 * scratch where the plan keeps none: N = T * k routed rows. */
static struct moe_acts moe_views(const struct llama *m, const char *pre, int64_t in, int64_t T)
{
    const struct model_spec *s = m->spec;
    int64_t K = s->experts_per_token, N = T * K, C = s->hidden, I = s->intermediate;
    struct moe_acts a;
    a.experts = viewf(m, in, T, K, "%s.mlp.router.topk_index", pre);
    a.weights = viewf(m, in, T, K, "%s.mlp.router.topk_weight", pre);
    struct tensor perm = viewf(m, in, 2 * N + s->experts + 1, 1, "%s.mlp.experts.permutation_and_offsets", pre);
    a.order = tensor_1d(perm.data, DTYPE_I32, N);
    a.position = tensor_1d((int32_t *)perm.data + N, DTYPE_I32, N);
    a.offsets = tensor_1d((int32_t *)perm.data + 2 * N, DTYPE_I32, s->experts + 1);
    a.rows = viewf(m, in, N, C, "%s.mlp.experts.input_permuted", pre);
    if (!a.rows.data)
        a.rows = view(m, "experts.input_permuted", 0, 0, N, C);
    a.gate_up = viewf(m, in, N, 2 * I, "%s.mlp.experts.gate_up_out", pre);
    a.act = viewf(m, in, N, I, "%s.mlp.act", pre);
    if (!a.act.data)
        a.act = view(m, "forward_and_grad.act", 0, 0, N, I);
    a.out = viewf(m, in, N, C, "%s.mlp.experts.out", pre);
    return a;
}

/* Layer l's input where the layers compute on it: its checkpoint, or, when
 * the checkpoints are in host memory, one of two device buffers in turn. */
static struct tensor layer_input(const struct llama *m, int64_t l, int64_t T)
{
    if (m->rc.offload_checkpoints)
        return view(m, "layers.*.input.device", l % 2, 0, T, m->spec->hidden);
    return view(m, "layers.*.input", l, 0, T, m->spec->hidden);
}

/* With the checkpoints in host memory: layer l's input sent there (after
 * the forward wrote it) or back (before backward recomputes the layer), in
 * order with the layers' ops. */
static void checkpoint_move(struct llama *m, int64_t l, int64_t T, bool to_host)
{
    if (!m->rc.offload_checkpoints)
        return;
    struct tensor dev = layer_input(m, l, T), host = view(m, "layers.*.input", l, 0, T, m->spec->hidden);
    size_t bytes = (size_t)dtype_bytes(dev.dtype, tensor_numel(&dev));
    m->be->copy(m->be, to_host ? host.data : dev.data, to_host ? dev.data : host.data, bytes);
}

/* The first layer whose working set the forward keeps: 0 without full
 * checkpointing, else the first of the last ckpt_keep_layers. */
static int64_t first_kept(const struct llama *m)
{
    return m->rc.grad_ckpt == GRAD_CKPT_FULL ? m->spec->layers - m->rc.ckpt_keep_layers : 0;
}

/* Layer l's working set in instance `in` of the buffers named pre.* */
static struct layer_acts layer_views_at(const struct llama *m, int64_t l, int64_t T, const char *pre, int64_t in)
{
    const struct model_spec *s = m->spec;
    int64_t C = s->hidden, I = s->intermediate;
    int64_t q = s->heads * s->head_dim, kv = s->kv_heads * s->head_dim;
    struct layer_acts a;
    a.x = layer_input(m, l, T);
    a.rstd1 = viewf(m, in, T, 1, "%s.input_layernorm.rstd", pre);
    a.xn1 = viewf(m, in, T, C, "%s.input_layernorm.out", pre);
    if (!a.xn1.data)
        a.xn1 = view(m, "forward.normed", 0, 0, T, C);
    char name[128];
    snprintf(name, sizeof name, "%s.self_attn.qkv_rope", pre);
    a.q = view(m, name, in, 0, T, q);
    a.k = view(m, name, in, T * q, T, kv);
    a.v = view(m, name, in, T * (q + kv), T, kv);
    a.att = viewf(m, in, T, q, "%s.self_attn.out", pre);
    a.lse = viewf(m, in, s->heads, T, "%s.self_attn.lse", pre);
    a.mid = viewf(m, in, T, C, "%s.residual_mid", pre);
    a.rstd2 = viewf(m, in, T, 1, "%s.post_attention_layernorm.rstd", pre);
    a.xn2 = viewf(m, in, T, C, "%s.post_attention_layernorm.out", pre);
    if (!a.xn2.data)
        a.xn2 = view(m, "forward.normed", 0, 0, T, C);
    if (s->experts) {
        a.moe = moe_views(m, pre, in, T);
    } else {
        snprintf(name, sizeof name, "%s.mlp.gate_up_out", pre);
        a.gate = view(m, name, in, 0, T, I);
        a.up = view(m, name, in, T * I, T, I);
        a.h = viewf(m, in, T, I, "%s.mlp.act", pre);
        if (!a.h.data)
            a.h = view(m, "forward_and_grad.act", 0, 0, T, I);
    }
    for (int i = 0; i < LAYOUT_MAX_LINEARS; i++) {
        a.xa[i] = (struct tensor){0};
        if (i < (int)(sizeof m->lin / sizeof m->lin[0]) && m->lin[i].module) {
            bool expert = m->lin[i].component == COMPONENT_EXPERTS; /* one row per routed (token, slot) */
            snprintf(name, sizeof name, "%s.%s.lora_xa", pre, m->lin[i].module);
            a.xa[i] = view(m, name, in, 0, expert ? T * s->experts_per_token : T, m->rc.lora_r);
        }
    }
    if (s->experts) {
        a.moe.xa_gate_up = a.xa[LIN_EXPERTS_GATE_UP];
        a.moe.xa_down = a.xa[LIN_EXPERTS_DOWN];
    }
    return a;
}

/* Layer l's working set: its own (no full checkpointing), one of the kept
 * layers', or the one every recomputed layer shares. */
static struct layer_acts layer_views(const struct llama *m, int64_t l, int64_t T)
{
    bool full = m->rc.grad_ckpt == GRAD_CKPT_FULL, kept = full && l >= first_kept(m);
    return layer_views_at(m, l, T, !full ? "layers.*" : kept ? "kept" : "recompute",
                          !full ? l : kept ? l - first_kept(m) : 0);
}

/* The step's scalars in the batch buffer (buffers.h). */
static struct step_scalars *step_scalars_of(const struct llama *m)
{
    char *batch = plan_arena_at(&m->arena, BUFFERS_BATCH, 0);
    return (struct step_scalars *)(batch + sizeof(int32_t) * BUFFERS_SCALARS_AT(m->rc.micro_batch * m->rc.seq));
}

/* Dropout keys: one stream per (step, layer, linear), element offsets within it. */
static uint64_t dropout_offset(int64_t layer, int linear) { return ((uint64_t)layer * 16 + (uint64_t)linear) << 40; }

/* y[T, out] = [resid +] x W^T + b + s * drop(x) A^T B^T (the LoRA term if
 * the layer has one): resid, if any, is the residual stream's input, y its
 * next value, read as the first GEMM's addend rather than copied into y. The
 * LoRA term goes first, so that the base GEMM adds onto it as its C operand,
 * which costs it next to nothing, rather than a skinny GEMM reading y back. */
static void linear_forward(struct llama *m, int64_t l, int i, struct tensor *y, const struct tensor *x,
                           struct tensor *xa, const struct tensor *resid)
{
    struct backend *be = m->be;
    struct llama_layer *L = &m->layers[l];
    struct lora *lo = &L->lora[i];
    if (lo->on) {
        struct tensor xd = *x;
        if (m->rc.lora_dropout > 0) {
            xd = view(m, "lora.dropped_input", 0, 0, x->shape[0], x->shape[1]);
            be->dropout(be, &xd, x, (float)m->rc.lora_dropout, &step_scalars_of(m)->dropout_seed,
                        dropout_offset(l, i));
        }
        be->matmul(be, xa, &xd, false, &lo->Ac, true, 1.0f, 0.0f);
        if (resid)
            be->matmul_add(be, y, resid, xa, false, &lo->Bc, true, m->lora_scale);
        else
            be->matmul(be, y, xa, false, &lo->Bc, true, m->lora_scale, 0.0f);
        resid = y; /* the base GEMM adds onto the LoRA term */
    }
    if (resid)
        be->matmul_add(be, y, resid, x, false, &L->w[i], true, 1.0f);
    else
        be->matmul(be, y, x, false, &L->w[i], true, 1.0f, 0.0f);
    if (L->bias[i].data)
        be->add_bias(be, y, &L->bias[i]);
}

/* Given dy of a linear, dx[T, in] (+)= dy W + drop'(s dy B A), and the
 * gradients: dB += s dy^T xa, dA += (s dy B)^T drop(x) (LoRA), or dW += dy^T
 * x, db += sum(dy) (full fine-tuning). As in forward, without dropout the
 * LoRA term of dx goes first and the base GEMM adds onto it. */
static void linear_backward(struct llama *m, int64_t l, int i, struct tensor *dx, const struct tensor *dy,
                            const struct tensor *x, const struct tensor *xa, float beta)
{
    struct backend *be = m->be;
    struct llama_layer *L = &m->layers[l];
    struct lora *lo = &L->lora[i];
    int64_t T = dy->shape[0];
    float p = (float)m->rc.lora_dropout;
    struct tensor dxa = view(m, "grad.lora_xa", 0, 0, T, m->rc.lora_r);
    struct tensor dropped = view(m, "lora.dropped_input", 0, 0, T, x->shape[1]);
    if (lo->on) {
        be->matmul(be, &dxa, dy, false, &lo->Bc, false, m->lora_scale, 0.0f);
        be->matmul(be, &lo->dB, dy, true, xa, false, m->lora_scale, 1.0f);
        if (p > 0)
            /* the forward's mask again */
            be->dropout(be, &dropped, x, p, &step_scalars_of(m)->dropout_seed, dropout_offset(l, i));
        be->matmul(be, &lo->dA, &dxa, true, p > 0 ? &dropped : x, false, 1.0f, 1.0f);
        if (p <= 0) {
            be->matmul(be, dx, &dxa, false, &lo->Ac, false, 1.0f, beta);
            beta = 1;
        }
    }
    be->matmul(be, dx, dy, false, &L->w[i], false, 1.0f, beta);
    if (L->full_w[i].grad.data)
        be->matmul(be, &L->full_w[i].grad, dy, true, x, false, 1.0f, 1.0f);
    if (L->full_bias[i].grad.data)
        be->bias_backward(be, &L->full_bias[i].grad, dy);
    if (lo->on && p > 0) {
        be->matmul(be, &dropped, &dxa, false, &lo->Ac, false, 1.0f, 0.0f);
        be->dropout(be, &dropped, &dropped, p, &step_scalars_of(m)->dropout_seed, dropout_offset(l, i));
        be->axpy(be, dx, 1.0f, &dropped);
    }
}

/* The layer's second half: out = mid + MLP(rmsnorm(mid)), the MLP dense or
 * the experts' (T = the rows of a). */
static void mlp_forward(struct llama *m, int64_t l, struct layer_acts *a, struct tensor *out)
{
    struct backend *be = m->be;
    const struct model_spec *s = m->spec;
    struct llama_layer *L = &m->layers[l];
    int64_t T = a->mid.shape[0];
    be->rmsnorm(be, &a->xn2, &a->rstd2, &a->mid, &L->ln_mlp, (float)s->rms_eps);
    if (s->experts) {
        struct tensor logits = view(m, "router.logits", 0, 0, T, s->experts);
        linear_forward(m, l, LIN_ROUTER, &logits, &a->xn2, &a->xa[LIN_ROUTER], NULL);
        be->convert(be, out, &a->mid);
        struct tensor lora = view(m, "grad.lora_xa", 0, 0, T * s->experts_per_token, m->rc.lora_r);
        moe_forward(m, l, &a->moe, out, &a->xn2, &logits, &lora);
        return;
    }
    linear_forward(m, l, LIN_GATE, &a->gate, &a->xn2, &a->xa[LIN_GATE], NULL);
    linear_forward(m, l, LIN_UP, &a->up, &a->xn2, &a->xa[LIN_UP], NULL);
    be->swiglu(be, &a->h, &a->gate, &a->up);
    linear_forward(m, l, LIN_DOWN, out, &a->h, &a->xa[LIN_DOWN], &a->mid);
}

/* Layer l forward from a->x; writes the next layer's input to out. */
static void layer_forward(struct llama *m, int64_t l, struct layer_acts *a, struct tensor *out,
                          const struct seq_layout *sl)
{
    struct backend *be = m->be;
    const struct model_spec *s = m->spec;
    struct llama_layer *L = &m->layers[l];
    int64_t T = a->x.shape[0];
    be->rmsnorm(be, &a->xn1, &a->rstd1, &a->x, &L->ln_attn, (float)s->rms_eps);
    linear_forward(m, l, LIN_Q, &a->q, &a->xn1, &a->xa[LIN_Q], NULL);
    linear_forward(m, l, LIN_K, &a->k, &a->xn1, &a->xa[LIN_K], NULL);
    linear_forward(m, l, LIN_V, &a->v, &a->xn1, &a->xa[LIN_V], NULL);
    int64_t qs[3] = {T, s->heads, s->head_dim}, ks[3] = {T, s->kv_heads, s->head_dim};
    struct tensor q3 = tensor_reshape(&a->q, 3, qs), k3 = tensor_reshape(&a->k, 3, ks);
    struct tensor v3 = tensor_reshape(&a->v, 3, ks), o3 = tensor_reshape(&a->att, 3, qs);
    be->rope(be, &q3, &m->rope, sl, false);
    be->rope(be, &k3, &m->rope, sl, false);
    const struct tensor *sinks = L->sinks.data ? &L->sinks : NULL;
    be->attention(be, &o3, &a->lse, &q3, &k3, &v3, sinks, sl, L->window, m->attn_scale);
    linear_forward(m, l, LIN_O, &a->mid, &a->att, &a->xa[LIN_O], &a->x);
    mlp_forward(m, l, a, out);
}

/* The MoE block's backward: d(normed input) into dxn through the experts
 * and through the router linear (whose LoRA, if any, gets its gradients). */
static void moe_block_backward(struct llama *m, int64_t l, struct layer_acts *a, const struct tensor *dres,
                               struct tensor *dxn)
{
    const struct model_spec *s = m->spec;
    int64_t T = a->x.shape[0], N = T * s->experts_per_token, C = s->hidden, I = s->intermediate;
    struct moe_scratch g = {view(m, "grad.experts_out", 0, 0, N, C), view(m, "grad.gate_up", 0, 0, N, 2 * I),
                            view(m, "forward_and_grad.act", 0, 0, N, I), view(m, "experts.input_permuted", 0, 0, N, C),
                            tensor_1d(view(m, "grad.router_weights", 0, 0, N, 1).data, DTYPE_F32, N),
                            view(m, "grad.lora_xa", 0, 0, N, m->rc.lora_r),
                            m->rc.grad_ckpt == GRAD_CKPT_SELECTIVE ? view(m, "selective.mlp.act", 0, 0, N, I)
                                                                   : (struct tensor){0}};
    struct tensor dlogits = view(m, "router.logits", 0, 0, T, s->experts);
    moe_backward(m, l, &a->moe, &g, dxn, &dlogits, dres);
    linear_backward(m, l, LIN_ROUTER, dxn, &dlogits, &a->xn2, &a->xa[LIN_ROUTER], 1);
}

/* dres (fp32) as the d(output) of the linears that write the residual (o,
 * down): converted once into scratch when the compute dtype differs, rather
 * than by each of their GEMMs. */
static const struct tensor *residual_grad(struct llama *m, const struct tensor *dres, struct tensor *scratch)
{
    if (scratch->dtype == dres->dtype)
        return dres;
    m->be->convert(m->be, scratch, dres);
    return scratch;
}

/* Layer l backward: dres holds d(output) and leaves holding d(input). */
static void layer_backward(struct llama *m, int64_t l, struct layer_acts *a, struct tensor *dres,
                           const struct seq_layout *sl)
{
    struct backend *be = m->be;
    const struct model_spec *s = m->spec;
    struct llama_layer *L = &m->layers[l];
    int64_t T = a->x.shape[0], C = s->hidden, I = s->intermediate;
    int64_t q = s->heads * s->head_dim, kv = s->kv_heads * s->head_dim;
    struct tensor dh = view(m, "forward_and_grad.act", 0, 0, T, I);
    struct tensor dxn = view(m, "grad.normed", 0, 0, T, C);
    struct tensor datt = view(m, "grad.attn_out", 0, 0, T, q);
    struct tensor dq = view(m, "grad.qkv", 0, 0, T, q), dk = view(m, "grad.qkv", 0, T * q, T, kv);
    struct tensor dv = view(m, "grad.qkv", 0, T * (q + kv), T, kv);

    /* Selective checkpointing: the element-wise outputs the weights' gradients
     * need are made again from the matmul outputs and inputs kept (the same ops
     * on the same values, so the gradients are those of no checkpointing). */
    bool selective = m->rc.grad_ckpt == GRAD_CKPT_SELECTIVE;
    if (s->experts) {
        if (selective)
            be->rmsnorm(be, &a->xn2, &a->rstd2, &a->mid, &L->ln_mlp, (float)s->rms_eps);
        moe_block_backward(m, l, a, dres, &dxn);
    } else {
        struct tensor h = a->h;
        if (selective && (h = view(m, "selective.mlp.act", 0, 0, T, I)).data)
            be->swiglu(be, &h, &a->gate, &a->up);
        linear_backward(m, l, LIN_DOWN, &dh, residual_grad(m, dres, &dxn), &h, &a->xa[LIN_DOWN], 0);
        /* d(gate), d(up) in place of gate and up, which nothing reads again. */
        struct tensor dgate = a->gate, dup = a->up;
        be->swiglu_backward(be, &dgate, &dup, &dh, &a->gate, &a->up);
        if (selective)
            be->rmsnorm(be, &a->xn2, &a->rstd2, &a->mid, &L->ln_mlp, (float)s->rms_eps);
        linear_backward(m, l, LIN_GATE, &dxn, &dgate, &a->xn2, &a->xa[LIN_GATE], 0);
        linear_backward(m, l, LIN_UP, &dxn, &dup, &a->xn2, &a->xa[LIN_UP], 1);
    }
    be->rmsnorm_backward(be, dres, L->full_ln_mlp.grad.data ? &L->full_ln_mlp.grad : NULL, &dxn, &a->mid,
                         &L->ln_mlp, &a->rstd2);

    linear_backward(m, l, LIN_O, &datt, residual_grad(m, dres, &dxn), &a->att, &a->xa[LIN_O], 0);
    int64_t qs[3] = {T, s->heads, s->head_dim}, ks[3] = {T, s->kv_heads, s->head_dim};
    struct tensor q3 = tensor_reshape(&a->q, 3, qs), k3 = tensor_reshape(&a->k, 3, ks);
    struct tensor v3 = tensor_reshape(&a->v, 3, ks), o3 = tensor_reshape(&a->att, 3, qs);
    struct tensor dq3 = tensor_reshape(&dq, 3, qs), dk3 = tensor_reshape(&dk, 3, ks);
    struct tensor dv3 = tensor_reshape(&dv, 3, ks), do3 = tensor_reshape(&datt, 3, qs);
    const struct tensor *sinks = L->sinks.data ? &L->sinks : NULL;
    struct tensor *dsinks = L->full_sinks.grad.data ? &L->full_sinks.grad : NULL;
    be->attention_backward(be, &dq3, &dk3, &dv3, dsinks, &do3, &q3, &k3, &v3, sinks, &o3, &a->lse, sl, L->window,
                           m->attn_scale);
    be->rope(be, &dq3, &m->rope, sl, true);
    be->rope(be, &dk3, &m->rope, sl, true);
    if (selective)
        be->rmsnorm(be, &a->xn1, &a->rstd1, &a->x, &L->ln_attn, (float)s->rms_eps);
    linear_backward(m, l, LIN_Q, &dxn, &dq, &a->xn1, &a->xa[LIN_Q], 0);
    linear_backward(m, l, LIN_K, &dxn, &dk, &a->xn1, &a->xa[LIN_K], 1);
    linear_backward(m, l, LIN_V, &dxn, &dv, &a->xn1, &a->xa[LIN_V], 1);
    be->rmsnorm_backward(be, dres, L->full_ln_attn.grad.data ? &L->full_ln_attn.grad : NULL, &dxn, &a->x,
                         &L->ln_attn, &a->rstd1);
}

/* Final norm, then the loss over blocks of whole-vocabulary rows, summed
 * into the step's scalars; with backward (the loss times their loss_scale),
 * d(final norm output) into grad.normed and on into dres. */
static void loss_forward_backward(struct llama *m, int64_t T, const struct tensor *labels, bool backward,
                                  struct tensor *dres)
{
    struct backend *be = m->be;
    const struct model_spec *s = m->spec;
    int64_t C = s->hidden, V = s->vocab;
    struct tensor xf = view(m, "norm.input", 0, 0, T, C), rstd = view(m, "norm.rstd", 0, 0, T, 1);
    struct tensor xn = view(m, "norm.out", 0, 0, T, C), lse_all = view(m, "loss.{lse,target_logit}", 0, 0, T, 1);
    be->rmsnorm(be, &xn, &rstd, &xf, &m->norm, (float)s->rms_eps);
    const struct plan_buffer *chunk = plan_find(&m->plan, "loss.logits_chunk");
    int64_t rows = chunk->elems / V;
    struct tensor dxn = view(m, "grad.normed", 0, 0, T, C);
    struct step_scalars *sc = step_scalars_of(m);
    for (int64_t t0 = 0; t0 < T; t0 += rows) {
        int64_t n = T - t0 < rows ? T - t0 : rows;
        struct tensor logits = view(m, "loss.logits_chunk", 0, 0, n, V);
        struct tensor x = tensor_rows(&xn, t0, n), lab = tensor_rows(labels, t0, n), lse = tensor_rows(&lse_all, t0, n);
        be->matmul(be, &logits, &x, false, &m->head, true, 1.0f, 0.0f);
        be->cross_entropy(be, &lse, &logits, &lab, &sc->loss_sum);
        if (!backward)
            continue;
        be->cross_entropy_backward(be, &logits, &lse, &lab, &sc->loss_scale);
        struct tensor dx = tensor_rows(&dxn, t0, n);
        be->matmul(be, &dx, &logits, false, &m->head, false, 1.0f, 0.0f);
        if (m->full_head.grad.data) /* dW_head += dlogits^T x */
            be->matmul(be, &m->full_head.grad, &logits, true, &x, false, 1.0f, 1.0f);
    }
    if (backward) {
        be->zero(be, dres);
        be->rmsnorm_backward(be, dres, m->full_norm.grad.data ? &m->full_norm.grad : NULL, &dxn, &xf, &m->norm,
                             &rstd);
    }
}

/* The LoRA factors' compute copy from their fp32 values (which the optimizer,
 * a resume or an adapter load may have changed): one pass over the block. */
static void refresh_lora_compute(struct llama *m)
{
    if (!m->lora_compute.data)
        return;
    struct tensor all = tensor_1d(m->arena.block[PLAN_TRAINABLE], DTYPE_F32, tensor_numel(&m->lora_compute));
    m->be->convert(m->be, &m->lora_compute, &all);
}

/* A step's ops once its batch is in the backend's memory: forward, loss and (with backward) backward. Nothing in
 * here waits for the device or passes a value that changes between steps of T tokens (those are step_scalars),
 * so that a record of it replays any such step. */
static void step_ops(struct llama *m, int64_t T, const struct seq_layout *sl, bool backward)
{
    struct backend *be = m->be;
    const struct model_spec *s = m->spec;
    int64_t C = s->hidden;
    char *dev = plan_arena_at(&m->arena, BUFFERS_BATCH, 0);
    struct tensor ids = tensor_1d(dev, DTYPE_I32, T), labels = tensor_2d(dev + 4 * T, DTYPE_I32, T, 1);
    struct tensor x0 = layer_input(m, 0, T);
    embed_tokens(m, &x0, &ids);
    refresh_lora_compute(m);
    /* Forward, keeping each layer's input (and, without checkpointing, its working set). */
    for (int64_t l = 0; l < s->layers; l++) {
        checkpoint_move(m, l, T, true);
        struct layer_acts a = layer_views(m, l, T);
        struct tensor out = l + 1 < s->layers ? layer_input(m, l + 1, T) : view(m, "norm.input", 0, 0, T, C);
        layer_forward(m, l, &a, &out, sl);
    }
    struct tensor dres = view(m, "grad.residual", 0, 0, T, C);
    loss_forward_backward(m, T, &labels, backward, &dres);
    /* Full checkpointing: the last layer forward wrote into the recompute buffers (the one before the kept
     * ones) still has its working set there (the loss and the kept layers touch none of them); only the
     * layers before it are made again. */
    int64_t recomputed = m->rc.grad_ckpt == GRAD_CKPT_FULL ? first_kept(m) - 1 : 0;
    for (int64_t l = s->layers - 1; backward && l >= 0; l--) {
        struct layer_acts a = layer_views(m, l, T);
        if (l < s->layers - 1) /* the input back from host memory, where the checkpoints are (else nothing) */
            checkpoint_move(m, l, T, false);
        if (l < recomputed) {
            struct tensor scratch_out = view(m, "grad.normed", 0, 0, T, C); /* the output is not needed again */
            layer_forward(m, l, &a, &scratch_out, sl);
        }
        layer_backward(m, l, &a, &dres, sl);
    }
    if (backward && m->full_embed.grad.data)
        be->embedding_backward(be, &m->full_embed.grad, &dres, &ids);
}

/* step_ops through a record where the backend makes them: a token count seen on the step before is recorded
 * once and replayed from then on (a count seen once, such as an epoch's last short batch, runs op by op). */
static void step_ops_recorded(struct llama *m, int64_t T, const struct seq_layout *sl, bool backward)
{
    struct backend *be = m->be;
    struct step_record *r = &m->records[backward];
    m->backward_steps += backward;
    if (!be->capture_begin || m->unrecorded) {
        step_ops(m, T, sl, backward);
        return;
    }
    if (!(r->graph && r->tokens == T)) {
        if (r->last_tokens != T) {
            r->last_tokens = T;
            step_ops(m, T, sl, backward);
            return;
        }
        if (r->graph)
            be->graph_free(be, r->graph);
        be->capture_begin(be);
        step_ops(m, T, sl, backward);
        r->graph = be->capture_end(be);
        r->tokens = T;
        if (!r->graph) /* the failure is the backend's to report (check) */
            return;
    }
    be->graph_run(be, r->graph);
    m->replayed += backward;
}

int llama_step(struct llama *m, const struct llama_batch *batch, bool backward, float loss_scale, uint64_t step,
               double *loss_sum, int64_t *counted, tune_err *err)
{
    struct backend *be = m->be;
    const struct model_spec *s = m->spec;
    int64_t T = batch->tokens, cap = m->rc.micro_batch * m->rc.seq;
    if (T < 1 || T > cap || batch->sequences < 1 || batch->sequences > T)
        return err_set(err, "batch of %lld tokens in %lld sequences does not fit the planned %lld tokens",
                       (long long)T, (long long)batch->sequences, (long long)cap), -1;

    /* The batch buffer as buffers.h lays it out, made on the host and sent in one upload. */
    size_t scalars_at = sizeof(int32_t) * (size_t)BUFFERS_SCALARS_AT(cap);
    size_t bytes = scalars_at + sizeof(struct step_scalars);
    int32_t *host = calloc(1, bytes);
    if (!host)
        return err_set(err, "out of memory for a batch of %lld tokens", (long long)T), -1;
    int64_t max_len = 0, n = 0;
    for (int64_t q = 0; q < batch->sequences; q++) {
        int32_t a = batch->starts[q], b = batch->starts[q + 1];
        if (a != n || b <= a || b > T) {
            free(host);
            return err_set(err, "batch: sequence %lld spans [%d, %d), not a packed run", (long long)q, a, b), -1;
        }
        for (int32_t t = a; t < b; t++)
            host[2 * T + t] = t - a;
        max_len = b - a > max_len ? b - a : max_len;
        n = b;
    }
    if (n != T || max_len > m->rc.seq) {
        free(host);
        return err_set(err, "batch: sequences cover %lld of %lld tokens, longest %lld (seq %lld)", (long long)n,
                       (long long)T, (long long)max_len, (long long)m->rc.seq), -1;
    }
    int64_t count = 0;
    for (int64_t t = 0; t < T; t++) {
        if (batch->ids[t] < 0 || batch->ids[t] >= s->vocab || batch->labels[t] >= s->vocab ||
            (batch->labels[t] < 0 && batch->labels[t] != -100)) {
            free(host);
            return err_set(err, "batch: token %lld has id %d / label %d outside the vocabulary of %lld", (long long)t,
                           batch->ids[t], batch->labels[t], (long long)s->vocab), -1;
        }
        count += batch->labels[t] != -100;
    }
    memcpy(host, batch->ids, sizeof(int32_t) * (size_t)T);
    memcpy(host + T, batch->labels, sizeof(int32_t) * (size_t)T);
    memcpy(host + 3 * T, batch->starts, sizeof(int32_t) * (size_t)(batch->sequences + 1));
    for (int64_t q = batch->sequences + 1; q <= T; q++) /* empty sequences at T: see seq_layout */
        host[3 * T + q] = (int32_t)T;
    struct step_scalars *sc = (struct step_scalars *)((char *)host + scalars_at);
    *sc = (struct step_scalars){.dropout_seed = m->seed ^ step, .loss_sum = 0, .loss_scale = loss_scale};
    char *dev = plan_arena_at(&m->arena, BUFFERS_BATCH, 0);
    be->upload(be, dev, host, bytes);
    free(host);
    if (m->embed_rows.data) /* the rows of a host-held table, gathered before the ops that send them */
        embed_gather(m, batch->ids, T);

    struct seq_layout sl = {(const int32_t *)(dev + 12 * T), (const int32_t *)(dev + 8 * T), batch->sequences,
                            max_len, T};
    step_ops_recorded(m, T, &sl, backward);
    be->download(be, loss_sum, &step_scalars_of(m)->loss_sum, sizeof *loss_sum);
    *counted = count;
    return 0;
}

/* Inference over a KV cache: the n tokens at positions [pos0, pos0 + n) of
 * one sequence (a prompt, then one token at a time) run through every layer,
 * their keys and values appended to the cache; the logits of the last one go
 * to logits_out [V] (host). Uses the "recompute" working set, so the model
 * must be planned with full checkpointing and seq >= the cache length. */
int llama_decode(struct llama *m, struct llama_kv_cache *kv, const int32_t *ids, int64_t n, float *logits_out,
                 tune_err *err)
{
    struct backend *be = m->be;
    const struct model_spec *s = m->spec;
    int64_t C = s->hidden, kvd = s->kv_heads * s->head_dim, pos0 = kv->length;
    if (m->rc.grad_ckpt != GRAD_CKPT_FULL || m->rc.lora_dropout != 0)
        return err_set(err, "llama_decode needs a model planned with full checkpointing and no dropout");
    if (n < 1 || pos0 + n > kv->capacity || pos0 + n > m->rc.seq)
        return err_set(err, "%lld tokens at position %lld overflow the cache of %lld", (long long)n, (long long)pos0,
                       (long long)kv->capacity);
    for (int64_t t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= s->vocab)
            return err_set(err, "token id %d is outside the vocabulary of %lld", ids[t], (long long)s->vocab);
    char *dev = plan_arena_at(&m->arena, BUFFERS_BATCH, 0);
    int32_t *host = malloc(sizeof(int32_t) * (size_t)(2 * n));
    if (!host)
        return err_set(err, "out of memory");
    memcpy(host, ids, sizeof(int32_t) * (size_t)n);
    for (int64_t t = 0; t < n; t++)
        host[n + t] = (int32_t)(pos0 + t);
    be->upload(be, dev, host, sizeof(int32_t) * (size_t)(2 * n));
    free(host);
    refresh_lora_compute(m);
    struct tensor idt = tensor_1d(dev, DTYPE_I32, n);
    struct seq_layout sl = {NULL, (const int32_t *)(dev + 4 * n), 1, n, 1};

    struct tensor x = layer_input(m, 0, n), out = view(m, "norm.input", 0, 0, n, C);
    if (m->embed_rows.data)
        embed_gather(m, ids, n);
    embed_tokens(m, &x, &idt);
    int64_t qs[3] = {n, s->heads, s->head_dim}, ks[3] = {n, s->kv_heads, s->head_dim};
    for (int64_t l = 0; l < s->layers; l++) {
        struct llama_layer *L = &m->layers[l];
        struct layer_acts a = layer_views_at(m, l, n, "recompute", 0);
        a.x = x;
        be->rmsnorm(be, &a.xn1, &a.rstd1, &a.x, &L->ln_attn, (float)s->rms_eps);
        /* k and v go straight into the cache rows of these positions. */
        size_t row = (size_t)dtype_bytes(kv->dtype, kvd);
        struct tensor kc = tensor_2d((char *)kv->k[l] + row * (size_t)pos0, kv->dtype, n, kvd);
        struct tensor vc = tensor_2d((char *)kv->v[l] + row * (size_t)pos0, kv->dtype, n, kvd);
        linear_forward(m, l, LIN_Q, &a.q, &a.xn1, &a.xa[LIN_Q], NULL);
        linear_forward(m, l, LIN_K, &kc, &a.xn1, &a.xa[LIN_K], NULL);
        linear_forward(m, l, LIN_V, &vc, &a.xn1, &a.xa[LIN_V], NULL);
        struct tensor q3 = tensor_reshape(&a.q, 3, qs), k3 = tensor_reshape(&kc, 3, ks), o3 = tensor_reshape(&a.att, 3, qs);
        be->rope(be, &q3, &m->rope, &sl, false);
        be->rope(be, &k3, &m->rope, &sl, false);
        int64_t cs[3] = {pos0 + n, s->kv_heads, s->head_dim};
        struct tensor k2 = tensor_2d(kv->k[l], kv->dtype, pos0 + n, kvd);
        struct tensor v2 = tensor_2d(kv->v[l], kv->dtype, pos0 + n, kvd);
        struct tensor kall = tensor_reshape(&k2, 3, cs), vall = tensor_reshape(&v2, 3, cs);
        const struct tensor *sinks = L->sinks.data ? &L->sinks : NULL;
        be->attention_cached(be, &o3, &q3, &kall, &vall, sinks, pos0, L->window, m->attn_scale);
        linear_forward(m, l, LIN_O, &a.mid, &a.att, &a.xa[LIN_O], &a.x);
        mlp_forward(m, l, &a, &out);
        be->convert(be, &x, &out);
    }
    kv->length = pos0 + n;
    struct tensor last = tensor_rows(&x, n - 1, 1), xn = view(m, "norm.out", 0, 0, 1, C);
    struct tensor rstd = view(m, "norm.rstd", 0, 0, 1, 1), logits = view(m, "loss.logits_chunk", 0, 0, 1, s->vocab);
    be->rmsnorm(be, &xn, &rstd, &last, &m->norm, (float)s->rms_eps);
    be->matmul(be, &logits, &xn, false, &m->head, true, 1.0f, 0.0f);
    return llama_download_f32(be, logits_out, &logits, err);
}

int llama_kv_cache_init(struct llama_kv_cache *kv, const struct llama *m, int64_t capacity, tune_err *err)
{
    const struct model_spec *s = m->spec;
    memset(kv, 0, sizeof *kv);
    kv->capacity = capacity;
    kv->layers = s->layers;
    kv->dtype = plan_find(&m->plan, "layers.*.input")->dtype;
    kv->k = calloc((size_t)s->layers, sizeof *kv->k);
    kv->v = calloc((size_t)s->layers, sizeof *kv->v);
    size_t bytes = (size_t)dtype_bytes(kv->dtype, capacity * s->kv_heads * s->head_dim);
    for (int64_t l = 0; kv->k && kv->v && l < s->layers; l++)
        if (!(kv->k[l] = m->be->alloc(m->be, bytes)) || !(kv->v[l] = m->be->alloc(m->be, bytes)))
            break;
    for (int64_t l = 0; kv->k && kv->v && l < s->layers; l++)
        if (!kv->k[l] || !kv->v[l]) {
            llama_kv_cache_free(kv, m);
            return err_set(err, "cannot allocate a KV cache of %lld positions", (long long)capacity);
        }
    if (!kv->k || !kv->v) {
        llama_kv_cache_free(kv, m);
        return err_set(err, "out of memory");
    }
    kv->be = m->be;
    return 0;
}

void llama_kv_cache_free(struct llama_kv_cache *kv, const struct llama *m)
{
    for (int64_t l = 0; l < kv->layers; l++) {
        if (kv->k && kv->k[l])
            m->be->free(m->be, kv->k[l]);
        if (kv->v && kv->v[l])
            m->be->free(m->be, kv->v[l]);
    }
    free(kv->k);
    free(kv->v);
    memset(kv, 0, sizeof *kv);
}
