/* config.json -> struct model_spec. One parser serves model folders and the
 * built-in presets (which are config.json texts), so a preset can never mean
 * something a real config would not. Accepts the keys of transformers 4.x
 * (rope_theta + rope_scaling) and 5.x (rope_parameters). */
#include "model/spec.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "io/json.h"

static const struct {
    const char *architecture, *model_type;
} arch_table[] = {
    [MODEL_ARCH_LLAMA] = {"LlamaForCausalLM", "llama"},
    [MODEL_ARCH_MISTRAL] = {"MistralForCausalLM", "mistral"},
    [MODEL_ARCH_QWEN2] = {"Qwen2ForCausalLM", "qwen2"},
    [MODEL_ARCH_GPT_OSS] = {"GptOssForCausalLM", "gpt_oss"},
};
static_assert(sizeof arch_table / sizeof arch_table[0] == MODEL_ARCH_COUNT, "arch table");

static const char *rope_names[] = {
    [ROPE_TYPE_DEFAULT] = "default", [ROPE_TYPE_LINEAR] = "linear",
    [ROPE_TYPE_LLAMA3] = "llama3",   [ROPE_TYPE_YARN] = "yarn",
};
static_assert(sizeof rope_names / sizeof rope_names[0] == ROPE_TYPE_COUNT, "rope table");

const char *spec_arch_name(enum model_arch arch) { return arch_table[arch].architecture; }
const char *spec_rope_name(enum rope_type type) { return rope_names[type]; }
const char *spec_model_type(enum model_arch arch) { return arch_table[arch].model_type; }

static int parse_arch(const cJSON *config, enum model_arch *arch, tune_err *err)
{
    char model_type[64] = "", architecture[128] = "";
    if (json_get_string(config, "model_type", false, model_type, sizeof model_type, err))
        return -1;
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(config, "architectures");
    if (cJSON_IsArray(archs) && cJSON_IsString(cJSON_GetArrayItem(archs, 0)))
        snprintf(architecture, sizeof architecture, "%s", cJSON_GetArrayItem(archs, 0)->valuestring);
    for (int a = 0; a < MODEL_ARCH_COUNT; a++) {
        if (!strcmp(architecture, arch_table[a].architecture) ||
            (!architecture[0] && !strcmp(model_type, arch_table[a].model_type))) {
            *arch = (enum model_arch)a;
            return 0;
        }
    }
    if (!architecture[0] && !model_type[0])
        return err_set(err, "neither architectures nor model_type is given");
    return err_set(err, "unknown architecture '%s' (model_type '%s'); tune knows LlamaForCausalLM, "
                        "MistralForCausalLM, Qwen2ForCausalLM, GptOssForCausalLM",
                   architecture[0] ? architecture : "-", model_type[0] ? model_type : "-");
}

/* rope_scaling (4.x) or rope_parameters (5.x); theta may live in either. */
static int parse_rope(const cJSON *config, struct rope_spec *rope, tune_err *err)
{
    rope->type = ROPE_TYPE_DEFAULT;
    rope->theta = 10000.0;
    if (json_get_real(config, "rope_theta", false, &rope->theta, err))
        return -1;
    const cJSON *scaling = cJSON_GetObjectItemCaseSensitive(config, "rope_parameters");
    if (!scaling || cJSON_IsNull(scaling))
        scaling = cJSON_GetObjectItemCaseSensitive(config, "rope_scaling");
    if (!scaling || cJSON_IsNull(scaling))
        return 0;
    if (!cJSON_IsObject(scaling))
        return err_set(err, "rope_scaling: expected an object");
    char type[32] = "default";
    if (json_get_string(scaling, "rope_type", false, type, sizeof type, err) ||
        json_get_string(scaling, "type", false, type, sizeof type, err) ||
        json_get_real(scaling, "rope_theta", false, &rope->theta, err))
        return err_prefix(err, "rope_scaling");
    int t = -1;
    for (int i = 0; i < ROPE_TYPE_COUNT; i++)
        if (!strcmp(type, rope_names[i]))
            t = i;
    if (t < 0)
        return err_set(err, "rope_scaling: unknown rope_type '%s' (known: default, linear, llama3, yarn)", type);
    rope->type = (enum rope_type)t;
    rope->factor = 1.0;
    rope->beta_fast = 32.0;
    rope->beta_slow = 1.0;
    rope->truncate = true;
    if (json_get_real(scaling, "factor", t != ROPE_TYPE_DEFAULT, &rope->factor, err) ||
        json_get_real(scaling, "low_freq_factor", t == ROPE_TYPE_LLAMA3, &rope->low_freq_factor, err) ||
        json_get_real(scaling, "high_freq_factor", t == ROPE_TYPE_LLAMA3, &rope->high_freq_factor, err) ||
        json_get_real(scaling, "beta_fast", false, &rope->beta_fast, err) ||
        json_get_real(scaling, "beta_slow", false, &rope->beta_slow, err) ||
        json_get_bool(scaling, "truncate", &rope->truncate, err) ||
        json_get_int(scaling, "original_max_position_embeddings", t == ROPE_TYPE_LLAMA3, 1,
                     1 << 26, &rope->original_max_position, err))
        return err_prefix(err, "rope_scaling");
    if (rope->factor <= 0 || rope->theta <= 0)
        return err_set(err, "rope_scaling: factor and theta must be positive");
    return 0;
}

