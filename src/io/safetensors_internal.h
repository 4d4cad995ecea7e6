/* Helpers shared by the safetensors reader (safetensors.c), the model /
 * index layer (safetensors_model.c) and the writer (safetensors_write.c);
 * not part of the public API. */
#ifndef TUNE_IO_SAFETENSORS_INTERNAL_H
#define TUNE_IO_SAFETENSORS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* "dir/name", malloc'd; NULL when out of memory. */
char *st_path_join(const char *dir, const char *name);
/* "[2, 3]" */
void st_shape_format(char *out, size_t n, int rank, const int64_t *shape);
/* "origin: tensor 'name': problem"; returns -1. */
int st_tensor_err(tune_err *err, const char *origin, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Sorts base[0..n) of records whose first member is a string by that string;
 * the index of the first repeated name, or -1. */
int st_sort_find_dup(void *base, int n, size_t size);
/* Binary search in a table sorted by st_sort_find_dup; NULL if absent. */
const void *st_find_name(const void *base, int n, size_t size, const char *name);

#endif
