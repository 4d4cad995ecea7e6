/* libFuzzer target: config.json text -> model spec (json_parse_text, spec_from_json). An
 * accepted spec must be one the rest of tune can size without overflow: its parameter count
 * (layout_count_params) is computed, so UBSan sees any product the limits let through. */
#include "fuzz_util.h"
#include "io/json.h"
#include "model/layout.h"
#include "model/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    tune_err err;
    cJSON *config = json_parse_text(text, "config.json", &err);
    if (!config) {
        fuzz_check_error(&err);
        free(text);
        return 0;
    }
    struct model_spec s;
    if (spec_from_json(&s, config, "config.json", &err) != 0) {
        fuzz_check_error(&err);
    } else {
        if (s.vocab < 1 || s.hidden < 1 || s.layers < 1 || s.layers > SPEC_MAX_LAYERS || s.heads < 1 ||
            s.kv_heads < 1 || s.heads % s.kv_heads || s.head_dim < 1 || s.intermediate < 1)
            fuzz_fail("spec_from_json accepted sizes it promises to refuse", NULL);
        if (s.experts && (s.experts_per_token < 1 || s.experts_per_token > s.experts))
            fuzz_fail("spec_from_json accepted a bad top-k", NULL);
        struct param_counts pc;
        layout_count_params(&s, &pc);
        if (pc.total <= 0 || pc.per_layer <= 0)
            fuzz_fail("a spec with no parameters", NULL);
    }
    cJSON_Delete(config);
    free(text);
    return 0;
}
