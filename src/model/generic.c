/* `--params N`: a dense Llama-2-architecture model (vocab 32000) shaped like the
 * published model nearest in size, with its depth scaled by N / that model's
 * nominal size. Widths are kept because published families scale width in
 * steps; depth is the knob between them. At the nominal sizes (7B, 13B, 70B)
 * the shape is the published one, which is also the shape the seeds' worksheet
 * assumes (hidden 4096 x 32 layers for 7B, 8192 x 80 for 70B). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/spec.h"

static const struct {
    double nominal;
    int64_t hidden, intermediate, heads, kv_heads, layers;
    const char *like;
} family[] = {
    {1e9, 2048, 5632, 32, 4, 22, "TinyLlama-1.1B"},
    {3e9, 3200, 8640, 32, 32, 26, "OpenLLaMA-3B"},
    {7e9, 4096, 11008, 32, 32, 32, "Llama-2-7B"},
    {13e9, 5120, 13824, 40, 40, 40, "Llama-2-13B"},
    {34e9, 8192, 22016, 64, 8, 48, "CodeLlama-34B"},
    {70e9, 8192, 28672, 64, 8, 80, "Llama-2-70B"},
    {405e9, 16384, 53248, 128, 8, 126, "Llama-3.1-405B"},
};

int spec_generic(struct model_spec *s, int64_t n, tune_err *err)
{
    if (n < 100000000 || n > 2000000000000LL)
        return err_set(err, "--params: %lld is outside the generic model's range [0.1B, 2000B]",
                       (long long)n);
    int best = 0;
    for (int i = 1; i < (int)(sizeof family / sizeof family[0]); i++)
        if (fabs(log((double)n / family[i].nominal)) < fabs(log((double)n / family[best].nominal)))
            best = i;
    int64_t layers = llround((double)family[best].layers * (double)n / family[best].nominal);
    if (layers < 1)
        layers = 1;
    if (layers > SPEC_MAX_LAYERS)
        return err_set(err, "--params: %lld needs more than %d layers at width %lld",
                       (long long)n, SPEC_MAX_LAYERS, (long long)family[best].hidden);

    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "dense-%.4gB (shaped like %s)", (double)n / 1e9,
             family[best].like);
    s->arch = MODEL_ARCH_LLAMA;
    s->vocab = 32000;
    s->hidden = family[best].hidden;
    s->intermediate = family[best].intermediate;
    s->heads = family[best].heads;
    s->kv_heads = family[best].kv_heads;
    s->head_dim = s->hidden / s->heads;
    s->layers = layers;
    s->max_position = 4096;
    s->rms_eps = 1e-5;
    s->rope.type = ROPE_TYPE_DEFAULT;
    s->rope.theta = 10000.0;
    s->nominal_params = n;
    return 0;
}
