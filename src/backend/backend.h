/* The op table: every operation the models need, forward and backward, behind
 * one struct of function pointers (ggml's way). model/ calls only these, so the
 * same forward/backward code runs on the CPU reference and on CUDA. Each
 * backend mirrors the others op for op; tests compare them on random inputs.
 *
 * Tensors are views: data lives in blocks the caller allocated through the
 * backend (from the memory plan); ops never allocate. Row-major, the last
 * dimension contiguous. Size letters: T tokens (micro-batch x seq, packed),
 * C hidden, H query heads, KV key/value heads, D head_dim, I intermediate,
 * V vocab, r LoRA rank, S sequences in a packed row set.
 *
 * Conventions: an op that "accumulates" adds into its output (dx += ...);
 * every other op overwrites. Gradients of activations are in the activation
 * dtype; gradients of trainable tensors are fp32. */
#ifndef TUNE_BACKEND_BACKEND_H
#define TUNE_BACKEND_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/error.h"

#define TENSOR_MAX_RANK 4

struct tensor {
    void *data; /* memory of the backend that owns it */
    enum dtype dtype;
    int rank;
    int64_t shape[TENSOR_MAX_RANK];
    void *scales; /* MXFP4 (base/mxfp4.h): data holds the codes, this the E8M0 byte of each 32 values; else NULL */
};

/* Number of elements. */
int64_t tensor_numel(const struct tensor *t);
/* A view of rows [row0, row0 + rows) of t's first dimension. */
struct tensor tensor_rows(const struct tensor *t, int64_t row0, int64_t rows);
/* A view with another shape of the same elements. */
struct tensor tensor_reshape(const struct tensor *t, int rank, const int64_t *shape);
/* Shorthands for views of raw memory. */
struct tensor tensor_2d(void *data, enum dtype dtype, int64_t rows, int64_t cols);
struct tensor tensor_1d(void *data, enum dtype dtype, int64_t n);

/* Rotary tables: per position, D/2 (cos, sin) pairs, precomputed by the model
 * (llama3 and YaRN scaling included) in fp32. */
struct rope_table {
    const float *cos_sin; /* [positions, D/2, 2] in the backend's memory */
    int64_t positions, half_dim;
    float attention_scale; /* YaRN's mscale for q.k; 1 otherwise */
};

/* Packed variable-length rows: sequence s spans tokens [starts[s], starts[s+1]).
 * starts may go on past S with empty sequences at T, up to `capacity`: a
 * backend may search all of them (CUDA does), so that the kernels' arguments
 * do not depend on how many sequences T tokens were packed from and one
 * recorded step (capture_begin) serves every packing. */
struct seq_layout {
    const int32_t *starts;    /* [capacity + 1], starts[0] = 0, starts[S] .. starts[capacity] = T; backend memory */
    const int32_t *positions; /* [T]: position of each token inside its sequence */
    int64_t sequences;        /* S */
    int64_t max_len;          /* longest sequence */
    int64_t capacity;         /* >= S */
};

struct backend {
    const char *name;
    int64_t bytes_in_use, bytes_peak; /* of alloc minus free, kept by the backend */

    /* Waits for the work issued so far and reports the first failure since
     * the backend started (asynchronous devices); NULL where every op
     * completes before it returns (the CPU). */
    int (*check)(struct backend *b, tune_err *err);

    /* Memory. alloc returns NULL on failure (the caller reports which plan
     * category could not be had). */
    void *(*alloc)(struct backend *b, size_t bytes);
    void (*free)(struct backend *b, void *p);
    void (*upload)(struct backend *b, void *dst, const void *host, size_t bytes);
    void (*download)(struct backend *b, void *host, const void *src, size_t bytes);
    /* Host memory the device copies to and from without the host waiting
     * (page-locked); NULL where plain host memory serves (the CPU). */
    void *(*alloc_host)(struct backend *b, size_t bytes);
    void (*free_host)(struct backend *b, void *p);
    /* dst = src, in order with the ops around it (the host does not wait):
     * either side device memory or alloc_host's memory. */
    void (*copy)(struct backend *b, void *dst, const void *src, size_t bytes);
    void (*zero)(struct backend *b, struct tensor *t);
    /* dst = src converted (bf16/f16/f32, same numel). */
    void (*convert)(struct backend *b, struct tensor *dst, const struct tensor *src);

