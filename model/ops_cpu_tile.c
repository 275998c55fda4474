// Register tiles for the CPU backend's products on AVX-512 and on AVX2 + FMA: C = alpha A B +
// beta C with B row-major. Each tile keeps MR rows x NR vectors of C in registers and walks K (in
// chunks), broadcasting one element of A per row and loading one row of B per step; A is read
// through a row and a column stride, so transposed products (dS^T Q, dY^T X) need no copy. The
// AVX-512 tiles hold up to 12 x 32 or 6 x 64 outputs in 32 zmm registers, the AVX2 ones 12 x 8 or
// 6 x 16 in 16 ymm; both sum every element in the same order (k ascending within chunks of
// TILE_KC, chunks added), so they give the same bits.
//
// Why not OpenBLAS: attention multiplies blocks with K or N = head_dim (32-128), where sgemm's
// packing of both operands on every call costs about as much as the product; and beside
// OpenBLAS's AVX2 kernels (OPENBLAS_CORETYPE=Haswell, as this project's CI machines force, or a
// release older than the CPU) the AVX-512 tiles run the training's weight products about 2x faster.
// Measured on 2 Zen 5 cores, the tiny model's step at 2 x 1400 tokens: attention 30.6 + 58.0 ms
// as sgemm blocks, 15.3 + 30.5 on the tiles; the step's 87 weight products 226 GFLOP/s with
// sgemm, 417 on the tiles (docs/BENCHMARKS.md).
#include "model/ops_cpu_internal.h"

#if defined(CPU_AVX512_KERNELS)
#include <immintrin.h>

// ----------------------------------------------------------------------------
// the AVX-512 register tile

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

// The case of a switch for each tile shape, so that mr, nr (and, on AVX2, masked) are constants
// in every inlined copy: CASE(MR, NR, MASKED) for rows 1..6 or 1..12
#define TILE_ROWS6(CASE, NR, MASKED)                                                                                   \
    CASE(1, NR, MASKED) CASE(2, NR, MASKED) CASE(3, NR, MASKED) CASE(4, NR, MASKED) CASE(5, NR, MASKED)                \
        CASE(6, NR, MASKED)
#define TILE_ROWS12(CASE, NR, MASKED)                                                                                  \
    TILE_ROWS6(CASE, NR, MASKED) CASE(7, NR, MASKED) CASE(8, NR, MASKED) CASE(9, NR, MASKED) CASE(10, NR, MASKED)      \
        CASE(11, NR, MASKED) CASE(12, NR, MASKED)

#define TILE16_CASE(MR, NR, MASKED)                                                                                    \
    case MR * 8 + NR: tile(MR, NR, K, alpha, A, ars, aks, B, ldb, beta, C, ldc, mask); break;

// the AVX-512 tile of mr rows by w <= 64 columns: rows 1..12 for up to 2 vectors, 1..6 for 3 or 4
CPU_AVX512 static void tile16_any(int mr, int w, int K, float alpha, const float* A, size_t ars, size_t aks,
                                  const float* B, size_t ldb, float beta, float* C, size_t ldc) {
    const int nr = (w + 15) / 16;
    const __mmask16 mask = w % 16 ? (__mmask16)((1u << (w % 16)) - 1) : (__mmask16)0xffff;
    switch (mr * 8 + nr) {
        TILE_ROWS12(TILE16_CASE, 1, 0)
        TILE_ROWS12(TILE16_CASE, 2, 0)
        TILE_ROWS6(TILE16_CASE, 3, 0)
        TILE_ROWS6(TILE16_CASE, 4, 0)
    default: break; // callers pass only the shapes above
    }
}

// ----------------------------------------------------------------------------
// the AVX2 register tile

// C (mr, 8 nr) = alpha sum_k A(r, k) B (k, :) + beta C, as `tile` with 8 lanes a vector; where
// `masked`, the last vector column holds only the lanes of `mask` (a constant once inlined, as mr
// and nr are, so that acc stays in registers: mr nr + nr + 1 <= 16 ymm)
CPU_AVX2 static inline __attribute__((always_inline)) void tile8(int mr, int nr, int masked, int K, float alpha,
                                                                 const float* A, size_t ars, size_t aks,
                                                                 const float* B, size_t ldb, float beta, float* C,
                                                                 size_t ldc, __m256i mask) {
    __m256 acc[12][2];
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
#pragma GCC unroll 2
        for (int u = 0; u < nr; u++) acc[r][u] = _mm256_setzero_ps();
    }
    for (int k = 0; k < K; k++) {
        const float* b = B + (size_t)k * ldb;
        const float* a = A + (size_t)k * aks;
        __m256 x[2];
#pragma GCC unroll 2
        for (int u = 0; u < nr; u++) {
            x[u] = masked && u == nr - 1 ? _mm256_maskload_ps(b + 8 * u, mask) : _mm256_loadu_ps(b + 8 * u);
        }
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            const __m256 ar = _mm256_broadcast_ss(a + (size_t)r * ars);
#pragma GCC unroll 2
            for (int u = 0; u < nr; u++) acc[r][u] = _mm256_fmadd_ps(ar, x[u], acc[r][u]);
        }
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        float* c = C + (size_t)r * ldc;
#pragma GCC unroll 2
        for (int u = 0; u < nr; u++) {
            const int part = masked && u == nr - 1;
            __m256 y = _mm256_mul_ps(acc[r][u], va);
            if (beta != 0.0f) {
                const __m256 old = part ? _mm256_maskload_ps(c + 8 * u, mask) : _mm256_loadu_ps(c + 8 * u);
                y = _mm256_fmadd_ps(vb, old, y);
            }
            if (part) _mm256_maskstore_ps(c + 8 * u, mask, y);
            else _mm256_storeu_ps(c + 8 * u, y);
        }
    }
}

