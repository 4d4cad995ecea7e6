/* Philox4x32-10, the counter-based generator of Random123 (Salmon et al.,
 * "Parallel random numbers: as easy as 1, 2, 3", SC11), which curand and torch
 * also use. Header-only so that the CPU and CUDA backends compile the very
 * same lines and dropout draws the same bits on both.
 *
 * Dropout's stream: element index n (= offset + i) takes output word n % 4 of
 *     philox4x32_10(ctr = {lo32(n / 4), hi32(n / 4), 0, 0},
 *                   key = {lo32(seed), hi32(seed)})
 * and is kept iff that word >= philox_keep_threshold(p) = p * 2^32, clamped to
 * [0, 2^32 - 1]; so P(keep) = 1 - p up to 2^-32. Kept values are scaled by
 * 1 / (1 - p) in fp32. The stream depends only on (seed, n): any split of a
 * tensor into calls with matching offsets gives the same mask. */
#ifndef TUNE_BACKEND_PHILOX_H
#define TUNE_BACKEND_PHILOX_H

#include <stdint.h>

#ifdef __CUDACC__
#define PHILOX_FN __host__ __device__ static inline
#else
#define PHILOX_FN static inline
#endif

#define PHILOX_M0 0xD2511F53u /* round multipliers */
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* key schedule increments (golden ratio, sqrt(3) - 1) */
#define PHILOX_W1 0xBB67AE85u

struct philox4x32 {
    uint32_t v[4];
};

/* One round: two 32x32->64 multiplies, the halves crossed and xored with the key. */
PHILOX_FN struct philox4x32 philox_round(struct philox4x32 c, uint32_t k0, uint32_t k1)
{
    uint64_t p0 = (uint64_t)PHILOX_M0 * c.v[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * c.v[2];
    struct philox4x32 r = {
        {(uint32_t)(p1 >> 32) ^ c.v[1] ^ k0, (uint32_t)p1, (uint32_t)(p0 >> 32) ^ c.v[3] ^ k1, (uint32_t)p0}};
    return r;
}

/* The 10-round block function: counter in, four words out; the key is bumped
 * between rounds (9 times), as Random123's philox4x32_R does. */
PHILOX_FN struct philox4x32 philox4x32_10(struct philox4x32 ctr, uint32_t k0, uint32_t k1)
{
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        ctr = philox_round(ctr, k0, k1);
    }
    return ctr;
}

/* The 32-bit draw of element index n of stream `seed` (the layout above). */
PHILOX_FN uint32_t philox_draw(uint64_t seed, uint64_t n)
{
    uint64_t block = n / 4;
    struct philox4x32 ctr = {{(uint32_t)block, (uint32_t)(block >> 32), 0, 0}};
    return philox4x32_10(ctr, (uint32_t)seed, (uint32_t)(seed >> 32)).v[n % 4];
}

/* Draws below this are dropped: p * 2^32, clamped to [0, 2^32 - 1]. */
PHILOX_FN uint32_t philox_keep_threshold(float p)
{
    double t = (double)p * 4294967296.0;
    if (!(t > 0))
        return 0;
    return t >= 4294967295.0 ? UINT32_MAX : (uint32_t)t;
}

#endif
