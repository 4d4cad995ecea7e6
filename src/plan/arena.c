/* The plan's buffers made real (see memplan.h): one backend allocation per
 * category, sized by the plan, so the measured peak is the planned one. */
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "plan/memplan.h"

const struct plan_buffer *plan_find(const struct mem_plan *plan, const char *name)
{
    for (int i = 0; i < plan->n; i++)
        if (!strcmp(plan->buf[i].name, name))
            return &plan->buf[i];
    return NULL;
}

int plan_arena_alloc(struct plan_arena *a, const struct mem_plan *plan, struct backend *be, tune_err *err)
{
    memset(a, 0, sizeof *a);
    a->be = be;
    a->plan = plan;
    for (int c = 0; c < PLAN_CATEGORY_COUNT; c++) {
        /* The workspace is the backend's own, taken when it started: planned, not allocated here. */
        if (!plan->per_gpu[c] || c == PLAN_WORKSPACE)
            continue;
        a->block[c] = be->alloc(be, (size_t)plan->per_gpu[c]);
        if (!a->block[c]) {
            plan_arena_free(a);
            return err_set(err, "%s: cannot allocate the %s block of %lld bytes", be->name,
                           plan_category_name((enum plan_category)c), (long long)plan->per_gpu[c]);
        }
        /* Zeroed once: optimizer states start at zero, and no buffer is ever
         * read before it is written by chance. */
        struct tensor whole = tensor_1d(a->block[c], DTYPE_U8, plan->per_gpu[c]);
        be->zero(be, &whole);
    }
    if (plan->host_bytes) {
        size_t bytes = (size_t)plan->host_bytes;
        if (!(a->host = be->alloc_host ? be->alloc_host(be, bytes) : aligned_alloc(PLAN_ALIGN, bytes))) {
            plan_arena_free(a);
            return err_set(err, "cannot allocate %lld bytes of host memory for offloaded buffers",
                           (long long)plan->host_bytes);
        }
        memset(a->host, 0, (size_t)plan->host_bytes);
    }
    return 0;
}

void plan_arena_free(struct plan_arena *a)
{
    for (int c = 0; c < PLAN_CATEGORY_COUNT; c++)
        if (a->block[c])
            a->be->free(a->be, a->block[c]);
    if (a->host && a->be->free_host)
        a->be->free_host(a->be, a->host);
    else
        free(a->host);
    memset(a->block, 0, sizeof a->block);
    a->host = NULL;
}

void *plan_arena_at(const struct plan_arena *a, const char *name, int64_t instance)
{
    const struct plan_buffer *b = plan_find(a->plan, name);
    if (!b || instance < 0 || instance * b->instance_bytes >= b->bytes)
        return NULL;
    char *base = b->on_host ? a->host : a->block[b->category];
    return base + b->offset + instance * b->instance_bytes;
}

bool plan_arena_on_host(const struct plan_arena *a, const void *p)
{
    const char *h = a->host;
    return h && (const char *)p >= h && (const char *)p < h + a->plan->host_bytes;
}
