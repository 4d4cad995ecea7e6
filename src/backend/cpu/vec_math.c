/* The row loops of vec_math.h. Each is compiled once per ISA level
 * (CPU_VEC_CLONES); a loop over whole groups of CPU_VEC_LANES elements, then
 * one over the rest, both `omp simd`, so the lanes of every sum are the same
 * elements in the same order at any vector width. */
#include <math.h>

#include "backend/cpu/vec_math.h"

CPU_VEC_CLONES float cpu_vec_max(const float *x, int64_t n)
{
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < n; j++)
        m = x[j] > m ? x[j] : m;
    return m;
}

/* Lane sums added in lane order. */
static double lanes_total(const double *acc)
{
    double s = 0;
    for (int l = 0; l < CPU_VEC_LANES; l++)
        s += acc[l];
    return s;
}

CPU_VEC_CLONES double cpu_vec_exp_sum(float *y, const float *x, int64_t n, float shift)
{
    double acc[CPU_VEC_LANES] = {0};
    int64_t whole = n - n % CPU_VEC_LANES;
    if (y) {
        for (int64_t j = 0; j < whole; j += CPU_VEC_LANES)
#pragma omp simd
            for (int l = 0; l < CPU_VEC_LANES; l++) {
                float e = cpu_vec_expf(x[j + l] - shift);
                y[j + l] = e;
                acc[l] += e;
            }
#pragma omp simd
        for (int l = 0; l < n - whole; l++) {
            float e = cpu_vec_expf(x[whole + l] - shift);
            y[whole + l] = e;
            acc[l] += e;
        }
    } else {
        for (int64_t j = 0; j < whole; j += CPU_VEC_LANES)
#pragma omp simd
            for (int l = 0; l < CPU_VEC_LANES; l++)
                acc[l] += cpu_vec_expf(x[j + l] - shift);
#pragma omp simd
        for (int l = 0; l < n - whole; l++)
            acc[l] += cpu_vec_expf(x[whole + l] - shift);
    }
    return lanes_total(acc);
}

CPU_VEC_CLONES void cpu_vec_exp_scale(float *y, const float *x, int64_t n, float shift, float scale)
{
#pragma omp simd
    for (int64_t j = 0; j < n; j++)
        y[j] = scale * cpu_vec_expf(x[j] - shift);
}

CPU_VEC_CLONES double cpu_vec_dot(const float *a, const float *b, const float *c, int64_t n)
{
    double acc[CPU_VEC_LANES] = {0};
    int64_t whole = n - n % CPU_VEC_LANES;
    if (c) {
        for (int64_t j = 0; j < whole; j += CPU_VEC_LANES)
#pragma omp simd
            for (int l = 0; l < CPU_VEC_LANES; l++)
                acc[l] += (double)a[j + l] * b[j + l] * c[j + l];
#pragma omp simd
        for (int l = 0; l < n - whole; l++)
            acc[l] += (double)a[whole + l] * b[whole + l] * c[whole + l];
    } else {
        for (int64_t j = 0; j < whole; j += CPU_VEC_LANES)
#pragma omp simd
            for (int l = 0; l < CPU_VEC_LANES; l++)
                acc[l] += (double)a[j + l] * b[j + l];
#pragma omp simd
        for (int l = 0; l < n - whole; l++)
            acc[l] += (double)a[whole + l] * b[whole + l];
    }
    return lanes_total(acc);
}
