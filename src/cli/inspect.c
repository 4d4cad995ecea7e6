/* tune inspect MODEL: the spec of a preset or model folder and its parameter
 * count per component, counted as transformers counts them. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/units.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "model/layout.h"
#include "model/spec.h"

static const struct cli_opt inspect_opts[] = {
    {"", NULL, "MODEL: a preset name or a Hugging Face model folder"},
    {"--config", NULL, "print the preset's config.json instead (to start a model folder from)"},
    {"--help", NULL, "show this help"},
};
#define N_OPTS ((int)(sizeof inspect_opts / sizeof inspect_opts[0]))

static void print_presets(FILE *out)
{
    fprintf(out, "presets:");
    for (int i = 0; i < spec_preset_count(); i++)
        fprintf(out, " %s", spec_preset_name(i));
    fprintf(out, "\n");
}

static void print_spec(const struct model_spec *s)
{
    char buf[64];
    printf("model          %s\n", s->name);
    printf("architecture   %s\n", spec_arch_name(s->arch));
    printf("vocab          %lld\n", (long long)s->vocab);
    printf("hidden         %lld\n", (long long)s->hidden);
    printf("layers         %lld\n", (long long)s->layers);
    printf("heads          %lld query, %lld key/value, head_dim %lld\n", (long long)s->heads,
           (long long)s->kv_heads, (long long)s->head_dim);
    if (s->experts)
        printf("experts        %lld, top-%lld per token, each %lld wide, SwiGLU clamp %g, experts %s\n",
               (long long)s->experts, (long long)s->experts_per_token, (long long)s->intermediate,
               s->swiglu_limit, s->expert_quant == WEIGHT_QUANT_MXFP4 ? "MXFP4" : "unquantized");
    else
        printf("mlp            SwiGLU, %lld wide\n", (long long)s->intermediate);
    printf("rope           %s, theta %g", spec_rope_name(s->rope.type), s->rope.theta);
    if (s->rope.type != ROPE_TYPE_DEFAULT)
        printf(", factor %g", s->rope.factor);
    if (s->rope.type == ROPE_TYPE_LLAMA3)
        printf(", low/high freq %g/%g", s->rope.low_freq_factor, s->rope.high_freq_factor);
    if (s->rope.type == ROPE_TYPE_YARN)
        printf(", beta fast/slow %g/%g, truncate %s", s->rope.beta_fast, s->rope.beta_slow,
               s->rope.truncate ? "yes" : "no");
    if (s->rope.original_max_position)
        printf(", original context %lld", (long long)s->rope.original_max_position);
    printf("\ncontext        %lld positions\n", (long long)s->max_position);
    if (s->sliding_window) {
        int n = 0;
        for (int64_t i = 0; i < s->layers; i++)
            n += s->layer_sliding[i];
        printf("sliding window %lld tokens on %d of %lld layers\n", (long long)s->sliding_window, n,
               (long long)s->layers);
    }
    printf("biases         q/k/v %s, o %s, mlp %s%s\n", s->qkv_bias ? "yes" : "no", s->o_bias ? "yes" : "no",
           s->mlp_bias ? "yes" : "no", s->attention_sinks ? "; attention sinks" : "");
    printf("embeddings     %s\n", s->tie_embeddings ? "tied to the head" : "untied");

    struct param_counts pc;
    layout_count_params(s, &pc);
    printf("\nparameters by component\n");
    for (int c = 0; c < COMPONENT_COUNT; c++)
        if (pc.component[c])
            printf("  %-12s %20s  %6.2f%%\n", layout_component_name((enum component)c),
                   units_fmt_count(pc.component[c], buf, sizeof buf), 100.0 * (double)pc.component[c] / (double)pc.total);
    printf("  %-12s %20s\n", "total", units_fmt_count(pc.total, buf, sizeof buf));
    if (s->experts) {
        int64_t active = pc.total - pc.component[COMPONENT_EXPERTS] +
                         pc.component[COMPONENT_EXPERTS] / s->experts * s->experts_per_token;
        printf("  %-12s %20s  (top-%lld experts)\n", "active/token", units_fmt_count(active, buf, sizeof buf),
               (long long)s->experts_per_token);
    }
}

int cmd_inspect(int argc, char **argv)
{
    struct cli_args a = {argc, 0, argv};
    const char *model = NULL, *value;
    bool config = false;
    tune_err err;
    int i;
    while ((i = cli_next(&a, inspect_opts, N_OPTS, &value, &err)) >= 0) {
        if (i == 0)
            model = value;
        else if (i == 1)
            config = true;
        else {
            cli_print_help(stdout, "tune inspect MODEL", "Prints the spec of a preset or a model folder "
                           "(its config.json) and its parameters per component.", inspect_opts, N_OPTS);
            print_presets(stdout);
            return 0;
        }
    }
    if (i == -2) {
        fprintf(stderr, "tune inspect: %s\n", err.msg);
        return 2;
    }
    if (!model) {
        fprintf(stderr, "tune inspect: name a model (a preset or a folder)\n");
        print_presets(stderr);
        return 2;
    }
    if (config) {
        const char *text = spec_preset_config(model);
        if (!text) {
            fprintf(stderr, "tune inspect: --config: '%s' is not a preset\n", model);
            return 1;
        }
        cJSON *root = cJSON_Parse(text);
        char *pretty = root ? cJSON_Print(root) : NULL;
        printf("%s\n", pretty ? pretty : text);
        free(pretty);
        cJSON_Delete(root);
        return 0;
    }
    struct model_spec spec;
    if (spec_resolve(&spec, model, &err)) {
        fprintf(stderr, "tune inspect: %s\n", err.msg);
        return 1;
    }
    print_spec(&spec);
    return 0;
}
