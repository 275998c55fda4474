// The CPU attention's training shapes (blocks of ATTN_BQ queries) against a float64 reference,
// forward and backward, at sequence lengths beyond one block; and the register tiles those
// blocks run on (ops_cpu_tile.c, AVX-512 and AVX2) against a double loop. test_ops checks the short and the
// decoding shapes; test_model the whole model against PyTorch at short lengths.
//
// Tolerances: unit normal inputs, float sums of up to T = 150 terms; out and lse within 1e-5
// absolute, gradients within 1e-4 * max |ref| of their tensor (measured ~1e-6); tiles within
// 1e-5 * (1 + |ref|).
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "model/ops.h"
#include "model/ops_cpu_internal.h"
#include "model/rng.h"

static float* randn(Rng* r, size_t n) {
    float* x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_normal(r);
    return x;
}

// ----------------------------------------------------------------------------
// the tiles: every row count of a tile (1..12), column counts in and out of vectors and of
// panels, A plain and transposed, beta 0 (C not read: NaN there) and 1; the AVX-512 and the AVX2
// tiles where the CPU runs them, and where it runs both, the same bits from each

#if defined(CPU_AVX512_KERNELS)
typedef void TileGemm(int M, int N, int K, float alpha, const float* A, size_t ars, size_t aks, const float* B,
                      size_t ldb, float beta, float* C, size_t ldc);

// C from `gemm` against a float64 reference; returns C (M, ldc) for the caller to compare or free
static float* check_tile(TileGemm* gemm, int M, int N, int K, int transposed, float alpha, float beta) {
    Rng r;
    rng_seed(&r, (uint64_t)(M * 10000 + N * 100 + K));
    const size_t lda = transposed ? (size_t)M + 3 : (size_t)K + 5, ldb = (size_t)N + 7, ldc = (size_t)N + 2;
    float* A = randn(&r, (transposed ? (size_t)K : (size_t)M) * lda);
    float* B = randn(&r, (size_t)K * ldb);
    float* C = randn(&r, (size_t)M * ldc);
    double* ref = malloc(sizeof(double) * (size_t)M * N);
    const size_t ars = transposed ? 1 : lda, aks = transposed ? lda : 1;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++) s += (double)A[i * ars + k * aks] * B[(size_t)k * ldb + j];
            ref[(size_t)i * N + j] = alpha * s + (beta != 0.0f ? beta * (double)C[(size_t)i * ldc + j] : 0.0);
        }
        if (beta == 0.0f) {
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = NAN;
        }
        C[(size_t)i * ldc + N] = 12345.0f; // past the columns: must stay
    }
    gemm(M, N, K, alpha, A, ars, aks, B, ldb, beta, C, ldc);
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            const double d = ref[(size_t)i * N + j];
            assert_true(fabs(C[(size_t)i * ldc + j] - d) <= 1e-5 * (1.0 + fabs(d)));
        }
        assert_true(C[(size_t)i * ldc + N] == 12345.0f);
    }
    free(A), free(B), free(ref);
    return C;
}
#endif

static void test_tiles(void** state) {
    (void)state;
    if (!cpu_has_tiles()) skip();
#if defined(CPU_AVX512_KERNELS)
    const int both = cpu_has_avx512() && cpu_has_avx2();
    if (!cpu_has_avx512()) print_message("no AVX-512 on this CPU: only the AVX2 tiles are checked\n");
    const int Ns[] = {1, 7, 8, 9, 15, 16, 17, 24, 32, 48, 64, 70, 131};
    const int Ks[] = {33, 9, 300}; // 300: two chunks of K
    for (int M = 1; M <= 25; M++) {
        for (size_t n = 0; n < sizeof Ns / sizeof Ns[0]; n++) {
            for (int t = 0; t < 3; t++) {
                if (t == 2 && M % 6 != 1) continue;
                const int transposed = t == 1;
                const float alpha = t == 1 ? 1.0f : 0.7f, beta = t == 0 ? 0.0f : 1.0f;
                float* c512 = cpu_has_avx512() ? check_tile(cpu_tile_gemm_avx512, M, Ns[n], Ks[t], transposed, alpha,
                                                            beta)
                                               : NULL;
                float* c2 = cpu_has_avx2() ? check_tile(cpu_tile_gemm_avx2, M, Ns[n], Ks[t], transposed, alpha, beta)
                                           : NULL;
                if (both) assert_memory_equal(c512, c2, sizeof(float) * (size_t)M * (Ns[n] + 2));
                free(c512), free(c2);
            }
        }
    }
#endif
}

// ----------------------------------------------------------------------------
// attention, forward and backward, against float64

enum { B = 2, T = 150, H = 4, KV = 2 };

typedef struct {
    int hd;
    float *q, *k, *v, *dout;        // inputs: (B T, H hd), (B T, KV hd) x2, (B T, H hd)
    double *out, *lse, *dq, *dk, *dv; // the reference
} Case;

