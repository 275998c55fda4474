// Register tiles for the CPU backend's products on AVX-512: C = alpha A B + beta C with B
// row-major and the output 16 columns per vector. Each tile keeps MR rows x NR vectors of C in
// registers and walks K (in chunks), broadcasting one element of A per row and loading one row of B per
// step; A is read through a row and a column stride, so transposed products (dS^T Q, dY^T X)
// need no copy.
//
// Why not OpenBLAS: attention multiplies blocks with K or N = head_dim (32-128), where sgemm's
// packing of both operands on every call costs about as much as the product; and beside
// OpenBLAS's AVX2 kernels (OPENBLAS_CORETYPE=Haswell, as this project's CI machines force, or a
// release older than the CPU) the tiles run the training's weight products about 2x faster.
// Measured on 2 Zen 5 cores, the tiny model's step at 2 x 1400 tokens: attention 30.6 + 58.0 ms
// as sgemm blocks, 15.3 + 30.5 on the tiles; the step's 87 weight products 226 GFLOP/s with
// sgemm, 417 on the tiles (docs/BENCHMARKS.md).
#include "model/ops_cpu_internal.h"

#if defined(CPU_AVX512_KERNELS)
#include <immintrin.h>

// ----------------------------------------------------------------------------
// the register tile

// C (mr, 16 nr) = alpha sum_k A(r, k) B (k, :) + beta C; A(r, k) at A[r ars + k aks]; the last
// vector column holds only the lanes of `mask`. beta 0 never reads C. mr and nr are constants
// once inlined, so that acc stays in registers (mr nr + nr + 1 <= 32 zmm).
CPU_AVX512 static inline __attribute__((always_inline)) void tile(int mr, int nr, int K, float alpha, const float* A,
                                                                  size_t ars, size_t aks, const float* B, size_t ldb,
                                                                  float beta, float* C, size_t ldc, __mmask16 mask) {
    __m512 acc[12][4];
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
#pragma GCC unroll 4
        for (int u = 0; u < nr; u++) acc[r][u] = _mm512_setzero_ps();
    }
    for (int k = 0; k < K; k++) {
        const float* b = B + (size_t)k * ldb;
        const float* a = A + (size_t)k * aks;
        __m512 x[4];
#pragma GCC unroll 4
        for (int u = 0; u < nr; u++) x[u] = _mm512_maskz_loadu_ps(u == nr - 1 ? mask : 0xffff, b + 16 * u);
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            const __m512 ar = _mm512_set1_ps(a[(size_t)r * ars]);
#pragma GCC unroll 4
            for (int u = 0; u < nr; u++) acc[r][u] = _mm512_fmadd_ps(ar, x[u], acc[r][u]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        float* c = C + (size_t)r * ldc;
#pragma GCC unroll 4
        for (int u = 0; u < nr; u++) {
            const __mmask16 m = u == nr - 1 ? mask : 0xffff;
            __m512 y = _mm512_mul_ps(acc[r][u], va);
            if (beta != 0.0f) y = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, c + 16 * u), y);
            _mm512_mask_storeu_ps(c + 16 * u, m, y);
        }
    }
}

// the tile with mr and nr as constants: rows 1..12 for up to 2 vectors, 1..6 for 3 or 4
#define TILE_CASE(MR, NR)                                                                                              \
    case MR * 8 + NR: tile(MR, NR, K, alpha, A, ars, aks, B, ldb, beta, C, ldc, mask); break;
#define TILE_ROWS6(NR) TILE_CASE(1, NR) TILE_CASE(2, NR) TILE_CASE(3, NR) TILE_CASE(4, NR) TILE_CASE(5, NR) TILE_CASE(6, NR)
#define TILE_ROWS12(NR)                                                                                                \
    TILE_ROWS6(NR) TILE_CASE(7, NR) TILE_CASE(8, NR) TILE_CASE(9, NR) TILE_CASE(10, NR) TILE_CASE(11, NR)              \
        TILE_CASE(12, NR)

CPU_AVX512 static void tile_any(int mr, int nr, int K, float alpha, const float* A, size_t ars, size_t aks,
                                const float* B, size_t ldb, float beta, float* C, size_t ldc, __mmask16 mask) {
    switch (mr * 8 + nr) {
        TILE_ROWS12(1)
        TILE_ROWS12(2)
        TILE_ROWS6(3)
        TILE_ROWS6(4)
    default: break; // callers pass only the shapes above
    }
}

// ----------------------------------------------------------------------------
// the product

// K in chunks of TILE_KC: a chunk's rows of B (64 columns) and of A stay in L2 while every row
// tile of C passes over them; each chunk after the first adds to C (so the sums' order depends
// on K and TILE_KC only, never on M, N or the threads' slices)
#define TILE_KC 256

CPU_AVX512 void cpu_tile_gemm(int M, int N, int K, float alpha, const float* A, size_t ars, size_t aks, const float* B,
                              size_t ldb, float beta, float* C, size_t ldc) {
    for (int n0 = 0; n0 < N; n0 += 64) {
        const int w = N - n0 < 64 ? N - n0 : 64, nr = (w + 15) / 16;
        const __mmask16 mask = w % 16 ? (__mmask16)((1u << (w % 16)) - 1) : (__mmask16)0xffff;
        const int rows = nr <= 2 ? 12 : 6;
        for (int k0 = 0; k0 < K; k0 += TILE_KC) {
            const int kc = K - k0 < TILE_KC ? K - k0 : TILE_KC;
            const float b0 = k0 == 0 ? beta : 1.0f;
            for (int m0 = 0; m0 < M; m0 += rows) {
                const int mr = M - m0 < rows ? M - m0 : rows;
                tile_any(mr, nr, kc, alpha, A + (size_t)m0 * ars + (size_t)k0 * aks, ars, aks,
                         B + (size_t)k0 * ldb + n0, ldb, b0, C + (size_t)m0 * ldc + n0, ldc, mask);
            }
        }
    }
}
#endif
