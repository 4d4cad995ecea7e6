/* PEFT adapter files; see peft.h. Tensor names are PEFT's for a
 * LlamaForCausalLM wrapped by get_peft_model: base_model.model. + the
 * transformers module path + .lora_A.weight / .lora_B.weight. */
#include "model/peft.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/atomic_file.h"
#include "io/json.h"
#include "io/safetensors.h"

static void tensor_name(char *out, size_t len, int64_t layer, const char *module, const char *which)
{
    snprintf(out, len, "base_model.model.model.layers.%lld.%s.%s.weight", (long long)layer, module, which);
}

/* PEFT's path of expert linear i's LoRA in layer l. target_parameters wraps
 * the experts module once per parameter, in the order the module registers
 * them (gate_up_proj, then down_proj): with both trained, gate_up's wrapper is
 * the inner one, "mlp.experts.base_layer". */
static const char *expert_module(const struct llama *m, int64_t l, int i)
{
    const struct llama_layer *ly = &m->layers[l];
    bool both = ly->lora[LIN_EXPERTS_GATE_UP].on && ly->lora[LIN_EXPERTS_DOWN].on;
    return both && i == LIN_EXPERTS_GATE_UP ? "mlp.experts.base_layer" : "mlp.experts";
}

static bool is_expert(const struct llama *m, int i) { return m->lin[i].component == COMPONENT_EXPERTS; }

/* transformers 5's gpt-oss router is no nn.Linear: PEFT wraps its weight
 * (target_parameters), and names the LoRA as a Linear's, "mlp.router.lora_A". */
#define ROUTER_PARAMETER "mlp.router.weight"
static bool is_router(const struct llama *m, int i) { return m->lin[i].component == COMPONENT_ROUTER; }

const char *peft_module(const struct llama *m, int64_t l, int i)
{
    return is_expert(m, i) ? expert_module(m, l, i) : m->lin[i].module;
}

void peft_expert_b_layout(float *dst, const float *src, int64_t E, int64_t out, int64_t r, bool to_peft)
{
    for (int64_t e = 0; e < E; e++)
        for (int64_t o = 0; o < out; o++)
            for (int64_t j = 0; j < r; j++) {
                int64_t ours = (e * out + o) * r + j, peft = o * r * E + j * E + e;
                if (to_peft)
                    dst[peft] = src[ours];
                else
                    dst[ours] = src[peft];
            }
}

/* The short module name PEFT lists in target_modules: "q_proj". */
static const char *leaf(const char *module)
{
    const char *dot = strrchr(module, '.');
    return dot ? dot + 1 : module;
}

/* layers_to_transform: null (every layer), one index or a list of them;
 * PEFT's per-module rank and alpha patterns are not trained here. */
static int read_layers(const cJSON *cfg, const struct model_spec *spec, struct run_config *rc, tune_err *err)
{
    static const char *const patterns[] = {"rank_pattern", "alpha_pattern"};
    for (int p = 0; p < 2; p++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, patterns[p]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsObject(v) && !v->child))
            return err_set(err, "%s: per-module ranks and alphas are not trained by tune; expected {}", patterns[p]);
    }
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(cfg, "layers_to_transform");
    if (!layers || cJSON_IsNull(layers))
        return 0;
    bool one = cJSON_IsNumber(layers);
    if (!one && !(cJSON_IsArray(layers) && layers->child))
        return err_set(err, "layers_to_transform: expected null, a layer index or a non-empty list of them");
    bool chosen[SPEC_MAX_LAYERS] = {false};
    const cJSON *it;
    for (it = one ? layers : layers->child; it; it = one ? NULL : it->next) {
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (v != (double)(int64_t)v || v < 0 || v >= (double)spec->layers)
            return err_set(err, "layers_to_transform: expected layer indices in [0, %lld)", (long long)spec->layers);
        chosen[(int64_t)v] = true;
    }
    rc->all_layers = false;
    memcpy(rc->layer_selected, chosen, sizeof chosen);
    return 0;
}

