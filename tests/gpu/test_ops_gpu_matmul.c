// test_ops_gpu (see test_ops_gpu.c for the tolerances and the harness): matmul in every
// transpose, with leading dimensions past the width and operands at odd offsets inside wider
// rows, the LM head's shapes, and the bf16 mode's kept operand copies, reused, renewed and
// written by the ops that compute their sources (AdamW, the RMSNorm backward).
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gpu_compare.h"
#include "model/ops.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

// ----------------------------------------------------------------------------
// matmul: C = 0.5 op(A) op(B) + beta C, lda/ldb/ldc past the width (the padding of C must stay).
// A and B may sit `off` columns into wider rows (a window of a larger buffer, at an odd element
// offset); on the GPU runs everything outside their windows is NaN, so a GPU that reads past a
// row (bf16 mode converts the operands itself, respecting lda/ldb) poisons C.

typedef struct {
    int ta, tb, M, N, K;
    float beta;
    int off; // columns before each operand's window in its rows
} MatmulArgs;

// a (rows, width) operand at column `off` of rows of stride ld; NaN outside it on the GPU runs
static const float* matmul_operand(GpuCtx* c, int rows, int width, int ld, int off) {
    const size_t n = (size_t)rows * ld;
    float* h = host_randn(c, n, 1.0);
    for (int r = 0; r < rows && !c->is_ref; r++) {
        float* row = h + (size_t)r * ld;
        for (int j = 0; j < off; j++) row[j] = NAN;
        for (int j = off + width; j < ld; j++) row[j] = NAN;
    }
    const float* d = gpu_upload(c, h, n * sizeof(float));
    free(h);
    return d + off;
}

static void case_matmul(GpuCtx* c, const void* arg) {
    const MatmulArgs* a = arg;
    const int wa = a->ta ? a->M : a->K, wb = a->tb ? a->K : a->N;
    const int lda = a->off + wa + 3, ldb = a->off + wb + 5, ldc = a->N + 2;
    const float* A = matmul_operand(c, a->ta ? a->K : a->M, wa, lda, a->off);
    const float* B = matmul_operand(c, a->tb ? a->N : a->K, wb, ldb, a->off);
    const size_t nc = (size_t)a->M * ldc;
    float* hc = host_randn(c, nc, 1.0);
    // beta 0 reads no C (BLAS semantics): NaN there must not reach the GPU's result
    if (a->beta == 0.0f && !c->is_ref) {
        for (int i = 0; i < a->M; i++) {
            for (int j = 0; j < a->N; j++) hc[(size_t)i * ldc + j] = NAN;
        }
    }
    float* C = gpu_upload(c, hc, nc * sizeof(float));
    free(hc);
    c->be->matmul(c->be, a->ta, a->tb, a->M, a->N, a->K, 0.5f, A, lda, B, ldb, a->beta, C, ldc);
    gpu_out(c, "C", C, nc, 0);
}

// outputs C0, C1, ... of n products' results of `size` elements each
static void out_products(GpuCtx* c, float* const* C, int n, size_t size) {
    for (int i = 0; i < n; i++) {
        char name[8];
        snprintf(name, sizeof name, "C%d", i);
        gpu_out(c, name, C[i], size, 0);
    }
}

