/* Host-side random numbers for initialization, shuffles and sampling:
 * splitmix64 (Steele et al.), small, well mixed and the same on every machine.
 * Device-side randomness (dropout) is Philox, in backend/philox.h. */
#ifndef TUNE_BASE_RNG_H
#define TUNE_BASE_RNG_H

#include <stdint.h>

/* The state advances by this odd constant per draw, so the state k draws
 * ahead is state + k * RNG_GAMMA: a stream can be split among threads and
 * still give the same numbers in the same places. */
#define RNG_GAMMA 0x9e3779b97f4a7c15ULL

/* Advances *state and returns the next 64 random bits. */
static inline uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += RNG_GAMMA);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double rng_uniform(uint64_t *state) { return (double)(rng_next(state) >> 11) * (1.0 / 9007199254740992.0); }

#endif
