/* MXFP4 -> fp32 / bf16 (see mxfp4.h for the layout and why every result is
 * exact). Each value is one float multiply, FP4 value times the block's power
 * of two, which IEEE rounds exactly as ldexpf would: exact, or +-inf on
 * overflow. 2^(s-127) is a float for every scale but 255; that one multiplies
 * the doubled FP4 value by 2^127 instead, which gives the same single rounding. */
#include "base/mxfp4.h"

#include <string.h>

/* Row 0: E2M1 codes 0..15 (bit 3 the sign). Row 1: the same doubled, for scale 255. */
static const float fp4_values[2][16] = {
    {+0.0f, +0.5f, +1.0f, +1.5f, +2.0f, +3.0f, +4.0f, +6.0f,
     -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f},
    {+0.0f, +1.0f, +2.0f, +3.0f, +4.0f, +6.0f, +8.0f, +12.0f,
     -0.0f, -1.0f, -2.0f, -3.0f, -4.0f, -6.0f, -8.0f, -12.0f},
};

/* One block: 16 bytes of codes and its E8M0 scale -> out [32]. */
static void mxfp4_decode_block(const uint8_t *codes, uint8_t scale, float *out)
{
    const float *lut = fp4_values[scale == 255];
    float f;
    if (scale == 0)
        f = 0x1p-127f; /* subnormal; the E8M0 byte is not its float exponent field */
    else if (scale == 255)
        f = 0x1p127f;
    else {
        uint32_t bits = (uint32_t)scale << 23; /* 2^(scale-127): exponent field = scale */
        memcpy(&f, &bits, sizeof f);
    }
    for (int j = 0; j < MXFP4_BLOCK_BYTES; j++) {
        out[2 * j] = lut[codes[j] & 0x0f] * f;
        out[2 * j + 1] = lut[codes[j] >> 4] * f;
    }
}

void mxfp4_dequantize(const uint8_t *blocks, const uint8_t *scales, int64_t n_blocks, float *out)
{
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < n_blocks; g++)
        mxfp4_decode_block(blocks + g * MXFP4_BLOCK_BYTES, scales[g], out + g * MXFP4_BLOCK);
}

void mxfp4_dequantize_bf16(const uint8_t *blocks, const uint8_t *scales, int64_t n_blocks,
                           uint16_t *out)
{
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < n_blocks; g++) {
        float v[MXFP4_BLOCK];
        mxfp4_decode_block(blocks + g * MXFP4_BLOCK_BYTES, scales[g], v);
        for (int i = 0; i < MXFP4_BLOCK; i++) {
            uint32_t bits;
            memcpy(&bits, &v[i], sizeof bits);
            out[g * MXFP4_BLOCK + i] = (uint16_t)(bits >> 16); /* low half is zero */
        }
    }
}
