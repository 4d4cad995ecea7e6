/* tune plan's text rendering: the run, the per-GPU categories, the fit, and
 * on request the search, the instances and the estimates. Sizes in GiB (the
 * unit GPUs are sold in, "80GB" being 80 GiB) with GB (1e9, the seeds' unit)
 * beside the totals. */
#include <stdio.h>
#include <string.h>

#include "base/units.h"
#include "cli/plan_report.h"
#include "model/layout.h"

static void print_run(FILE *out, const struct plan_report *r)
{
    const struct run_config *rc = &r->rc;
    const struct mem_plan *p = &r->plan;
    char a[64], b[64];
    fprintf(out, "model      %s  (%s, %s parameters)\n", r->spec.name, spec_arch_name(r->spec.arch),
            units_fmt_count(p->params, a, sizeof a));
    fprintf(out, "method     %s", run_method_name(rc->method));
    if (rc->method != METHOD_FULL) {
        fprintf(out, " r=%lld alpha=%g dropout=%g on ", (long long)rc->lora_r, rc->lora_alpha, rc->lora_dropout);
        for (int t = 0, first = 1; t < TARGET_COUNT; t++)
            if (rc->targets & 1u << t) {
                fprintf(out, "%s%s", first ? "" : ",", run_target_name((enum target)t));
                first = 0;
            }
        if (rc->expert_layers_chosen) {
            fprintf(out, " (experts in layers");
            for (int l = 0, first = 1; l < SPEC_MAX_LAYERS; l++)
                if (rc->expert_layer_selected[l]) {
                    fprintf(out, "%s%d", first ? " " : ",", l);
                    first = 0;
                }
            fprintf(out, ")");
        }
    }
    fprintf(out, "%s: %s trainable (%.4g%%)\n", rc->all_layers ? "" : " (chosen layers)",
            units_fmt_count(p->trainable_params, b, sizeof b), 100.0 * (double)p->trainable_params / (double)p->params);
    fprintf(out, "precision  base %s%s, %s, grad-ckpt %s", dtype_name(rc->base_dtype),
            rc->base_dtype == DTYPE_MXFP4 ? " experts (rest bf16)" : "", run_optimizer_name(rc->optimizer),
            run_grad_ckpt_names[rc->grad_ckpt]);
    if (rc->ckpt_keep_layers)
        fprintf(out, " (the last %lld layer%s kept)", (long long)rc->ckpt_keep_layers,
                rc->ckpt_keep_layers > 1 ? "s" : "");
    if (rc->offload_checkpoints)
        fprintf(out, ", checkpoints in CPU memory");
    fputc('\n', out);
    fprintf(out, "batch      seq %lld x micro-batch %lld x grad-accum %lld", (long long)rc->seq,
            (long long)rc->micro_batch, (long long)rc->grad_accum);
    if (rc->gpus > 1) {
        char strategy[64];
        if (rc->place_layers)
            snprintf(strategy, sizeof strategy, "frozen layers placed across GPUs");
        else if (rc->zero)
            snprintf(strategy, sizeof strategy, "ZeRO-%d", rc->zero);
        else
            snprintf(strategy, sizeof strategy, "DDP");
        fprintf(out, " x %lld GPUs, %s%s", (long long)rc->gpus, strategy,
                rc->offload == OFFLOAD_PARAMS ? ", optimizer and params offloaded"
                : rc->offload == OFFLOAD_OPTIMIZER ? ", optimizer offloaded" : "");
    }
    fprintf(out, "\n");
}

static void print_buffers(FILE *out, const struct mem_plan *p)
{
    char bytes[32];
    fprintf(out, "\nbuffers (rank %d)\n", p->rank);
    for (int c = 0; c < PLAN_CATEGORY_COUNT; c++)
        for (int i = 0; i < p->n; i++) {
            const struct plan_buffer *b = &p->buf[i];
            if ((int)b->category != c || !b->bytes)
                continue;
            fprintf(out, "  %-11s %-58s %-7s %12lld x%-3lld %s%s%s\n", plan_category_name(b->category), b->name,
                    dtype_name(b->dtype), (long long)b->elems, (long long)b->count,
                    units_fmt_bytes(b->bytes, bytes, sizeof bytes),
                    b->shards > 1 ? "  (sharded)" : "", b->on_host ? "  (CPU)" : "");
        }
}

static void print_find(FILE *out, const struct plan_report *r)
{
    fprintf(out, "\nlargest that fits %s\n", r->gpu->name);
    if (r->find.max_micro_batch)
        fprintf(out, "  micro-batch  %lld at seq %lld\n", (long long)r->find.max_micro_batch, (long long)r->rc.seq);
    else
        fprintf(out, "  micro-batch  none: even micro-batch 1 at seq %lld does not fit\n", (long long)r->rc.seq);
    if (r->find.max_seq)
        fprintf(out, "  sequence     %lld tokens at micro-batch %lld%s\n", (long long)r->find.max_seq,
                (long long)r->rc.micro_batch, r->find.seq_capped ? " (the model's whole context)" : "");
    else
        fprintf(out, "  sequence     none: the run does not fit even at 1 token\n");
    if (r->find.max_ckpt_keep >= 0)
        fprintf(out, "  ckpt-keep    %lld of %lld layers kept out of the recompute (--ckpt-keep %lld)\n",
                (long long)r->find.max_ckpt_keep, (long long)r->spec.layers, (long long)r->find.max_ckpt_keep);
}