// The bf16 mode keeps its operand copies for the next products: a source rewritten since (by an op,
// by a product into it, even into a few of its rows, or freed and allocated again) must be
// copied again. No download comes between the products, since a download would forget the copies.
static void case_matmul_reuse(GpuCtx* c, const void* arg) {
    (void)arg;
    Backend* be = c->be;
    enum { M = 256, N = 192, K = 160, K2 = 144 };
    float* A = gpu_randn(c, (size_t)M * K, 1.0);
    float* B = gpu_randn(c, (size_t)N * K, 1.0);
    float* B2 = gpu_randn(c, (size_t)N * K, 1.0);
    float* X = gpu_randn(c, (size_t)M * K2, 1.0);
    float* Y = gpu_randn(c, (size_t)K2 * K, 1.0);
    float* P0 = gpu_randn(c, (size_t)M * K, 1.0);
    float* C[7];
    for (int i = 0; i < 7; i++) C[i] = gpu_junk(c, (size_t)M * N);
    be->matmul(be, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C[0], N);
    be->matmul(be, 0, 1, M, N, K, 1.0f, A, K, B2, K, 0.0f, C[1], N);
    be->scale(be, A, -2.0f, (size_t)M * K);
    be->matmul(be, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C[2], N);
    be->matmul(be, 0, 0, M, K, K2, 1.0f, X, K2, Y, K, 0.0f, A, K);
    be->matmul(be, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C[3], N);
    be->matmul(be, 0, 0, 10, K, K2, 1.0f, X, K2, Y, K, 1.0f, A + 100 * K, K);
    be->matmul(be, 0, 1, M, N, K, 1.0f, A, K, B2, K, 0.0f, C[4], N);
    float* P = be->alloc(be, (size_t)M * K * sizeof(float));
    be->copy(be, P, P0, (size_t)M * K * sizeof(float));
    be->matmul(be, 0, 1, M, N, K, 1.0f, P, K, B, K, 0.0f, C[5], N);
    be->free(be, P);
    P = be->alloc(be, (size_t)M * K * sizeof(float)); // zeros, most likely at the freed address
    be->matmul(be, 0, 1, M, N, K, 1.0f, P, K, B, K, 0.0f, C[6], N);
    be->free(be, P);
    out_products(c, C, 7, (size_t)M * N);
}

// copies kept across other ops: one writing another allocation keeps A's, AdamW on A or an
// upload into a few of its rows forgets it (the emulated build checks every reuse bit for bit)
static void case_matmul_kept(GpuCtx* c, const void* arg) {
    (void)arg;
    Backend* be = c->be;
    enum { M = 256, N = 192, K = 160 };
    float* A = gpu_randn(c, (size_t)M * K, 1.0);
    float* B = gpu_randn(c, (size_t)N * K, 1.0);
    float* X = gpu_randn(c, (size_t)M * K, 1.0);
    float* g = gpu_randn(c, (size_t)M * K, 1.0);
    float* m = gpu_zeros(c, (size_t)M * K);
    float* v = gpu_zeros(c, (size_t)M * K);
    float* C[4];
    for (int i = 0; i < 4; i++) C[i] = gpu_junk(c, (size_t)M * N);
    be->matmul(be, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C[0], N);
    float* Y = gpu_junk(c, (size_t)M * K);
    float* rstd = gpu_junk(c, M);
    be->scale(be, X, 0.5f, (size_t)M * K);
    be->rmsnorm_fwd(be, Y, rstd, X, B, M, K, 1e-5f);
    be->matmul(be, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C[1], N);
    be->adamw(be, A, g, m, v, (size_t)M * K, 0.1f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 1);
    be->matmul(be, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C[2], N);
    float* rows = host_randn(c, (size_t)3 * K, 1.0);
    be->upload(be, A + 10 * K, rows, (size_t)3 * K * sizeof(float));
    free(rows);
    be->matmul(be, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C[3], N);
    out_products(c, C, 4, (size_t)M * N);
}

