/* The mixture-of-experts block of gpt-oss, against the op table: each
 * token's top-k experts by router logit, softmax weights over those k, the
 * tokens grouped by expert, every expert's gate_up linear (with bias), the
 * clamped SwiGLU on interleaved columns, its down linear (with bias), and the
 * weighted sum back into the residual stream. The router linear itself (and
 * its LoRA) is the caller's, as any other linear of the layer. */
#ifndef TUNE_MODEL_MOE_H
#define TUNE_MODEL_MOE_H

#include "model/llama.h"

/* gpt-oss's SwiGLU constant (its limit is the spec's swiglu_limit). */
#define MOE_SWIGLU_ALPHA 1.702f

/* What forward keeps for backward (N = T * k rows after routing). */
struct moe_acts {
    struct tensor experts, weights;           /* [T, k] int32, fp32 */
    struct tensor order, position, offsets;   /* [N], [N], [E + 1] int32 */
    struct tensor rows, gate_up, act, out;    /* [N, C], [N, 2I], [N, I], [N, C] */
    struct tensor xa_gate_up, xa_down;        /* [N, r]: x A^T of the experts' LoRA, where trained */
};

/* Backward's temporaries, reused by every layer. */
struct moe_scratch {
    struct tensor dout, dgate_up, dact, drows; /* [N, C], [N, 2I], [N, I], [N, C] */
    struct tensor dweights;                    /* [N] fp32 */
    struct tensor lora;                        /* [N, r] fp32: the LoRA's scaled products */
    struct tensor act_again;                   /* [N, I] where selective checkpointing recomputes act, else NULL data */
};

/* y += the block's output for the normed input xn, from router logits [T, E];
 * lora [N, r] is the LoRA's scratch. */
void moe_forward(struct llama *m, int64_t l, struct moe_acts *a, struct tensor *y, const struct tensor *xn,
                 const struct tensor *logits, struct tensor *lora);

/* From dy (the gradient of the block's output): dxn overwritten with the
 * gradient through the experts, dlogits [T, E] with the router logits', and
 * the experts' LoRA gradients added to. */
void moe_backward(struct llama *m, int64_t l, struct moe_acts *a, const struct moe_scratch *g,
                  struct tensor *dxn, struct tensor *dlogits, const struct tensor *dy);

#endif
