// Helpers shared by the CPU backend's files (ops_cpu*.c); not part of the backend interface.
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "model/ops.h"

// Hot vector loops are compiled twice, for AVX2 + FMA and for the x86-64 baseline (SSE2), and the
// loader picks the clone this CPU runs (GCC target_clones): the build stays portable across
// cluster nodes while the elementwise kernels run 8 lanes wide where they can.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
// the same with an AVX-512 clone, for the attention's softmax rows: its sums run 16 lanes wide,
// so those rows' bits differ from an AVX2 machine's (as OpenBLAS's kernels do by CPU; the tiles'
// and the dot kernel's do not)
#define CPU_CLONES_V4 __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CPU_CLONES
#define CPU_CLONES_V4
#endif

// Kernels written for AVX-512 or for AVX2 + FMA (x86-64, GCC or clang): compiled for them
// whatever the build's target, and called only where cpu_has_avx512() or cpu_has_avx2() says
// the CPU (and OS) runs them.
#if defined(__x86_64__) && defined(__GNUC__)
#define CPU_AVX512_KERNELS 1
#define CPU_AVX512 __attribute__((target("avx512f")))
#define CPU_AVX2 __attribute__((target("avx2,fma")))
static inline int cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}
static inline int cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
static inline int cpu_has_avx512(void) { return 0; }
static inline int cpu_has_avx2(void) { return 0; }
#endif

// whether the register tiles (ops_cpu_tile.c) run here: AVX-512 or AVX2 + FMA
static inline int cpu_has_tiles(void) { return cpu_has_avx512() || cpu_has_avx2(); }

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

// dst (cols, rows), row stride ld, = the transpose of src (rows, cols), row stride ldsrc: the
// row-major B that the register tiles read, from a transposed one
static inline void cpu_transpose(float* dst, size_t ld, const float* src, size_t ldsrc, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) dst[(size_t)c * ld + r] = src[(size_t)r * ldsrc + c];
    }
}

// ----------------------------------------------------------------------------
// the matmul paths (ops_cpu.c), each with Backend.matmul's arguments; Backend.matmul picks one
// by the shape and the kernels in use, and tests call each directly

// sgemm, each thread on a slice of C's rows or columns
void cpu_matmul_sgemm(Backend* be, int trans_a, int trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                      const float* B, int ldb, float beta, float* C, int ldc);
// one sgemv per row of C, each thread on a slice of C's columns
void cpu_matmul_gemv(Backend* be, int trans_a, int trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                     const float* B, int ldb, float beta, float* C, int ldc);
// the register tiles (ops_cpu_tile.c), each thread on a slice of C's rows; returns -1 (and
// leaves C alone) without AVX-512 or AVX2, off x86-64, or for a transposed B of more than 2^20 values
int cpu_matmul_tile(Backend* be, int trans_a, int trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc);
// the dot kernel; returns -1 (and leaves C alone) where it does not apply: without AVX-512 or
// AVX2, off x86-64, unless trans_a = 0 and trans_b = 1, or K not a positive multiple of 16
int cpu_matmul_dot(Backend* be, int trans_a, int trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                   const float* B, int ldb, float beta, float* C, int ldc);
#if defined(CPU_AVX512_KERNELS)
// the dot kernel on the calling thread: C (M, N) = alpha A B^T + beta C, A (M, K) and B (N, K)
// K-contiguous, K a positive multiple of 16; only where cpu_has_tiles(). cpu_dot_kernel runs the
// AVX-512 version where the CPU has it, else the AVX2 one: both sum each element in the same
// order, so they give the same bits.
void cpu_dot_kernel(int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, float beta,
                    float* C, int ldc);
void cpu_dot_kernel_avx512(int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                           float beta, float* C, int ldc);
void cpu_dot_kernel_avx2(int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, float beta,
                         float* C, int ldc);
// the register tiles (ops_cpu_tile.c) on the calling thread: C (M, N) = alpha A B + beta C
// with A(r, k) at A[r ars + k aks], B (K, N) row-major; beta 0 never reads C. cpu_tile_gemm
// runs the AVX-512 tiles where the CPU has them, else the AVX2 ones (only where cpu_has_tiles());
// both sum each element in the same order, so they give the same bits.
void cpu_tile_gemm(int M, int N, int K, float alpha, const float* A, size_t ars, size_t aks, const float* B,
                   size_t ldb, float beta, float* C, size_t ldc);
void cpu_tile_gemm_avx512(int M, int N, int K, float alpha, const float* A, size_t ars, size_t aks, const float* B,
                          size_t ldb, float beta, float* C, size_t ldc);
void cpu_tile_gemm_avx2(int M, int N, int K, float alpha, const float* A, size_t ars, size_t aks, const float* B,
                        size_t ldb, float beta, float* C, size_t ldc);
#endif
