/* tune plan --json: the report as one JSON object (bytes as integers), built
 * with cJSON. The shape is the contract of issue 3; more keys are additions. */
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "cli/plan_report.h"
#include "model/layout.h"

static void add_int(cJSON *o, const char *k, int64_t v) { cJSON_AddItemToObject(o, k, cJSON_CreateNumber((double)v)); }

static cJSON *json_run(const struct run_config *rc)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "method", run_method_name(rc->method));
    if (rc->method != METHOD_FULL) {
        add_int(o, "r", rc->lora_r);
        cJSON_AddNumberToObject(o, "alpha", rc->lora_alpha);
        cJSON_AddNumberToObject(o, "dropout", rc->lora_dropout);
    }
    cJSON *t = cJSON_AddArrayToObject(o, "targets");
    for (int i = 0; i < TARGET_COUNT; i++)
        if (rc->targets & 1u << i)
            cJSON_AddItemToArray(t, cJSON_CreateString(run_target_name((enum target)i)));
    cJSON_AddStringToObject(o, "base_dtype", dtype_name(rc->base_dtype));
    cJSON_AddStringToObject(o, "optimizer", run_optimizer_name(rc->optimizer));
    cJSON_AddStringToObject(o, "grad_ckpt", run_grad_ckpt_names[rc->grad_ckpt]);
    add_int(o, "seq", rc->seq);
    add_int(o, "micro_batch", rc->micro_batch);
    add_int(o, "grad_accum", rc->grad_accum);
    add_int(o, "gpus", rc->gpus);
    add_int(o, "zero", rc->zero);
    cJSON_AddStringToObject(o, "offload", run_offload_names[rc->offload]);
    cJSON_AddStringToObject(o, "placement", rc->place_layers ? "layers" : "replicate");
    cJSON_AddBoolToObject(o, "offload_checkpoints", rc->offload_checkpoints);
    cJSON_AddNumberToObject(o, "ckpt_keep_layers", (double)rc->ckpt_keep_layers);
    if (rc->expert_layers_chosen) {
        cJSON *layers = cJSON_AddArrayToObject(o, "expert_layers");
        for (int l = 0; l < SPEC_MAX_LAYERS; l++)
            if (rc->expert_layer_selected[l])
                cJSON_AddItemToArray(layers, cJSON_CreateNumber(l));
    }
    return o;
}

void plan_report_json(FILE *out, const struct plan_report *r)
{
    const struct mem_plan *p = &r->plan;
    cJSON *root = cJSON_CreateObject();

    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "name", r->spec.name);
    cJSON_AddStringToObject(model, "architecture", spec_arch_name(r->spec.arch));
    add_int(model, "params", p->params);
    add_int(model, "trainable_params", p->trainable_params);
    struct param_counts pc;
    layout_count_params(&r->spec, &pc);
    cJSON *comp = cJSON_AddObjectToObject(model, "params_by_component");
    for (int c = 0; c < COMPONENT_COUNT; c++)
        add_int(comp, layout_component_name((enum component)c), pc.component[c]);

    cJSON_AddItemToObject(root, "run", json_run(&r->rc));

    cJSON *per_gpu = cJSON_AddObjectToObject(root, "per_gpu");
    for (int c = 0; c < PLAN_CATEGORY_COUNT; c++)
        add_int(per_gpu, plan_category_name((enum plan_category)c), p->per_gpu[c]);
    add_int(per_gpu, "total", p->total);
    add_int(root, "host_bytes", p->host_bytes);
    add_int(root, "rank", p->rank);

    if (r->gpu) {
        cJSON *gpu = cJSON_AddObjectToObject(root, "gpu");
        cJSON_AddStringToObject(gpu, "name", r->gpu->name);
        add_int(gpu, "total_bytes", hw_gpu_total_bytes(r->gpu));
        add_int(gpu, "usable_bytes", r->usable);
        cJSON_AddBoolToObject(root, "fits", r->fits);
    } else {
        cJSON_AddNullToObject(root, "gpu");
        cJSON_AddNullToObject(root, "fits");
    }

    cJSON *bufs = cJSON_AddArrayToObject(root, "buffers");
    for (int i = 0; i < p->n; i++) {
        const struct plan_buffer *b = &p->buf[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", b->name);
        cJSON_AddStringToObject(o, "category", plan_category_name(b->category));
        cJSON_AddStringToObject(o, "dtype", dtype_name(b->dtype));
        add_int(o, "elems", b->elems);
        add_int(o, "count", b->count);
        add_int(o, "shards", b->shards);
        cJSON_AddBoolToObject(o, "on_host", b->on_host);
        add_int(o, "bytes", b->bytes);
        cJSON_AddItemToArray(bufs, o);
    }

    if (r->have_find) {
        cJSON *f = cJSON_AddObjectToObject(root, "find");
        add_int(f, "max_micro_batch", r->find.max_micro_batch);
        add_int(f, "max_seq", r->find.max_seq);
        cJSON_AddBoolToObject(f, "seq_capped_at_context", r->find.seq_capped);
        add_int(f, "max_ckpt_keep", r->find.max_ckpt_keep);
    }
    if (r->n_instances) {
        cJSON *arr = cJSON_AddArrayToObject(root, "instances");
        for (int i = 0; i < r->n_instances; i++) {
            const struct instance_fit *f = &r->instances[i];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "provider", f->instance->provider);
            cJSON_AddStringToObject(o, "name", f->instance->name);
            cJSON_AddStringToObject(o, "gpu", f->instance->gpu);
            add_int(o, "gpus", f->instance->gpus);
            cJSON_AddBoolToObject(o, "fits", f->zero >= 0);
            if (f->zero >= 0)
                add_int(o, "zero", f->zero);
            add_int(o, "per_gpu_bytes", f->per_gpu);
            cJSON_AddItemToArray(arr, o);
        }
    }
    if (r->have_estimates) {
        cJSON *arr = cJSON_AddArrayToObject(root, "estimates");
        for (int e = 0; e < ESTIMATE_COUNT; e++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", r->est[e].name);
            if (r->est[e].per_gpu_bytes >= 0)
                add_int(o, "per_gpu_bytes", r->est[e].per_gpu_bytes);
            else
                cJSON_AddNullToObject(o, "per_gpu_bytes");
            cJSON_AddStringToObject(o, "detail", r->est[e].detail);
            cJSON_AddItemToArray(arr, o);
        }
        char notes[4][ESTIMATE_NOTE_LEN];
        int n = estimate_seed_notes(&r->spec, &r->rc, p->trainable_params, notes, 4);
        cJSON *na = cJSON_AddArrayToObject(root, "seed_notes");
        for (int i = 0; i < n; i++)
            cJSON_AddItemToArray(na, cJSON_CreateString(notes[i]));
    }
    char *text = cJSON_Print(root);
    fprintf(out, "%s\n", text);
    free(text);
    cJSON_Delete(root);
}
