// The dot kernel of the CPU backend's decoding products: C = alpha A B^T + beta C with A (M, K)
// and B (N, K) both K-contiguous (the layout of x W^T, every projection of the model), for the
// few rows a decode step multiplies, where OpenBLAS's sgemm spends its time packing the weights
// on every call (ops_cpu.c, "the choice", has the measurements). AVX-512, and AVX2 + FMA with the
// same bits; ops_cpu.c's cpu_matmul_dot splits the columns over threads.
#include "model/ops_cpu_internal.h"

// ---- AVX-512 (x86-64 only): tiles of 4 rows of A by 4 rows of B keep 16 accumulators of 16
// lanes in registers along K, read B straight from the caller's buffer (sgemm copies it into a
// packed buffer on every call) and prefetch the next 4 rows of B while the current ones serve
// every row of A. Each element of C is summed in the same order whatever the tile, the slice or
// the thread count.

#if defined(CPU_AVX512_KERNELS)
#include <immintrin.h>

// (sum a0, sum a1, sum a2, sum a3), each over 16 lanes in a fixed tree: 16 -> 8 -> 4 -> 1
CPU_AVX512 static inline __m128 dot_sum4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    const __m512 s01 = _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, 0x44), _mm512_shuffle_f32x4(a0, a1, 0xee));
    const __m512 s23 = _mm512_add_ps(_mm512_shuffle_f32x4(a2, a3, 0x44), _mm512_shuffle_f32x4(a2, a3, 0xee));
    // 128-bit block i now holds 4 partial sums of a_i
    __m512 s = _mm512_add_ps(_mm512_shuffle_f32x4(s01, s23, 0x88), _mm512_shuffle_f32x4(s01, s23, 0xdd));
    s = _mm512_add_ps(s, _mm512_permute_ps(s, 0x4e)); // (x0 + x2, x1 + x3) in each block
    s = _mm512_add_ps(s, _mm512_permute_ps(s, 0xb1)); // (x0 + x2) + (x1 + x3)
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0,
                                                                          4, 8, 12),
                                                        s));
}

// C (mr, nr) of mr <= 4 rows of A against nr <= 4 rows of B (constants once inlined); K a
// multiple of 16. pf: the next rows of B to prefetch, or NULL.
CPU_AVX512 static inline __attribute__((always_inline)) void dot_tile(int mr, int nr, int K, float alpha,
                                                                      const float* A, int lda, const float* B,
                                                                      int ldb, float beta, float* C, int ldc,
                                                                      const float* pf) {
    __m512 acc[4][4];
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    }
    for (int k = 0; k < K; k += 16) {
        __m512 a[4], b[4];
        for (int i = 0; i < mr; i++) a[i] = _mm512_loadu_ps(A + (size_t)i * lda + k);
        for (int j = 0; j < nr; j++) b[j] = _mm512_loadu_ps(B + (size_t)j * ldb + k);
        if (pf) {
            for (int j = 0; j < 4; j++) __builtin_prefetch(pf + (size_t)j * ldb + k);
        }
        for (int i = 0; i < mr; i++) {
            for (int j = 0; j < nr; j++) acc[i][j] = _mm512_fmadd_ps(a[i], b[j], acc[i][j]);
        }
    }
    for (int i = 0; i < mr; i++) {
        float r[4];
        _mm_storeu_ps(r, dot_sum4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]));
        float* c = C + (size_t)i * ldc;
        for (int j = 0; j < nr; j++) c[j] = beta == 0.0f ? alpha * r[j] : alpha * r[j] + beta * c[j];
    }
}

// 4 rows of B at a time against all of A
CPU_AVX512 void cpu_dot_kernel_avx512(int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                                      int ldb, float beta, float* C, int ldc) {
    int n = 0;
    for (; n + 4 <= N; n += 4) {
        const float* Bn = B + (size_t)n * ldb;
        const float* pf = n + 8 <= N ? Bn + 4 * (size_t)ldb : NULL;
        int m = 0;
        if (M >= 4) { // the first tile prefetches (only there: the rest read these rows of B from L1)
            if (pf) dot_tile(4, 4, K, alpha, A, lda, Bn, ldb, beta, C + n, ldc, pf);
            else dot_tile(4, 4, K, alpha, A, lda, Bn, ldb, beta, C + n, ldc, NULL);
            m = 4;
        }
        for (; m + 4 <= M; m += 4) {
            dot_tile(4, 4, K, alpha, A + (size_t)m * lda, lda, Bn, ldb, beta, C + (size_t)m * ldc + n, ldc, NULL);
        }
        for (; m < M; m++) {
            dot_tile(1, 4, K, alpha, A + (size_t)m * lda, lda, Bn, ldb, beta, C + (size_t)m * ldc + n, ldc, NULL);
        }
    }
    for (; n < N; n++) {
        const float* Bn = B + (size_t)n * ldb;
        int m = 0;
        for (; m + 4 <= M; m += 4) {
            dot_tile(4, 1, K, alpha, A + (size_t)m * lda, lda, Bn, ldb, beta, C + (size_t)m * ldc + n, ldc, NULL);
        }
        for (; m < M; m++) {
            dot_tile(1, 1, K, alpha, A + (size_t)m * lda, lda, Bn, ldb, beta, C + (size_t)m * ldc + n, ldc, NULL);
        }
    }
}

