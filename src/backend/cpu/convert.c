/* convert: F32 <-> BF16 <-> F16 element by element, through fp32. Done on the
 * bits rather than with compiler half types so that the rounding is spelled
 * out: round to nearest, ties to even (what torch's .to() and CUDA's
 * __float2bfloat16_rn / __float2half_rn do), overflow to infinity, subnormals
 * kept, and NaN kept NaN: its sign and top payload bits survive and the quiet
 * bit is set, so rounding can never carry a NaN into infinity. */
#include <assert.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* bf16 is the top half of an fp32: round away the low 16 bits. */
static uint16_t f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x0040u);
    uint32_t lsb = (u >> 16) & 1u;
    return (uint16_t)((u + 0x7fffu + lsb) >> 16);
}

static float bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

/* f16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
static uint16_t f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN */
        return sign | 0x7e00u | (uint16_t)((a >> 13) & 0x3ffu);
    if (a >= 0x477ff000u) /* >= 65520, halfway from 65504 (odd) to 2^16: infinity */
        return sign | 0x7c00u;
    if (a >= 0x38800000u) { /* >= 2^-14: a normal f16; rebias 127 -> 15 and round at bit 13 */
        uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
        return sign | (uint16_t)((r - 0x38000000u) >> 13);
    }
    /* Subnormal f16: a multiple of 2^-24. Below 2^-25 (and at it, a tie to
     * even) the result is zero. */
    int e = (int)(a >> 23);
    if (e < 102)
        return sign;
    uint32_t mant = (a & 0x7fffffu) | 0x800000u; /* value = mant * 2^(e - 150) */
    int shift = 126 - e;                         /* to units of 2^-24: 14..24 */
    uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u)))
        q++; /* may carry into the smallest normal, 0x0400, which is right */
    return sign | (uint16_t)q;
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0x1f)
        return f32_from_bits(sign | 0x7f800000u | mant << 13);
    if (exp == 0) { /* zero or subnormal: mant * 2^-24, exact in fp32 */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    return f32_from_bits(sign | (exp + 112) << 23 | mant << 13);
}

static float load(const struct tensor *t, int64_t i)
{
    switch (t->dtype) {
    case DTYPE_F32:
        return ((const float *)t->data)[i];
    case DTYPE_BF16:
        return bf16_to_f32(((const uint16_t *)t->data)[i]);
    case DTYPE_F16:
        return f16_to_f32(((const uint16_t *)t->data)[i]);
    default:
        assert(!"convert: dtype is not F32, BF16 or F16");
        return 0;
    }
}

static void store(struct tensor *t, int64_t i, float f)
{
    switch (t->dtype) {
    case DTYPE_F32:
        ((float *)t->data)[i] = f;
        break;
    case DTYPE_BF16:
        ((uint16_t *)t->data)[i] = f32_to_bf16(f);
        break;
    case DTYPE_F16:
        ((uint16_t *)t->data)[i] = f32_to_f16(f);
        break;
    default:
        assert(!"convert: dtype is not F32, BF16 or F16");
    }
}

void cpu_convert(struct backend *b, struct tensor *dst, const struct tensor *src)
{
    (void)b;
    int64_t n = tensor_numel(src);
    assert(tensor_numel(dst) == n);
    if (dst->dtype == DTYPE_F32 && src->dtype == DTYPE_F32) { /* a copy (the model's residual stream) */
        memmove(dst->data, src->data, (size_t)n * sizeof(float));
        return;
    }
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        store(dst, i, load(src, i));
}
