/* The seeds' sentences that their own formulas (or the model's real sizes)
 * contradict; see estimate.h. Each note states both figures so the reader can
 * check the arithmetic. */
#include <stdio.h>

#include "model/layout.h"
#include "plan/estimate.h"

int estimate_seed_notes(const struct model_spec *spec, const struct run_config *rc,
                        int64_t trainable_params, char notes[][ESTIMATE_NOTE_LEN], int max)
{
    struct param_counts pc;
    layout_count_params(spec, &pc);
    double P = (double)(spec->nominal_params ? spec->nominal_params : pc.total);
    int n = 0;

    if (rc->method == METHOD_FULL && rc->zero == 3 && n < max) {
        double N = (double)rc->gpus;
        struct seed_worksheet w = estimate_seed_worksheet(P / 1e9, rc->gpus, 3, METHOD_FULL, 2048, 1,
                                                          spec->hidden, spec->layers, true, 0);
        snprintf(notes[n++], ESTIMATE_NOTE_LEN,
                 "The distributed seed says ZeRO-3 brings a 70B model on 8 GPUs to \"17.5 GB per GPU\", "
                 "but its formula 16P/N gives 16 x 70e9 / 8 = 140 GB per GPU; 17.5 GB is the bf16 "
                 "weights' share (2P/N) alone, and its own worksheet row says 146.4 GB. For this run: "
                 "16P/N = %.2f GB, weights' share %.2f GB, worksheet %.1f GB per GPU.",
                 16 * P / N / 1e9, 2 * P / N / 1e9, w.total);
    }
    if (spec->expert_quant == WEIGHT_QUANT_MXFP4 && n < max) {
        double experts = (double)pc.component[COMPONENT_EXPERTS];
        double mxfp4 = experts * 4.25 / 8 + (double)(pc.total - (int64_t)experts) * 2;
        snprintf(notes[n++], ESTIMATE_NOTE_LEN,
                 "The gpt-oss seeds say gpt-oss-120b \"requires approximately 240GB of memory in 4-bit "
                 "quantized format\". The MXFP4 checkpoint of this model holds %.1f GB of weights "
                 "(experts at 4.25 bits, the rest bf16); about 240 GB is its bf16 size (%.1f GB here).",
                 mxfp4 / 1e9, 2 * (double)pc.total / 1e9);
    }
    if (rc->method != METHOD_FULL && n < max)
        snprintf(notes[n++], ESTIMATE_NOTE_LEN,
                 "The 3.5-4x rule of thumb and DeepSpeed's estimator count gradients and Adam states "
                 "for every parameter; under %s only %lld of %.0f parameters train.",
                 run_method_name(rc->method), (long long)trainable_params, P);
    return n;
}
