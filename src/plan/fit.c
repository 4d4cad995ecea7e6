/* See fit.h. Planning is cheap (a few hundred buffers), so the search simply
 * re-plans at each probe. */
#include "plan/fit.h"

#include "plan/memplan.h"

int64_t fit_plan_total(const struct model_spec *spec, const struct run_config *rc)
{
    struct mem_plan plan;
    if (plan_build(&plan, spec, rc, NULL))
        return -1;
    int64_t total = plan.total;
    plan_free(&plan);
    return total;
}

/* Largest v in [1, cap] with fits(v), or 0; *field is the size being searched. */
static int64_t search(const struct model_spec *spec, struct run_config *rc, int64_t *field,
                      int64_t cap, int64_t usable)
{
    *field = 1;
    int64_t t = fit_plan_total(spec, rc);
    if (t < 0 || t > usable)
        return 0;
    int64_t lo = 1, hi = 2;
    while (hi <= cap) {
        *field = hi;
        t = fit_plan_total(spec, rc);
        if (t < 0 || t > usable)
            break;
        lo = hi;
        hi *= 2;
    }
    if (hi > cap)
        hi = cap + 1;
    while (hi - lo > 1) { /* lo fits, hi does not (or is past the cap) */
        int64_t mid = lo + (hi - lo) / 2;
        *field = mid;
        t = fit_plan_total(spec, rc);
        if (t >= 0 && t <= usable)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

void fit_find(const struct model_spec *spec, const struct run_config *rc, int64_t usable_bytes,
              struct fit_result *out)
{
    struct run_config probe = *rc;
    out->max_micro_batch = search(spec, &probe, &probe.micro_batch, 1 << 16, usable_bytes);
    probe = *rc;
    int64_t cap = spec->max_position ? spec->max_position : 1 << 20;
    out->max_seq = search(spec, &probe, &probe.seq, cap, usable_bytes);
    out->seq_capped = out->max_seq == cap;
    out->max_ckpt_keep = -1;
    probe = *rc;
    probe.ckpt_keep_layers = 0;
    int64_t t = fit_plan_total(spec, &probe);
    if (rc->grad_ckpt != GRAD_CKPT_FULL || t < 0 || t > usable_bytes)
        return;
    int64_t lo = 0, hi = spec->layers; /* lo fits; hi (every layer: no checkpointing at all) is not a keep */
    while (hi - lo > 1) {
        probe.ckpt_keep_layers = lo + (hi - lo) / 2;
        t = fit_plan_total(spec, &probe);
        if (t >= 0 && t <= usable_bytes)
            lo = probe.ckpt_keep_layers;
        else
            hi = probe.ckpt_keep_layers;
    }
    out->max_ckpt_keep = lo;
}