int peft_read_config(const char *dir, const struct model_spec *spec, struct run_config *rc, tune_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    cJSON *cfg = json_load_file(path, 1 << 20, err);
    if (!cfg)
        return -1;
    char type[32] = "";
    bool dora = false, rslora = false;
    double alpha = 0, dropout = 0;
    int rc_ = json_get_string(cfg, "peft_type", true, type, sizeof type, err) ||
              json_get_int(cfg, "r", true, 1, 4096, &rc->lora_r, err) ||
              json_get_real(cfg, "lora_alpha", true, &alpha, err) ||
              json_get_real(cfg, "lora_dropout", false, &dropout, err) ||
              json_get_bool(cfg, "use_dora", &dora, err) || json_get_bool(cfg, "use_rslora", &rslora, err);
    if (!rc_ && strcmp(type, "LORA"))
        rc_ = err_set(err, "peft_type: '%s' is not LORA", type);
    if (!rc_ && dora)
        rc_ = err_set(err, "use_dora: tune does not train it yet");
    rc->use_rslora = rslora;
    const cJSON *mods = cJSON_GetObjectItemCaseSensitive(cfg, "target_modules");
    if (!rc_ && !cJSON_IsArray(mods))
        rc_ = err_set(err, "target_modules: expected a list of module names");
    char list[4096] = ""; /* every name of target_modules and target_parameters, as --targets takes them */
    const cJSON *it, *names = rc_ ? NULL : mods;
    cJSON_ArrayForEach(it, names)
    {
        if (!cJSON_IsString(it)) {
            rc_ = err_set(err, "target_modules: expected strings");
            break;
        }
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? "," : "", it->valuestring);
    }
    /* LoRA on the experts' parameters (gpt-oss): "mlp.experts.gate_up_proj" is target gate_up. */
    const cJSON *params = rc_ ? NULL : cJSON_GetObjectItemCaseSensitive(cfg, "target_parameters");
    if (!cJSON_IsArray(params))
        params = NULL;
    /* "7.mlp.experts.down_proj": layer 7's only; one set of layers for both expert targets */
    bool chosen[SPEC_MAX_LAYERS] = {false}, with_layer = false, without = false;
    cJSON_ArrayForEach(it, params)
    {
        const char *p = cJSON_IsString(it) ? it->valuestring : "";
        char *dot;
        long layer = strtol(p, &dot, 10);
        bool prefixed = dot != p && *dot == '.' && layer >= 0 && layer < spec->layers;
        const char *name = prefixed ? dot + 1 : p;
        const char *t = !strcmp(name, "mlp.experts.gate_up_proj") ? "gate_up"
                        : !strcmp(name, "mlp.experts.down_proj") ? "down"
                        : !strcmp(name, ROUTER_PARAMETER) && !prefixed ? "router" : NULL;
        if (!t) {
            char shown[ERR_SHOWN_SIZE];
            rc_ = err_set(err, "target_parameters: '%s' is not a router or expert parameter tune trains",
                          err_shown(shown, p));
            break;
        }
        if (prefixed)
            chosen[layer] = with_layer = true;
        else if (strcmp(t, "router"))
            without = true;
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? "," : "", t);
    }
    if (!rc_ && with_layer && without)
        rc_ = err_set(err, "target_parameters: some name layers and some do not; tune takes one or the other");
    if (!rc_ && with_layer) {
        rc->expert_layers_chosen = true;
        memcpy(rc->expert_layer_selected, chosen, sizeof chosen);
    }
    if (!rc_)
        rc_ = read_layers(cfg, spec, rc, err);
    if (!rc_) {
        rc->method = METHOD_LORA;
        rc->lora_alpha = alpha;
        rc->lora_dropout = dropout;
        rc_ = run_parse_targets(rc, spec, list, err);
    }
    cJSON_Delete(cfg);
    return rc_ ? err_prefix(err, "%s", path) : 0;
}

int peft_open_weights(const char *dir, struct st_file *f, char *path, size_t path_len, tune_err *err)
{
    char bin[4096];
    snprintf(path, path_len, "%s/adapter_model.safetensors", dir);
    snprintf(bin, sizeof bin, "%s/adapter_model.bin", dir);
    if (access(path, F_OK) != 0 && access(bin, F_OK) == 0)
        return err_set(err, "%s: a PyTorch pickle, which tune does not read (loading one can run code): save the "
                       "adapter as adapter_model.safetensors (PEFT's save_pretrained with safe_serialization=True)",
                       bin);
    return st_file_open(f, path, err);
}

int peft_factor_dtype_check(const struct st_tensor *t, tune_err *err)
{
    if (t->dtype != DTYPE_F32 && t->dtype != DTYPE_BF16 && t->dtype != DTYPE_F16)
        return err_set(err, "tensor '%s' is %s: LoRA factors are F32, BF16 or F16", t->name, dtype_name(t->dtype));
    return 0;
}

