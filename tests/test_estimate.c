/* The literature's estimates reproduce their sources to the digit: the seeds'
 * ZeRO table and estimate_memory() worksheet (values as the seed's Python
 * computes them), and DeepSpeed's estimator against the table DeepSpeed's
 * users print for t5-small. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "plan/estimate.h"

static void assert_close(double got, double want)
{
    if (fabs(got - want) > 1e-9 * (fabs(want) > 1 ? fabs(want) : 1))
        fail_msg("got %.12g, want %.12g", got, want);
}

/* The seed's mem_per_gpu() table: 7B and 70B, 4 and 8 GPUs, stages 0-3. */
static void test_seed_zero_table(void **state)
{
    (void)state;
    static const struct { double P; int N; double gb[4]; } rows[] = {
        {7, 4, {112.0, 49.0, 38.5, 28.0}},
        {7, 8, {112.0, 38.5, 26.25, 14.0}},
        {70, 4, {1120.0, 490.0, 385.0, 280.0}},
        {70, 8, {1120.0, 385.0, 262.5, 140.0}},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        for (int stage = 0; stage < 4; stage++)
            assert_close(estimate_seed_zero_gb(rows[i].P, rows[i].N, stage), rows[i].gb[stage]);
}

/* Every row of the seed's worksheet, computed by its own Python:
 * (model, grad, optim, act, total) in GB. */
static void test_seed_worksheet_rows(void **state)
{
    (void)state;
    static const struct {
        const char *label;
        double P; int N, stage; enum method m; int64_t hidden, layers; double lora_pct;
        double want[5];
    } rows[] = {
        {"7B full FT", 7, 2, 2, METHOD_FULL, 4096, 32, 0, {14, 7.0, 42.0, 1.2884901888, 64.2884901888}},
        {"7B full FT", 7, 8, 3, METHOD_FULL, 4096, 32, 0, {1.75, 1.75, 10.5, 1.2884901888, 15.2884901888}},
        {"7B LoRA", 7, 1, 0, METHOD_LORA, 4096, 32, 0.5, {14, 0.07, 0.42, 1.2884901888, 15.7784901888}},
        {"7B QLoRA", 7, 1, 0, METHOD_QLORA, 4096, 32, 0.5, {3.5, 0.07, 0.42, 1.2884901888, 5.2784901888}},
        {"70B QLoRA", 70, 1, 0, METHOD_QLORA, 8192, 80, 0.1, {35.0, 0.14, 0.84, 6.442450944, 42.422450944}},
        {"70B full FT", 70, 8, 3, METHOD_FULL, 8192, 80, 0, {17.5, 17.5, 105.0, 6.442450944, 146.442450944}},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct seed_worksheet w = estimate_seed_worksheet(rows[i].P, rows[i].N, rows[i].stage, rows[i].m,
                                                          2048, 1, rows[i].hidden, rows[i].layers, true,
                                                          rows[i].lora_pct);
        double got[5] = {w.model, w.grad, w.optim, w.act, w.total};
        for (int k = 0; k < 5; k++)
            assert_close(got[k], rows[i].want[k]);
    }
}

/* DeepSpeed's estimate_zero3_model_states_mem_needs_all_live(t5-small, 1 GPU)
 * as users print it (60M params, 16M largest layer; GB meaning GiB):
 *   1.52GB | 0.06GB | offload_param=cpu, offload_optimizer=cpu
 *   1.35GB | 0.17GB | offload_param=none, offload_optimizer=cpu
 *   0.09GB | 1.08GB | offload_param=none, offload_optimizer=none (zero_init=1) */
static void test_deepspeed_zero3_t5_small(void **state)
{
    (void)state;
    const int64_t total = 60506624, largest = 16449536; /* t5-small; largest is the shared embedding */
    static const struct { bool off, off_params; const char *cpu, *gpu; } rows[] = {
        {true, true, "1.52", "0.06"}, {true, false, "1.35", "0.17"}, {false, false, "0.09", "1.08"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int64_t cpu, gpu;
        estimate_deepspeed_zero3(total, largest, 1, 1, rows[i].off, rows[i].off_params, &cpu, &gpu);
        char c[16], g[16];
        snprintf(c, sizeof c, "%.2f", (double)cpu / (1 << 30));
        snprintf(g, sizeof g, "%.2f", (double)gpu / (1 << 30));
        assert_string_equal(c, rows[i].cpu);
        assert_string_equal(g, rows[i].gpu);
    }
}

/* DeepSpeed's ZeRO-2 estimator: 4P + 16P/N on the GPU without offload,
 * 2P with it; CPU P * max(4N, 16) * 1.5 with offload. */
static void test_deepspeed_zero2(void **state)
{
    (void)state;
    int64_t cpu, gpu;
    estimate_deepspeed_zero2(1000000000LL, 8, 1, false, &cpu, &gpu);
    assert_int_equal(gpu, 6000000000LL);
    assert_int_equal(cpu, 48000000000LL);
    estimate_deepspeed_zero2(1000000000LL, 8, 1, true, &cpu, &gpu);
    assert_int_equal(gpu, 2000000000LL);
    assert_int_equal(cpu, 48000000000LL);
}

/* `tune plan --params 7B --gpus 8 --zero 1 --method full --explain` carries the
 * seed's 38.5 GB; --zero 2 its 26.25; --zero 3 its 14.0. */
static void test_explain_uses_nominal_params(void **state)
{
    (void)state;
    struct model_spec spec;
    tune_err err = {{0}};
    assert_int_equal(spec_generic(&spec, 7000000000LL, &err), 0);
    struct run_config rc;
    run_config_default(&rc, &spec);
    rc.method = METHOD_FULL;
    rc.targets = 0;
    rc.gpus = 8;
    const int64_t want[4] = {112000000000LL, 38500000000LL, 26250000000LL, 14000000000LL};
    for (int z = 1; z <= 3; z++) {
        rc.zero = z;
        struct estimate est[ESTIMATE_COUNT];
        estimate_all(&spec, &rc, 7000000000LL, est);
        assert_int_equal(est[ESTIMATE_ZERO_FORMULA].per_gpu_bytes, want[z]);
        assert_string_equal(est[ESTIMATE_ZERO_FORMULA].name, "zero-formula");
    }
    /* The worksheet row "70B full FT, 8 GPUs, ZeRO-3": 146.4 GB per GPU. */
    assert_int_equal(spec_generic(&spec, 70000000000LL, &err), 0);
    rc.zero = 3;
    rc.grad_ckpt = GRAD_CKPT_FULL;
    struct estimate est[ESTIMATE_COUNT];
    estimate_all(&spec, &rc, 70000000000LL, est);
    assert_int_equal(est[ESTIMATE_SEED_WORKSHEET].per_gpu_bytes, 146442450944LL);
    assert_non_null(strstr(est[ESTIMATE_SEED_WORKSHEET].detail, "= 146.4 GB"));
}

/* The seed's "17.5 GB per GPU" for 70B under ZeRO-3 on 8 GPUs is called out. */
static void test_seed_contradiction_note(void **state)
{
    (void)state;
    struct model_spec spec;
    tune_err err = {{0}};
    assert_int_equal(spec_generic(&spec, 70000000000LL, &err), 0);
    struct run_config rc;
    run_config_default(&rc, &spec);
    rc.method = METHOD_FULL;
    rc.targets = 0;
    rc.gpus = 8;
    rc.zero = 3;
    char notes[4][ESTIMATE_NOTE_LEN];
    int n = estimate_seed_notes(&spec, &rc, 70000000000LL, notes, 4);
    assert_true(n >= 1);
    assert_non_null(strstr(notes[0], "17.5 GB per GPU"));
    assert_non_null(strstr(notes[0], "16P/N = 140.00 GB"));
    assert_non_null(strstr(notes[0], "weights' share 17.50 GB"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_zero_table),          cmocka_unit_test(test_seed_worksheet_rows),
        cmocka_unit_test(test_deepspeed_zero3_t5_small), cmocka_unit_test(test_deepspeed_zero2),
        cmocka_unit_test(test_explain_uses_nominal_params), cmocka_unit_test(test_seed_contradiction_note),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
