/* A backend that runs another and times each op: it waits for the device
 * before and after every call (so each op's time is its own, launch and host
 * work included) and sums the seconds per op and, for matmul, per shape.
 * For finding where a step's time goes (bench/gpu/train_step --profile);
 * the waiting makes the whole slower, so its totals are not a benchmark. */
#ifndef TUNE_BACKEND_PROFILE_H
#define TUNE_BACKEND_PROFILE_H

#include <stdio.h>

#include "backend/backend.h"

/* The profiling backend over inner (which must outlive it); NULL when out of memory. */
struct backend *backend_profiled(struct backend *inner);
/* Forgets the times so far (after a warmup). */
void backend_profile_reset(struct backend *prof);
/* Prints the ops by total time, divided by `steps`, to f. */
void backend_profile_print(struct backend *prof, FILE *f, int steps);
void backend_profile_free(struct backend *prof);

#endif