#define TILE8_CASE(MR, NR, MASKED)                                                                                     \
    case (MASKED) * 64 + MR * 4 + NR:                                                                                  \
        tile8(MR, NR, MASKED, K, alpha, A, ars, aks, B, ldb, beta, C, ldc, mask);                                      \
        break;

// the AVX2 tile of mr rows by w <= 16 columns: rows 1..12 for 1 vector, 1..6 for 2
CPU_AVX2 static void tile8_any(int mr, int w, int K, float alpha, const float* A, size_t ars, size_t aks,
                               const float* B, size_t ldb, float beta, float* C, size_t ldc) {
    const int nr = (w + 7) / 8, masked = w % 8 != 0;
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(w % 8), lanes); // lane i < w % 8: all ones
    switch (masked * 64 + mr * 4 + nr) {
        TILE_ROWS12(TILE8_CASE, 1, 0)
        TILE_ROWS12(TILE8_CASE, 1, 1)
        TILE_ROWS6(TILE8_CASE, 2, 0)
        TILE_ROWS6(TILE8_CASE, 2, 1)
    default: break; // callers pass only the shapes above
    }
}

// ----------------------------------------------------------------------------
// the product

// Columns in panels of 64, K in chunks of TILE_KC: a chunk's rows of B (one panel) stay in L2
// and a row tile's slice of A in L1 while the tiles of the panel (one on AVX-512, four of 16
// columns on AVX2) pass over them. Each chunk after the first adds to C, so the sums' order
// depends on K and TILE_KC only, never on M, N, the threads' slices or the vector width.
#define TILE_KC 256
#define TILE_PANEL 64

typedef void TileFn(int mr, int w, int K, float alpha, const float* A, size_t ars, size_t aks, const float* B,
                    size_t ldb, float beta, float* C, size_t ldc);

// tile_w: the columns of one tile (64 or 16); a tile is 12 rows high where the panel fills at
// most half a tile, else 6
static void tile_gemm(TileFn* tile_fn, int tile_w, int M, int N, int K, float alpha, const float* A, size_t ars,
                      size_t aks, const float* B, size_t ldb, float beta, float* C, size_t ldc) {
    for (int n0 = 0; n0 < N; n0 += TILE_PANEL) {
        const int w = N - n0 < TILE_PANEL ? N - n0 : TILE_PANEL, rows = 2 * w <= tile_w ? 12 : 6;
        for (int k0 = 0; k0 < K; k0 += TILE_KC) {
            const int kc = K - k0 < TILE_KC ? K - k0 : TILE_KC;
            const float b0 = k0 == 0 ? beta : 1.0f;
            for (int m0 = 0; m0 < M; m0 += rows) {
                const int mr = M - m0 < rows ? M - m0 : rows;
                for (int n1 = 0; n1 < w; n1 += tile_w) {
                    tile_fn(mr, w - n1 < tile_w ? w - n1 : tile_w, kc, alpha, A + (size_t)m0 * ars + (size_t)k0 * aks,
                            ars, aks, B + (size_t)k0 * ldb + n0 + n1, ldb, b0, C + (size_t)m0 * ldc + n0 + n1, ldc);
                }
            }
        }
    }
}

void cpu_tile_gemm_avx512(int M, int N, int K, float alpha, const float* A, size_t ars, size_t aks, const float* B,
                          size_t ldb, float beta, float* C, size_t ldc) {
    tile_gemm(tile16_any, 64, M, N, K, alpha, A, ars, aks, B, ldb, beta, C, ldc);
}

void cpu_tile_gemm_avx2(int M, int N, int K, float alpha, const float* A, size_t ars, size_t aks, const float* B,
                        size_t ldb, float beta, float* C, size_t ldc) {
    tile_gemm(tile8_any, 16, M, N, K, alpha, A, ars, aks, B, ldb, beta, C, ldc);
}

void cpu_tile_gemm(int M, int N, int K, float alpha, const float* A, size_t ars, size_t aks, const float* B,
                   size_t ldb, float beta, float* C, size_t ldc) {
    if (cpu_has_avx512()) cpu_tile_gemm_avx512(M, N, K, alpha, A, ars, aks, B, ldb, beta, C, ldc);
    else cpu_tile_gemm_avx2(M, N, K, alpha, A, ars, aks, B, ldb, beta, C, ldc);
}
#endif