// ---- AVX2 + FMA: the same sums in 8-lane halves. Lane l of an AVX-512 accumulator is lane l of
// `lo` (l < 8) or lane l - 8 of `hi`, summed over K in the same order; the halves then add up in
// dot_sum4's tree (4-lane blocks b0 + b2 and b1 + b3, their sum, then (x0 + x2) + (x1 + x3)), so
// the two kernels give the same bits. Tiles of 2 rows of A by 2 rows of B: 8 accumulators and
// the 4 halves of B fill the 16 ymm registers with the row of A being multiplied.
CPU_AVX2 static inline float dot_sum_avx2(__m256 lo, __m256 hi) {
    const __m256 s = _mm256_add_ps(lo, hi); // (b0 + b2, b1 + b3)
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    t = _mm_add_ps(t, _mm_permute_ps(t, 0x4e)); // (x0 + x2, x1 + x3, ..)
    t = _mm_add_ps(t, _mm_permute_ps(t, 0xb1)); // (x0 + x2) + (x1 + x3)
    return _mm_cvtss_f32(t);
}

// C (mr, nr) of mr <= 2 rows of A against nr <= 2 rows of B; K a multiple of 16; pf as dot_tile's
CPU_AVX2 static inline __attribute__((always_inline)) void dot_tile_avx2(int mr, int nr, int K, float alpha,
                                                                         const float* A, int lda, const float* B,
                                                                         int ldb, float beta, float* C, int ldc,
                                                                         const float* pf) {
    __m256 lo[2][2], hi[2][2];
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 2; j++) lo[i][j] = hi[i][j] = _mm256_setzero_ps();
    }
    for (int k = 0; k < K; k += 16) {
        __m256 blo[2], bhi[2];
        for (int j = 0; j < nr; j++) {
            blo[j] = _mm256_loadu_ps(B + (size_t)j * ldb + k);
            bhi[j] = _mm256_loadu_ps(B + (size_t)j * ldb + k + 8);
        }
        if (pf) {
            for (int j = 0; j < 2; j++) __builtin_prefetch(pf + (size_t)j * ldb + k);
        }
        for (int i = 0; i < mr; i++) {
            const float* a = A + (size_t)i * lda + k;
            const __m256 alo = _mm256_loadu_ps(a), ahi = _mm256_loadu_ps(a + 8);
            for (int j = 0; j < nr; j++) {
                lo[i][j] = _mm256_fmadd_ps(alo, blo[j], lo[i][j]);
                hi[i][j] = _mm256_fmadd_ps(ahi, bhi[j], hi[i][j]);
            }
        }
    }
    for (int i = 0; i < mr; i++) {
        float* c = C + (size_t)i * ldc;
        for (int j = 0; j < nr; j++) {
            const float r = dot_sum_avx2(lo[i][j], hi[i][j]);
            c[j] = beta == 0.0f ? alpha * r : alpha * r + beta * c[j];
        }
    }
}

// 2 rows of B at a time against all of A
CPU_AVX2 void cpu_dot_kernel_avx2(int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                                  float beta, float* C, int ldc) {
    for (int n = 0; n < N; n += 2) {
        const float* Bn = B + (size_t)n * ldb;
        float* Cn = C + n;
        if (n + 2 > N) {
            for (int m = 0; m < M; m++) {
                dot_tile_avx2(1, 1, K, alpha, A + (size_t)m * lda, lda, Bn, ldb, beta, Cn + (size_t)m * ldc, ldc, NULL);
            }
            break;
        }
        const float* pf = n + 4 <= N ? Bn + 2 * (size_t)ldb : NULL;
        int m = 0;
        if (M >= 2) { // the first tile prefetches (only there: the rest read these rows of B from L1)
            if (pf) dot_tile_avx2(2, 2, K, alpha, A, lda, Bn, ldb, beta, Cn, ldc, pf);
            else dot_tile_avx2(2, 2, K, alpha, A, lda, Bn, ldb, beta, Cn, ldc, NULL);
            m = 2;
        }
        for (; m + 2 <= M; m += 2) {
            dot_tile_avx2(2, 2, K, alpha, A + (size_t)m * lda, lda, Bn, ldb, beta, Cn + (size_t)m * ldc, ldc, NULL);
        }
        if (m < M) {
            dot_tile_avx2(1, 2, K, alpha, A + (size_t)m * lda, lda, Bn, ldb, beta, Cn + (size_t)m * ldc, ldc, NULL);
        }
    }
}

void cpu_dot_kernel(int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, float beta,
                    float* C, int ldc) {
    if (cpu_has_avx512()) cpu_dot_kernel_avx512(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else cpu_dot_kernel_avx2(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
#endif
