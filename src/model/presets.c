/* Built-in presets: the config.json of each model as its publisher ships it on
 * the Hugging Face hub (fields that do not affect shape or numerics, such as
 * transformers_version, left out). They go through the same parser as a
 * downloaded folder, so `tune plan --model llama-3.1-8b` plans exactly what
 * `--model ./Llama-3.1-8B` would. */
#include <string.h>

#include "model/spec.h"

#define LLAMA2(hidden, inter, heads, layers, kv)                                              \
    "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"bos_token_id\":1,"  \
    "\"eos_token_id\":2,\"hidden_act\":\"silu\",\"hidden_size\":" #hidden ","                 \
    "\"intermediate_size\":" #inter ",\"max_position_embeddings\":4096,"                      \
    "\"num_attention_heads\":" #heads ",\"num_hidden_layers\":" #layers ","                   \
    "\"num_key_value_heads\":" #kv ",\"pretraining_tp\":1,\"rms_norm_eps\":1e-05,"            \
    "\"rope_scaling\":null,\"tie_word_embeddings\":false,\"torch_dtype\":\"float16\","       \
    "\"vocab_size\":32000}"

#define LLAMA3(hidden, inter, heads, layers, head_dim, factor, tie, eos)                     \
    "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\","                     \
    "\"attention_bias\":false,\"attention_dropout\":0.0,\"bos_token_id\":128000,"             \
    "\"eos_token_id\":" eos ",\"head_dim\":" #head_dim ",\"hidden_act\":\"silu\","            \
    "\"hidden_size\":" #hidden ",\"intermediate_size\":" #inter ","                           \
    "\"max_position_embeddings\":131072,\"mlp_bias\":false,"                                  \
    "\"num_attention_heads\":" #heads ",\"num_hidden_layers\":" #layers ","                   \
    "\"num_key_value_heads\":8,\"pretraining_tp\":1,\"rms_norm_eps\":1e-05,"                  \
    "\"rope_scaling\":{\"factor\":" #factor ",\"high_freq_factor\":4.0,"                      \
    "\"low_freq_factor\":1.0,\"original_max_position_embeddings\":8192,"                      \
    "\"rope_type\":\"llama3\"},\"rope_theta\":500000.0,\"tie_word_embeddings\":" #tie ","     \
    "\"torch_dtype\":\"bfloat16\",\"vocab_size\":128256}"

#define SLIDING_FULL "\"sliding_attention\",\"full_attention\""
#define SLIDING_FULL_x6 SLIDING_FULL "," SLIDING_FULL "," SLIDING_FULL "," SLIDING_FULL "," \
    SLIDING_FULL "," SLIDING_FULL

#define GPT_OSS(layers, experts, layer_types)                                                 \
    "{\"architectures\":[\"GptOssForCausalLM\"],\"model_type\":\"gpt_oss\","                  \
    "\"attention_bias\":true,\"attention_dropout\":0.0,\"eos_token_id\":200002,"              \
    "\"experts_per_token\":4,\"head_dim\":64,\"hidden_act\":\"silu\",\"hidden_size\":2880,"   \
    "\"initial_context_length\":4096,\"initializer_range\":0.02,\"intermediate_size\":2880,"  \
    "\"layer_types\":[" layer_types "],\"max_position_embeddings\":131072,"                   \
    "\"num_attention_heads\":64,\"num_experts_per_tok\":4,"                                   \
    "\"num_hidden_layers\":" #layers ",\"num_key_value_heads\":8,"                            \
    "\"num_local_experts\":" #experts ",\"output_router_logits\":false,"                      \
    "\"pad_token_id\":199999,\"quantization_config\":{\"modules_to_not_convert\":"            \
    "[\"model.layers.*.self_attn\",\"model.layers.*.mlp.router\",\"model.embed_tokens\","     \
    "\"lm_head\"],\"quant_method\":\"mxfp4\"},\"rms_norm_eps\":1e-05,"                        \
    "\"rope_scaling\":{\"beta_fast\":32.0,\"beta_slow\":1.0,\"factor\":32.0,"                 \
    "\"original_max_position_embeddings\":4096,\"rope_type\":\"yarn\",\"truncate\":false},"   \
    "\"rope_theta\":150000,\"router_aux_loss_coef\":0.9,\"sliding_window\":128,"              \
    "\"swiglu_limit\":7.0,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\","       \
    "\"use_cache\":true,\"vocab_size\":201088}"

static const struct {
    const char *name;
    const char *config;
} presets[] = {
    {"gpt-oss-20b", GPT_OSS(24, 32, SLIDING_FULL_x6 "," SLIDING_FULL_x6)},
    {"gpt-oss-120b", GPT_OSS(36, 128, SLIDING_FULL_x6 "," SLIDING_FULL_x6 "," SLIDING_FULL_x6)},
    {"llama-2-7b", LLAMA2(4096, 11008, 32, 32, 32)},
    {"llama-2-13b", LLAMA2(5120, 13824, 40, 40, 40)},
    {"llama-2-70b", LLAMA2(8192, 28672, 64, 80, 8)},
    {"llama-3.2-1b", LLAMA3(2048, 8192, 32, 16, 64, 32.0, true, "128001")},
    {"llama-3.2-3b", LLAMA3(3072, 8192, 24, 28, 128, 32.0, true, "128001")},
    {"llama-3.1-8b", LLAMA3(4096, 14336, 32, 32, 128, 8.0, false, "[128001,128008,128009]")},
    {"llama-3.1-70b", LLAMA3(8192, 28672, 64, 80, 128, 8.0, false, "[128001,128008,128009]")},
    {"mistral-7b-v0.1",
     "{\"architectures\":[\"MistralForCausalLM\"],\"model_type\":\"mistral\",\"bos_token_id\":1,"
     "\"eos_token_id\":2,\"hidden_act\":\"silu\",\"hidden_size\":4096,"
     "\"initializer_range\":0.02,\"intermediate_size\":14336,"
     "\"max_position_embeddings\":32768,\"num_attention_heads\":32,\"num_hidden_layers\":32,"
     "\"num_key_value_heads\":8,\"rms_norm_eps\":1e-05,\"rope_theta\":10000.0,"
     "\"sliding_window\":4096,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\","
     "\"use_cache\":true,\"vocab_size\":32000}"},
    {"qwen2.5-7b",
     "{\"architectures\":[\"Qwen2ForCausalLM\"],\"model_type\":\"qwen2\","
     "\"attention_dropout\":0.0,\"bos_token_id\":151643,\"eos_token_id\":151643,"
     "\"hidden_act\":\"silu\",\"hidden_size\":3584,\"initializer_range\":0.02,"
     "\"intermediate_size\":18944,\"max_position_embeddings\":131072,"
     "\"max_window_layers\":28,\"num_attention_heads\":28,\"num_hidden_layers\":28,"
     "\"num_key_value_heads\":4,\"rms_norm_eps\":1e-06,\"rope_theta\":1000000.0,"
     "\"sliding_window\":131072,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\","
     "\"use_cache\":true,\"use_sliding_window\":false,\"vocab_size\":152064}"},
};

int spec_preset_count(void) { return (int)(sizeof presets / sizeof presets[0]); }

const char *spec_preset_name(int i) { return presets[i].name; }

const char *spec_preset_config(const char *name)
{
    for (int i = 0; i < spec_preset_count(); i++)
        if (!strcmp(name, presets[i].name))
            return presets[i].config;
    /* "mistral-7b" is how DESIGN.md and most users name it. */
    if (!strcmp(name, "mistral-7b"))
        return spec_preset_config("mistral-7b-v0.1");
    return NULL;
}
