/* tune plan: parses the run from flags, builds the exact plan, and answers
 * whether it fits, what would fit (--find), what to rent (--instances) and
 * what the usual formulas say (--explain). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/units.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/plan_report.h"

enum {
    OPT_MODEL, OPT_PARAMS, OPT_METHOD, OPT_R, OPT_ALPHA, OPT_DROPOUT, OPT_TARGETS, OPT_LAYERS, OPT_EXPERT_LAYERS,
    OPT_BASE_DTYPE, OPT_NO_DQ, OPT_OPTIMIZER, OPT_CKPT, OPT_SEQ, OPT_MB, OPT_GA, OPT_GPUS, OPT_ZERO,
    OPT_OFFLOAD, OPT_OFFLOAD_CKPT, OPT_CKPT_KEEP, OPT_PLACEMENT, OPT_GPU, OPT_FIND, OPT_INSTANCES, OPT_EXPLAIN, OPT_ATTN, OPT_JSON,
    OPT_SVG, OPT_BUFFERS, OPT_HELP, OPT_COUNT
};

static const struct cli_opt plan_opts[] = {
    [OPT_MODEL] = {"--model", "NAME|DIR", "a preset (tune inspect --help lists them) or a Hugging Face model folder"},
    [OPT_PARAMS] = {"--params", "N", "instead of --model: a generic dense model of N parameters (7B, 70e9)"},
    [OPT_METHOD] = {"--method", "M", "full, lora or qlora (default lora)"},
    [OPT_R] = {"--r", "N", "LoRA rank (default 16)"},
    [OPT_ALPHA] = {"--alpha", "A", "LoRA alpha (default 32)"},
    [OPT_DROPOUT] = {"--dropout", "P", "LoRA dropout (default 0.05; no memory: masks are regenerated)"},
    [OPT_TARGETS] = {"--targets", "LIST", "q,k,v,o,gate,up,down,router,gate_up,experts,lm_head or all-linear "
                                          "(default q,k,v,o; full: every weight)"},
    [OPT_LAYERS] = {"--target-layers", "LIST", "only these layers, e.g. 7,15,23 (default all)"},
    [OPT_EXPERT_LAYERS] = {"--expert-layers", "LIST", EXPERT_LAYERS_HELP},
    [OPT_BASE_DTYPE] = {"--base-dtype", "T", "bf16, fp16, fp32, nf4 (qlora) or mxfp4 (gpt-oss experts, its default)"},
    [OPT_NO_DQ] = {"--no-double-quant", NULL, "qlora: keep the NF4 absmax in fp32"},
    [OPT_OPTIMIZER] = {"--optimizer", "O", "adamw, adamw-8bit or sgd (default adamw)"},
    [OPT_CKPT] = {"--grad-ckpt", "P", "gradient checkpointing: none (default), full, or selective (matmul outputs kept)"},
    [OPT_SEQ] = {"--seq", "N", "sequence length in tokens (default 2048)"},
    [OPT_MB] = {"--micro-batch", "N", "sequences per GPU per step (default 1)"},
    [OPT_GA] = {"--grad-accum", "N", "gradient accumulation steps (no memory cost; default 1)"},
    [OPT_GPUS] = {"--gpus", "N", "GPUs (default 1)"},
    [OPT_ZERO] = {"--zero", "S", "ZeRO stage 0-3 over the GPUs (default 0: DDP)"},
    [OPT_OFFLOAD] = {"--offload", "W", "none, optimizer, or params (ZeRO-3) to CPU memory"},
    [OPT_OFFLOAD_CKPT] = {"--offload-checkpoints", NULL, OFFLOAD_CKPT_HELP},
    [OPT_CKPT_KEEP] = {"--ckpt-keep", "N", CKPT_KEEP_HELP},
    [OPT_PLACEMENT] = {"--placement", "P", "replicate (default) or layers: spread frozen layers over the GPUs"},
    [OPT_GPU] = {"--gpu", "NAME", "check the fit on this GPU (h100-80, h200-141, a100-80, rtx4090-24, ...)"},
    [OPT_FIND] = {"--find", NULL, "with --gpu: the largest micro-batch and longest sequence that fit"},
    [OPT_INSTANCES] = {"--instances", NULL, "the cloud instances that can run it, fewest GPUs first"},
    [OPT_EXPLAIN] = {"--explain", NULL, "what the seeds' formulas, ZeRO, DeepSpeed and transformers+PEFT would say"},
    [OPT_ATTN] = {"--attn", "I", "transformers' attention for its estimate: sdpa (default) or eager"},
    [OPT_JSON] = {"--json", NULL, "print the plan as one JSON object"},
    [OPT_SVG] = {"--svg", "FILE", "draw the breakdown and the estimates as a stacked bar chart"},
    [OPT_BUFFERS] = {"--buffers", NULL, "list every buffer of the plan"},
    [OPT_HELP] = {"--help", NULL, "show this help"},
};
_Static_assert(sizeof plan_opts / sizeof plan_opts[0] == OPT_COUNT, "plan options");

static int parse_choice(const char *const *names, int count, const char *flag, const char *v, tune_err *err)
{
    int i = run_lookup(names, count, v);
    if (i < 0) {
        char list[256] = "";
        for (int k = 0; k < count; k++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "", names[k]);
        return err_set(err, "%s: '%s' is not one of %s", flag, v, list), -1;
    }
    return i;
}

/* Flags are parsed in two passes: the model first (targets and the default
 * base dtype depend on it), then the rest over the model's defaults. */
