/* Literature and seed estimates; see estimate.h. The seed and DeepSpeed
 * functions are line-for-line ports of the published Python so their numbers
 * match to the digit; their assumptions (16 bytes per parameter, a k = 12
 * activation rule) are theirs, not tune's. */
#include "plan/estimate.h"

#include <stdio.h>
#include <string.h>

#include "model/layout.h"

struct seed_worksheet estimate_seed_worksheet(double P, int64_t n_gpus, int zero_stage,
                                              enum method method, int64_t seq_len, int64_t micro_bs,
                                              int64_t hidden_dim, int64_t n_layers, bool grad_ckpt,
                                              double lora_pct)
{
    struct seed_worksheet w;
    double model_mem = method == METHOD_QLORA ? 0.5 * P : 2 * P;
    double p_train = method == METHOD_FULL ? P : P * lora_pct / 100;
    double grad_mem = 2 * p_train, opt_mem = 12 * p_train, n = (double)n_gpus;
    w.model = zero_stage >= 3 ? model_mem / n : model_mem;
    w.grad = zero_stage >= 2 ? grad_mem / n : grad_mem;
    w.optim = zero_stage >= 1 ? opt_mem / n : opt_mem;
    double k = 12; /* the seed's bytes per element per layer */
    w.act = (double)seq_len * (double)micro_bs * (double)hidden_dim * (double)n_layers * k / 1e9;
    if (grad_ckpt)
        w.act *= 0.4;
    w.total = w.model + w.grad + w.optim + w.act;
    return w;
}

double estimate_seed_zero_gb(double P, int64_t n_gpus, int zero_stage)
{
    double n = (double)n_gpus;
    switch (zero_stage) {
    case 0: return 2 * P + 2 * P + 12 * P;
    case 1: return 2 * P + 2 * P + 12 * P / n;
    case 2: return 2 * P + (2 * P + 12 * P) / n;
    default: return (2 * P + 2 * P + 12 * P) / n;
    }
}

void estimate_deepspeed_zero2(int64_t total_params, int64_t gpus_per_node, int64_t nodes,
                              bool cpu_offload, int64_t *cpu_bytes, int64_t *gpu_bytes)
{
    const double buffer_factor = 1.5; /* DeepSpeed's additional_buffer_factor default */
    int64_t total_gpus = nodes * gpus_per_node;
    double p = (double)total_params;
    if (cpu_offload) {
        *gpu_bytes = 2 * total_params;
        double per = 4.0 * (double)total_gpus > 16 ? 4.0 * (double)total_gpus : 16;
        *cpu_bytes = (int64_t)(p * per * buffer_factor);
    } else {
        *gpu_bytes = 4 * total_params + (int64_t)(16 * p / (double)total_gpus);
        *cpu_bytes = (int64_t)(p * 4 * (double)gpus_per_node * buffer_factor);
    }
}

void estimate_deepspeed_zero3(int64_t total_params, int64_t largest_layer_params,
                              int64_t gpus_per_node, int64_t nodes, bool cpu_offload,
                              bool cpu_offload_params, int64_t *cpu_bytes, int64_t *gpu_bytes)
{
    /* DeepSpeed's defaults: zero_init=True, additional_buffer_factor=1.5. */
    const double buffer_factor = 1.5;
    int64_t total_gpus = nodes * gpus_per_node;
    double p = (double)total_params, gpus_factor = 1.0 / (double)nodes;
    int64_t largest_layer_memory = 4 * largest_layer_params;
    if (cpu_offload && cpu_offload_params) {
        *gpu_bytes = largest_layer_memory;
        *cpu_bytes = (int64_t)(p * 18 * gpus_factor * buffer_factor);
    } else if (cpu_offload) {
        *gpu_bytes = largest_layer_memory + (int64_t)(2 * p / (double)total_gpus);
        *cpu_bytes = (int64_t)(p * 16 * gpus_factor * buffer_factor);
    } else {
        *gpu_bytes = largest_layer_memory + (int64_t)(18 * p / (double)total_gpus);
        *cpu_bytes = (int64_t)((double)largest_layer_params * 4 * (double)gpus_per_node * buffer_factor);
    }
}

static int64_t gb_to_bytes(double gb) { return (int64_t)(gb * 1e9 + 0.5); }