const float *peft_factor_f32(const struct st_tensor *t, float **owned, tune_err *err)
{
    *owned = NULL;
    if (peft_factor_dtype_check(t, err))
        return NULL;
    if (t->dtype == DTYPE_F32)
        return t->data;
    int64_t n = 1;
    for (int d = 0; d < t->rank; d++)
        n *= t->shape[d];
    if (!(*owned = malloc(sizeof(float) * (size_t)(n ? n : 1)))) {
        err_set(err, "out of memory reading '%s'", t->name);
        return NULL;
    }
    struct tensor src = tensor_1d((void *)t->data, t->dtype, n), dst = tensor_1d(*owned, DTYPE_F32, n);
    backend_cpu()->convert(backend_cpu(), &dst, &src);
    return *owned;
}

int peft_load_adapter(struct llama *m, const char *dir, tune_err *err)
{
    char path[4096], name[256];
    struct st_file f;
    if (peft_open_weights(dir, &f, path, sizeof path, err))
        return -1;
    int64_t expected = 0;
    for (int64_t l = 0; l < m->spec->layers; l++)
        for (int i = 0; i < LAYOUT_MAX_LINEARS; i++) {
            struct lora *lo = &m->layers[l].lora[i];
            if (!lo->on)
                continue;
            struct tensor *dst[2] = {&lo->A, &lo->B};
            const char *which[2] = {"lora_A", "lora_B"};
            int64_t E = m->lin[i].stack, r = m->rc.lora_r, out = m->lin[i].out;
            for (int k = 0; k < 2; k++) {
                bool expert_b = k == 1 && is_expert(m, i); /* PEFT's [out, r * E] */
                int64_t rows = expert_b ? out : dst[k]->shape[0], cols = expert_b ? r * E : dst[k]->shape[1];
                tensor_name(name, sizeof name, l, peft_module(m, l, i), which[k]);
                const struct st_tensor *t = st_file_find(&f, name);
                if (!t) {
                    st_file_close(&f);
                    return err_set(err, "%s: missing tensor '%s'", path, name);
                }
                float *converted = NULL;
                const float *values = NULL;
                if (t->rank != 2 || t->shape[0] != rows || t->shape[1] != cols) {
                    /* the message reads t, which the file owns: close after */
                    err_set(err, "%s: tensor '%s' is %s [%lld, %lld], expected [%lld, %lld]", path, name,
                            dtype_name(t->dtype), (long long)t->shape[0], (long long)(t->rank > 1 ? t->shape[1] : 0),
                            (long long)rows, (long long)cols);
                    st_file_close(&f);
                    return -1;
                }
                if (!(values = peft_factor_f32(t, &converted, err))) {
                    st_file_close(&f);
                    return err_prefix(err, "%s", path);
                }
                size_t bytes = sizeof(float) * (size_t)(rows * cols);
                float *ours = expert_b ? malloc(bytes) : NULL;
                if (expert_b && !ours) {
                    free(converted);
                    st_file_close(&f);
                    return err_set(err, "out of memory");
                }
                if (ours)
                    peft_expert_b_layout(ours, values, E, out, r, false);
                m->be->upload(m->be, dst[k]->data, ours ? ours : values, bytes);
                free(ours);
                free(converted);
                expected++;
            }
        }
    int64_t present = 0;
    for (int i = 0; i < f.n_tensors; i++)
        present += strstr(f.tensors[i].name, ".lora_") != NULL;
    st_file_close(&f);
    if (present != expected)
        return err_set(err, "%s: holds %lld LoRA tensors, the run has %lld (targets or layers differ)", path,
                       (long long)present, (long long)expected);
    return 0;
}

