/* The CUDA backend (backend/cuda/): the op table of backend.h on one NVIDIA
 * GPU. Plain C header: it names no CUDA type, so model/ and cli/ include it
 * without the CUDA headers; only the .cu files behind it include them.
 *
 * Dtypes: every float tensor may be F32, BF16 or F16 (the kernels load any of
 * them into fp32 registers and round once on store); the model passes bf16
 * activations, weights, logits and LoRA factors (a copy of the fp32 ones made
 * once a step), fp32 gradients of trainable tensors, optimizer states, the
 * residual gradient, rstd and lse; ids and labels I32. Arithmetic is fp32
 * (reductions that the CPU does in double are double here too).
 *
 * matmul: cuBLASLt, fp32 compute. All-fp32 operands run an fp32 GEMM (no
 * TF32). Any other mix runs a bf16 x bf16 GEMM with an fp32 or bf16 output:
 * an fp32 operand is first rounded to bf16 in the backend's conversion
 * scratch, in slices of rows or columns when it is larger than the scratch.
 * So the model needs no casts of its own; the cost is one extra pass over
 * each fp32 operand, which is why the model converts the few it has (the
 * LoRA factors, the residual gradient) once rather than at every GEMM.
 *
 * Errors: the op table returns nothing, so a failed CUDA, cuBLASLt or kernel
 * launch is recorded in the backend (the first one: the statement, function,
 * file:line and device) and reported by backend_cuda_check(), which also
 * waits for the device; shape and dtype mismatches are programmer errors and
 * assert, as on the CPU.
 *
 * Memory: alloc is cudaMalloc; the backend itself holds a fixed workspace
 * (backend_cuda_workspace_bytes: cuBLASLt workspace, conversion scratch,
 * reduction scratch) taken once at creation, the plan's "workspace" row. No
 * op allocates. All work runs on one stream of the backend, in call order;
 * upload, download and the one op that returns a number (sum_squares) wait
 * for it, so a step's ops (between two uploads) can be recorded as a CUDA
 * graph and replayed. */
#ifndef TUNE_BACKEND_CUDA_BACKEND_CUDA_H
#define TUNE_BACKEND_CUDA_BACKEND_CUDA_H

#include <stddef.h>

#include "backend/backend.h"
#include "base/error.h"

/* Bytes the backend takes beside the plan's buffers, by default. */
#define CUDA_LT_WORKSPACE_BYTES ((size_t)32 << 20)      /* cuBLASLt, as NVIDIA advises for Hopper */
/* bf16 copies of fp32 GEMM operands; attention backward's per-query terms */
#define CUDA_CONVERT_SCRATCH_BYTES ((size_t)64 << 20)
#define CUDA_REDUCE_SCRATCH_BYTES ((size_t)8 << 20)     /* partial sums of the deterministic reductions */

#ifdef __cplusplus
extern "C" {
#endif

/* The backend on CUDA device `device` (made current for the calling thread),
 * or NULL with err set if there is no such device or its context, stream,
 * cuBLASLt handle or workspace cannot be had. Free with backend_cuda_free. */
struct backend *backend_cuda(int device, tune_err *err);
/* The same with a conversion scratch of convert_scratch_bytes (>= 4096):
 * tests make it small to drive matmul through its sliced paths. */
struct backend *backend_cuda_with_scratch(int device, size_t convert_scratch_bytes, tune_err *err);
/* Releases the workspace, handle and stream; NULL is allowed. Buffers from
 * alloc must be freed before (those left are not). */
void backend_cuda_free(struct backend *b);
/* Waits for every op issued so far; 0 if all went well, else -1 with the
 * first failure since creation in err (it stays failed: CUDA errors such as
 * an illegal address poison the context). */
int backend_cuda_check(struct backend *b, tune_err *err);
/* Device bytes the backend holds beside what alloc hands out. */
size_t backend_cuda_workspace_bytes(const struct backend *b);
/* CUDA devices present; 0 when there is no driver or no GPU. */
int backend_cuda_device_count(void);
/* The backend's device: its name, and bytes in use by every process and in
 * all (cudaMemGetInfo), for printing planned against what the device holds. */
void backend_cuda_device_info(const struct backend *b, char *name, size_t name_size, size_t *used, size_t *total);

#ifdef __cplusplus
}
#endif

#endif
