/* Model spec: the shape of a Hugging Face causal LM as its config.json states it,
 * for the families tune knows (Llama 2/3/3.1/3.2, Mistral, Qwen2, GptOss). The
 * spec is all that planning, counting and (later) loading need to know about a
 * model's architecture; weights are elsewhere. */
#ifndef TUNE_MODEL_SPEC_H
#define TUNE_MODEL_SPEC_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "base/error.h"

#define SPEC_MAX_LAYERS 512

enum model_arch {
    MODEL_ARCH_LLAMA,   /* LlamaForCausalLM: Llama 2, 3, 3.1, 3.2 */
    MODEL_ARCH_MISTRAL, /* MistralForCausalLM: Llama with a sliding window */
    MODEL_ARCH_QWEN2,   /* Qwen2ForCausalLM: Llama with q/k/v biases */
    MODEL_ARCH_GPT_OSS, /* GptOssForCausalLM: MoE, sinks, alternating windows */
    MODEL_ARCH_COUNT
};

enum rope_type { ROPE_TYPE_DEFAULT, ROPE_TYPE_LINEAR, ROPE_TYPE_LLAMA3, ROPE_TYPE_YARN, ROPE_TYPE_COUNT };

struct rope_spec {
    enum rope_type type;
    double theta;
    double factor;                 /* linear, llama3, yarn */
    double low_freq_factor;        /* llama3 */
    double high_freq_factor;       /* llama3 */
    double beta_fast, beta_slow;   /* yarn */
    bool truncate;                 /* yarn (gpt-oss: false) */
    int64_t original_max_position; /* llama3, yarn */
};

enum weight_quant { WEIGHT_QUANT_NONE, WEIGHT_QUANT_MXFP4 };

struct model_spec {
    char name[128]; /* preset name or the folder it was read from */
    enum model_arch arch;
    int64_t vocab;        /* V */
    int64_t hidden;       /* C */
    int64_t intermediate; /* I: MLP width, or each expert's width under MoE */
    int64_t layers;       /* L */
    int64_t heads;        /* H: query heads */
    int64_t kv_heads;     /* KV heads (GQA) */
    int64_t head_dim;     /* D; hidden / heads unless the config says otherwise */
    int64_t max_position;
    double rms_eps;
    struct rope_spec rope;
    bool tie_embeddings;
    bool qkv_bias; /* biases on q, k, v projections */
    bool o_bias;   /* bias on the output projection */
    bool mlp_bias;
    int64_t sliding_window;          /* 0: none */
    bool layer_sliding[SPEC_MAX_LAYERS]; /* which layers use the window */
    /* Mixture of experts (gpt-oss); experts == 0 for dense models. */
    int64_t experts;           /* E */
    int64_t experts_per_token; /* K */
    double swiglu_limit;       /* clamp of gpt-oss's SwiGLU, 0 if none */
    bool attention_sinks;      /* one learned logit per head */
    enum weight_quant expert_quant; /* how the checkpoint stores expert weights */
    /* For `--params N` models: the count the user named, which the literature's
     * formulas take as P; 0 for real models. */
    int64_t nominal_params;
};

/* Fills spec from a parsed config.json. `origin` names the file in errors.
 * Rejects unknown architectures, missing or non-positive sizes, heads that do
 * not divide, and sizes beyond any real model (hidden > 131072, layers > 512,
 * vocab > 4M, experts > 4096). */
int spec_from_json(struct model_spec *spec, const cJSON *config, const char *origin,
                   tune_err *err);

/* Reads DIR/config.json, or the file itself if path names a .json file. */
int spec_load(struct model_spec *spec, const char *path, tune_err *err);

/* Resolves a preset name ("llama-3.1-8b") or a model folder / config path. */
int spec_resolve(struct model_spec *spec, const char *name_or_path, tune_err *err);

/* A generic dense model (Llama-2 architecture, vocab 32000) of about n
 * parameters, shaped like the published models of that size: see generic.c. */
int spec_generic(struct model_spec *spec, int64_t n, tune_err *err);

const char *spec_arch_name(enum model_arch arch); /* "LlamaForCausalLM" */
const char *spec_model_type(enum model_arch arch); /* config.json's model_type: "llama", "gpt_oss" */
const char *spec_rope_name(enum rope_type type);  /* "llama3" */

/* Preset table (presets.c). */
int spec_preset_count(void);
const char *spec_preset_name(int i);
/* The preset's config.json text, or NULL if no such preset. */
const char *spec_preset_config(const char *name);

#endif
