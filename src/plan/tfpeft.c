/* Calibrated model of transformers + PEFT peak memory (allocated and reserved
 * by PyTorch's caching allocator) for one training step on one GPU. Fitted by
 * tools/fit_tfpeft.py to 119 measured runs on an H100 (torch 2.11, transformers
 * 5.17, peft 0.21; bench/tfpeft/), and checked on 52 held-out runs, a whole
 * model among them (tests/test_tfpeft.c): within 1.2% allocated and 8.4%
 * reserved. The terms are physical (bf16 base, fp32 LoRA factors and Adam
 * states, saved activations, fp32 logits, eager attention scores); the README
 * there says what each coefficient stands for. */
#include <math.h>
#include <stdio.h>

#include "model/layout.h"
#include "plan/estimate.h"

static const struct {
    double C, k_T, a_h, a_i, a_l, a_kv, e_s, e_b, g, k_h, r_h, r_i, r_l, r_e, f_o, f_g, f_x;
    double G0, u_n, w_n, y_n, u_c, w_c, x_h, x_i, x_l, z_f;
} K = {
    .C = 75455987.05849314, .k_T = 13.154722637952013, .a_h = 13.317477933720848,
    .a_i = 5.822603200914941, .a_l = 4.9682001890106315, .a_kv = 3.0784042971842096,
    .e_s = 6.0253657277780475, .e_b = 0.44801446412471435, .g = 11.865091134725605,
    .k_h = 2.424256248506981, .r_h = 2.7532623005837293, .r_i = 1.926028232211166,
    .r_l = 0.5052452933026366, .r_e = 16.07348071851153, .f_o = 4.484269711773025,
    .f_g = 0.8120324027501254, .f_x = 1.699922559868525, .G0 = 101390643.95033683,
    .u_n = 1.4360234219657197, .w_n = 3.283791511687522, .y_n = 1.9222817787828708,
    .u_c = 3.0274284254375257, .w_c = 6.287796837016268, .x_h = 2.943228322196053,
    .x_i = 4.960927288919186, .x_l = 0.1809628624131152, .z_f = 0.5490379256940554,
};

/* Where the calibration says nothing, say so rather than extrapolate. */
static int not_calibrated(const struct model_spec *s, const struct run_config *rc, char *why, size_t len)
{
    if (s->experts)
        snprintf(why, len, "calibrated on dense Llama-family models; gpt-oss runs are not measured yet");
    else if (rc->method == METHOD_QLORA)
        snprintf(why, len, "QLoRA (bitsandbytes) runs are not measured yet");
    else if (rc->gpus > 1)
        snprintf(why, len, "calibrated on one GPU; DDP/ZeRO runs are not measured yet");
    else if (rc->optimizer != OPTIMIZER_ADAMW || rc->base_dtype != DTYPE_BF16 || !rc->all_layers)
        snprintf(why, len, "calibrated for bf16 weights, fused AdamW, all layers targeted");
    else if (rc->method != METHOD_FULL && rc->targets & ~0x7fu)
        snprintf(why, len, "calibrated for LoRA on q,k,v,o,gate,up,down only");
    else if (rc->method == METHOD_FULL && rc->targets)
        snprintf(why, len, "calibrated for full fine-tuning of every weight");
    else
        return 0;
    return -1;
}

int estimate_transformers_peft(const struct model_spec *s, const struct run_config *rc,
                               struct tfpeft_estimate *out, char *why_not, size_t len)
{
    if (not_calibrated(s, rc, why_not, len))
        return -1;
    struct param_counts pc;
    layout_count_params(s, &pc);
    double P = (double)pc.total, h = (double)s->hidden, i = (double)s->intermediate;
    double L = (double)s->layers, V = (double)s->vocab, kvd = (double)(s->kv_heads * s->head_dim);
    double N = (double)(rc->seq * rc->micro_batch);
    double S2 = (double)rc->micro_batch * (double)s->heads * (double)rc->seq * (double)rc->seq;
    double E = rc->attn == ATTN_IMPL_EAGER ? 1 : 0;
    bool ckpt = rc->grad_ckpt == GRAD_CKPT_FULL, full = rc->method == METHOD_FULL;

    /* T: LoRA parameters, r * (in + out) per targeted linear; lin: the
     * targeted linears' input widths, whose fp32 copies PEFT saves. */
    double T = 0, lin = 0;
    if (!full) {
        struct linear_shape l[LAYOUT_MAX_LINEARS];
        int n = layout_layer_linears(s, l);
        for (int k = 0; k < n; k++)
            if (run_layer_targeted(rc, 0, l[k].target)) {
                T += L * (double)rc->lora_r * (double)(l[k].in + l[k].out);
                lin += (double)l[k].in;
            }
    }

    double alloc;
    if (!full) {
        double base = 2 * P + K.k_T * T + K.C;
        if (!ckpt)
            alloc = base + L * N * (K.a_h * h + K.a_i * i + K.a_l * lin + K.a_kv * kvd) + E * L * K.e_s * S2 +
                    fmax(K.g * N * V, E * K.e_b * S2);
        else
            alloc = base + K.k_h * N * L * h + fmax(K.g * N * V, N * (K.r_h * h + K.r_i * i + K.r_l * lin) + E * K.r_e * S2);
    } else {
        double D;
        if (!ckpt)
            D = L * N * (K.a_h * h + K.a_i * i + K.a_kv * kvd) + E * L * K.e_s * S2 + K.f_x * L * N * (4 * h + i) +
                K.f_g * V * h + fmax(K.g * N * V, E * K.e_b * S2);
        else
            D = K.k_h * N * L * h + K.f_g * V * h + fmax(K.g * N * V, N * (K.r_h * h + K.r_i * i) + E * K.r_e * S2);
        alloc = 6 * P + K.C + fmax(2 * P + K.f_o * V * h, D);
    }
    double reserved = alloc + K.G0 +
                      (ckpt ? K.u_c * N * V + K.w_c * E * S2 + N * (K.x_h * h + K.x_i * i + K.x_l * lin)
                            : K.u_n * N * V + K.w_n * E * S2 + K.y_n * N * L * h) +
                      (full ? K.z_f * P : 0);
    out->allocated = (int64_t)llround(alloc);
    out->reserved = (int64_t)llround(reserved);
    return 0;
}
