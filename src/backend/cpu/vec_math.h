/* Vector math of the CPU backend: exp, and the row loops built on it that
 * softmax, cross-entropy and SwiGLU need, and the dot products of RMSNorm,
 * written so that the compiler turns them into SIMD code (libm's expf is a
 * call per element, scalar, and a serial sum is one add per 4 cycles: they
 * were most of the non-GEMM time of a training step).
 *
 * The choice: the same bits on any x86-64 machine and thread count. The
 * build targets plain x86-64, so the loops are compiled for several ISA
 * levels (CPU_VEC_CLONES: AVX-512, AVX2, baseline) and the loader picks one;
 * none of them may round differently. So cpu_vec_expf is plain IEEE
 * multiplies and adds (nothing contracted into FMA: -std=c11, and the
 * Makefile's -ffp-contract=off for the files with vector loops), every
 * division and conversion exact IEEE, and every sum is kept in
 * CPU_VEC_LANES partial sums, element j into lane j % CPU_VEC_LANES, added
 * together in lane order at the end: a fixed order whatever the vector width.
 * Sums are not the serial left-to-right ones, so results differ from a plain
 * loop's in the last bits (within the fp32 tolerances of the tests). */
#ifndef TUNE_BACKEND_CPU_VEC_MATH_H
#define TUNE_BACKEND_CPU_VEC_MATH_H

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CPU_VEC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CPU_VEC_CLONES
#endif

/* Partial sums per reduction (16 floats: one AVX-512 register). */
#define CPU_VEC_LANES 16

/* exp(x) within 2 ulp, as Cephes' expf: x = n ln2 + r with |r| <= ln2 / 2
 * (ln2 in two parts, Cody and Waite), exp(r) by a degree-7 polynomial,
 * times 2^n built in the exponent bits (in two halves, so that n = 128 does
 * not overflow them). Below -87.5 (where exp is a denormal, < 1.1e-38) it
 * returns 0; above log(FLT_MAX) infinity; NaN stays NaN. Branch-free, for
 * `omp simd` loops. */
static inline float cpu_vec_expf(float x)
{
    float xc = x < -87.5f ? -87.5f : x; /* NaN compares false: kept */
    xc = xc > 88.75f ? 88.75f : xc;
    float t = xc * 1.44269504088896341f + 12582912.0f; /* 1.5 * 2^23: n lands in the low bits */
    float n = t - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    uint32_t tb; /* t = 1.5 * 2^23 + n exactly, so its bits are the constant's plus n */
    memcpy(&tb, &t, sizeof tb);
    int32_t ni = (int32_t)(tb - 0x4b400000u), n1 = ni >> 1, n2 = ni - n1;
    uint32_t b1 = (uint32_t)(n1 + 127) << 23, b2 = (uint32_t)(n2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    /* Above log(FLT_MAX) the product overflows to infinity by itself; the
     * flush below -87.5 is a multiply by 0 or 1 rather than a select, so
     * that no branch is left for the vectorizer (NaN * 0 stays NaN). */
    return p * s1 * s2 * (float)(x >= -87.5f);
}

/* The largest of x[0..n), -infinity for n = 0 (NaNs are skipped, as fmaxf does). */
float cpu_vec_max(const float *x, int64_t n);

/* The sum over j < n of e_j = exp(x[j] - shift), in double (lanes as above);
 * also writes e_j to y[j] unless y is NULL (y may be x). */
double cpu_vec_exp_sum(float *y, const float *x, int64_t n, float shift);

/* y[j] = scale * exp(x[j] - shift) for j < n (y may be x). */
void cpu_vec_exp_scale(float *y, const float *x, int64_t n, float shift, float scale);

/* The sum over j < n of a[j] * b[j] (c == NULL) or a[j] * b[j] * c[j], each
 * product and the sum in double (lanes as above). */
double cpu_vec_dot(const float *a, const float *b, const float *c, int64_t n);

#endif
