/* dtype table; kept in step with enum dtype by the static_assert below. */
#include "base/dtype.h"

#include <assert.h>
#include <strings.h>

static const struct {
    const char *name, *alias;
    int bits;
} dtype_table[] = {
    [DTYPE_F64] = {"F64", "fp64", 64},       [DTYPE_F32] = {"F32", "fp32", 32},
    [DTYPE_F16] = {"F16", "fp16", 16},       [DTYPE_BF16] = {"BF16", "bf16", 16},
    [DTYPE_F8_E4M3] = {"F8_E4M3", "fp8", 8}, [DTYPE_F8_E5M2] = {"F8_E5M2", "fp8-e5m2", 8},
    [DTYPE_I64] = {"I64", "int64", 64},      [DTYPE_I32] = {"I32", "int32", 32},
    [DTYPE_I16] = {"I16", "int16", 16},      [DTYPE_I8] = {"I8", "int8", 8},
    [DTYPE_U8] = {"U8", "uint8", 8},         [DTYPE_NF4] = {"NF4", "nf4", 4},
    [DTYPE_MXFP4] = {"MXFP4", "mxfp4", 4},
};
static_assert(sizeof dtype_table / sizeof dtype_table[0] == DTYPE_COUNT, "dtype table");

const char *dtype_name(enum dtype t) { return t < DTYPE_COUNT ? dtype_table[t].name : "?"; }

int dtype_parse(const char *name)
{
    for (int i = 0; i < DTYPE_COUNT; i++)
        if (!strcasecmp(name, dtype_table[i].name) || !strcasecmp(name, dtype_table[i].alias))
            return i;
    return -1;
}

int dtype_bits(enum dtype t) { return dtype_table[t].bits; }

int64_t dtype_bytes(enum dtype t, int64_t n) { return (n * dtype_table[t].bits + 7) / 8; }
