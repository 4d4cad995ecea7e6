/* Choosing the next token from logits: greedy (temperature 0), or sampling
 * at a temperature from the smallest set of tokens whose probability reaches
 * top_p (nucleus sampling, as transformers' TopPLogitsWarper keeps it). */
#ifndef TUNE_MODEL_SAMPLE_H
#define TUNE_MODEL_SAMPLE_H

#include <stdint.h>

/* logits [V] on the host (modified: they become probabilities); *rng is a
 * splitmix64 state advanced by each draw. */
int32_t sample_token(float *logits, int64_t V, double temperature, double top_p, uint64_t *rng);

#endif
