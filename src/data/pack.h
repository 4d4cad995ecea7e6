/* Packing: examples laid end to end into micro-batches of the engine's format (struct
 * llama_batch: ids, shifted labels, sequence starts), epoch after epoch, from a position that
 * can be saved and restored exactly.
 *
 * A micro-batch is B rows of up to T tokens (B * T the plan's capacity). Examples are taken in
 * the epoch's order and placed whole: into the current row while they fit, else into the next
 * row; the batch ends when an example fits in none of its B rows, or at the end of the epoch
 * (so the last batch of an epoch may be short, and no batch mixes two epochs). Taking
 * examples strictly in order (not first-fit) makes a position just (epoch, index) and the
 * batches a pure function of it, which is what exact resume needs; the cost is the unused
 * tail of each row. The rows are concatenated without padding: each example stays its own
 * sequence (starts[]), and attention never crosses sequences, so a row is only the unit that
 * keeps every sequence within T and the batch within B * T.
 *
 * Labels are shifted: labels[t] = ids[t + 1] when token t + 1 is trained (its mask bit),
 * else -100; the last token of each sequence gets -100. This is what transformers computes
 * from unshifted labels (logits[t] against labels[t + 1]), made explicit.
 *
 * Epoch e's order is the examples shuffled by data_shuffle(seed, 1 + e), or their given order
 * without shuffle. */
#ifndef TUNE_DATA_PACK_H
#define TUNE_DATA_PACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "data/dataset.h"
#include "model/llama.h"

#define PACK_IGNORE (-100) /* the label of a position with no loss */

struct packer_options {
    int64_t seq;   /* T: tokens per row; every example must fit in one */
    int64_t rows;  /* B: rows per micro-batch */
    uint64_t seed; /* of the epochs' shuffles */
    bool shuffle;  /* false: the examples' given order every epoch */
};

/* Where the next micro-batch starts: example `index` of epoch `epoch`'s order. */
struct packer_pos {
    int64_t epoch;
    int64_t index;
};

struct packer {
    const struct dataset *d;
    struct packer_options opt;
    size_t *pool;            /* [n] the examples packed (e.g. a split's train list) */
    size_t *order;           /* [n] this epoch's order of pool */
    size_t n;
    struct packer_pos pos;   /* always index < n: the end of an epoch is (epoch + 1, 0) */
    int32_t *ids, *labels;   /* [B * T] */
    int32_t *starts;         /* [B * T + 1] */
};

struct packed_batch {
    struct llama_batch batch; /* views into the packer, valid until its next call */
    int64_t rows;             /* rows used, <= B */
    int64_t trained;          /* labels that are not PACK_IGNORE */
    int64_t epoch;            /* the epoch of its examples */
    bool epoch_end;           /* it holds the last example of its epoch */
};

/* Packs the examples idx[0..n) of d (idx NULL: all of d, n ignored) from position (0, 0).
 * d must outlive the packer. An example longer than seq is an error naming it (load with
 * max_length <= seq). */
int packer_init(struct packer *p, const struct dataset *d, const size_t *idx, size_t n,
                const struct packer_options *opt, tune_err *err);
void packer_free(struct packer *p);

/* Fills out with the next micro-batch and moves on; never runs out (epochs follow each
 * other). */
void packer_next(struct packer *p, struct packed_batch *out);

/* The position of the next micro-batch: saved with a checkpoint, given to packer_seek on
 * resume, the run continues with the very batches it would have had. */
struct packer_pos packer_tell(const struct packer *p);
int packer_seek(struct packer *p, struct packer_pos pos, tune_err *err);

/* The micro-batches of epoch `epoch` (for a schedule's step count), -1 when out of memory;
 * moves nothing. */
int64_t packer_batches_in_epoch(const struct packer *p, int64_t epoch);

#endif