static int write_config(const struct llama *m, const char *dir, const char *base_model, tune_err *err)
{
    cJSON *c = cJSON_CreateObject();
    if (base_model)
        cJSON_AddStringToObject(c, "base_model_name_or_path", base_model);
    else
        cJSON_AddNullToObject(c, "base_model_name_or_path");
    cJSON_AddStringToObject(c, "bias", "none");
    cJSON_AddBoolToObject(c, "fan_in_fan_out", false);
    cJSON_AddBoolToObject(c, "inference_mode", true);
    cJSON_AddBoolToObject(c, "init_lora_weights", true);
    cJSON_AddNumberToObject(c, "lora_alpha", m->rc.lora_alpha);
    cJSON_AddNumberToObject(c, "lora_dropout", m->rc.lora_dropout);
    cJSON_AddNullToObject(c, "modules_to_save");
    cJSON_AddStringToObject(c, "peft_type", "LORA");
    cJSON_AddNumberToObject(c, "r", (double)m->rc.lora_r);
    cJSON_AddItemToObject(c, "rank_pattern", cJSON_CreateObject());
    cJSON_AddItemToObject(c, "alpha_pattern", cJSON_CreateObject());
    cJSON *targets = cJSON_AddArrayToObject(c, "target_modules");
    cJSON *params = m->spec->experts ? cJSON_AddArrayToObject(c, "target_parameters") : NULL;
    for (int i = 0; i < LAYOUT_MAX_LINEARS && m->lin[i].module; i++) {
        bool on = false;
        for (int64_t l = 0; l < m->spec->layers; l++) {
            on |= m->layers[l].lora[i].on;
            /* experts of chosen layers: PEFT matches "7.mlp.experts.down_proj" as a suffix of the parameter's name */
            if (is_expert(m, i) && m->rc.expert_layers_chosen && m->layers[l].lora[i].on) {
                char name[96];
                snprintf(name, sizeof name, "%lld.%s", (long long)l, m->lin[i].module);
                cJSON_AddItemToArray(params, cJSON_CreateString(name));
            }
        }
        if (on && !(is_expert(m, i) && m->rc.expert_layers_chosen))
            cJSON_AddItemToArray(is_expert(m, i) || is_router(m, i) ? params : targets,
                                 cJSON_CreateString(is_expert(m, i)   ? m->lin[i].module
                                                    : is_router(m, i) ? ROUTER_PARAMETER
                                                                      : leaf(m->lin[i].module)));
    }
    if (m->rc.all_layers) {
        cJSON_AddNullToObject(c, "layers_to_transform");
    } else {
        cJSON *layers = cJSON_AddArrayToObject(c, "layers_to_transform");
        for (int64_t l = 0; l < m->spec->layers; l++)
            if (m->rc.layer_selected[l])
                cJSON_AddItemToArray(layers, cJSON_CreateNumber((double)l));
    }
    cJSON_AddStringToObject(c, "task_type", "CAUSAL_LM");
    cJSON_AddBoolToObject(c, "use_dora", false);
    cJSON_AddBoolToObject(c, "use_rslora", m->rc.use_rslora);
    char *text = cJSON_Print(c);
    cJSON_Delete(c);
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    int rc = text ? atomic_file_save(path, text, strlen(text), err) : err_set(err, "out of memory");
    free(text);
    return rc;
}

int peft_save_adapter(const struct llama *m, const char *dir, const char *base_model, tune_err *err)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return err_set(err, "%s: cannot create: %s", dir, strerror(errno));
    struct st_writer w;
    st_writer_init(&w);
    /* Names must outlive the writer: one block for all of them. */
    int64_t n = 0;
    for (int64_t l = 0; l < m->spec->layers; l++)
        for (int i = 0; i < LAYOUT_MAX_LINEARS; i++)
            n += m->layers[l].lora[i].on ? 2 : 0;
    char (*names)[160] = calloc((size_t)(n ? n : 1), sizeof *names);
    float **host = calloc((size_t)(n ? n : 1), sizeof *host);
    int rc = names && host ? 0 : err_set(err, "out of memory");
    int64_t k = 0;
    for (int64_t l = 0; !rc && l < m->spec->layers; l++)
        for (int i = 0; !rc && i < LAYOUT_MAX_LINEARS; i++) {
            const struct lora *lo = &m->layers[l].lora[i];
            if (!lo->on)
                continue;
            const struct tensor *src[2] = {&lo->A, &lo->B};
            const char *which[2] = {"lora_A", "lora_B"};
            for (int j = 0; !rc && j < 2; j++, k++) {
                tensor_name(names[k], sizeof names[k], l, peft_module(m, l, i), which[j]);
                size_t bytes = sizeof(float) * (size_t)tensor_numel(src[j]);
                bool expert_b = j == 1 && is_expert(m, i); /* PEFT's [out, r * E] */
                float *ours = expert_b ? malloc(bytes) : NULL;
                if ((expert_b && !ours) || !(host[k] = malloc(bytes))) {
                    free(ours);
                    rc = err_set(err, "out of memory");
                    break;
                }
                m->be->download(m->be, expert_b ? ours : host[k], src[j]->data, bytes);
                int64_t E = m->lin[i].stack, r = m->rc.lora_r, out = m->lin[i].out;
                int64_t shape[2] = {expert_b ? out : src[j]->shape[0], expert_b ? r * E : src[j]->shape[1]};
                if (expert_b)
                    peft_expert_b_layout(host[k], ours, E, out, r, true);
                free(ours);
                rc = st_writer_add(&w, names[k], DTYPE_F32, 2, shape, host[k], err);
            }
        }
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (!rc)
        rc = st_writer_set_metadata(&w, "format", "pt", err) || st_writer_write(&w, path, err);
    st_writer_free(&w);
    for (int64_t j = 0; host && j < n; j++)
        free(host[j]);
    free(host);
    free(names);
    return rc ? -1 : write_config(m, dir, base_model, err);
}