// Copies that the op writing their source renews itself: AdamW over a parameter buffer writes the
// new bf16 rounding into the kept copies of the packed weight blocks inside its range (at a
// 4-aligned and at an odd offset: both kernels), forgets a strided window's copy and, updating a
// range that cuts through a block, that block's.
static void case_matmul_adamw(GpuCtx* c, const void* arg) {
    (void)arg;
    Backend* be = c->be;
    enum { M = 128, N = 192, K = 160, NP = 3 * N * K + 64 };
    float* P = gpu_randn(c, NP, 1.0);
    float* g = gpu_randn(c, NP, 1.0);
    float* m = gpu_zeros(c, NP);
    float* v = gpu_zeros(c, NP);
    float* X = gpu_randn(c, (size_t)M * K, 1.0);
    const float* W[3] = {P, P + N * K + 7, P + 2 * N * K + 9}; // packed, packed at an odd offset, a window
    const int width[3] = {K, K, K - 30};                        // the window: K - 30 columns of rows of K
    float* C[7];
    for (int i = 0; i < 7; i++) C[i] = gpu_junk(c, (size_t)M * N);
    for (int i = 0; i < 3; i++) be->matmul(be, 0, 1, M, N, width[i], 1.0f, X, K, W[i], K, 0.0f, C[i], N);
    be->adamw(be, P, g, m, v, NP, 0.1f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 1);
    for (int i = 0; i < 3; i++) be->matmul(be, 0, 1, M, N, width[i], 1.0f, X, K, W[i], K, 0.0f, C[3 + i], N);
    const size_t cut = (size_t)N * K / 2; // through W[0]
    be->adamw(be, P, g, m, v, cut, 0.1f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 2);
    be->adamw(be, P + cut, g + cut, m + cut, v + cut, NP - cut, 0.1f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 2);
    be->matmul(be, 0, 1, M, N, K, 1.0f, X, K, W[0], K, 0.0f, C[6], N);
    gpu_out(c, "params", P, NP, 0);
    out_products(c, C, 7, (size_t)M * N);
}

// AdamW over a range that holds more kept copies than one launch's pieces take (ops_cuda.cu):
// 60 blocks with gaps between them, each the operand of a product before and after the update
static void case_matmul_adamw_many(GpuCtx* c, const void* arg) {
    (void)arg;
    Backend* be = c->be;
    enum { M = 128, N = 128, K = 16, BLOCKS = 60, STRIDE = N * K + 4, NP = BLOCKS * STRIDE };
    float* P = gpu_randn(c, NP, 1.0);
    float* g = gpu_randn(c, NP, 1.0);
    float* m = gpu_zeros(c, NP);
    float* v = gpu_zeros(c, NP);
    float* X = gpu_randn(c, (size_t)M * K, 1.0);
    float* C[2] = {gpu_zeros(c, (size_t)M * N), gpu_zeros(c, (size_t)M * N)};
    for (int round = 0; round < 2; round++) {
        for (int b = 0; b < BLOCKS; b++) {
            be->matmul(be, 0, 1, M, N, K, 1.0f, X, K, P + (size_t)b * STRIDE, K, 1.0f, C[round], N);
        }
        if (!round) be->adamw(be, P, g, m, v, NP, 0.1f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 1);
    }
    gpu_out(c, "params", P, NP, 0);
    gpu_out(c, "sum before", C[0], (size_t)M * N, 0);
    gpu_out(c, "sum after", C[1], (size_t)M * N, 0);
}

