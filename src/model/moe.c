/* See moe.h. The experts' weights are stored as linears, [E * out, in]
 * (transformers keeps them transposed, [E, in, out]: the loader turns them),
 * so one moe_matmul with tw = true runs every expert's forward and the same
 * call with tw = false its input gradient. */
#include "model/moe.h"

/* t viewed as e stacked [rows, cols] matrices. */
static struct tensor stacked(const struct tensor *t, int64_t e, int64_t rows, int64_t cols)
{
    int64_t shape[3] = {e, rows, cols};
    return tensor_reshape(t, 3, shape);
}

/* Expert weight i of layer l as [E, out, in], its bias as [E, out]. */
static struct tensor expert_weight(const struct llama *m, int64_t l, int i)
{
    const struct linear_shape *li = &m->lin[i];
    return stacked(&m->layers[l].w[i], li->stack, li->out, li->in);
}

static struct tensor expert_bias(const struct llama *m, int64_t l, int i)
{
    const struct linear_shape *li = &m->lin[i];
    int64_t shape[2] = {li->stack, li->out};
    return tensor_reshape(&m->layers[l].bias[i], 2, shape);
}

/* The experts' LoRA (PEFT's target_parameters): per expert e, y += s x A_e^T
 * B_e^T, A stacked [E, r, in], B [E, out, r]; xa keeps x A^T for backward. */
static void lora_forward(struct llama *m, int64_t l, int i, struct tensor *y, const struct tensor *x, struct tensor *xa,
                         const struct tensor *offsets, struct tensor *scaled)
{
    struct backend *be = m->be;
    const struct linear_shape *li = &m->lin[i];
    const struct lora *lo = &m->layers[l].lora[i];
    if (!lo->on)
        return;
    int64_t r = m->rc.lora_r;
    struct tensor A = stacked(&lo->A, li->stack, r, li->in), B = stacked(&lo->B, li->stack, li->out, r);
    be->moe_matmul(be, xa, x, &A, true, NULL, offsets, 0.0f);
    be->convert(be, scaled, xa);
    be->scale(be, scaled, m->lora_scale);
    be->moe_matmul(be, y, scaled, &B, true, NULL, offsets, 1.0f);
}

/* Given dy of expert linear i: dB += s dy^T xa, dA += (s dy B)^T x, dx += s dy B A.
 * xa is scaled by s in place (it is not read again). */
static void lora_backward(struct llama *m, int64_t l, int i, struct tensor *dx, const struct tensor *dy,
                          const struct tensor *x, struct tensor *xa, const struct tensor *offsets, struct tensor *dxa)
{
    struct backend *be = m->be;
    const struct linear_shape *li = &m->lin[i];
    struct lora *lo = &m->layers[l].lora[i];
    if (!lo->on)
        return;
    int64_t r = m->rc.lora_r;
    struct tensor A = stacked(&lo->A, li->stack, r, li->in), B = stacked(&lo->B, li->stack, li->out, r);
    struct tensor dA = stacked(&lo->dA, li->stack, r, li->in), dB = stacked(&lo->dB, li->stack, li->out, r);
    be->moe_matmul(be, dxa, dy, &B, false, NULL, offsets, 0.0f);
    be->scale(be, dxa, m->lora_scale);
    be->scale(be, xa, m->lora_scale);
    be->moe_weight_grad(be, &dB, dy, xa, offsets);
    be->moe_weight_grad(be, &dA, dxa, x, offsets);
    be->moe_matmul(be, dx, dxa, &A, false, NULL, offsets, 1.0f);
}

void moe_forward(struct llama *m, int64_t l, struct moe_acts *a, struct tensor *y, const struct tensor *xn,
                 const struct tensor *logits, struct tensor *lora)
{
    struct backend *be = m->be;
    int64_t k = m->spec->experts_per_token;
    float limit = (float)m->spec->swiglu_limit;
    struct tensor w_gu = expert_weight(m, l, LIN_EXPERTS_GATE_UP), b_gu = expert_bias(m, l, LIN_EXPERTS_GATE_UP);
    struct tensor w_down = expert_weight(m, l, LIN_EXPERTS_DOWN), b_down = expert_bias(m, l, LIN_EXPERTS_DOWN);
    be->moe_topk(be, &a->experts, &a->weights, logits);
    be->moe_group(be, &a->order, &a->position, &a->offsets, &a->experts);
    be->moe_gather(be, &a->rows, xn, &a->order, NULL, k);
    be->moe_matmul(be, &a->gate_up, &a->rows, &w_gu, true, &b_gu, &a->offsets, 0.0f);
    lora_forward(m, l, LIN_EXPERTS_GATE_UP, &a->gate_up, &a->rows, &a->xa_gate_up, &a->offsets, lora);
    be->swiglu_oai(be, &a->act, &a->gate_up, MOE_SWIGLU_ALPHA, limit);
    be->moe_matmul(be, &a->out, &a->act, &w_down, true, &b_down, &a->offsets, 0.0f);
    lora_forward(m, l, LIN_EXPERTS_DOWN, &a->out, &a->act, &a->xa_down, &a->offsets, lora);
    be->moe_scatter(be, y, &a->out, &a->position, &a->weights, k);
}

