/* The Llama family (Llama 2/3/3.1/3.2, Mistral, Qwen2) for training: forward,
 * loss and backward written once against the op table (backend.h), with every
 * tensor a view into the run's memory plan. LoRA as PEFT defines it, on any
 * of q, k, v, o, gate, up, down. Sizes: T tokens of a packed micro-batch,
 * C hidden, H / KV heads, D head_dim, I intermediate, V vocab, r LoRA rank. */
#ifndef TUNE_MODEL_LLAMA_H
#define TUNE_MODEL_LLAMA_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "model/layout.h"
#include "model/spec.h"
#include "plan/memplan.h"
#include "plan/run.h"

/* LoRA on one linear of one layer: y += scale * dropout(x) A^T B^T. */
struct lora {
    bool on;
    struct tensor A, B;   /* [r, in], [out, r] fp32 */
    struct tensor dA, dB; /* their gradients */
    struct tensor Ac, Bc; /* what the GEMMs read: A and B, or their twins in the compute copy */
};

/* A fully trained tensor: its fp32 master (what AdamW updates) and gradient;
 * the forward reads the working copy in the weights, refreshed from the master
 * after each step. data NULL when the tensor is frozen. */
struct trained {
    struct tensor master, grad;
};

struct llama_layer {
    struct tensor w[LAYOUT_MAX_LINEARS];    /* [out, in], layout.c's order; experts [E * out, in] */
    struct tensor bias[LAYOUT_MAX_LINEARS]; /* [out], or data NULL */
    struct lora lora[LAYOUT_MAX_LINEARS];
    struct trained full_w[LAYOUT_MAX_LINEARS], full_bias[LAYOUT_MAX_LINEARS];
    struct tensor ln_attn, ln_mlp;          /* [C] */
    struct tensor sinks;                    /* [H] learned attention sinks (gpt-oss), or data NULL */
    struct trained full_ln_attn, full_ln_mlp, full_sinks;
    int64_t window;                         /* sliding window, 0 for full attention */
};

enum { LIN_Q, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN }; /* layout.c's order */
enum { LIN_ROUTER = 4, LIN_EXPERTS_GATE_UP, LIN_EXPERTS_DOWN };  /* the same slots under MoE */

/* A step recorded for replay (backend.h's capture_begin): the token count it
 * was recorded at, and that of the last step run op by op. */
struct step_record {
    void *graph;
    int64_t tokens, last_tokens;
};

struct llama {
    const struct model_spec *spec;
    struct run_config rc;
    struct backend *be;
    struct mem_plan plan;
    struct plan_arena arena;
    struct linear_shape lin[LAYOUT_MAX_LINEARS];
    struct tensor embed;  /* [V, C] */
    struct tensor embed_rows; /* [T, C]: where a host-held embed's rows are gathered to be sent (data NULL: none) */
    struct tensor ones;       /* [N, 1] of 1: the experts' bias gradients as moe_weight_grad's (full fine-tuning) */
    struct tensor norm;   /* [C] */
    struct tensor head;   /* [V, C]: lm_head, or embed when tied */
    struct llama_layer *layers;
    struct trained full_embed, full_norm, full_head; /* full fine-tuning of every weight */
    struct tensor lora_compute; /* the trainable block in the compute dtype (data NULL: none) */
    struct rope_table rope;
    float attn_scale, lora_scale;
    uint64_t seed;        /* of LoRA init and dropout */
    /* Steps recorded on a backend that can (forward only, with backward), once a token count repeats; never
     * when unrecorded is set. */
    struct step_record records[2];
    bool unrecorded;
    int64_t backward_steps, replayed; /* micro-steps with backward, and how many of them a record ran */
};

/* A packed micro-batch on the host: sequences laid end to end. labels[t] is
 * the id expected after token t (-100: no loss there, e.g. prompt tokens and
 * each sequence's last token). */