static void print_instances(FILE *out, const struct plan_report *r)
{
    char b[32];
    fprintf(out, "\ncloud instances that can run it (fewest GPUs first)\n");
    int shown = 0;
    for (int i = 0; i < r->n_instances; i++) {
        const struct instance_fit *f = &r->instances[i];
        if (f->zero < 0)
            continue;
        char how[32];
        if (f->instance->gpus == 1)
            snprintf(how, sizeof how, "1 GPU");
        else if (f->zero == 0)
            snprintf(how, sizeof how, "DDP");
        else
            snprintf(how, sizeof how, "ZeRO-%d", f->zero);
        fprintf(out, "  %-6s %-27s %dx %-13s %-7s %s per GPU%s%s\n", f->instance->provider, f->instance->name,
                f->instance->gpus, f->instance->gpu, how, units_fmt_bytes(f->per_gpu, b, sizeof b),
                f->instance->note ? "; " : "", f->instance->note ? f->instance->note : "");
        shown++;
    }
    if (!shown)
        fprintf(out, "  none of the %d catalogued instances fits it, even under ZeRO-3\n", r->n_instances);
}

static void print_estimates(FILE *out, const struct plan_report *r)
{
    char b[32];
    fprintf(out, "\nwhat the usual formulas say, per GPU\n");
    fprintf(out, "  %-18s %10s  every buffer above\n", "tune plan (exact)", units_fmt_bytes(r->plan.total, b, sizeof b));
    for (int e = 0; e < ESTIMATE_COUNT; e++) {
        const struct estimate *est = &r->est[e];
        fprintf(out, "  %-18s %10s  %s\n", est->name,
                est->per_gpu_bytes >= 0 ? units_fmt_bytes(est->per_gpu_bytes, b, sizeof b) : "-", est->detail);
    }
    char notes[4][ESTIMATE_NOTE_LEN];
    int n = estimate_seed_notes(&r->spec, &r->rc, r->plan.trainable_params, notes, 4);
    if (n)
        fprintf(out, "\nnotes on the seeds\n");
    for (int i = 0; i < n; i++)
        fprintf(out, "  - %s\n", notes[i]);
}

void plan_report_text(FILE *out, const struct plan_report *r)
{
    const struct mem_plan *p = &r->plan;
    char a[32];
    print_run(out, r);
    fprintf(out, "\nper GPU%s\n", r->rc.place_layers ? " (the most loaded rank)" : "");
    for (int c = 0; c < PLAN_CATEGORY_COUNT; c++)
        fprintf(out, "  %-12s %12s\n", plan_category_name((enum plan_category)c),
                units_fmt_bytes(p->per_gpu[c], a, sizeof a));
    fprintf(out, "  %-12s %12s  (%.2f GB)  peak\n", "total", units_fmt_bytes(p->total, a, sizeof a),
            (double)p->total / 1e9);
    if (p->host_bytes)
        fprintf(out, "  %-12s %12s  offloaded to CPU memory per rank\n", "host", units_fmt_bytes(p->host_bytes, a, sizeof a));
    if (r->gpu) {
        char total[32], usable[32], spare[32];
        units_fmt_bytes(hw_gpu_total_bytes(r->gpu), total, sizeof total);
        units_fmt_bytes(r->usable, usable, sizeof usable);
        fprintf(out, "\ngpu        %s (%s): %s as CUDA counts it%s, usable %s after the CUDA context (%lld MiB) "
                     "and a reserve (%lld MiB)\n", r->gpu->name, r->gpu->product, total,
                r->gpu->cuda_total_bytes ? " (measured)" : " (nvidia-smi's less 1%)", usable,
                HW_CUDA_CONTEXT_BYTES >> 20, HW_RESERVE_BYTES >> 20);
        if (r->fits)
            fprintf(out, "fits       yes: %.1f%% of usable memory, %s to spare\n",
                    100.0 * (double)p->total / (double)r->usable, units_fmt_bytes(r->usable - p->total, spare, sizeof spare));
        else
            fprintf(out, "fits       NO: %s over\n", units_fmt_bytes(p->total - r->usable, spare, sizeof spare));
    }
    if (r->show_buffers)
        print_buffers(out, p);
    if (r->have_find)
        print_find(out, r);
    if (r->n_instances)
        print_instances(out, r);
    if (r->have_estimates)
        print_estimates(out, r);
}
