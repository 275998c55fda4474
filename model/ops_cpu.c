// CPU backend (see ops.h): OpenBLAS sgemm for matmuls, except products of a few rows (decoding),
// which run an AVX-512 dot kernel or sgemv (see cpu_matmul); OpenMP loops for the rest.
// Buffers are host memory, 64-byte aligned. Reductions are deterministic: each thread sums a
// fixed contiguous slice and the partial sums are combined in thread order, or the loop is
// split over output columns so that every output element is summed by one thread in row order.
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/check.h"
#include "common/log.h"
#include "model/fixed_point.h"
#include "model/loss.h"
#include "model/ops.h"
#include "model/ops_cpu_attention.h"
#include "model/ops_cpu_internal.h"
#include "model/sample.h"

#define CPU_MAX_THREADS 256

// ----------------------------------------------------------------------------
// memory

static void* cpu_alloc(Backend* be, size_t bytes) {
    (void)be;
    void* p = NULL;
    size_t rounded = (bytes + 63) / 64 * 64;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0) {
        fatal("cpu backend: allocation of %zu bytes (%.1f MiB) failed\n"
              "  hint: use a smaller model, batch or sequence length",
              bytes, (double)bytes / (1024.0 * 1024.0));
    }
    memset(p, 0, rounded);
    return p;
}

// activations stay fp32 on the CPU
static float* cpu_alloc_act(Backend* be, size_t n) { return cpu_alloc(be, n * sizeof(float)); }

static void cpu_free(Backend* be, void* p) {
    (void)be;
    free(p);
}

static void cpu_memcpy(Backend* be, void* dst, const void* src, size_t bytes) {
    (void)be;
    if (bytes) memmove(dst, src, bytes);
}

static void cpu_memset0(Backend* be, void* dst, size_t bytes) {
    (void)be;
    if (bytes) memset(dst, 0, bytes);
}

static void cpu_scatter_rows(Backend* be, float* dst, const float* src, const int* rows, int N, int C) {
    (void)be;
    for (int i = 0; i < N; i++) memcpy(dst + (size_t)rows[i] * C, src + (size_t)i * C, (size_t)C * sizeof(float));
}

static void cpu_synchronize(Backend* be) { (void)be; }

// ----------------------------------------------------------------------------
// dense linear algebra: three ways to run a product, picked by cpu_matmul

// Each OpenMP thread runs single-threaded sgemm on its slice of C's rows (or columns, when C is
// wider than tall). OpenBLAS's own thread pool stays idle: on 2 cores, alternating it with the
// OpenMP team halved sgemm throughput in our measurements (both pools spin-wait for work).
#define MATMUL_SPLIT_MIN (1 << 18) // multiply-adds below which one thread does the whole product
#define MATMUL_SPLIT_ALIGN 16      // slice boundaries on multiples of this (whole micro-kernel tiles)

static void sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                  int ldb, float beta, float* C, int ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
}

void cpu_matmul_sgemm(Backend* be, int trans_a, int trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                      const float* B, int ldb, float beta, float* C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (be->threads == 1 || (double)M * N * K < MATMUL_SPLIT_MIN) {
        sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    const int split_rows = M >= N;
#pragma omp parallel num_threads(be->threads)
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        const int n = split_rows ? M : N;
        const int chunk = ((n + nt - 1) / nt + MATMUL_SPLIT_ALIGN - 1) / MATMUL_SPLIT_ALIGN * MATMUL_SPLIT_ALIGN;
        const int lo = tid * chunk < n ? tid * chunk : n, hi = lo + chunk < n ? lo + chunk : n;
        if (hi > lo && split_rows) {
            // rows lo..hi of op(A): A stored (M, K) -> row offset; stored (K, M) -> column offset
            const float* As = trans_a ? A + lo : A + (size_t)lo * lda;
            sgemm(trans_a, trans_b, hi - lo, N, K, alpha, As, lda, B, ldb, beta, C + (size_t)lo * ldc, ldc);
        } else if (hi > lo) {
            // columns lo..hi of op(B): B stored (N, K) -> row offset; stored (K, N) -> column offset
            const float* Bs = trans_b ? B + (size_t)lo * ldb : B + lo;
            sgemm(trans_a, trans_b, M, hi - lo, K, alpha, A, lda, Bs, ldb, beta, C + lo, ldc);
        }
    }
}

// The slice of n columns that thread tid of nt owns, on multiples of MATMUL_SPLIT_ALIGN
static void column_slice(int n, int tid, int nt, int* lo, int* hi) {
    const int chunk = ((n + nt - 1) / nt + MATMUL_SPLIT_ALIGN - 1) / MATMUL_SPLIT_ALIGN * MATMUL_SPLIT_ALIGN;
    *lo = tid * chunk < n ? tid * chunk : n;
    *hi = *lo + chunk < n ? *lo + chunk : n;
}