// the reference: row t of sequence b sees keys 0..t; rows t >= len[b] are zero and see nothing
static void reference(Case* c, const int* len) {
    const int hd = c->hd, Q = H * hd, K = KV * hd;
    const double scale = 1.0 / sqrt((double)hd);
    double* p = malloc(sizeof(double) * T);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const int g = h / (H / KV);
            for (int t = 0; t < len[b]; t++) {
                const float* qr = c->q + ((size_t)b * T + t) * Q + h * hd;
                const float* dor = c->dout + ((size_t)b * T + t) * Q + h * hd;
                double m = -INFINITY, sum = 0.0;
                for (int j = 0; j <= t; j++) {
                    double s = 0.0;
                    for (int e = 0; e < hd; e++) s += (double)qr[e] * c->k[((size_t)b * T + j) * K + g * hd + e];
                    p[j] = s * scale;
                    m = fmax(m, p[j]);
                }
                for (int j = 0; j <= t; j++) sum += exp(p[j] - m);
                c->lse[((size_t)b * H + h) * T + t] = m + log(sum);
                for (int j = 0; j <= t; j++) p[j] = exp(p[j] - m) / sum;
                double* o = c->out + ((size_t)b * T + t) * Q + h * hd;
                for (int e = 0; e < hd; e++) {
                    double s = 0.0;
                    for (int j = 0; j <= t; j++) s += p[j] * c->v[((size_t)b * T + j) * K + g * hd + e];
                    o[e] = s;
                }
                // dP_j = dO . v_j; dS_j = P_j (dP_j - dO . O)
                double D = 0.0;
                for (int e = 0; e < hd; e++) D += (double)dor[e] * o[e];
                for (int j = 0; j <= t; j++) {
                    const float* vj = c->v + ((size_t)b * T + j) * K + g * hd;
                    const float* kj = c->k + ((size_t)b * T + j) * K + g * hd;
                    double dp = 0.0;
                    for (int e = 0; e < hd; e++) dp += (double)dor[e] * vj[e];
                    const double ds = p[j] * (dp - D);
                    for (int e = 0; e < hd; e++) {
                        c->dq[((size_t)b * T + t) * Q + h * hd + e] += scale * ds * kj[e];
                        c->dk[((size_t)b * T + j) * K + g * hd + e] += scale * ds * qr[e];
                        c->dv[((size_t)b * T + j) * K + g * hd + e] += p[j] * dor[e];
                    }
                }
            }
        }
    }
    free(p);
}

static double max_abs(const double* x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

// the backend's rows against the reference's: |c - ref| <= tol (absolute)
static void assert_close(Backend* be, const float* dev, const double* ref, size_t n, double tol) {
    float* x = malloc(sizeof(float) * n);
    be->download(be, x, dev, sizeof(float) * n);
    for (size_t i = 0; i < n; i++) assert_true(fabs(x[i] - ref[i]) <= tol);
    free(x);
}

static float* upload(Backend* be, const float* x, size_t n) {
    float* p = be->alloc(be, sizeof(float) * n);
    be->upload(be, p, x, sizeof(float) * n);
    return p;
}

static void check_attention(int hd) {
    const size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * T * KV * hd, nl = (size_t)B * H * T;
    const int len[B] = {T, 97}; // one sequence past two blocks of 64, one padded
    Rng r;
    rng_seed(&r, (uint64_t)hd);
    Case c = {.hd = hd, .q = randn(&r, nq), .k = randn(&r, nk), .v = randn(&r, nk), .dout = randn(&r, nq),
              .out = calloc(nq, sizeof(double)), .lse = calloc(nl, sizeof(double)), .dq = calloc(nq, sizeof(double)),
              .dk = calloc(nk, sizeof(double)), .dv = calloc(nk, sizeof(double))};
    reference(&c, len);

    Backend* be = backend_cpu_create(2);
    float *q = upload(be, c.q, nq), *k = upload(be, c.k, nk), *v = upload(be, c.v, nk), *dout = upload(be, c.dout, nq);
    float* out = be->alloc(be, sizeof(float) * nq);
    float* lse = be->alloc(be, sizeof(float) * nl);
    float *dq = be->alloc(be, sizeof(float) * nq), *dk = be->alloc(be, sizeof(float) * nk);
    float* dv = be->alloc(be, sizeof(float) * nk);
    int* lens = be->alloc(be, sizeof len);
    be->upload(be, lens, len, sizeof len);
    void* work = be->alloc(be, be->attention_work_bytes(be, T));
    be->attention_fwd(be, out, lse, q, H * hd, k, v, KV * hd, lens, lens, B, T, T, H, KV, hd, work);
    be->attention_bwd(be, dq, dk, dv, dout, out, lse, q, H * hd, k, v, KV * hd, lens, lens, B, T, T, H, KV, hd, work);
    assert_close(be, out, c.out, nq, 1e-5);
    assert_close(be, lse, c.lse, nl, 1e-5);
    assert_close(be, dq, c.dq, nq, 1e-4 * max_abs(c.dq, nq));
    assert_close(be, dk, c.dk, nk, 1e-4 * max_abs(c.dk, nk));
    assert_close(be, dv, c.dv, nk, 1e-4 * max_abs(c.dv, nk));

    void* bufs[] = {q, k, v, dout, out, lse, dq, dk, dv, lens, work};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->free(be, bufs[i]);
    backend_destroy(be);
    free(c.q), free(c.k), free(c.v), free(c.dout), free(c.out), free(c.lse), free(c.dq), free(c.dk), free(c.dv);
}

// head sizes on the tiles where the CPU has AVX-512 (16, 32, 64) and on sgemm blocks (24, 128)
static void test_attention_blocks(void** state) {
    (void)state;
    const int hds[] = {16, 32, 64, 24, 128};
    for (size_t i = 0; i < sizeof hds / sizeof hds[0]; i++) check_attention(hds[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiles),
        cmocka_unit_test(test_attention_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
