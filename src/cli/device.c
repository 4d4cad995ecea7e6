/* --device: parsing, and opening the backend it names. Compiled twice by the
 * Makefile: plain into the CPU program, with TUNE_WITH_CUDA into the CUDA one. */
#include "cli/device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "base/units.h"
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