    /* c = alpha * op(a) @ op(b) + beta * c, op transposing when asked.
     * a [M, K] (or [K, M] when ta), b [K, N] (or [N, K] when tb), c [M, N].
     * A linear layer is matmul(y, x, false, w, true): w is [out, in]. */
    void (*matmul)(struct backend *b, struct tensor *c, const struct tensor *a, bool ta,
                   const struct tensor *bm, bool tb, float alpha, float beta);
    /* d = alpha * op(a) @ op(b) + c: matmul with beta 1 whose addend is read
     * from c (same shape and dtype as d; c == d allowed), so that a residual
     * stream's next value needs no copy of its input first. */
    void (*matmul_add)(struct backend *b, struct tensor *d, const struct tensor *c, const struct tensor *a, bool ta,
                       const struct tensor *bm, bool tb, float alpha);
    /* y[T, N] += bias[N] for every row. */
    void (*add_bias)(struct backend *b, struct tensor *y, const struct tensor *bias);
    /* dbias[N] += sum over rows of dy[T, N]. */
    void (*bias_backward)(struct backend *b, struct tensor *dbias, const struct tensor *dy);
    /* y += alpha * x (same shape). */
    void (*axpy)(struct backend *b, struct tensor *y, float alpha, const struct tensor *x);

    /* out[T, C] = table[ids[t]]; ids int32 [T]. */
    void (*embedding)(struct backend *b, struct tensor *out, const struct tensor *table,
                      const struct tensor *ids);
    /* dtable[ids[t]] += dout[t] (accumulates). */
    void (*embedding_backward)(struct backend *b, struct tensor *dtable, const struct tensor *dout,
                               const struct tensor *ids);

    /* out[T, C] = x / rms(x) * w; rstd[T] (fp32) keeps 1 / rms for backward. */
    void (*rmsnorm)(struct backend *b, struct tensor *out, struct tensor *rstd, const struct tensor *x,
                    const struct tensor *w, float eps);
    /* dx[T, C] += ...; dw[C] += ... unless dw is NULL. */
    void (*rmsnorm_backward)(struct backend *b, struct tensor *dx, struct tensor *dw,
                             const struct tensor *dout, const struct tensor *x, const struct tensor *w,
                             const struct tensor *rstd);

    /* Rotates x[T, heads, D] in place, pairs (i, i + D/2) as Llama's
     * rotate_half does, at each token's position. backward rotates by -angle. */
    void (*rope)(struct backend *b, struct tensor *x, const struct rope_table *rt,
                 const struct seq_layout *sl, bool backward);

    /* Causal attention over packed sequences, GQA (H / KV query heads share a
     * key/value head), optional sliding window (a token sees the last `window`
     * positions, itself included; 0 = all) and optional sinks (one learned
     * logit per head joining each softmax's denominator). q [T, H, D],
     * k, v [T, KV, D] -> out [T, H, D], lse [H, T] fp32 (log-sum-exp of each
     * softmax row, sinks included). Never materializes [T, T] beyond one row
     * block. scale multiplies q.k. */
    void (*attention)(struct backend *b, struct tensor *out, struct tensor *lse, const struct tensor *q,
                      const struct tensor *k, const struct tensor *v, const struct tensor *sinks,
                      const struct seq_layout *sl, int64_t window, float scale);
    /* dq, dk, dv overwritten; dsinks [H] fp32 accumulated unless NULL. */
    void (*attention_backward)(struct backend *b, struct tensor *dq, struct tensor *dk, struct tensor *dv,
                               struct tensor *dsinks, const struct tensor *dout, const struct tensor *q,
                               const struct tensor *k, const struct tensor *v, const struct tensor *sinks,
                               const struct tensor *out, const struct tensor *lse,
                               const struct seq_layout *sl, int64_t window, float scale);