/* Which layers attend through a window: gpt-oss lists layer_types; Mistral
 * windows every layer; Qwen2 windows layers >= max_window_layers when
 * use_sliding_window is set. */
static int parse_sliding(const cJSON *config, struct model_spec *s, tune_err *err)
{
    if (json_get_int(config, "sliding_window", false, 1, 1 << 30, &s->sliding_window, err))
        return -1;
    const cJSON *types = cJSON_GetObjectItemCaseSensitive(config, "layer_types");
    if (types && !cJSON_IsNull(types)) {
        if (!cJSON_IsArray(types) || cJSON_GetArraySize(types) != s->layers)
            return err_set(err, "layer_types: expected a list of %lld entries", (long long)s->layers);
        for (int64_t i = 0; i < s->layers; i++) {
            const cJSON *t = cJSON_GetArrayItem(types, (int)i);
            if (!cJSON_IsString(t) || (strcmp(t->valuestring, "sliding_attention") &&
                                       strcmp(t->valuestring, "full_attention")))
                return err_set(err, "layer_types[%lld]: expected \"sliding_attention\" or "
                                    "\"full_attention\"", (long long)i);
            s->layer_sliding[i] = !strcmp(t->valuestring, "sliding_attention");
        }
    } else if (s->arch == MODEL_ARCH_GPT_OSS) {
        for (int64_t i = 0; i < s->layers; i++)
            s->layer_sliding[i] = i % 2 == 0;
    } else if (s->sliding_window && s->arch == MODEL_ARCH_MISTRAL) {
        for (int64_t i = 0; i < s->layers; i++)
            s->layer_sliding[i] = true;
    } else if (s->sliding_window && s->arch == MODEL_ARCH_QWEN2) {
        bool use = false;
        int64_t from = s->layers;
        if (json_get_bool(config, "use_sliding_window", &use, err) ||
            json_get_int(config, "max_window_layers", false, 0, s->layers, &from, err))
            return -1;
        for (int64_t i = from; use && i < s->layers; i++)
            s->layer_sliding[i] = true;
    }
    bool any = false;
    for (int64_t i = 0; i < s->layers; i++)
        any |= s->layer_sliding[i];
    if (any && !s->sliding_window)
        return err_set(err, "layer_types names sliding layers but sliding_window is not set");
    if (!any)
        s->sliding_window = 0;
    return 0;
}

static int parse_moe(const cJSON *config, struct model_spec *s, tune_err *err)
{
    if (json_get_int(config, "num_local_experts", false, 1, 4096, &s->experts, err) ||
        json_get_int(config, "experts_per_token", false, 1, 4096, &s->experts_per_token, err) ||
        json_get_int(config, "num_experts_per_tok", false, 1, 4096, &s->experts_per_token, err) ||
        json_get_real(config, "swiglu_limit", false, &s->swiglu_limit, err))
        return -1;
    if (s->arch != MODEL_ARCH_GPT_OSS) {
        if (s->experts)
            return err_set(err, "num_local_experts: %s is a dense architecture", spec_arch_name(s->arch));
        return 0;
    }
    if (!s->experts || !s->experts_per_token)
        return err_set(err, "num_local_experts and num_experts_per_tok are required for gpt-oss");
    if (s->experts_per_token > s->experts)
        return err_set(err, "num_experts_per_tok: %lld is more than the %lld experts",
                       (long long)s->experts_per_token, (long long)s->experts);
    s->attention_sinks = true;
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(config, "quantization_config");
    if (q && !cJSON_IsNull(q)) {
        char method[32] = "";
        if (json_get_string(q, "quant_method", true, method, sizeof method, err))
            return err_prefix(err, "quantization_config");
        if (strcmp(method, "mxfp4"))
            return err_set(err, "quantization_config.quant_method: '%s' is not supported (only mxfp4)", method);
        s->expert_quant = WEIGHT_QUANT_MXFP4;
    }
    return 0;
}