// ---- sgemv, one call per row of C, each thread on a slice of C's columns

#define MATMUL_SMALL_SPLIT_MIN 32768 // multiply-adds below which one thread runs sgemv or the dot kernel

static void gemv_cols(int trans_a, int trans_b, int M, int lo, int hi, int K, float alpha, const float* A, int lda,
                      const float* B, int ldb, float beta, float* C, int ldc) {
    for (int m = 0; m < M; m++) {
        // row m of op(A): A stored (M, K) -> a row; stored (K, M) -> a column of stride lda
        const float* x = trans_a ? A + m : A + (size_t)m * lda;
        const int incx = trans_a ? lda : 1;
        float* y = C + (size_t)m * ldc + lo;
        if (trans_b) { // B stored (N, K): y = B[lo..hi) x
            cblas_sgemv(CblasRowMajor, CblasNoTrans, hi - lo, K, alpha, B + (size_t)lo * ldb, ldb, x, incx, beta, y,
                        1);
        } else { // B stored (K, N): y = B[:, lo..hi)^T x
            cblas_sgemv(CblasRowMajor, CblasTrans, K, hi - lo, alpha, B + lo, ldb, x, incx, beta, y, 1);
        }
    }
}

void cpu_matmul_gemv(Backend* be, int trans_a, int trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                     const float* B, int ldb, float beta, float* C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { // sgemv returns early on empty rows without applying beta
        cpu_matmul_sgemm(be, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#pragma omp parallel num_threads(be->threads) if((double)M * N * K >= MATMUL_SMALL_SPLIT_MIN)
    {
        int lo, hi;
        column_slice(N, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        if (hi > lo) gemv_cols(trans_a, trans_b, M, lo, hi, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }
}

#if !defined(CPU_AVX512_KERNELS)
// the AVX-512 paths off x86-64 (or without GCC): they never apply
static int no_avx512_path(Backend* be, int trans_a, int trans_b, int M, int N, int K, float alpha, const float* A,
                          int lda, const float* B, int ldb, float beta, float* C, int ldc) {
    (void)be, (void)trans_a, (void)trans_b, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B;
    (void)ldb, (void)beta, (void)C, (void)ldc;
    return -1;
}
#endif

int cpu_matmul_dot(Backend* be, int trans_a, int trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                   const float* B, int ldb, float beta, float* C, int ldc) {
#if defined(CPU_AVX512_KERNELS)
    if (trans_a || !trans_b || K <= 0 || K % 16 != 0 || !cpu_has_tiles()) return -1;
    if (M <= 0 || N <= 0) return 0;
#pragma omp parallel num_threads(be->threads) if((double)M * N * K >= MATMUL_SMALL_SPLIT_MIN)
    {
        int lo, hi;
        column_slice(N, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        if (hi > lo) cpu_dot_kernel(M, hi - lo, K, alpha, A, lda, B + (size_t)lo * ldb, ldb, beta, C + lo, ldc);
    }
    return 0;
#else
    return no_avx512_path(be, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

// ---- the register tiles (ops_cpu_tile.c), each thread on a slice of C's rows

#define MATMUL_TILE_MAX_BT (1 << 20) // floats of a transposed B the tile path copies at most

int cpu_matmul_tile(Backend* be, int trans_a, int trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc) {
#if defined(CPU_AVX512_KERNELS)
    if (!cpu_has_tiles() || (trans_b && (size_t)K * N > MATMUL_TILE_MAX_BT)) return -1;
    if (M <= 0 || N <= 0) return 0;
    // the tiles read B as (K, N) rows: a transposed B (the weights of x W^T) is copied first
    float* bt = NULL;
    if (trans_b) {
        bt = mallocCheck(sizeof(float) * (size_t)K * (size_t)N);
        cpu_transpose(bt, (size_t)N, B, (size_t)ldb, N, K);
        B = bt, ldb = N;
    }
    const size_t ars = trans_a ? 1 : (size_t)lda, aks = trans_a ? (size_t)lda : 1;
#pragma omp parallel num_threads(be->threads) if((double)M * N * K >= MATMUL_SPLIT_MIN)
    {
        size_t lo, hi;
        thread_slice((size_t)M, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        if (hi > lo) {
            cpu_tile_gemm((int)(hi - lo), N, K, alpha, A + lo * ars, ars, aks, B, (size_t)ldb, beta,
                          C + lo * (size_t)ldc, (size_t)ldc);
        }
    }
    free(bt);
    return 0;
#else
    return no_avx512_path(be, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

// ---- the choice
// Decoding multiplies a few rows (the batch) by each weight matrix, where OpenBLAS 0.3.21's
// sgemm spends its time copying the weights into its packed layout on every call. Measured on
// 2 Zen 5 cores, the 56 products x W^T of 8 `small` layers (K = 384 or 1024), ms:
//   rows                        1      4      8      32     256
//   sgemm, Haswell kernels     1.76   1.63   2.11   4.60   26.9
//   sgemv, Haswell kernels     0.82   1.57   2.55   -      -
//   sgemm, SkylakeX kernels    0.73   1.46   2.20   3.60   15.0
//   dot kernel (AVX-512)       0.58   0.67   1.04   3.15   19.5
// So: the dot kernel where the CPU has AVX-512, up to 256 rows beside OpenBLAS's AVX2 kernels
// and up to 32 beside its AVX-512 ones (whose small-matrix sgemm packs nothing); otherwise
// sgemv up to 4 rows beside the AVX2 kernels; sgemm for the rest. On a CPU with AVX2 only the
// dot kernel's AVX2 version (tiles of 2 x 2 rows, the AVX-512 version's bits) runs 5 to 24 rows:
// on one core of a Zen 2/3 EPYC, the products of one decode step (ms; noisy VM, two runs each),
//   rows                          1           8           16          32          64
//   tiny, sgemv / sgemm       0.08-0.11   0.94-1.02   1.11-1.24   1.59-1.61   2.12-2.35
//   tiny, AVX2 dot kernel        0.12     0.40-0.42   0.61-0.77   1.42-1.44   2.65-2.83
//   small, sgemv / sgemm      4.54-4.56  10.3-11.5   12.6-13.2   18.6-20.4
//   small, AVX2 dot kernel       -        6.9-7.3    10.2-10.3   21.3-21.4
// The kernels are fixed when OpenBLAS loads, so backend_cpu_create sets the limits once, from
// backend_cpu_blas_core().
// Training's products beside OpenBLAS's AVX2 kernels on an AVX-512 CPU run on the register
// tiles instead of sgemm (cpu_tiles): on one Zen 5 core, for the tiny model's shapes,
//   x W^T and dY W (2800 rows, K = 128 or 384)   sgemm 122 GFLOP/s   tiles 242-257
//   dY^T X (K = 2800 rows)                        sgemm 121-122        tiles 141-152
// On a CPU with AVX2 only, the AVX2 tiles run them no faster than OpenBLAS's own AVX2 kernels
// (0.88-0.94x sgemm on 2 Zen 2/3 EPYC cores, the same 87 products), so there sgemm keeps them
// and the tiles serve attention only (ops_cpu_attention.c).
static int cpu_dot_min_rows = 0, cpu_dot_rows = 0, cpu_gemv_rows = 0, cpu_tiles = 0;

static void cpu_matmul(Backend* be, int trans_a, int trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                       const float* B, int ldb, float beta, float* C, int ldc) {
    if (M >= cpu_dot_min_rows && M <= cpu_dot_rows &&
        cpu_matmul_dot(be, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) == 0) {
        return;
    }
    if (cpu_tiles && cpu_matmul_tile(be, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) == 0) return;
    if (M <= cpu_gemv_rows) cpu_matmul_gemv(be, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else cpu_matmul_sgemm(be, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void cpu_linear_bwd(Backend* be, const LinearBlocks* b, const float* x, float* dx, float beta, int M, int K) {
    linear_bwd_by_matmuls(be, cpu_matmul, b, x, dx, beta, M, K);
}

static void cpu_add(Backend* be, float* y, const float* x, size_t n) {
#pragma omp parallel for simd num_threads(be->threads) if(n >= CPU_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

static void cpu_scale(Backend* be, float* y, float a, size_t n) {
#pragma omp parallel for simd num_threads(be->threads) if(n >= CPU_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) y[i] *= a;
}

static void cpu_add_bias(Backend* be, float* y, const float* b, int N, int C) {
#pragma omp parallel for num_threads(be->threads) if((size_t)N * C >= CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        float* yn = y + (size_t)n * C;
        for (int c = 0; c < C; c++) yn[c] += b[c];
    }
}

static void cpu_bias_bwd(Backend* be, float* db, const float* dy, int N, int C) {
#pragma omp parallel num_threads(be->threads) if((size_t)N * C >= CPU_PAR_MIN)
    {
        size_t c0, c1;
        thread_slice((size_t)C, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        for (int n = 0; n < N; n++) {
            const float* dyn = dy + (size_t)n * C;
            for (size_t c = c0; c < c1; c++) db[c] += dyn[c];
        }
    }
}

// the trainer's fixed-point sums and block norms: host arrays are this backend's buffers
static int cpu_fp_accumulate(Backend* be, int64_t* acc, const float* g, size_t n, int k, double limit,
                             double* max_abs) {
    return fixed_accumulate(acc, g, n, k, limit, max_abs, be->threads);
}

static void cpu_fp_to_float(Backend* be, float* g, const int64_t* acc, size_t n, int k) {
    fixed_to_float(g, acc, n, k, be->threads);
}

static void cpu_sum_squares_blocks(Backend* be, double* sums, const float* x, size_t n, size_t block) {
    fixed_block_sums(sums, x, n, block, be->threads);
}

static double cpu_sum_squares(Backend* be, const float* x, size_t n) {
    double partial[CPU_MAX_THREADS] = {0};
    int nt_used = 1;
#pragma omp parallel num_threads(be->threads) if(n >= CPU_PAR_MIN)
    {
        int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        size_t lo, hi;
        thread_slice(n, tid, nt, &lo, &hi);
        // blocks of float sums, accumulated in double: fast and accurate enough for a norm
        double s = 0.0;
        for (size_t b = lo; b < hi; b += 1024) {
            size_t e = b + 1024 < hi ? b + 1024 : hi;
            float fs = 0.0f;
            for (size_t i = b; i < e; i++) fs += x[i] * x[i];
            s += fs;
        }
        partial[tid] = s;
        if (tid == 0) nt_used = nt;
    }
    double s = 0.0;
    for (int t = 0; t < nt_used; t++) s += partial[t];
    return s;
}

static void cpu_mask_rows(Backend* be, float* x, const int* lengths, int B, int T, int C) {
    const size_t work = (size_t)B * T * C;
#pragma omp parallel for collapse(2) num_threads(be->threads) if(work >= CPU_PAR_MIN) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            if (t >= lengths[b]) memset(x + ((size_t)b * T + t) * C, 0, sizeof(float) * (size_t)C);
        }
    }
}

// ----------------------------------------------------------------------------
// RMSNorm

static void cpu_rmsnorm_fwd(Backend* be, float* y, float* rstd, const float* x, const float* w, int N, int C,
                            float eps) {
#pragma omp parallel for num_threads(be->threads) if((size_t)N * C >= CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        const float* xn = x + (size_t)n * C;
        float* yn = y + (size_t)n * C;
        float ss = 0.0f;
        for (int c = 0; c < C; c++) ss += xn[c] * xn[c];
        float r = 1.0f / sqrtf(ss / (float)C + eps);
        for (int c = 0; c < C; c++) yn[c] = xn[c] * r * w[c];
        rstd[n] = r;
    }
}

static void cpu_add_rmsnorm_fwd(Backend* be, float* y, float* rstd, float* res, const float* x, const float* w, int N,
                                int C, float eps) {
    cpu_add(be, res, x, (size_t)N * C);
    cpu_rmsnorm_fwd(be, y, rstd, res, w, N, C, eps);
}

static void cpu_rmsnorm_bwd(Backend* be, float* dx, float* dw, const float* dy, const float* x, const float* w,
                            const float* rstd, int N, int C) {
#pragma omp parallel num_threads(be->threads) if((size_t)N * C >= CPU_PAR_MIN)
    {
        // dx: rows in parallel
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float* xn = x + (size_t)n * C;
            const float* dyn = dy + (size_t)n * C;
            float* dxn = dx + (size_t)n * C;
            float r = rstd[n];
            float dot = 0.0f;
            for (int c = 0; c < C; c++) dot += dyn[c] * w[c] * xn[c];
            float k = r * r * r * dot / (float)C;
            for (int c = 0; c < C; c++) dxn[c] += r * w[c] * dyn[c] - k * xn[c];
        }
        // dw: columns in parallel, rows summed in order by one thread
        size_t c0, c1;
        thread_slice((size_t)C, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        for (int n = 0; n < N; n++) {
            const float* xn = x + (size_t)n * C;
            const float* dyn = dy + (size_t)n * C;
            float r = rstd[n];
            for (size_t c = c0; c < c1; c++) dw[c] += dyn[c] * xn[c] * r;
        }
    }
}

// ----------------------------------------------------------------------------
// RoPE (HF rotate_half: element i pairs with i + hd/2)

static void cpu_rope(Backend* be, float* x, const int* pos, const float* cos_t, const float* sin_t, int N, int nh,
                     int hd, float sign) {
    const int half = hd / 2;
#pragma omp parallel for num_threads(be->threads) if((size_t)N * nh * hd >= CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        const float* cs = cos_t + (size_t)pos[n] * half;
        const float* sn = sin_t + (size_t)pos[n] * half;
        for (int h = 0; h < nh; h++) {
            float* xh = x + ((size_t)n * nh + h) * hd;
            for (int i = 0; i < half; i++) {
                float x1 = xh[i], x2 = xh[i + half], c = cs[i], s = sign * sn[i];
                xh[i] = x1 * c - x2 * s;
                xh[i + half] = x2 * c + x1 * s;
            }
        }
    }
}

static void cpu_rope_fwd(Backend* be, float* x, const int* pos, const float* cos_t, const float* sin_t, int N, int nh,
                         int hd) {
    cpu_rope(be, x, pos, cos_t, sin_t, N, nh, hd, 1.0f);
}

static void cpu_rope_bwd(Backend* be, float* dx, const int* pos, const float* cos_t, const float* sin_t, int N, int nh,
                         int hd) {
    // the rotation is orthogonal: its transpose is the rotation by -angle
    cpu_rope(be, dx, pos, cos_t, sin_t, N, nh, hd, -1.0f);
}

// ----------------------------------------------------------------------------
// SwiGLU and embedding

CPU_CLONES static void swiglu_fwd_span(float* h, const float* gate, const float* up, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        h[i] = g * cpu_sigmoidf(g) * up[i];
    }
}

CPU_CLONES static void swiglu_bwd_span(float* dgate, float* dup, const float* dh, const float* gate, const float* up,
                                       size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        float sg = cpu_sigmoidf(g);
        dgate[i] = dh[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
        dup[i] = dh[i] * g * sg;
    }
}

static void cpu_swiglu_fwd(Backend* be, float* h, const float* gate, const float* up, size_t n) {
#pragma omp parallel num_threads(be->threads) if(n >= CPU_PAR_MIN)
    {
        size_t lo, hi;
        thread_slice(n, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        swiglu_fwd_span(h + lo, gate + lo, up + lo, hi - lo);
    }
}

static void cpu_swiglu_bwd(Backend* be, float* dgate, float* dup, const float* dh, const float* gate, const float* up,
                           size_t n) {
#pragma omp parallel num_threads(be->threads) if(n >= CPU_PAR_MIN)
    {
        size_t lo, hi;
        thread_slice(n, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        swiglu_bwd_span(dgate + lo, dup + lo, dh + lo, gate + lo, up + lo, hi - lo);
    }
}

static void cpu_embedding_fwd(Backend* be, float* y, const int* tokens, const float* table, int N, int D) {
#pragma omp parallel for num_threads(be->threads) if((size_t)N * D >= CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) memcpy(y + (size_t)n * D, table + (size_t)tokens[n] * D, sizeof(float) * (size_t)D);
}

static void cpu_embedding_bwd(Backend* be, float* dtable, const float* dy, const int* tokens, int N, int D, int V) {
    (void)V;
    // columns in parallel: repeated tokens add up in row order, without atomics
#pragma omp parallel num_threads(be->threads) if((size_t)N * D >= CPU_PAR_MIN)
    {
        size_t c0, c1;
        thread_slice((size_t)D, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        for (int n = 0; n < N; n++) {
            float* dt = dtable + (size_t)tokens[n] * D;
            const float* dyn = dy + (size_t)n * D;
            for (size_t c = c0; c < c1; c++) dt[c] += dyn[c];
        }
    }
}

// ----------------------------------------------------------------------------
// vocabulary-wide blocks: rows in parallel, weighted sums combined in thread order

static void cpu_softmax(Backend* be, float* y, const float* z, int N, int V) {
#pragma omp parallel for num_threads(be->threads) if((size_t)N * V >= CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        const float* zn = z + (size_t)n * V;
        float lse = (float)loss_row_logsumexp(zn, V);
        for (int v = 0; v < V; v++) y[(size_t)n * V + v] = expf(zn[v] - lse);
    }
}

static void cpu_log_softmax(Backend* be, float* y, const float* z, int N, int V) {
#pragma omp parallel for num_threads(be->threads) if((size_t)N * V >= CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        const float* zn = z + (size_t)n * V;
        double lse = loss_row_logsumexp(zn, V);
        for (int v = 0; v < V; v++) y[(size_t)n * V + v] = (float)(zn[v] - lse);
    }
}

typedef enum { ROW_CE, ROW_KL_FULL, ROW_KL_TOPK, ROW_KL_SAMPLED } RowLoss;

typedef struct {
    RowLoss kind;
    const float* z;
    const int* ids;
    const float* lp;
    const float* aux; // top-k: tail mass (N); sampled: old log-probs (N) or NULL
    const float* w;
    int V, K, reverse;
    float* losses;
    float* dz;
    LossDzMode mode;
} RowLossArgs;

static double cpu_row_losses(Backend* be, const RowLossArgs* a, int N) {
    double partial[CPU_MAX_THREADS] = {0};
    int nt_used = 1;
#pragma omp parallel num_threads(be->threads) if((size_t)N * a->V >= CPU_PAR_MIN)
    {
        int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        size_t lo, hi;
        thread_slice((size_t)N, tid, nt, &lo, &hi);
        double s = 0.0;
        for (size_t n = lo; n < hi; n++) {
            const float* zn = a->z + n * a->V;
            float* dzn = a->dz ? a->dz + n * a->V : NULL;
            if (dzn && a->mode == LOSS_DZ_SET) memset(dzn, 0, sizeof(float) * (size_t)a->V);
            float w = a->w[n], l = 0.0f;
            int skip = w == 0.0f || (a->kind == ROW_CE && a->ids[n] < 0);
            if (!skip) {
                switch (a->kind) {
                case ROW_CE: l = loss_row_cross_entropy(zn, a->V, a->ids[n], w, dzn); break;
                case ROW_KL_FULL: l = loss_row_kl_full(zn, a->lp + n * a->V, a->V, a->reverse, w, dzn); break;
                case ROW_KL_TOPK:
                    l = loss_row_kl_topk(zn, a->V, a->ids + n * a->K, a->lp + n * a->K, a->aux[n], a->K, a->reverse,
                                         w, dzn);
                    break;
                case ROW_KL_SAMPLED:
                    l = loss_row_kl_sampled(zn, a->V, a->ids[n], a->lp[n], a->aux ? a->aux + n : NULL, w, dzn);
                    break;
                }
                s += (double)w * l;
            }
            if (a->losses) a->losses[n] = l;
        }
        partial[tid] = s;
        if (tid == 0) nt_used = nt;
    }
    double s = 0.0;
    for (int t = 0; t < nt_used; t++) s += partial[t];
    return s;
}

static double cpu_cross_entropy(Backend* be, const float* z, const int* targets, const float* w, int N, int V,
                                float* losses, float* dz, LossDzMode mode) {
    RowLossArgs a = {.kind = ROW_CE, .z = z, .ids = targets, .w = w, .V = V, .losses = losses, .dz = dz, .mode = mode};
    return cpu_row_losses(be, &a, N);
}

static double cpu_kl_full(Backend* be, const float* z, const float* teacher_lp, const float* w, int N, int V,
                          int reverse, float* losses, float* dz, LossDzMode mode) {
    RowLossArgs a = {.kind = ROW_KL_FULL, .z = z, .lp = teacher_lp, .w = w, .V = V, .reverse = reverse,
                     .losses = losses, .dz = dz, .mode = mode};
    return cpu_row_losses(be, &a, N);
}

static double cpu_kl_topk(Backend* be, const float* z, const int* ids, const float* teacher_lp,
                          const float* teacher_tail, const float* w, int N, int V, int K, int reverse, float* losses,
                          float* dz, LossDzMode mode) {
    RowLossArgs a = {.kind = ROW_KL_TOPK, .z = z, .ids = ids, .lp = teacher_lp, .aux = teacher_tail, .w = w,
                     .V = V, .K = K, .reverse = reverse, .losses = losses, .dz = dz, .mode = mode};
    return cpu_row_losses(be, &a, N);
}

static double cpu_kl_sampled(Backend* be, const float* z, const int* ids, const float* teacher_lp, const float* old_lp,
                             const float* w, int N, int V, float* losses, float* dz, LossDzMode mode) {
    RowLossArgs a = {.kind = ROW_KL_SAMPLED, .z = z, .ids = ids, .lp = teacher_lp, .aux = old_lp, .w = w, .V = V,
                     .losses = losses, .dz = dz, .mode = mode};
    return cpu_row_losses(be, &a, N);
}

// ----------------------------------------------------------------------------
// the distillation objective's rows: in parallel, each into its own slot; sums in row order

static void cpu_entropy(Backend* be, const float* z, const float* w, int N, int V, double* entropy, int* argmax) {
#pragma omp parallel for num_threads(be->threads) schedule(dynamic) if((size_t)N * V >= CPU_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float* zn = z + (size_t)n * V;
        if (w[n] == 0.0f) {
            argmax[n] = -1;
            if (entropy) entropy[n] = 0.0;
        } else if (entropy) {
            entropy[n] = loss_row_entropy(zn, V, &argmax[n]);
        } else {
            argmax[n] = loss_row_argmax(zn, V);
        }
    }
}

static double sum_in_order(double* rows, int N) {
    double s = 0.0;
    for (int n = 0; n < N; n++) s += rows[n];
    free(rows);
    return s;
}

static double cpu_jsd_topk(Backend* be, const float* z, const int* ids, const float* lp, const float* tail,
                           const float* w, int N, int V, int K, double beta, float* lp_s, float* tail_s) {
    double* rows = mallocCheck(sizeof(double) * (size_t)(N > 0 ? N : 1));
#pragma omp parallel for num_threads(be->threads) schedule(dynamic) if((size_t)N * V >= CPU_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const size_t at = (size_t)n * K;
        rows[n] = w[n] == 0.0f ? 0.0
                               : (double)w[n] * loss_row_jsd_topk(z + (size_t)n * V, V, ids + at, lp + at, tail[n], K,
                                                                  beta, lp_s + at, tail_s + n);
    }
    return sum_in_order(rows, N);
}

static double cpu_jsd_full(Backend* be, const float* z, const float* lp, const float* w, int N, int V, double beta,
                           float* lp_s) {
    double* rows = mallocCheck(sizeof(double) * (size_t)(N > 0 ? N : 1));
#pragma omp parallel for num_threads(be->threads) schedule(dynamic) if((size_t)N * V >= CPU_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const size_t at = (size_t)n * V;
        rows[n] = w[n] == 0.0f ? 0.0 : (double)w[n] * loss_row_jsd_full(z + at, lp + at, V, beta, lp_s + at);
    }
    return sum_in_order(rows, N);
}

static void cpu_sampled_lp(Backend* be, float* lp_y, const float* z, const int* y, const int* ids, const float* lp,
                           const float* tail, const float* w, int N, int V, int K) {
#pragma omp parallel for num_threads(be->threads) schedule(dynamic) if((size_t)N * V >= CPU_PAR_MIN)
    for (int n = 0; n < N; n++) {
        if (w[n] == 0.0f || !isnan(lp_y[n])) continue;
        const size_t at = (size_t)n * K;
        lp_y[n] = loss_row_sampled_lp(z + (size_t)n * V, V, y[n], ids + at, lp + at, tail[n], K);
    }
}

static void cpu_pick(Backend* be, float* out, const float* x, const int* idx, int N, int V) {
    (void)be;
    for (int n = 0; n < N; n++) {
        if (idx[n] >= 0 && idx[n] < V) out[n] = x[(size_t)n * V + idx[n]];
    }
}

// the draws of decoding or, with u NULL, the scoring of given ids (sample.h), rows in parallel: each
// row's result depends on its own data
static void cpu_sample_rows(Backend* be, const float* z, int N, int V, float temperature, const double* u, int K,
                            int* ids, float* lp, int* topk_ids, float* topk_lp, float* tail) {
#pragma omp parallel for num_threads(be->threads) if(N > 1) schedule(static)
    for (int n = 0; n < N; n++) {
        const float* zn = z + (size_t)n * V;
        if (u) ids[n] = sample_row_id(zn, V, temperature, 1.0f, 0, u[n]);
        else if (ids[n] < 0 || ids[n] >= V) fatal("sample_rows: id %d outside the vocabulary [0, %d)", ids[n], V);
        sample_row_record(zn, V, loss_row_logsumexp(zn, V), ids[n], K, lp + n, K ? topk_ids + (size_t)n * K : NULL,
                          K ? topk_lp + (size_t)n * K : NULL, K ? tail + n : NULL);
    }
}

// ----------------------------------------------------------------------------
// AdamW

static void cpu_adamw(Backend* be, float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1,
                      float beta2, float eps, float weight_decay, float grad_scale, long t) {
    const float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
    const float step = lr / bc1, sqrt_bc2 = sqrtf(bc2), decay = 1.0f - lr * weight_decay;
#pragma omp parallel for simd num_threads(be->threads) if(n >= CPU_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step * mi / (sqrtf(vi) / sqrt_bc2 + eps);
    }
}

// ----------------------------------------------------------------------------
// OpenBLAS kernel choice

const char* backend_cpu_blas_core(void) { return openblas_get_corename(); }

// OpenBLAS's AVX-512 kernel families: Cooperlake and Sapphire Rapids reuse SkylakeX's sgemm,
// small-matrix paths included
static int blas_core_is_avx512(const char* core) {
    static const char* const avx512_cores[] = {"skylakex", "cooperlake", "sapphirerapids"};
    for (size_t i = 0; i < sizeof avx512_cores / sizeof avx512_cores[0]; i++) {
        if (strcasecmp(core, avx512_cores[i]) == 0) return 1;
    }
    return 0;
}

const char* backend_cpu_blas_better_core(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq")) {
        return NULL;
    }
    return blas_core_is_avx512(openblas_get_corename()) ? NULL : "SkylakeX";
#else
    return NULL;
#endif
}

// ----------------------------------------------------------------------------
// construction

static void cpu_destroy(Backend* be) { free(be); }

Backend* backend_cpu_create(int threads) {
    if (threads <= 0) threads = omp_get_max_threads();
    if (threads > CPU_MAX_THREADS) threads = CPU_MAX_THREADS;
    omp_set_num_threads(threads);
    // sgemm runs inside the OpenMP team, one single-threaded call per thread (see cpu_matmul)
    openblas_set_num_threads(1);
    // the small-product limits (see cpu_matmul): the same for every backend of the process
    const int blas_avx512 = blas_core_is_avx512(openblas_get_corename());
#if defined(CPU_AVX512_KERNELS)
    cpu_dot_rows = cpu_has_avx512() ? (blas_avx512 ? 32 : 256) : cpu_has_avx2() ? 24 : 0;
    cpu_dot_min_rows = cpu_has_avx512() ? 0 : 5;
    cpu_tiles = cpu_has_avx512() && !blas_avx512;
#endif
    cpu_gemv_rows = blas_avx512 ? 0 : 4;
    static int warned = 0;
    const char* better = backend_cpu_blas_better_core();
    if (better && !warned) {
        warned = 1;
        const char* forced = getenv("OPENBLAS_CORETYPE");
        if (forced) {
            log_warn("OPENBLAS_CORETYPE=%s in the environment holds OpenBLAS to its %s kernels on this AVX-512 "
                     "CPU; ingrain runs most products on its own AVX-512 kernels, but the rest (a large transposed B "
                     "such as an LM head over a big vocabulary) run about 2x faster with it unset or set to %s",
                     forced, openblas_get_corename(), better);
        } else {
            log_warn("OpenBLAS picked its %s kernels on this AVX-512 CPU (a release older than the CPU model); "
                     "ingrain runs most products on its own AVX-512 kernels, but the rest run about 2x faster with "
                     "OPENBLAS_CORETYPE=%s exported before starting ingrain",
                     openblas_get_corename(), better);
        }
    }
    Backend* be = callocCheck(1, sizeof(Backend));
    *be = (Backend){
        .name = "cpu",
        .threads = threads,
        .destroy = cpu_destroy,
        .alloc = cpu_alloc,
        .alloc_act = cpu_alloc_act,
        .free = cpu_free,
        .upload = cpu_memcpy,
        .download = cpu_memcpy,
        .memset0 = cpu_memset0,
        .copy = cpu_memcpy,
        .scatter_rows = cpu_scatter_rows,
        .synchronize = cpu_synchronize,
        .matmul = cpu_matmul,
        .linear_bwd = cpu_linear_bwd,
        .add = cpu_add,
        .scale = cpu_scale,
        .add_bias = cpu_add_bias,
        .bias_bwd = cpu_bias_bwd,
        .sum_squares = cpu_sum_squares,
        .mask_rows = cpu_mask_rows,
        .rmsnorm_fwd = cpu_rmsnorm_fwd,
        .add_rmsnorm_fwd = cpu_add_rmsnorm_fwd,
        .rmsnorm_bwd = cpu_rmsnorm_bwd,
        .rope_fwd = cpu_rope_fwd,
        .rope_bwd = cpu_rope_bwd,
        .attention_fwd = cpu_attention_fwd,
        .attention_bwd = cpu_attention_bwd,
        .attention_work_bytes = cpu_attention_work_bytes,
        .swiglu_fwd = cpu_swiglu_fwd,
        .swiglu_bwd = cpu_swiglu_bwd,
        .embedding_fwd = cpu_embedding_fwd,
        .embedding_bwd = cpu_embedding_bwd,
        .softmax = cpu_softmax,
        .log_softmax = cpu_log_softmax,
        .cross_entropy = cpu_cross_entropy,
        .kl_full = cpu_kl_full,
        .kl_topk = cpu_kl_topk,
        .kl_sampled = cpu_kl_sampled,
        .entropy = cpu_entropy,
        .jsd_topk = cpu_jsd_topk,
        .jsd_full = cpu_jsd_full,
        .sampled_lp = cpu_sampled_lp,
        .pick = cpu_pick,
        .sample_rows = cpu_sample_rows,
        .adamw = cpu_adamw,
        .fp_accumulate = cpu_fp_accumulate,
        .fp_to_float = cpu_fp_to_float,
        .sum_squares_blocks = cpu_sum_squares_blocks,
    };
    return be;
}

void backend_destroy(Backend* be) {
    if (be) be->destroy(be);
}