struct llama_batch {
    const int32_t *ids, *labels; /* [T] */
    const int32_t *starts;       /* [S + 1]: sequence s is tokens [starts[s], starts[s+1]) */
    int64_t tokens, sequences;   /* T <= rc.micro_batch * rc.seq, S */
};

/* Plans (spec, rc) for the backend's device and allocates the plan; weights
 * are left zero (load or init them next). */
/* Whether the engine trains rc on spec with be; err names what is not built. */
int llama_supports(const struct model_spec *spec, const struct run_config *rc, const struct backend *be,
                   tune_err *err);
int llama_init(struct llama *m, const struct model_spec *spec, const struct run_config *rc,
               struct backend *be, uint64_t seed, tune_err *err);
void llama_free(struct llama *m);

/* Reads the base weights of a Hugging Face folder (safetensors, bf16/fp16/
 * fp32), checking every tensor's name, dtype and shape. */
int llama_load_weights(struct llama *m, const char *model_dir, tune_err *err);
/* Uploads numel values of dtype `from` at host into dst, converted on the
 * host when the dtypes differ (so the device holds nothing beyond the plan);
 * -1 with err set when out of memory. */
int llama_upload(struct backend *be, struct tensor *dst, const void *host, enum dtype from, int64_t numel,
                 tune_err *err);
/* The backend whose memory holds data: the CPU's for buffers the plan keeps
 * in host memory (a GPU run's input embedding), else the model's. */
struct backend *llama_holder(const struct llama *m, const void *data);
/* The reverse: device tensor t into host fp32, converted on the host. */
int llama_download_f32(struct backend *be, float *host, const struct tensor *t, tune_err *err);
/* Random base weights, N(0, 0.02) as transformers initializes them. */
void llama_init_random(struct llama *m, uint64_t seed);
/* LoRA factors as PEFT makes them: A Kaiming-uniform (bound 1/sqrt(in)), B zero. */
void llama_init_lora(struct llama *m);

/* Runs the micro-batch forward and gives the summed loss of its labelled
 * tokens (*counted gets how many; the loss may be NaN or infinite, which is
 * not a failure here); -1 with err set when the batch is malformed. With backward, adds d(loss * loss_scale)
 * to the gradients of the trainable tensors; loss_scale is 1 / (labelled
 * tokens of the whole accumulated batch), so the gradient is of the mean
 * over all of it. `step` keys the dropout masks. */
int llama_step(struct llama *m, const struct llama_batch *batch, bool backward, float loss_scale, uint64_t step,
               double *loss_sum, int64_t *counted, tune_err *err);

/* Keys and values of past positions, per layer [capacity, KV * D]. */
struct llama_kv_cache {
    void **k, **v;
    int64_t layers, capacity, length;
    enum dtype dtype;
    struct backend *be;
};
int llama_kv_cache_init(struct llama_kv_cache *kv, const struct llama *m, int64_t capacity, tune_err *err);
void llama_kv_cache_free(struct llama_kv_cache *kv, const struct llama *m);

/* Runs n new tokens of one sequence through the model over the cache
 * (appending their keys and values) and writes the last token's logits to
 * logits_out [V] on the host. Needs a model planned with full checkpointing,
 * no dropout and seq >= the cache capacity (its working buffers). */
int llama_decode(struct llama *m, struct llama_kv_cache *kv, const int32_t *ids, int64_t n, float *logits_out,
                 tune_err *err);

/* Full fine-tuning: sets every master from the working weights (done by the
 * loaders; call it after writing weights any other way). */
void llama_init_masters(struct llama *m);

/* Full fine-tuning: copies every master weight into the working weights the
 * forward reads (after each optimizer step, and after loading). */
void llama_refresh_weights(struct llama *m);

/* Full fine-tuning: writes the working weights as DIR/model.safetensors with
 * transformers' names (fp32), and copies config.json and the tokenizer files
 * from the base folder. */
int llama_save_weights(const struct llama *m, const char *dir, const char *base_dir, tune_err *err);

/* Zeroes every gradient of the trainable tensors. */
void llama_zero_grads(struct llama *m);

#endif