static int parse_plan_flags(int argc, char **argv, struct plan_report *r, bool *json, const char **svg,
                            bool *want_find, bool *want_instances, bool *want_explain, tune_err *err)
{
    struct cli_args a = {argc, 0, argv};
    const char *v, *model = NULL, *params = NULL;
    int i;
    while ((i = cli_next(&a, plan_opts, OPT_COUNT, &v, err)) >= 0) {
        if (i == OPT_HELP)
            return 1;
        if (i == OPT_MODEL)
            model = v;
        if (i == OPT_PARAMS)
            params = v;
    }
    if (i == -2)
        return -1;
    if (!!model == !!params)
        return err_set(err, "name the model with exactly one of --model or --params");
    if (model && spec_resolve(&r->spec, model, err))
        return -1;
    if (params) {
        int64_t n;
        if (units_parse_count(params, "--params", &n, err) || spec_generic(&r->spec, n, err))
            return -1;
    }
    struct run_config *rc = &r->rc;
    run_config_default(rc, &r->spec);
    const char *targets = NULL, *layers = NULL, *expert_layers = NULL;
    bool dtype_given = false, targets_given = false;
    a.next = 0;
    while ((i = cli_next(&a, plan_opts, OPT_COUNT, &v, err)) >= 0) {
        int64_t n;
        int c;
        switch (i) {
        case OPT_METHOD:
            if ((c = parse_choice(run_method_names, METHOD_COUNT, "--method", v, err)) < 0)
                return -1;
            rc->method = (enum method)c;
            break;
        case OPT_R:
            if (units_parse_int(v, "--r", 1, 4096, &rc->lora_r, err))
                return -1;
            break;
        case OPT_ALPHA:
            if (units_parse_real(v, "--alpha", 1e-6, 1e6, &rc->lora_alpha, err))
                return -1;
            break;
        case OPT_DROPOUT:
            if (units_parse_real(v, "--dropout", 0, 0.999, &rc->lora_dropout, err))
                return -1;
            break;
        case OPT_TARGETS: targets = v; targets_given = true; break;
        case OPT_LAYERS: layers = v; break;
        case OPT_EXPERT_LAYERS: expert_layers = v; break;
        case OPT_BASE_DTYPE:
            if ((c = dtype_parse(v)) < 0)
                return err_set(err, "--base-dtype: unknown type '%s' (bf16, fp16, fp32, nf4, mxfp4)", v);
            rc->base_dtype = (enum dtype)c;
            dtype_given = true;
            break;
        case OPT_NO_DQ: rc->double_quant = false; break;
        case OPT_OPTIMIZER:
            if ((c = parse_choice(run_optimizer_names, OPTIMIZER_COUNT, "--optimizer", v, err)) < 0)
                return -1;
            rc->optimizer = (enum optimizer)c;
            break;
        case OPT_CKPT:
            if ((c = parse_choice(run_grad_ckpt_names, GRAD_CKPT_COUNT, "--grad-ckpt", v, err)) < 0)
                return -1;
            rc->grad_ckpt = (enum grad_ckpt)c;
            break;
        case OPT_SEQ:
            if (units_parse_int(v, "--seq", 1, 1 << 24, &rc->seq, err))
                return -1;
            break;
        case OPT_MB:
            if (units_parse_int(v, "--micro-batch", 1, 1 << 16, &rc->micro_batch, err))
                return -1;
            break;
        case OPT_GA:
            if (units_parse_int(v, "--grad-accum", 1, 1 << 20, &rc->grad_accum, err))
                return -1;
            break;
        case OPT_GPUS:
            if (units_parse_int(v, "--gpus", 1, 65536, &rc->gpus, err))
                return -1;
            break;
        case OPT_ZERO:
            if (units_parse_int(v, "--zero", 0, 3, &n, err))
                return -1;
            rc->zero = (int)n;
            break;
        case OPT_OFFLOAD:
            if ((c = parse_choice(run_offload_names, OFFLOAD_COUNT, "--offload", v, err)) < 0)
                return -1;
            rc->offload = (enum offload)c;
            break;
        case OPT_OFFLOAD_CKPT: rc->offload_checkpoints = true; break;
        case OPT_CKPT_KEEP:
            if (units_parse_int(v, "--ckpt-keep", 0, SPEC_MAX_LAYERS, &rc->ckpt_keep_layers, err))
                return -1;
            break;
        case OPT_PLACEMENT:
            if (strcmp(v, "replicate") && strcmp(v, "layers"))
                return err_set(err, "--placement: '%s' is not one of replicate, layers", v);
            rc->place_layers = !strcmp(v, "layers");
            break;
        case OPT_GPU:
            if (hw_gpu_find(v, &r->gpu, err))
                return -1;
            break;
        case OPT_FIND: *want_find = true; break;
        case OPT_INSTANCES: *want_instances = true; break;
        case OPT_EXPLAIN: *want_explain = true; break;
        case OPT_ATTN:
            if ((c = parse_choice(run_attn_names, ATTN_IMPL_COUNT, "--attn", v, err)) < 0)
                return -1;
            rc->attn = (enum attn_impl)c;
            break;
        case OPT_JSON: *json = true; break;
        case OPT_SVG: *svg = v; break;
        case OPT_BUFFERS: r->show_buffers = true; break;
        default: break;
        }
    }
    if (rc->method == METHOD_QLORA && !dtype_given)
        rc->base_dtype = DTYPE_NF4;
    if (rc->method == METHOD_FULL && !dtype_given)
        rc->base_dtype = DTYPE_BF16;
    if (rc->method == METHOD_FULL && !targets_given)
        rc->targets = 0;
    if (targets && run_parse_targets(rc, &r->spec, targets, err))
        return -1;
    if (expert_layers && run_parse_expert_layers(rc, &r->spec, expert_layers, err))
        return -1;
    if (layers && run_parse_layers(rc, &r->spec, layers, err))
        return -1;
    if (*want_find && !r->gpu)
        return err_set(err, "--find needs --gpu NAME to know how much memory there is");
    return 0;
}

