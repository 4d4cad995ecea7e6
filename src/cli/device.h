/* Where a command computes: --device auto | cpu | cuda | cuda:N. A build made
 * with `make cuda` (TUNE_WITH_CUDA) has the CUDA backend and picks it when a
 * GPU is present; the plain build computes on the CPU and says why it cannot
 * do otherwise. */
#ifndef TUNE_CLI_DEVICE_H
#define TUNE_CLI_DEVICE_H

#include <stdbool.h>

#include "backend/backend.h"
#include "base/error.h"
#include "model/spec.h"
#include "plan/run.h"

struct device_choice {
    bool is_auto;
    enum device kind;
    int index; /* of the CUDA device */
};

#define DEVICE_HELP "auto (cuda when built with it and a GPU is present), cpu, cuda, cuda:N"

int device_parse(const char *v, struct device_choice *d, tune_err *err);
/* Turns auto into cpu or cuda:0. */
void device_resolve(struct device_choice *d);
/* device_parse of v (NULL: auto), then device_resolve. */
int device_choose(const char *v, struct device_choice *d, tune_err *err);
/* The backend of a resolved choice; release with device_close. */
struct backend *device_open(const struct device_choice *d, tune_err *err);
void device_close(struct backend *be);
/* Bytes the run's plan may take on be's device: on a GPU what is free
 * beside the CUDA context and other processes, plus the backend's own
 * workspace (the plan counts it); on the CPU the memory the kernel reports
 * available. -1 if unknown. */
int64_t device_available_bytes(const struct backend *be);
/* Refuses, before any weight is read, a run whose plan does not fit
 * device_available_bytes, naming the largest micro-batch and sequence that do. */
int device_check_fit(const struct backend *be, const struct model_spec *spec, const struct run_config *rc,
                     tune_err *err);
/* One line on the device's memory after a run: planned against what the
 * backend held at its peak (and, on a GPU, what the device has in use). */
void device_print_memory(const struct backend *be, int64_t planned, int64_t held);

#endif