int spec_from_json(struct model_spec *s, const cJSON *config, const char *origin, tune_err *err)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", origin);
    if (!cJSON_IsObject(config))
        return err_set(err, "%s: expected a JSON object", origin);
    if (parse_arch(config, &s->arch, err))
        return err_prefix(err, "%s", origin);

    s->rms_eps = 1e-6;
    if (json_get_int(config, "vocab_size", true, 1, 4000000, &s->vocab, err) ||
        json_get_int(config, "hidden_size", true, 1, 131072, &s->hidden, err) ||
        json_get_int(config, "intermediate_size", true, 1, 1 << 20, &s->intermediate, err) ||
        json_get_int(config, "num_hidden_layers", true, 1, SPEC_MAX_LAYERS, &s->layers, err) ||
        json_get_int(config, "num_attention_heads", true, 1, 4096, &s->heads, err) ||
        json_get_int(config, "max_position_embeddings", false, 1, 1 << 26, &s->max_position, err) ||
        json_get_real(config, "rms_norm_eps", false, &s->rms_eps, err) ||
        json_get_bool(config, "tie_word_embeddings", &s->tie_embeddings, err))
        return err_prefix(err, "%s", origin);
    s->kv_heads = s->heads;
    s->head_dim = s->hidden / s->heads;
    if (json_get_int(config, "num_key_value_heads", false, 1, 4096, &s->kv_heads, err) ||
        json_get_int(config, "head_dim", false, 1, 4096, &s->head_dim, err))
        return err_prefix(err, "%s", origin);
    if (!cJSON_GetObjectItemCaseSensitive(config, "head_dim") && s->hidden % s->heads)
        return err_set(err, "%s: hidden_size %lld is not a multiple of num_attention_heads %lld",
                       origin, (long long)s->hidden, (long long)s->heads);
    if (s->heads % s->kv_heads)
        return err_set(err, "%s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld",
                       origin, (long long)s->heads, (long long)s->kv_heads);

    bool attention_bias = false;
    if (json_get_bool(config, "attention_bias", &attention_bias, err) ||
        json_get_bool(config, "mlp_bias", &s->mlp_bias, err))
        return err_prefix(err, "%s", origin);
    s->qkv_bias = attention_bias || s->arch == MODEL_ARCH_QWEN2;
    s->o_bias = attention_bias;
    if (s->arch == MODEL_ARCH_GPT_OSS)
        s->mlp_bias = true; /* experts and router always carry biases */

    if (parse_rope(config, &s->rope, err) || parse_sliding(config, s, err) ||
        parse_moe(config, s, err))
        return err_prefix(err, "%s", origin);
    return 0;
}

int spec_load(struct model_spec *spec, const char *path, tune_err *err)
{
    char file[4096];
    struct stat st;
    if (stat(path, &st) != 0)
        return err_set(err, "%s: no such model folder, config file or preset", path);
    if (S_ISDIR(st.st_mode))
        snprintf(file, sizeof file, "%s/config.json", path);
    else
        snprintf(file, sizeof file, "%s", path);
    cJSON *config = json_load_file(file, 16 << 20, err);
    if (!config)
        return -1;
    int rc = spec_from_json(spec, config, file, err);
    cJSON_Delete(config);
    if (rc == 0)
        snprintf(spec->name, sizeof spec->name, "%s", path);
    return rc;
}

int spec_resolve(struct model_spec *spec, const char *name_or_path, tune_err *err)
{
    const char *text = spec_preset_config(name_or_path);
    if (!text)
        return spec_load(spec, name_or_path, err);
    cJSON *config = json_parse_text(text, name_or_path, err);
    if (!config)
        return -1;
    int rc = spec_from_json(spec, config, name_or_path, err);
    cJSON_Delete(config);
    return rc;
}