/* For each instance, the least-sharded strategy that fits: one GPU alone, or
 * DDP then ZeRO-1, 2, 3 over all its GPUs. Sorted by GPU count, then GPU memory. */
static void fit_instances(struct plan_report *r)
{
    r->n_instances = 0;
    for (int i = 0; i < hw_instance_count() && r->n_instances < PLAN_REPORT_MAX_INSTANCES; i++) {
        const struct cloud_instance *ci = hw_instance_at(i);
        int64_t usable = hw_gpu_usable_bytes(hw_gpu_lookup(ci->gpu));
        struct instance_fit f = {ci, -1, 0};
        struct run_config rc = r->rc;
        rc.gpus = ci->gpus;
        rc.place_layers = false;
        if (rc.offload == OFFLOAD_PARAMS)
            rc.offload = OFFLOAD_OPTIMIZER;
        for (int z = 0; z <= (ci->gpus > 1 ? 3 : 0); z++) {
            rc.zero = z;
            int64_t t = fit_plan_total(&r->spec, &rc);
            f.per_gpu = t;
            if (t >= 0 && t <= usable) {
                f.zero = z;
                break;
            }
        }
        r->instances[r->n_instances++] = f;
    }
    for (int i = 1; i < r->n_instances; i++) /* insertion sort: a few dozen entries */
        for (int j = i; j > 0; j--) {
            const struct instance_fit *a = &r->instances[j - 1], *b = &r->instances[j];
            int64_t ma = hw_gpu_lookup(a->instance->gpu)->smi_mib, mb = hw_gpu_lookup(b->instance->gpu)->smi_mib;
            if (a->instance->gpus < b->instance->gpus || (a->instance->gpus == b->instance->gpus && ma <= mb))
                break;
            struct instance_fit t = r->instances[j];
            r->instances[j] = r->instances[j - 1];
            r->instances[j - 1] = t;
        }
}