    /* Decoding with a KV cache: n new query tokens of one sequence at
     * positions [pos0, pos0 + n) attend to the cache, which already holds
     * their own keys and values: q [n, H, D], kcache, vcache [P, KV, D] with
     * P >= pos0 + n -> out [n, H, D]. Causal, window and sinks as attention. */
    void (*attention_cached)(struct backend *b, struct tensor *out, const struct tensor *q,
                             const struct tensor *kcache, const struct tensor *vcache, const struct tensor *sinks,
                             int64_t pos0, int64_t window, float scale);

    /* h[T, I] = silu(gate) * up. */
    void (*swiglu)(struct backend *b, struct tensor *h, const struct tensor *gate, const struct tensor *up);
    /* dgate, dup [T, I] overwritten from dh; they may be gate and up themselves
     * (each element reads its inputs before writing). */
    void (*swiglu_backward)(struct backend *b, struct tensor *dgate, struct tensor *dup,
                            const struct tensor *dh, const struct tensor *gate, const struct tensor *up);

    /* Mixture of experts (gpt-oss). moe_topk: each token's k experts of the
     * largest router logits (descending; the lower index first among equals)
     * and their weights, a softmax over those k logits only. logits [T, E]
     * fp32 -> experts [T, k] int32, weights [T, k] fp32. */
    void (*moe_topk)(struct backend *b, struct tensor *experts, struct tensor *weights, const struct tensor *logits);
    /* dlogits [T, E] overwritten: w_j (dw_j - sum_i w_i dw_i) at each chosen
     * expert e_j, zero elsewhere. */
    void (*moe_topk_backward)(struct backend *b, struct tensor *dlogits, const struct tensor *dweights,
                              const struct tensor *experts, const struct tensor *weights);
    /* The N = T * k (token, slot) pairs p = t * k + j grouped by expert:
     * order [N] int32 lists p with experts ascending and p ascending within
     * one expert; position [N] int32 is its inverse (where pair p sits);
     * offsets [E + 1] int32: expert e's rows are [offsets[e], offsets[e + 1]). */
    void (*moe_group)(struct backend *b, struct tensor *order, struct tensor *position, struct tensor *offsets,
                      const struct tensor *experts);
    /* rows[n] = x[order[n] / k], times weights[order[n]] unless weights is
     * NULL: x [T, C] -> rows [N, C] in grouped order. */
    void (*moe_gather)(struct backend *b, struct tensor *rows, const struct tensor *x, const struct tensor *order,
                       const struct tensor *weights, int64_t k);
    /* y[t] += sum over j < k of weights[t * k + j] (1 if NULL) times
     * rows[position[t * k + j]], in j order (deterministic): the inverse of
     * moe_gather, and its backward. */
    void (*moe_scatter)(struct backend *b, struct tensor *y, const struct tensor *rows,
                        const struct tensor *position, const struct tensor *weights, int64_t k);
    /* dweights[p] = dy[p / k] . rows[position[p]] (fp32 [N]): the gradient of
     * the weights of a weighted moe_scatter. */
    void (*moe_weights_backward)(struct backend *b, struct tensor *dweights, const struct tensor *dy,
                                 const struct tensor *rows, const struct tensor *position, int64_t k);
    /* c[offsets[e] .. offsets[e + 1]) = a[those rows] op(w[e]) + bias[e]
     * (bias [E, O] or NULL) for every expert e: a [N, K], w [E, O, K]
     * (trans) or [E, K, O], c [N, O]; beta 1 adds into c (bias then not
     * added). The experts' linears in one call, whatever the split. */
    void (*moe_matmul)(struct backend *b, struct tensor *c, const struct tensor *a, const struct tensor *w, bool tw,
                       const struct tensor *bias, const struct tensor *offsets, float beta);
    /* dw[e] += dc[rows of e]^T a[rows of e] for every expert e: dc [N, O],
     * a [N, K], dw [E, O, K] fp32 (the gradient of moe_matmul's w, tw). */
    void (*moe_weight_grad)(struct backend *b, struct tensor *dw, const struct tensor *dc, const struct tensor *a,
                            const struct tensor *offsets);
    /* gpt-oss's gated activation on interleaved columns: gate = x[:, 0::2]
     * clamped above at limit, up = x[:, 1::2] clamped to [-limit, limit],
     * h = (up + 1) * gate * sigmoid(alpha * gate). x [N, 2I] -> h [N, I].
     * backward: dx [N, 2I] overwritten (zero where a clamp held). */
    void (*swiglu_oai)(struct backend *b, struct tensor *h, const struct tensor *x, float alpha, float limit);
    void (*swiglu_oai_backward)(struct backend *b, struct tensor *dx, const struct tensor *dh,
                                const struct tensor *x, float alpha, float limit);

