/* See moe.h. The experts' weights are stored as linears, [E * out, in]
 * (transformers keeps them transposed, [E, in, out]: the loader turns them),
 * so one moe_matmul with tw = true runs every expert's forward and the same
 * call with tw = false its input gradient. */
#include "model/moe.h"

/* Expert weight i of layer l as [E, out, in], its bias as [E, out]. */
static struct tensor expert_weight(const struct llama *m, int64_t l, int i)
{
    const struct linear_shape *li = &m->lin[i];
    int64_t shape[3] = {li->stack, li->out, li->in};
    return tensor_reshape(&m->layers[l].w[i], 3, shape);
}

static struct tensor expert_bias(const struct llama *m, int64_t l, int i)
{
    const struct linear_shape *li = &m->lin[i];
    int64_t shape[2] = {li->stack, li->out};
    return tensor_reshape(&m->layers[l].bias[i], 2, shape);
}

void moe_forward(struct llama *m, int64_t l, struct moe_acts *a, struct tensor *y, const struct tensor *xn,
                 const struct tensor *logits)
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
    be->swiglu_oai(be, &a->act, &a->gate_up, MOE_SWIGLU_ALPHA, limit);
    be->moe_matmul(be, &a->out, &a->act, &w_down, true, &b_down, &a->offsets, 0.0f);
    be->moe_scatter(be, y, &a->out, &a->position, &a->weights, k);
}

void moe_backward(struct llama *m, int64_t l, const struct moe_acts *a, const struct moe_scratch *g,
                  struct tensor *dxn, struct tensor *dlogits, const struct tensor *dy)
{
    struct backend *be = m->be;
    int64_t k = m->spec->experts_per_token;
    float limit = (float)m->spec->swiglu_limit;
    struct tensor w_gu = expert_weight(m, l, LIN_EXPERTS_GATE_UP), w_down = expert_weight(m, l, LIN_EXPERTS_DOWN);
    struct tensor dweights = g->dweights, dout = g->dout, dact = g->dact, dgate_up = g->dgate_up, drows = g->drows;
    /* y[t] += sum_j w[t, j] out[row of (t, j)]: the weights' and the rows' gradients. */
    be->moe_weights_backward(be, &dweights, dy, &a->out, &a->position, k);
    be->moe_gather(be, &dout, dy, &a->order, &a->weights, k);
    be->moe_matmul(be, &dact, &dout, &w_down, false, NULL, &a->offsets, 0.0f);
    be->swiglu_oai_backward(be, &dgate_up, &dact, &a->gate_up, MOE_SWIGLU_ALPHA, limit);
    be->moe_matmul(be, &drows, &dgate_up, &w_gu, false, NULL, &a->offsets, 0.0f);
    be->zero(be, dxn);
    be->moe_scatter(be, dxn, &drows, &a->position, NULL, k);
    int64_t shape[2] = {a->experts.shape[0], k};
    struct tensor dw = tensor_reshape(&dweights, 2, shape);
    be->moe_topk_backward(be, dlogits, &dw, &a->experts, &a->weights);
}
