/* Element types of tensors, as safetensors names them, plus the block-quantized
 * formats (NF4, MXFP4) whose size is fractional per element. */
#ifndef TUNE_BASE_DTYPE_H
#define TUNE_BASE_DTYPE_H

#include <stdint.h>

enum dtype {
    DTYPE_F64, DTYPE_F32, DTYPE_F16, DTYPE_BF16, DTYPE_F8_E4M3, DTYPE_F8_E5M2,
    DTYPE_I64, DTYPE_I32, DTYPE_I16, DTYPE_I8, DTYPE_U8,
    DTYPE_NF4,   /* 4-bit NormalFloat, 64-value blocks; absmax counted separately */
    DTYPE_MXFP4, /* OCP MX FP4 E2M1, 32-value blocks; the E8M0 scale counted separately */
    DTYPE_COUNT
};

/* Name as written in safetensors headers ("BF16") or by tune ("NF4", "MXFP4"). */
const char *dtype_name(enum dtype t);
/* Parses a safetensors dtype name or a lower-case alias ("bf16"); -1 if unknown. */
int dtype_parse(const char *name);
/* Bits per element of the payload (4 for NF4 and MXFP4, without their scales). */
int dtype_bits(enum dtype t);
/* Bytes of n elements of type t, rounding sub-byte types up to whole bytes. */
int64_t dtype_bytes(enum dtype t, int64_t n);

#endif