// The norm's backward writes the copy of an fp32 dx beside dx (the model's residual gradient) in
// each of its kernels (one pass for up to 1,024 columns, two passes 4 wide, two passes one element
// at a time); two products read it after.
static void case_matmul_norm_bwd(GpuCtx* c, const void* arg) {
    (void)arg;
    Backend* be = c->be;
    enum { M = 128, N = 192, K = 160, DMAX = 1101 };
    float* dx = gpu_randn(c, (size_t)M * DMAX, 1.0);
    float* dy = gpu_randn(c, (size_t)M * DMAX, 1.0);
    float* x = gpu_randn(c, (size_t)M * DMAX, 1.0);
    float* w = gpu_randn(c, DMAX, 1.0);
    float* y = gpu_junk(c, (size_t)M * DMAX);
    float* rstd = gpu_junk(c, M);
    float* dw = gpu_zeros(c, DMAX);
    float* B = gpu_randn(c, (size_t)DMAX * N, 1.0);
    float* X = gpu_randn(c, (size_t)M * K, 1.0);
    float* C = gpu_junk(c, (size_t)M * N);
    float* G = gpu_junk(c, (size_t)DMAX * K);
    const int cols[3] = {N, 1100, DMAX};
    for (int i = 0; i < 3; i++) {
        const int D = cols[i];
        be->rmsnorm_fwd(be, y, rstd, x, w, M, D, 1e-5f);
        be->rmsnorm_bwd(be, dx, dw, dy, x, w, rstd, M, D);
        be->matmul(be, 0, 0, M, N, D, 1.0f, dx, D, B, N, 0.0f, C, N);
        be->matmul(be, 1, 0, D, K, M, 1.0f, dx, D, X, K, 0.0f, G, K);
        char name[24];
        snprintf(name, sizeof name, "dx B, D=%d", D);
        gpu_out(c, name, C, (size_t)M * N, 0);
        snprintf(name, sizeof name, "dx^T X, D=%d", D);
        gpu_out(c, name, G, (size_t)D * K, 0);
    }
}

void test_matmul(void** state) {
    (void)state;
    // odd sizes, a decoding row, the model's projection and LM-head shapes (V = 50304)
    const int shapes[][3] = {{3, 5, 7}, {203, 61, 129}, {37, 301, 97}, {1, 300, 128}, {4, 77, 48}, {256, 1024, 384}};
    const float betas[] = {0.7f, 0.0f, 1.0f};
    char label[96];
    for (int ta = 0; ta <= 1; ta++) {
        for (int tb = 0; tb <= 1; tb++) {
            for (size_t s = 0; s < ARRAY_LEN(shapes); s++) {
                const MatmulArgs a = {ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], betas[s % 3], 0};
                snprintf(label, sizeof label, "matmul ta=%d tb=%d %dx%dx%d beta=%g", ta, tb, a.M, a.N, a.K, a.beta);
                gpu_check(label, case_matmul, &a, 100 + s, TOL_MATMUL);
            }
            // operands as windows 5 columns into wider rows (misaligned for vector loads)
            const MatmulArgs w = {ta, tb, 67, 130, 96, 1.0f, 5};
            snprintf(label, sizeof label, "matmul window ta=%d tb=%d %dx%dx%d off=%d", ta, tb, w.M, w.N, w.K, w.off);
            gpu_check(label, case_matmul, &w, 300 + 2 * ta + tb, TOL_MATMUL);
        }
    }
    // the LM head forward (x W^T), its input gradient (dz W) and weight gradient (dz^T x)
    const MatmulArgs head[] = {
        {0, 1, 64, 50304, 384, 0.0f, 0}, {0, 0, 64, 384, 50304, 0.0f, 0}, {1, 0, 50304, 384, 64, 1.0f, 0}};
    for (size_t i = 0; i < ARRAY_LEN(head); i++) {
        snprintf(label, sizeof label, "matmul LM head ta=%d tb=%d %dx%dx%d", head[i].ta, head[i].tb, head[i].M,
                 head[i].N, head[i].K);
        gpu_check(label, case_matmul, &head[i], 200 + i, TOL_MATMUL);
    }
    gpu_check("matmul operand copies kept and renewed", case_matmul_reuse, NULL, 400, TOL_MATMUL);
    gpu_check("matmul operand copies kept across other ops", case_matmul_kept, NULL, 401, TOL_MATMUL);
    gpu_check("matmul operand copies renewed by AdamW", case_matmul_adamw, NULL, 402, TOL_MATMUL);
    gpu_check("matmul operand copies renewed by AdamW, 60 blocks", case_matmul_adamw_many, NULL, 404, TOL_MATMUL);
    gpu_check("matmul operand copies written by rmsnorm_bwd", case_matmul_norm_bwd, NULL, 403, TOL_MATMUL);
    gpu_done();
}
