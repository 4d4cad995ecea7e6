/* The tensor-core building blocks of the bf16 kernels (attention_mma.cu,
 * moe_matmul.cu): mma.sync m16n8k16 with fp32 accumulation (the Ampere
 * instruction, which Hopper runs too), ldmatrix, cp.async, and the operand
 * fragments of a shared tile stored [.][D + PAD]: rows padded by PAD bf16 (16
 * bytes) so that the eight rows of each 8x8 matrix fall in distinct banks.
 * CUDA C only; include after cuda_ops.cuh. */
#ifndef TUNE_BACKEND_CUDA_MMA_CUH
#define TUNE_BACKEND_CUDA_MMA_CUH

#include <stdint.h>

#include <cuda_bf16.h>

#define PAD 8

typedef __nv_bfloat16 bf16;

static __device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Two floats as one register of two bf16, the first in the low half. */
static __device__ __forceinline__ uint32_t pack2(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

/* ldmatrix: four 8x8 bf16 matrices of shared memory into one register each;
 * thread t gives the address of row t % 8 of matrix t / 8 (16 bytes, 16-byte
 * aligned) and gets, of matrix i, row t / 4 and columns 2 (t % 4) and the
 * next, or with .trans the transpose's. One instruction where 16-bit loads
 * took eight. */
static __device__ __forceinline__ void ldsm4(uint32_t r[4], const bf16 *p)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

static __device__ __forceinline__ void ldsm4_trans(uint32_t r[4], const bf16 *p)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

/* cp.async: a 16- or 4-byte copy from global to shared memory that does not
 * hold up the thread; src_bytes 0 writes zeros (and reads nothing). Copies
 * are grouped by commit; wait<N> returns when all but the last N groups have
 * landed. */
static __device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid)
{
    uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(valid ? 16 : 0));
}

static __device__ __forceinline__ void cp_async4(void *dst, const void *src, bool valid)
{
    uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src), "r"(valid ? 4 : 0));
}

static __device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N> static __device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* Fragments of a [.][D + PAD] tile, through ldmatrix (lane = threadIdx.x % 32):
 * frag_a: the A operand (rows row0.., k = col0..col0+15), row-major.
 * frag_b2: the B operands of two n-tiles when the tile is stored [n][k] (keys
 *   by head dim: Q K^T, dO V^T): r[0], r[1] for n-tile n0, r[2], r[3] for n0 + 8.
 * frag_b2_trans: the same when it is stored [k][n] (P V, dS K, P^T dO, dS^T Q). */
template <int D>
static __device__ __forceinline__ void frag_a(uint32_t a[4], const bf16 *tile, int row0, int col0)
{
    const int lane = threadIdx.x % 32, mi = lane / 8;
    ldsm4(a, tile + (row0 + (mi & 1) * 8 + lane % 8) * (D + PAD) + col0 + (mi >> 1) * 8);
}

template <int D>
static __device__ __forceinline__ void frag_b2(uint32_t r[4], const bf16 *tile, int n0, int k0)
{
    const int lane = threadIdx.x % 32, mi = lane / 8;
    ldsm4(r, tile + (n0 + (mi >> 1) * 8 + lane % 8) * (D + PAD) + k0 + (mi & 1) * 8);
}

template <int D>
static __device__ __forceinline__ void frag_b2_trans(uint32_t r[4], const bf16 *tile, int k0, int n0)
{
    const int lane = threadIdx.x % 32, mi = lane / 8;
    ldsm4_trans(r, tile + (k0 + (mi & 1) * 8 + lane % 8) * (D + PAD) + n0 + (mi >> 1) * 8);
}

#endif