    /* The numbers below that change from step to step (the loss, its scale,
     * dropout's seed) are read from or added to the backend's memory rather
     * than passed or returned, so that no op waits for the device inside a
     * step and a recorded step replays with the values of the step at hand.
     *
     * Cross-entropy over one block of logits [T, V] (in the compute dtype: fp32
     * on the CPU, bf16 or fp32 on CUDA) with labels int32
     * [T] (-100: ignored). Adds the summed loss of the block's counted tokens
     * to *loss_sum (one double); lse[T] (fp32) keeps each row's log-sum-exp. */
    void (*cross_entropy)(struct backend *b, struct tensor *lse, const struct tensor *logits,
                          const struct tensor *labels, double *loss_sum);
    /* Overwrites logits with d(loss * scale)/d(logits): scale * (softmax - onehot),
     * zero rows for ignored tokens; *scale one float. */
    void (*cross_entropy_backward)(struct backend *b, struct tensor *logits, const struct tensor *lse,
                                   const struct tensor *labels, const float *scale);

    /* y = x * mask / (1 - p), the mask drawn from Philox4x32-10 keyed by *seed,
     * one 32-bit draw per element index (offset + i): the same bits on every
     * backend, so backward (the same call on dy) and recompute see the same
     * mask. p == 0 copies. */
    void (*dropout)(struct backend *b, struct tensor *y, const struct tensor *x, float p, const uint64_t *seed,
                    uint64_t offset);

    /* AdamW as torch.optim.AdamW: decoupled weight decay, bias correction;
     * step counts from 1. param, grad, m, v fp32 of the same numel. The
     * hyperparameters are double, as torch's Python floats are: 1 - beta2
     * from a float beta2 (0.999f) is off by 1.3e-5, and so would be v. */
    void (*adamw)(struct backend *b, struct tensor *param, const struct tensor *grad, struct tensor *m,
                  struct tensor *v, double lr, double beta1, double beta2, double eps, double weight_decay,
                  int64_t step);
    /* Sum of squares of x (fp32 accumulation), for the global grad norm. */
    double (*sum_squares)(struct backend *b, const struct tensor *x);
    /* x *= s. */
    void (*scale)(struct backend *b, struct tensor *x, float s);

    /* Recorded steps (CUDA graphs): the ops issued between capture_begin and
     * capture_end are recorded rather than run, and graph_run runs the record
     * again with the very arguments it was recorded with (the same buffers,
     * sizes and scalars), one launch instead of thousands. capture_end returns
     * NULL on failure (recorded as an op's failure is). NULL where a record
     * would gain nothing (the CPU). */
    void (*capture_begin)(struct backend *b);
    void *(*capture_end)(struct backend *b);
    void (*graph_run)(struct backend *b, void *graph);
    void (*graph_free)(struct backend *b, void *graph);
};

/* The CPU reference backend (backend/cpu/): fp32 arithmetic, OpenBLAS GEMMs,
 * OpenMP loops. */
struct backend *backend_cpu(void);

#endif
