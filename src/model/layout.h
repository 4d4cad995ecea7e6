/* Parameter layout of a model spec: the linear layers of one decoder layer and
 * the parameter count of each component, counted as transformers counts them
 * (every nn.Parameter once; a tied head is not counted twice). */
#ifndef TUNE_MODEL_LAYOUT_H
#define TUNE_MODEL_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "model/spec.h"

enum component {
    COMPONENT_EMBED, COMPONENT_ATTENTION, COMPONENT_MLP, COMPONENT_ROUTER,
    COMPONENT_EXPERTS, COMPONENT_NORMS, COMPONENT_HEAD, COMPONENT_COUNT
};

/* One linear layer (or, for MoE, one stack of E expert matrices). */
struct linear_shape {
    const char *module; /* transformers' name: "q_proj", "mlp.experts.gate_up_proj" */
    const char *target; /* tune's target name: "q", "gate_up" */
    enum component component;
    int64_t in, out; /* of one matrix */
    int64_t stack;   /* 1, or E for expert stacks */
    bool bias;
};

#define LAYOUT_MAX_LINEARS 8

/* The linears of one decoder layer, in forward order; returns how many. */
int layout_layer_linears(const struct model_spec *s, struct linear_shape out[LAYOUT_MAX_LINEARS]);

struct param_counts {
    int64_t component[COMPONENT_COUNT];
    int64_t total;
    int64_t per_layer;     /* parameters of one decoder layer */
    int64_t largest_module; /* largest single module (DeepSpeed's "largest layer") */
};

void layout_count_params(const struct model_spec *s, struct param_counts *pc);

const char *layout_component_name(enum component c); /* "attention" */

#endif