void estimate_all(const struct model_spec *spec, const struct run_config *rc,
                  int64_t trainable_params, struct estimate out[ESTIMATE_COUNT])
{
    struct param_counts pc;
    layout_count_params(spec, &pc);
    /* The formulas take P as the user states it: the nominal size for
     * `--params 70B`, the exact count for a real model. */
    int64_t P = spec->nominal_params ? spec->nominal_params : pc.total;
    double Pb = (double)P / 1e9;
    int64_t n = rc->gpus;
    memset(out, 0, sizeof *out * ESTIMATE_COUNT);

    struct estimate *e = &out[ESTIMATE_RULE_OF_THUMB];
    e->name = "rule-of-thumb";
    double wbytes = rc->base_dtype == DTYPE_F32 ? 4 : rc->base_dtype == DTYPE_NF4 ? 0.5 : 2;
    e->per_gpu_bytes = (int64_t)(4.0 * wbytes * (double)P / (double)n);
    snprintf(e->detail, sizeof e->detail,
             "3.5-4x the parameter size (%.4g B params x %.3g bytes = %.2f GB): %.2f-%.2f GB in all, "
             "split over %lld GPU(s); meant for full fine-tuning with Adam",
             Pb, wbytes, wbytes * Pb, 3.5 * wbytes * Pb, 4 * wbytes * Pb, (long long)n);

    e = &out[ESTIMATE_SEED_WORKSHEET];
    e->name = "seed-worksheet";
    double lora_pct = rc->method == METHOD_FULL ? 0 : 100.0 * (double)trainable_params / (double)P;
    struct seed_worksheet w = estimate_seed_worksheet(
        Pb, n, rc->zero, rc->method, rc->seq, rc->micro_batch, spec->hidden, spec->layers,
        rc->grad_ckpt == GRAD_CKPT_FULL, lora_pct);
    e->per_gpu_bytes = gb_to_bytes(w.total);
    snprintf(e->detail, sizeof e->detail,
             "estimate_memory(P_b=%.4g, n_gpus=%lld, zero_stage=%d, method=%s, seq_len=%lld, "
             "micro_bs=%lld, hidden_dim=%lld, n_layers=%lld, grad_ckpt=%s, lora_pct=%.4g): "
             "model %.1f + grad %.1f + optim %.1f + act %.1f = %.1f GB",
             Pb, (long long)n, rc->zero, run_method_name(rc->method), (long long)rc->seq,
             (long long)rc->micro_batch, (long long)spec->hidden, (long long)spec->layers,
             rc->grad_ckpt == GRAD_CKPT_FULL ? "True" : "False", lora_pct, w.model, w.grad,
             w.optim, w.act, w.total);

    e = &out[ESTIMATE_ZERO_FORMULA];
    e->name = "zero-formula";
    if (rc->method == METHOD_FULL) {
        e->per_gpu_bytes = gb_to_bytes(estimate_seed_zero_gb(Pb, n, rc->zero));
        snprintf(e->detail, sizeof e->detail,
                 "16P bytes of model states (2P weights + 2P grads + 12P Adam) under ZeRO-%d on %lld "
                 "GPU(s): DDP %.2f, ZeRO-1 %.2f, ZeRO-2 %.2f, ZeRO-3 %.2f GB; activations not counted",
                 rc->zero, (long long)n, estimate_seed_zero_gb(Pb, n, 0), estimate_seed_zero_gb(Pb, n, 1),
                 estimate_seed_zero_gb(Pb, n, 2), estimate_seed_zero_gb(Pb, n, 3));
    } else {
        /* For adapters the same per-stage sharding applies to the frozen
         * weights and to the 14 bytes of each trainable parameter. */
        e->per_gpu_bytes = gb_to_bytes(w.model + w.grad + w.optim);
        snprintf(e->detail, sizeof e->detail,
                 "ZeRO-%d model states for %s: weights %.2f + grads %.2f + Adam %.2f GB; activations "
                 "not counted", rc->zero, run_method_name(rc->method), w.model, w.grad, w.optim);
    }

    e = &out[ESTIMATE_DEEPSPEED];
    e->name = "deepspeed";
    int64_t cpu, gpu;
    if (rc->zero == 3) {
        estimate_deepspeed_zero3(P, pc.largest_module, n, 1, rc->offload != OFFLOAD_NONE,
                                 rc->offload == OFFLOAD_PARAMS, &cpu, &gpu);
        snprintf(e->detail, sizeof e->detail,
                 "estimate_zero3_model_states_mem_needs(total_params=%lld, largest_layer_params=%lld, "
                 "num_gpus_per_node=%lld): %.2f GiB per GPU, %.2f GiB CPU; assumes every parameter trains",
                 (long long)P, (long long)pc.largest_module, (long long)n, (double)gpu / (1 << 30),
                 (double)cpu / (1 << 30));
    } else {
        estimate_deepspeed_zero2(P, n, 1, rc->offload != OFFLOAD_NONE, &cpu, &gpu);
        snprintf(e->detail, sizeof e->detail,
                 "estimate_zero2_model_states_mem_needs(total_params=%lld, num_gpus_per_node=%lld)%s: "
                 "%.2f GiB per GPU, %.2f GiB CPU; assumes every parameter trains",
                 (long long)P, (long long)n, rc->zero < 2 ? " (DeepSpeed has none for stage 0/1)" : "",
                 (double)gpu / (1 << 30), (double)cpu / (1 << 30));
    }
    e->per_gpu_bytes = gpu;

    e = &out[ESTIMATE_TRANSFORMERS_PEFT];
    e->name = "transformers-peft";
    struct tfpeft_estimate tf;
    char why[256];
    if (estimate_transformers_peft(spec, rc, &tf, why, sizeof why) == 0) {
        e->per_gpu_bytes = tf.reserved;
        snprintf(e->detail, sizeof e->detail,
                 "calibrated on measured runs (bench/tfpeft/): %.2f GiB allocated, %.2f GiB reserved "
                 "by PyTorch's caching allocator (attn %s, grad-ckpt %s)",
                 (double)tf.allocated / (1 << 30), (double)tf.reserved / (1 << 30),
                 run_attn_names[rc->attn], run_grad_ckpt_names[rc->grad_ckpt]);
    } else {
        e->per_gpu_bytes = -1;
        snprintf(e->detail, sizeof e->detail, "not estimated: %s", why);
    }
}
