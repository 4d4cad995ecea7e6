/* The CPU backend's ops, one file each (ggml's habit: the same split in every
 * backend), gathered into the table by backend_cpu.c. Contracts, shapes and
 * dtypes are backend.h's; here only what the CPU adds: every float tensor is
 * F32 (convert is the one op that reads or writes BF16/F16), ids and labels
 * I32, and the checks of both are asserts (programmer errors). */
#ifndef TUNE_BACKEND_CPU_OPS_H
#define TUNE_BACKEND_CPU_OPS_H

#include "backend/backend.h"

/* Column sums over rows (bias and norm weight gradients, embedding rows) are
 * split into tasks of this many columns: one owner per output element, no
 * atomics, and rows read in contiguous runs rather than one float a line. */
#define CPU_COLS_PER_TASK 256

/* Columns of t seen as a matrix: the last dimension. */
static inline int64_t cpu_cols(const struct tensor *t) { return t->shape[t->rank - 1]; }
/* Rows of t seen as a matrix: every dimension but the last. */
static inline int64_t cpu_rows(const struct tensor *t) { return tensor_numel(t) / cpu_cols(t); }

void cpu_convert(struct backend *b, struct tensor *dst, const struct tensor *src);

void cpu_matmul_add(struct backend *b, struct tensor *d, const struct tensor *c, const struct tensor *a, bool ta,
                    const struct tensor *bm, bool tb, float alpha);
void cpu_matmul(struct backend *b, struct tensor *c, const struct tensor *a, bool ta, const struct tensor *bm,
                bool tb, float alpha, float beta);

void cpu_add_bias(struct backend *b, struct tensor *y, const struct tensor *bias);
void cpu_bias_backward(struct backend *b, struct tensor *dbias, const struct tensor *dy);
void cpu_axpy(struct backend *b, struct tensor *y, float alpha, const struct tensor *x);
double cpu_sum_squares(struct backend *b, const struct tensor *x);
void cpu_scale(struct backend *b, struct tensor *x, float s);

void cpu_embedding(struct backend *b, struct tensor *out, const struct tensor *table,
                   const struct tensor *ids);
void cpu_embedding_backward(struct backend *b, struct tensor *dtable, const struct tensor *dout,
                            const struct tensor *ids);

void cpu_rmsnorm(struct backend *b, struct tensor *out, struct tensor *rstd, const struct tensor *x,
                 const struct tensor *w, float eps);
void cpu_rmsnorm_backward(struct backend *b, struct tensor *dx, struct tensor *dw, const struct tensor *dout,
                          const struct tensor *x, const struct tensor *w, const struct tensor *rstd);

void cpu_rope(struct backend *b, struct tensor *x, const struct rope_table *rt, const struct seq_layout *sl,
              bool backward);

void cpu_attention(struct backend *b, struct tensor *out, struct tensor *lse, const struct tensor *q,
                   const struct tensor *k, const struct tensor *v, const struct tensor *sinks,
                   const struct seq_layout *sl, int64_t window, float scale);
void cpu_attention_backward(struct backend *b, struct tensor *dq, struct tensor *dk, struct tensor *dv,
                            struct tensor *dsinks, const struct tensor *dout, const struct tensor *q,
                            const struct tensor *k, const struct tensor *v, const struct tensor *sinks,
                            const struct tensor *out, const struct tensor *lse, const struct seq_layout *sl,
                            int64_t window, float scale);

void cpu_attention_cached(struct backend *b, struct tensor *out, const struct tensor *q, const struct tensor *kcache,
                          const struct tensor *vcache, const struct tensor *sinks, int64_t pos0, int64_t window,
                          float scale);

void cpu_swiglu(struct backend *b, struct tensor *h, const struct tensor *gate, const struct tensor *up);
void cpu_swiglu_backward(struct backend *b, struct tensor *dgate, struct tensor *dup, const struct tensor *dh,
                         const struct tensor *gate, const struct tensor *up);

void cpu_moe_topk(struct backend *b, struct tensor *experts, struct tensor *weights, const struct tensor *logits);
void cpu_moe_topk_backward(struct backend *b, struct tensor *dlogits, const struct tensor *dweights,
                           const struct tensor *experts, const struct tensor *weights);
void cpu_moe_group(struct backend *b, struct tensor *order, struct tensor *position, struct tensor *offsets,
                   const struct tensor *experts);
void cpu_moe_gather(struct backend *b, struct tensor *rows, const struct tensor *x, const struct tensor *order,
                    const struct tensor *weights, int64_t k);
void cpu_moe_scatter(struct backend *b, struct tensor *y, const struct tensor *rows, const struct tensor *position,
                     const struct tensor *weights, int64_t k);
void cpu_moe_weights_backward(struct backend *b, struct tensor *dweights, const struct tensor *dy,
                              const struct tensor *rows, const struct tensor *position, int64_t k);
void cpu_moe_matmul(struct backend *b, struct tensor *c, const struct tensor *a, const struct tensor *w, bool tw,
                    const struct tensor *bias, const struct tensor *offsets, float beta);
void cpu_moe_weight_grad(struct backend *b, struct tensor *dw, const struct tensor *dc, const struct tensor *a,
                         const struct tensor *offsets);
void cpu_swiglu_oai(struct backend *b, struct tensor *h, const struct tensor *x, float alpha, float limit);
void cpu_swiglu_oai_backward(struct backend *b, struct tensor *dx, const struct tensor *dh, const struct tensor *x,
                             float alpha, float limit);

void cpu_cross_entropy(struct backend *b, struct tensor *lse, const struct tensor *logits,
                       const struct tensor *labels, double *loss_sum);
void cpu_cross_entropy_backward(struct backend *b, struct tensor *logits, const struct tensor *lse,
                                const struct tensor *labels, const float *scale);

void cpu_dropout(struct backend *b, struct tensor *y, const struct tensor *x, float p, const uint64_t *seed,
                 uint64_t offset);

void cpu_adamw(struct backend *b, struct tensor *param, const struct tensor *grad, struct tensor *m,
               struct tensor *v, double lr, double beta1, double beta2, double eps, double weight_decay,
               int64_t step);

#endif
