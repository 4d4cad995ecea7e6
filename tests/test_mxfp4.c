/* Tests of model/mxfp4: dequantization equal bit for bit to transformers'
 * convert_moe_packed_tensors on tests/fixtures/mxfp4 (tools/ref/
 * make_mxfp4_fixtures.py: random blocks, every code at every scale 0..255, fp32
 * and bf16, storage order and transformers' parameter layout); a hand-made
 * block whose values are written out here (nibble order, sign, extreme
 * scales); and a blocks/scales shape mismatch refused by st_model_find_mxfp4.
 * Run from the repository root. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "base/mxfp4.h"

#define FIXTURE "tests/fixtures/mxfp4/mxfp4.safetensors"

static int group_setup(void **state)
{
    struct st_model *m = calloc(1, sizeof *m);
    tune_err err = {{0}};
    if (!m)
        return -1;
    if (st_model_open(m, FIXTURE, &err)) {
        print_error("%s\n", err.msg);
        free(m);
        return -1;
    }
    *state = m;
    return 0;
}

static int group_teardown(void **state)
{
    st_model_close(*state);
    free(*state);
    return 0;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static int64_t numel(const struct st_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->shape[i];
    return n;
}

/* `want` is the fixture tensor `name` of dtype and numel n; its bytes must equal
 * got's, else the first differing element is named. */
static void assert_same_bits(const struct st_model *m, const char *name, enum dtype dtype,
                             const void *got, int64_t n)
{
    const struct st_tensor *want = st_model_find(m, name, NULL);
    if (!want)
        fail_msg("fixture tensor '%s' missing", name);
    assert_int_equal(want->dtype, dtype);
    assert_int_equal(numel(want), n);
    size_t size = dtype == DTYPE_F32 ? 4 : 2;
    if (!memcmp(got, want->data, (size_t)n * size))
        return;
    for (int64_t i = 0; i < n; i++) {
        uint32_t g = 0, w = 0;
        memcpy(&g, (const char *)got + i * size, size);
        memcpy(&w, (const char *)want->data + i * size, size);
        if (g != w)
            fail_msg("%s[%lld]: got bits 0x%x, transformers 0x%x", name, (long long)i, g, w);
    }
}

/* Dequantizes the MXFP4 weight `base` to fp32 and bf16 and checks both against
 * base.f32 and base.bf16 [E, rows, cols]. Returns the fp32 values (caller frees)
 * and their rows and cols per expert. */
static float *check_weight(const struct st_model *m, const char *base, int64_t *rows,
                           int64_t *cols)
{
    const struct st_tensor *b, *s;
    tune_err err = {{0}};
    if (st_model_find_mxfp4(m, base, &b, &s, &err))
        fail_msg("%s", err.msg);
    int64_t n_blocks = numel(s);
    *rows = s->shape[s->rank - 2];
    *cols = s->shape[s->rank - 1] * MXFP4_BLOCK;
    float *w = malloc((size_t)n_blocks * MXFP4_BLOCK * sizeof *w);
    uint16_t *h = malloc((size_t)n_blocks * MXFP4_BLOCK * sizeof *h);
    assert_non_null(w);
    assert_non_null(h);
    mxfp4_dequantize(b->data, s->data, n_blocks, w);
    mxfp4_dequantize_bf16(b->data, s->data, n_blocks, h);
    char name[256];
    snprintf(name, sizeof name, "%s.f32", base);
    assert_same_bits(m, name, DTYPE_F32, w, n_blocks * MXFP4_BLOCK);
    snprintf(name, sizeof name, "%s.bf16", base);
    assert_same_bits(m, name, DTYPE_BF16, h, n_blocks * MXFP4_BLOCK);
    free(h);
    return w;
}

/* Random blocks, scales 110..135 and 0, 1, 254, 255; and the transpose to
 * GptOssExperts.gate_up_proj's [E, cols, rows]. */
