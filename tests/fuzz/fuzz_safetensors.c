/* libFuzzer target: the safetensors parser, over st_file_open_memory so no file is
 * touched. `make fuzz` builds and runs it (tests/fuzz/run.sh seeds it with the safetensors
 * fixtures); alone, from the repository root:
 *
 *   make build/fuzz/fuzz_safetensors
 *   sh tests/fuzz/run.sh run build/fuzz 60 fuzz_safetensors
 *
 * An accepted input has every tensor read end to end and looked up by name,
 * so ASan sees any range the validation let past the buffer. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink; /* keeps the reads of tensor data */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct st_file f;
    tune_err err;
    if (st_file_open_memory(&f, data, size, "fuzz", &err) != 0) {
        if (!err.msg[0] || strchr(err.msg, '\n'))
            abort(); /* every failure explains itself in one line */
        return 0;
    }
    int64_t covered = 0;
    for (int i = 0; i < f.n_tensors; i++) {
        const struct st_tensor *t = &f.tensors[i];
        const uint8_t *p = t->data;
        for (int64_t j = 0; j < t->nbytes; j++)
            sink ^= p[j];
        if (st_file_find(&f, t->name) != t)
            abort();
        covered += t->nbytes;
    }
    for (int i = 0; i < f.n_meta; i++)
        if (st_file_metadata(&f, f.meta[i].key) != f.meta[i].value)
            abort();
    uint64_t header = 0; /* an accepted file has its data section exactly covered */
    for (int i = 7; i >= 0; i--)
        header = header << 8 | data[i];
    if ((uint64_t)covered != size - 8 - header)
        abort();
    st_file_close(&f);
    return 0;
}
