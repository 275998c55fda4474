// Helpers shared by the CPU backend's files (ops_cpu*.c); not part of the backend interface.
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

// Hot vector loops are compiled twice, for AVX2 + FMA and for the x86-64 baseline (SSE2), and the
// loader picks the clone this CPU runs (GCC target_clones): the build stays portable across
// cluster nodes while the elementwise kernels run 8 lanes wide where they can.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CPU_CLONES
#endif

// Loops over fewer elements than this run on the calling thread: a parallel region costs a
// fork and a join, and on a busy machine a preempted team member stalls the whole region.
#define CPU_PAR_MIN 32768

// exp(x) in float with Cephes' expf polynomial (relative error < 1e-7 on the clamped range),
// written so that GCC vectorises loops calling it (libm's expf is a scalar call per element;
// the clamps vectorise because these files build with -fno-trapping-math, see CMakeLists.txt).
// Inputs are clamped to [-87.3, 88.3]: results stay normal floats, never inf.
static inline float cpu_expf(float x) {
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.3f ? 88.3f : x;
    // round x / ln2 to nearest: adding 1.5 * 2^23 pushes the fraction bits out
    const float fn = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const int32_t n = (int32_t)fn;
    const float r = (x - fn * 0.693359375f) + fn * 2.12194440e-4f; // x - n ln2, in two parts
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float e = p * r * r + r + 1.0f;
    const int32_t bits = (n + 127) << 23; // 2^n
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}

// logistic sigmoid through exp(-|x|) <= 1, so the division never meets a huge denominator: with
// exp(-x) directly, GCC evaluates the clamped branch for every lane and its tiny quotients are
// subnormal, which costs a microcode assist per element
static inline float cpu_sigmoidf(float x) {
    const float e = cpu_expf(-fabsf(x));
    const float s = 1.0f / (1.0f + e);
    return x >= 0.0f ? s : e * s;
}

// the slice [lo, hi) of n items that thread tid of nt owns
static inline void thread_slice(size_t n, int tid, int nt, size_t* lo, size_t* hi) {
    *lo = n * (size_t)tid / (size_t)nt;
    *hi = n * (size_t)(tid + 1) / (size_t)nt;
}
