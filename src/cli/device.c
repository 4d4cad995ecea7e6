/* --device: parsing, and opening the backend it names. Compiled twice by the
 * Makefile: plain into the CPU program, with TUNE_WITH_CUDA into the CUDA one. */
#include "cli/device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "base/units.h"
#include "plan/fit.h"
#ifdef TUNE_WITH_CUDA
#include "backend/cuda/backend_cuda.h"
#endif

int device_parse(const char *v, struct device_choice *d, tune_err *err)
{
    *d = (struct device_choice){.kind = DEVICE_CPU};
    if (!strcmp(v, "auto")) {
        d->is_auto = true;
        return 0;
    }
    if (!strcmp(v, "cpu"))
        return 0;
    char *end;
    if (!strcmp(v, "cuda") || (!strncmp(v, "cuda:", 5) && (d->index = (int)strtol(v + 5, &end, 10)) >= 0 &&
                               *end == 0 && end != v + 5)) {
#ifdef TUNE_WITH_CUDA
        d->kind = DEVICE_CUDA;
        return 0;
#else
        return err_set(err, "--device %s: this tune was built without CUDA (`make cuda` builds build/cuda/tune)", v);
#endif
    }
    return err_set(err, "--device: '%s' is not one of " DEVICE_HELP, v);
}

void device_resolve(struct device_choice *d)
{
    if (!d->is_auto)
        return;
    d->is_auto = false;
    d->kind = DEVICE_CPU;
    d->index = 0;
#ifdef TUNE_WITH_CUDA
    if (backend_cuda_device_count() > 0)
        d->kind = DEVICE_CUDA;
#endif
}

int device_choose(const char *v, struct device_choice *d, tune_err *err)
{
    if (device_parse(v ? v : "auto", d, err))
        return -1;
    device_resolve(d);
    return 0;
}

struct backend *device_open(const struct device_choice *d, tune_err *err)
{
#ifdef TUNE_WITH_CUDA
    if (d->kind == DEVICE_CUDA)
        return backend_cuda(d->index, err);
#endif
    (void)err;
    (void)d;
    return backend_cpu();
}

void device_close(struct backend *be)
{
#ifdef TUNE_WITH_CUDA
    if (be && be != backend_cpu())
        backend_cuda_free(be);
#else
    (void)be;
#endif
}

int64_t device_available_bytes(const struct backend *be)
{
#ifdef TUNE_WITH_CUDA
    if (be != backend_cpu()) {
        char name[256];
        size_t used, total;
        backend_cuda_device_info(be, name, sizeof name, &used, &total);
        return (int64_t)(total - used) + (int64_t)backend_cuda_workspace_bytes(be);
    }
#endif
    (void)be;
    FILE *f = fopen("/proc/meminfo", "r");
    long long kib = -1;
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib < 0 ? -1 : (int64_t)kib * 1024;
}

int device_check_fit(const struct backend *be, const struct model_spec *spec, const struct run_config *rc,
                     tune_err *err)
{
    int64_t avail = device_available_bytes(be), need = fit_plan_total(spec, rc);
    if (avail < 0 || need <= avail)
        return 0;
    struct fit_result fit;
    fit_find(spec, rc, avail, &fit);
    char n[32], a[32];
    return err_set(err, "the plan needs %s on the %s device, which has %s available: the largest micro-batch "
                        "that fits at --seq %lld is %lld, the longest --seq at --micro-batch %lld is %lld%s",
                   units_fmt_bytes(need, n, sizeof n), be->name, units_fmt_bytes(avail, a, sizeof a),
                   (long long)rc->seq, (long long)fit.max_micro_batch, (long long)rc->micro_batch,
                   (long long)fit.max_seq, fit.seq_capped ? " (the model's context length)" : "");
}

void device_print_memory(const struct backend *be, int64_t planned, int64_t held)
{
    char p[32], h[32];
#ifdef TUNE_WITH_CUDA
    if (be != backend_cpu()) {
        /* The backend's own workspace is the plan's "workspace" row. */
        held += (int64_t)backend_cuda_workspace_bytes(be);
        char name[256], u[32], t[32];
        size_t used, total;
        backend_cuda_device_info(be, name, sizeof name, &used, &total);
        printf("memory     planned %s, held by the cuda backend at its peak %s (%lld bytes of %lld planned); "
               "%s has %s of %s in use (CUDA context and other processes included)\n",
               units_fmt_bytes(planned, p, sizeof p), units_fmt_bytes(held, h, sizeof h), (long long)held,
               (long long)planned, name, units_fmt_bytes((int64_t)used, u, sizeof u),
               units_fmt_bytes((int64_t)total, t, sizeof t));
        return;
    }
#endif
    (void)be;
    char rss[32];
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("memory     planned %s, held by the cpu backend at its peak %s (%lld bytes of %lld planned); process peak "
           "RSS %s\n", units_fmt_bytes(planned, p, sizeof p), units_fmt_bytes(held, h, sizeof h), (long long)held,
           (long long)planned, units_fmt_bytes((int64_t)ru.ru_maxrss * 1024, rss, sizeof rss));
}