int cmd_plan(int argc, char **argv)
{
    struct plan_report *r = calloc(1, sizeof *r);
    bool json = false, want_find = false, want_instances = false, want_explain = false;
    const char *svg = NULL;
    tune_err err;
    int status = 1;
    if (!r) {
        fprintf(stderr, "tune plan: out of memory\n");
        return 1;
    }
    int rc = parse_plan_flags(argc, argv, r, &json, &svg, &want_find, &want_instances, &want_explain, &err);
    if (rc == 1) {
        cli_print_help(stdout, "tune plan (--model NAME|DIR | --params N) [options]",
                       "Plans the per-GPU memory of a training run, before anything is downloaded or rented:\n"
                       "every buffer tune will allocate, by category, and whether it fits.",
                       plan_opts, OPT_COUNT);
        status = 0;
        goto out;
    }
    if (rc) {
        fprintf(stderr, "tune plan: %s\n", err.msg);
        status = 2;
        goto out;
    }
    if (plan_build(&r->plan, &r->spec, &r->rc, &err)) {
        fprintf(stderr, "tune plan: %s\n", err.msg);
        status = 2;
        goto out;
    }
    if (r->gpu) {
        r->usable = hw_gpu_usable_bytes(r->gpu);
        r->fits = r->plan.total <= r->usable;
    }
    if (want_find) {
        fit_find(&r->spec, &r->rc, r->usable, &r->find);
        r->have_find = true;
    }
    if (want_explain || json || svg) {
        estimate_all(&r->spec, &r->rc, r->plan.trainable_params, r->est);
        r->have_estimates = true;
    }
    if (want_instances)
        fit_instances(r);
    if (json)
        plan_report_json(stdout, r);
    else
        plan_report_text(stdout, r);
    if (svg && plan_report_svg(svg, r, &err)) {
        fprintf(stderr, "tune plan: %s\n", err.msg);
        goto out;
    }
    /* Exit 0 when it fits or no GPU was named; 3 when it does not fit, so
     * scripts can branch on it. */
    status = r->gpu && !r->fits ? 3 : 0;
out:
    plan_free(&r->plan);
    free(r);
    return status;
}
