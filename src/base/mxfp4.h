/* MXFP4 dequantization of gpt-oss expert weights, bit for bit what transformers'
 * convert_moe_packed_tensors (integrations/mxfp4.py) gives.
 *
 * Storage, as the checkpoints hold it (st_model_find_mxfp4 finds and checks it):
 *   <name>_blocks U8 [E, rows, n_blocks, 16]  32 FP4 E2M1 codes per 16 bytes
 *   <name>_scales U8 [E, rows, n_blocks]      one E8M0 exponent per 32 codes
 * Row r of expert e is the matrix row W[e][r][0..cols), cols = 32 * n_blocks:
 * block g holds columns 32g..32g+31, and byte j of it columns 32g+2j (its low
 * nibble) and 32g+2j+1 (its high nibble). Value = FP4(code) * 2^(scale - 127),
 * FP4 = {0, .5, 1, 1.5, 2, 3, 4, 6} and their negatives (codes 8..15, bit 3 the
 * sign). Decoding blocks in storage order thus yields W [E, rows, cols].
 *
 * rows is the output dimension: W[e] is the nn.Linear weight [out, in], used as
 * y = x W^T. transformers' GptOssExperts parameters are the transpose of each
 * expert, [E, in, out], used as y = x W (convert_moe_packed_tensors ends with
 * .transpose(1, 2)):
 *   gate_up_proj_blocks [E, 2I, C/32, 16] -> W [E, 2I, C] -> gate_up_proj [E, C, 2I]
 *   down_proj_blocks    [E, C, I/32, 16]  -> W [E, C, I]  -> down_proj    [E, I, C]
 * (C hidden, I intermediate). A loader keeping [out, in] needs no transpose. The
 * 2I outputs of gate_up interleave gate (even) and up (odd): transformers takes
 * gate_up[..., ::2] and gate_up[..., 1::2].
 *
 * Exactness: the products have at most 2 significant bits and the smallest is
 * 0.5 * 2^-127 = 2^-128, a float (subnormal), so every finite result is exact and
 * the only rounding is overflow to +-inf (as ldexpf, and torch.ldexp, round):
 * scale 253 with |FP4| >= 4, scale 254 with >= 2, scale 255 (2^128) with >= 1.
 * Zero stays a signed zero whatever the scale; no scale gives NaN. Scale 255,
 * E8M0's NaN in the OCP MX spec, is read as 2^128 because transformers does.
 * Subnormal results need a CPU that does not flush them (no -ffast-math). */
#ifndef TUNE_BASE_MXFP4_H
#define TUNE_BASE_MXFP4_H

#include <stdint.h>

#define MXFP4_BLOCK 32       /* values per block */
#define MXFP4_BLOCK_BYTES 16 /* bytes of codes per block */

/* Dequantizes n_blocks consecutive blocks: blocks [n_blocks, 16], scales
 * [n_blocks] -> out [n_blocks * 32] fp32, in storage order (see above). Pass a
 * whole tensor as n_blocks = E * rows * n_blocks-per-row. Parallel over blocks
 * with OpenMP. Does not check shapes: st_model_find_mxfp4 does. */
void mxfp4_dequantize(const uint8_t *blocks, const uint8_t *scales, int64_t n_blocks, float *out);

/* The same to bf16 bits (out [n_blocks * 32]). bf16 has fp32's exponent range,
 * so each result is the top half of mxfp4_dequantize's float with nothing
 * rounded away (its low 16 bits are zero, subnormals and infinities included):
 * equal to transformers' dtype=torch.bfloat16 output, the loading default. */
void mxfp4_dequantize_bf16(const uint8_t *blocks, const uint8_t *scales, int64_t n_blocks,
                           uint16_t *out);

#endif
