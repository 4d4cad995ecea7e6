/* Parameter layout and counts; see layout.h. The linears of a layer are listed
 * once here, and counting, LoRA targets and the memory plan all walk this list,
 * so they cannot disagree about a model's shape. */
#include "model/layout.h"

#include <assert.h>

static const char *component_names[] = {
    [COMPONENT_EMBED] = "embeddings", [COMPONENT_ATTENTION] = "attention",
    [COMPONENT_MLP] = "mlp",          [COMPONENT_ROUTER] = "router",
    [COMPONENT_EXPERTS] = "experts",  [COMPONENT_NORMS] = "norms",
    [COMPONENT_HEAD] = "head",
};
static_assert(sizeof component_names / sizeof component_names[0] == COMPONENT_COUNT, "components");

const char *layout_component_name(enum component c) { return component_names[c]; }

int layout_layer_linears(const struct model_spec *s, struct linear_shape out[LAYOUT_MAX_LINEARS])
{
    int64_t q = s->heads * s->head_dim, kv = s->kv_heads * s->head_dim;
    int n = 0;
    out[n++] = (struct linear_shape){"self_attn.q_proj", "q", COMPONENT_ATTENTION, s->hidden, q, 1, s->qkv_bias};
    out[n++] = (struct linear_shape){"self_attn.k_proj", "k", COMPONENT_ATTENTION, s->hidden, kv, 1, s->qkv_bias};
    out[n++] = (struct linear_shape){"self_attn.v_proj", "v", COMPONENT_ATTENTION, s->hidden, kv, 1, s->qkv_bias};
    out[n++] = (struct linear_shape){"self_attn.o_proj", "o", COMPONENT_ATTENTION, q, s->hidden, 1, s->o_bias};
    if (s->experts) {
        /* gpt-oss stores gate and up interleaved in one [E, C, 2I] parameter. */
        out[n++] = (struct linear_shape){"mlp.router", "router", COMPONENT_ROUTER, s->hidden, s->experts, 1, true};
        out[n++] = (struct linear_shape){"mlp.experts.gate_up_proj", "gate_up", COMPONENT_EXPERTS,
                                         s->hidden, 2 * s->intermediate, s->experts, true};
        out[n++] = (struct linear_shape){"mlp.experts.down_proj", "down", COMPONENT_EXPERTS,
                                         s->intermediate, s->hidden, s->experts, true};
    } else {
        out[n++] = (struct linear_shape){"mlp.gate_proj", "gate", COMPONENT_MLP, s->hidden, s->intermediate, 1, s->mlp_bias};
        out[n++] = (struct linear_shape){"mlp.up_proj", "up", COMPONENT_MLP, s->hidden, s->intermediate, 1, s->mlp_bias};
        out[n++] = (struct linear_shape){"mlp.down_proj", "down", COMPONENT_MLP, s->intermediate, s->hidden, 1, s->mlp_bias};
    }
    return n;
}

void layout_count_params(const struct model_spec *s, struct param_counts *pc)
{
    *pc = (struct param_counts){0};
    struct linear_shape lin[LAYOUT_MAX_LINEARS];
    int n = layout_layer_linears(s, lin);
    int64_t per_layer = 0, largest = s->vocab * s->hidden;
    for (int i = 0; i < n; i++) {
        int64_t p = lin[i].stack * (lin[i].in * lin[i].out + (lin[i].bias ? lin[i].out : 0));
        pc->component[lin[i].component] += p * s->layers;
        per_layer += p;
        largest = p > largest ? p : largest;
    }
    if (s->attention_sinks) {
        pc->component[COMPONENT_ATTENTION] += s->heads * s->layers;
        per_layer += s->heads;
    }
    /* input_layernorm and post_attention_layernorm per layer, and the final norm. */
    pc->component[COMPONENT_NORMS] = 2 * s->hidden * s->layers + s->hidden;
    per_layer += 2 * s->hidden;
    pc->component[COMPONENT_EMBED] = s->vocab * s->hidden;
    pc->component[COMPONENT_HEAD] = s->tie_embeddings ? 0 : s->vocab * s->hidden;
    for (int c = 0; c < COMPONENT_COUNT; c++)
        pc->total += pc->component[c];
    pc->per_layer = per_layer;
    pc->largest_module = largest;
}
