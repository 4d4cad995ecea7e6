/* Everything `tune plan` computed for one invocation, and its three renderings:
 * text for people, JSON for programs, SVG for those who would rather look. */
#ifndef TUNE_CLI_PLAN_REPORT_H
#define TUNE_CLI_PLAN_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "model/spec.h"
#include "plan/estimate.h"
#include "plan/fit.h"
#include "plan/hardware.h"
#include "plan/memplan.h"
#include "plan/run.h"

#define PLAN_REPORT_MAX_INSTANCES 64

struct instance_fit {
    const struct cloud_instance *instance;
    int zero;          /* the least-sharded ZeRO stage that fits, or -1 */
    int64_t per_gpu;   /* planned bytes per GPU at that stage (or at ZeRO-3 if none fits) */
};

struct plan_report {
    struct model_spec spec;
    struct run_config rc;
    struct mem_plan plan;
    const struct gpu_model *gpu; /* NULL if no --gpu */
    int64_t usable;
    bool fits;
    bool have_find;
    struct fit_result find;
    bool have_estimates;
    struct estimate est[ESTIMATE_COUNT];
    int n_instances;
    struct instance_fit instances[PLAN_REPORT_MAX_INSTANCES];
    bool show_buffers;
};

void plan_report_text(FILE *out, const struct plan_report *r);
void plan_report_json(FILE *out, const struct plan_report *r);
/* Writes the SVG chart to path; returns -1 with err set if it cannot. */
int plan_report_svg(const char *path, const struct plan_report *r, tune_err *err);

#endif