/* Full fine-tuning of expert linear i, given dy of its rows and its input x:
 * dW[e] += dy_e^T x_e, db[e] += the sum of dy_e's rows (a product with ones). */
static void full_backward(struct llama *m, int64_t l, int i, const struct tensor *dy, const struct tensor *x,
                          const struct tensor *offsets)
{
    struct backend *be = m->be;
    const struct linear_shape *li = &m->lin[i];
    struct llama_layer *L = &m->layers[l];
    if (!L->full_w[i].grad.data)
        return;
    struct tensor dw = stacked(&L->full_w[i].grad, li->stack, li->out, li->in);
    be->moe_weight_grad(be, &dw, dy, x, offsets);
    if (L->full_bias[i].grad.data) {
        struct tensor db = stacked(&L->full_bias[i].grad, li->stack, li->out, 1);
        struct tensor ones = tensor_2d(m->ones.data, m->ones.dtype, x->shape[0], 1);
        be->moe_weight_grad(be, &db, dy, &ones, offsets);
    }
}

void moe_backward(struct llama *m, int64_t l, struct moe_acts *a, const struct moe_scratch *g,
                  struct tensor *dxn, struct tensor *dlogits, const struct tensor *dy)
{
    struct backend *be = m->be;
    int64_t k = m->spec->experts_per_token;
    float limit = (float)m->spec->swiglu_limit;
    struct tensor w_gu = expert_weight(m, l, LIN_EXPERTS_GATE_UP), w_down = expert_weight(m, l, LIN_EXPERTS_DOWN);
    struct tensor dweights = g->dweights, dout = g->dout, dact = g->dact, dgate_up = g->dgate_up, drows = g->drows;
    struct tensor lora = g->lora, act = a->act;
    bool down_trained = m->layers[l].lora[LIN_EXPERTS_DOWN].on || m->layers[l].full_w[LIN_EXPERTS_DOWN].grad.data;
    if (g->act_again.data && down_trained) { /* selective checkpointing */
        act = g->act_again;
        be->swiglu_oai(be, &act, &a->gate_up, MOE_SWIGLU_ALPHA, limit);
    }
    /* y[t] += sum_j w[t, j] out[row of (t, j)]: the weights' and the rows' gradients. */
    be->moe_weights_backward(be, &dweights, dy, &a->out, &a->position, k);
    be->moe_gather(be, &dout, dy, &a->order, &a->weights, k);
    be->moe_matmul(be, &dact, &dout, &w_down, false, NULL, &a->offsets, 0.0f);
    lora_backward(m, l, LIN_EXPERTS_DOWN, &dact, &dout, &act, &a->xa_down, &a->offsets, &lora);
    full_backward(m, l, LIN_EXPERTS_DOWN, &dout, &act, &a->offsets);
    be->swiglu_oai_backward(be, &dgate_up, &dact, &a->gate_up, MOE_SWIGLU_ALPHA, limit);
    be->moe_matmul(be, &drows, &dgate_up, &w_gu, false, NULL, &a->offsets, 0.0f);
    lora_backward(m, l, LIN_EXPERTS_GATE_UP, &drows, &dgate_up, &a->rows, &a->xa_gate_up, &a->offsets, &lora);
    full_backward(m, l, LIN_EXPERTS_GATE_UP, &dgate_up, &a->rows, &a->offsets);
    be->zero(be, dxn);
    be->moe_scatter(be, dxn, &drows, &a->position, NULL, k);
    int64_t shape[2] = {a->experts.shape[0], k};
    struct tensor dw = tensor_reshape(&dweights, 2, shape);
    be->moe_topk_backward(be, dlogits, &dw, &a->experts, &a->weights);
}