static void test_gate_up_fixture(void **state)
{
    const struct st_model *m = *state;
    const char *base = "model.layers.0.mlp.experts.gate_up_proj";
    int64_t rows, cols;
    float *w = check_weight(m, base, &rows, &cols);
    assert_int_equal(rows, 8);
    assert_int_equal(cols, 64);
    const struct st_tensor *p = st_model_find(m, "model.layers.0.mlp.experts.gate_up_proj.param_f32",
                                              NULL);
    assert_non_null(p);
    assert_int_equal(p->rank, 3);
    assert_int_equal(p->shape[1], cols);
    assert_int_equal(p->shape[2], rows);
    const uint8_t *pb = p->data;
    for (int64_t e = 0; e < p->shape[0]; e++)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                uint32_t want;
                memcpy(&want, pb + ((e * cols + c) * rows + r) * 4, 4);
                assert_int_equal(f32_bits(w[(e * rows + r) * cols + c]), want);
            }
    free(w);
}

/* Row s has scale s and every code in both nibbles: all 256 x 16 x 2 cases. */
static void test_every_code_and_scale(void **state)
{
    int64_t rows, cols;
    free(check_weight(*state, "all.proj", &rows, &cols));
    assert_int_equal(rows, 256);
    assert_int_equal(cols, 32);
}

/* Byte j gives values 2j (low nibble) and 2j+1 (high nibble); codes 8..15 are
 * the negatives of 0..7; the value is code * 2^(scale - 127). */
static void test_nibble_order(void **state)
{
    (void)state;
    uint8_t blocks[4][16] = {{0}};
    blocks[0][0] = 0x21; /* low 1 (0.5), high 2 (1.0) */
    blocks[0][1] = 0xf9; /* low 9 (-0.5), high 15 (-6) */
    blocks[0][15] = 0x70; /* low 0 (0), high 7 (6) */
    blocks[1][0] = 0x21;
    blocks[2][0] = 0x21;
    blocks[2][1] = 0x08; /* low 8 (-0), high 0 (+0) */
    blocks[3][0] = 0x21;
    blocks[3][1] = 0xf8; /* low 8 (-0), high 15 (-6) */
    const uint8_t scales[4] = {128, 0, 254, 255}; /* 2, 2^-127, 2^127, 2^128 */
    float out[4 * MXFP4_BLOCK];
    uint16_t h[4 * MXFP4_BLOCK];
    mxfp4_dequantize(&blocks[0][0], scales, 4, out);
    mxfp4_dequantize_bf16(&blocks[0][0], scales, 4, h);
    const float inf = INFINITY;
    struct {
        int i;
        float v;
    } want[] = { /* one line per block */
        {0, 1.0f},       {1, 2.0f},       {2, -1.0f},      {3, -12.0f}, {30, 0.0f}, {31, 12.0f},
        {4, 0.0f},       {32, 0x1p-128f}, {33, 0x1p-127f}, {34, 0.0f},
        {64, 0x1p126f},  {65, 0x1p127f},  {66, -0.0f},     {67, 0.0f},
        {96, 0x1p127f},  {97, inf},       {98, -0.0f},     {99, -inf},
    };
    for (size_t k = 0; k < sizeof want / sizeof *want; k++) {
        int i = want[k].i;
        if (f32_bits(out[i]) != f32_bits(want[k].v))
            fail_msg("value %d: got %a, want %a", i, (double)out[i], (double)want[k].v);
        assert_int_equal(h[i], f32_bits(want[k].v) >> 16);
    }
    /* 0x1p-128f is a subnormal: bits 0x00200000, bf16 0x0020. */
    assert_int_equal(f32_bits(out[32]), 0x00200000u);
    assert_int_equal(h[32], 0x0020);
    /* every other code of those blocks is 0: +0 at any scale. */
    for (int i = 5; i < 30; i++)
        assert_int_equal(f32_bits(out[i]), 0);
}

static void test_shape_mismatch(void **state)
{
    const struct st_tensor *b, *s;
    tune_err err = {{0}};
    assert_int_equal(st_model_find_mxfp4(*state, "bad.proj", &b, &s, &err), -1);
    assert_non_null(
        strstr(err.msg, "shape [3, 8, 3, 16] is not that of 'bad.proj_scales' [3, 8, 2] + [16]"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gate_up_fixture),
        cmocka_unit_test(test_every_code_and_scale),
        cmocka_unit_test(test_nibble_order),
        cmocka_unit_test(test_shape_mismatch),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
