/* The per-test state of the op tests (test_cpu_ops.c, test_moe_ops.c): what
 * a test allocates and the golden fixture it reads, both released by the
 * teardown even after a failed check. Include after cmocka.h. */
#ifndef TUNE_TESTS_OP_CTX_H
#define TUNE_TESTS_OP_CTX_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

#define FIXTURES "tests/fixtures/ops/"
#define CTX_MAX_ALLOCS 512

/* What a test owns, released by the teardown even after a failed check: its
 * allocations and, for a golden test, the fixture file named by the prestate
 * ("rmsnorm" -> tests/fixtures/ops/rmsnorm.safetensors). */
struct ctx {
    const char *op;
    struct st_file f;
    void *alloc[CTX_MAX_ALLOCS];
    int n_alloc;
};

static int ctx_setup(void **state)
{
    struct ctx *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->op = *state;
    char path[256];
    tune_err err = {{0}};
    snprintf(path, sizeof path, FIXTURES "%s.safetensors", c->op ? c->op : "");
    if (c->op && st_file_open(&c->f, path, &err)) {
        print_error("%s\n", err.msg);
        free(c);
        return -1;
    }
    *state = c;
    return 0;
}

static int ctx_teardown(void **state)
{
    struct ctx *c = *state;
    st_file_close(&c->f);
    while (c->n_alloc)
        free(c->alloc[--c->n_alloc]);
    free(c);
    return 0;
}

#define TEST(fn, op) cmocka_unit_test_prestate_setup_teardown(fn, ctx_setup, ctx_teardown, (void *)(op))

static void *ctx_alloc(struct ctx *c, size_t bytes)
{
    assert_true(c->n_alloc < CTX_MAX_ALLOCS);
    void *p = malloc(bytes ? bytes : 1);
    assert_non_null(p);
    return c->alloc[c->n_alloc++] = p;
}


/* A writable copy of the fixture's F32 or I32 tensor named by fmt. */
static struct tensor fx(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static struct tensor fx(struct ctx *c, const char *fmt, ...)
{
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const struct st_tensor *st = st_file_find(&c->f, name);
    if (!st)
        fail_msg("%s: no tensor %s", c->f.path, name);
    assert_true((st->dtype == DTYPE_F32 || st->dtype == DTYPE_I32) && st->rank <= TENSOR_MAX_RANK);
    struct tensor t = {.dtype = st->dtype, .rank = st->rank};
    for (int i = 0; i < st->rank; i++)
        t.shape[i] = st->shape[i];
    t.data = ctx_alloc(c, (size_t)st->nbytes);
    memcpy(t.data, st->data, (size_t)st->nbytes);
    return t;
}

#endif
