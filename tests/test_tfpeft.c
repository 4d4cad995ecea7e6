/* The transformers+PEFT estimate against measured peaks it was not fitted on
 * (tests/fixtures/tfpeft_heldout.csv: 52 runs on an H100, a whole model among
 * them): each within 10% for allocated and for reserved memory. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "plan/estimate.h"

/* Splits one CSV line into fields, honouring double quotes; returns the count. */
static int csv_split(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;
    while (n < max) {
        if (*p == '"') {
            fields[n++] = ++p;
            p = strchr(p, '"');
            if (!p)
                return -1;
            *p++ = 0;
        } else {
            fields[n++] = p;
            p += strcspn(p, ",\n");
        }
        if (*p != ',')
            break;
        *p++ = 0;
    }
    p[strcspn(p, "\n")] = 0;
    return n;
}

static void test_heldout_within_10_percent(void **state)
{
    (void)state;
    FILE *f = fopen("tests/fixtures/tfpeft_heldout.csv", "r");
    assert_non_null(f);
    char line[512];
    assert_non_null(fgets(line, sizeof line, f)); /* header */
    int rows = 0;
    double worst_alloc = 0, worst_reserved = 0;
    while (fgets(line, sizeof line, f)) {
        char *fl[10];
        assert_int_equal(csv_split(line, fl, 10), 10);
        struct model_spec spec;
        tune_err err = {{0}};
        assert_int_equal(spec_resolve(&spec, fl[0], &err), 0);
        struct run_config rc;
        run_config_default(&rc, &spec);
        rc.method = !strcmp(fl[1], "full") ? METHOD_FULL : METHOD_LORA;
        if (rc.method == METHOD_FULL) {
            rc.targets = 0;
        } else {
            rc.lora_r = atoll(fl[2]);
            assert_int_equal(run_parse_targets(&rc, &spec, fl[3], &err), 0);
        }
        rc.seq = atoll(fl[4]);
        rc.micro_batch = atoll(fl[5]);
        rc.attn = !strcmp(fl[6], "eager") ? ATTN_IMPL_EAGER : ATTN_IMPL_SDPA;
        rc.grad_ckpt = !strcmp(fl[7], "full") ? GRAD_CKPT_FULL : GRAD_CKPT_NONE;
        struct tfpeft_estimate est;
        char why[256];
        assert_int_equal(estimate_transformers_peft(&spec, &rc, &est, why, sizeof why), 0);
        double ea = fabs((double)est.allocated / atof(fl[8]) - 1);
        double er = fabs((double)est.reserved / atof(fl[9]) - 1);
        if (ea > 0.10 || er > 0.10)
            fail_msg("%s %s %s %s x%s: allocated off by %.1f%%, reserved by %.1f%%", fl[0], fl[1], fl[3], fl[4],
                     fl[5], 100 * ea, 100 * er);
        worst_alloc = fmax(worst_alloc, ea);
        worst_reserved = fmax(worst_reserved, er);
        rows++;
    }
    fclose(f);
    assert_int_equal(rows, 52);
    print_message("%d held-out runs: worst error %.2f%% allocated, %.2f%% reserved\n", rows, 100 * worst_alloc,
                  100 * worst_reserved);
}

/* Outside the calibration the estimate declines instead of extrapolating. */
static void test_declines_outside_calibration(void **state)
{
    (void)state;
    struct model_spec spec;
    tune_err err = {{0}};
    assert_int_equal(spec_resolve(&spec, "gpt-oss-20b", &err), 0);
    struct run_config rc;
    run_config_default(&rc, &spec);
    struct tfpeft_estimate est;
    char why[256];
    assert_int_equal(estimate_transformers_peft(&spec, &rc, &est, why, sizeof why), -1);
    assert_non_null(strstr(why, "gpt-oss"));
    assert_int_equal(spec_resolve(&spec, "llama-3.1-8b", &err), 0);
    run_config_default(&rc, &spec);
    rc.gpus = 2;
    assert_int_equal(estimate_transformers_peft(&spec, &rc, &est, why, sizeof why), -1);
    assert_non_null(strstr(why, "one GPU"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heldout_within_10_percent),
        cmocka_unit_test(test_declines_outside_calibration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
