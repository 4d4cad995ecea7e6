/* See sample.h. */
#include "model/sample.h"

#include "base/rng.h"

#include <math.h>
#include <stdlib.h>

static const float *sort_base;
static int by_prob_desc(const void *a, const void *b)
{
    float x = sort_base[*(const int32_t *)a], y = sort_base[*(const int32_t *)b];
    return x < y ? 1 : x > y ? -1 : *(const int32_t *)a - *(const int32_t *)b;
}

int32_t sample_token(float *logits, int64_t V, double temperature, double top_p, uint64_t *rng)
{
    int32_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (logits[i] > logits[best])
            best = (int32_t)i;
    if (temperature <= 0)
        return best;
    double mx = logits[best], sum = 0;
    for (int64_t i = 0; i < V; i++) {
        logits[i] = (float)exp((logits[i] - mx) / temperature);
        sum += logits[i];
    }
    for (int64_t i = 0; i < V; i++)
        logits[i] = (float)(logits[i] / sum);
    int32_t *order = malloc(sizeof(int32_t) * (size_t)V);
    if (!order)
        return best;
    for (int64_t i = 0; i < V; i++)
        order[i] = (int32_t)i;
    sort_base = logits;
    qsort(order, (size_t)V, sizeof *order, by_prob_desc);
    int64_t keep = 0;
    double mass = 0;
    while (keep < V && (keep == 0 || mass < top_p))
        mass += logits[order[keep++]];
    double u = rng_uniform(rng) * mass, acc = 0;
    int32_t pick = order[keep - 1];
    for (int64_t k = 0; k < keep; k++) {
        acc += logits[order[k]];
        if (u < acc) {
            pick = order[k];
            break;
        }
    }
    free(order);
    return pick;
}
