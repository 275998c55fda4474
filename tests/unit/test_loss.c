// Loss building blocks (model/loss.h) on the CPU backend: each block's gradient against central
// finite differences of an independent double-precision forward written here, its value
// against the same forward, and the properties the trainer relies on (accumulation into dz,
// rows with weight 0 skipped, top-k with every id equal to the full KL, the sampled-token
// estimator unbiased).
//
// Tolerances: values |c - ref| <= 1e-5 * max(1, |ref|); gradients max |dz - fd| <= 2e-5 * max |fd|
// (float32 analytic gradient against float64 differences with step 1e-4).
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "model/loss.h"
#include "model/ops.h"
#include "model/rng.h"

enum { N = 5, V = 37, K = 6 };
#define FD_STEP 1e-4

// ----------------------------------------------------------------------------
// independent double-precision forwards (one row)

static double lse_d(const double* z, int n) {
    double m = z[0], s = 0.0;
    for (int i = 1; i < n; i++) m = fmax(m, z[i]);
    for (int i = 0; i < n; i++) s += exp(z[i] - m);
    return m + log(s);
}

static double f_ce(const double* z, int y) { return lse_d(z, V) - z[y]; }

static double f_kl_full(const double* z, const double* lp, int reverse) {
    double l = lse_d(z, V), kl = 0.0;
    for (int v = 0; v < V; v++) {
        double lq = z[v] - l;
        kl += reverse ? exp(lq) * (lq - lp[v]) : exp(lp[v]) * (lp[v] - lq);
    }
    return kl;
}

static double f_kl_topk(const double* z, const int* ids, const double* lp, double tail, int k, int reverse) {
    double l = lse_d(z, V), Q[V + 1], P[V + 1], Qt = 1.0, S = tail;
    int in_topk[V] = {0};
    for (int i = 0; i < k; i++) {
        Q[i] = exp(z[ids[i]] - l);
        in_topk[ids[i]] = 1;
        S += exp(lp[i]);
    }
    Qt = 0.0;
    for (int v = 0; v < V; v++) Qt += in_topk[v] ? 0.0 : exp(z[v] - l);
    for (int i = 0; i < k; i++) P[i] = exp(lp[i]) / S;
    Q[k] = Qt;
    P[k] = tail / S;
    double kl = 0.0;
    for (int b = 0; b <= k; b++) {
        if (reverse && Q[b] > 0.0) kl += Q[b] * log(Q[b] / P[b]);
        if (!reverse && P[b] > 0.0) kl += P[b] * log(P[b] / Q[b]);
    }
    return kl;
}

// ----------------------------------------------------------------------------
// fixtures

typedef struct {
    Backend* be;
    float z[N * V], lp[N * V], w[N];
    int ids[N * K], tgt[N];
    float tlp[N * K], tail[N];
    // backend buffers
    float *dz, *losses, *bz, *blp, *bw, *btlp, *btail, *bold;
    int *bids, *btgt;
} Fx;

static Fx* fx_create(uint64_t seed) {
    Fx* f = calloc(1, sizeof(Fx));
    f->be = backend_cpu_create(2);
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < N * V; i++) f->z[i] = (float)(2.0 * rng_normal(&r));
    // teacher: normalised log-probs of other random logits
    for (int n = 0; n < N; n++) {
        double t[V];
        for (int v = 0; v < V; v++) t[v] = 2.0 * rng_normal(&r);
        double l = lse_d(t, V);
        for (int v = 0; v < V; v++) f->lp[n * V + v] = (float)(t[v] - l);
        // top-k: K distinct ids, their teacher log-probs, and the tail mass, scaled by 0.9 to
        // exercise the renormalisation
        double mass = 0.0;
        for (int i = 0; i < K; i++) {
            int id;
            int dup;
            do {
                id = (int)rng_below(&r, V);
                dup = 0;
                for (int j = 0; j < i; j++) dup |= f->ids[n * K + j] == id;
            } while (dup);
            f->ids[n * K + i] = id;
            f->tlp[n * K + i] = f->lp[n * V + id];
            mass += exp(f->lp[n * V + id]);
        }
        f->tail[n] = (float)(0.9 * (1.0 - mass));
        f->tgt[n] = (int)rng_below(&r, V);
        f->w[n] = (float)(0.1 + rng_uniform(&r));
    }
    f->w[2] = 0.0f; // one masked row
    Backend* be = f->be;
    f->dz = be->alloc(be, sizeof f->z);
    f->losses = be->alloc(be, sizeof f->w);
    f->bz = be->alloc(be, sizeof f->z);
    f->blp = be->alloc(be, sizeof f->lp);
    f->bw = be->alloc(be, sizeof f->w);
    f->btlp = be->alloc(be, sizeof f->tlp);
    f->btail = be->alloc(be, sizeof f->tail);
    f->bold = be->alloc(be, sizeof f->w);
    f->bids = be->alloc(be, sizeof f->ids);
    f->btgt = be->alloc(be, sizeof f->tgt);
    be->upload(be, f->bz, f->z, sizeof f->z);
    be->upload(be, f->blp, f->lp, sizeof f->lp);
    be->upload(be, f->bw, f->w, sizeof f->w);
    be->upload(be, f->btlp, f->tlp, sizeof f->tlp);
    be->upload(be, f->btail, f->tail, sizeof f->tail);
    be->upload(be, f->bids, f->ids, sizeof f->ids);
    be->upload(be, f->btgt, f->tgt, sizeof f->tgt);
    return f;
}

static void fx_free(Fx* f) {
    Backend* be = f->be;
    void* bufs[] = {f->dz, f->losses, f->bz, f->blp, f->bw, f->btlp, f->btail, f->bold, f->bids, f->btgt};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->free(be, bufs[i]);
    backend_destroy(be);
    free(f);
}

// one row's loss as a function of its logits, in double
typedef double (*RowFn)(const Fx* f, int n, const double* z, const void* ctx);

// Compare the block's value, per-token losses and dz with the double forward and its central
// differences. dz starts at 1 everywhere (reset_dz), to check that LOSS_DZ_ADD blocks accumulate
// (skipped rows keep the 1) and LOSS_DZ_SET ones overwrite (skipped rows get 0).
static void check_block(Fx* f, double value, RowFn fn, const void* ctx, const char* what, LossDzMode mode) {
    const float base = mode == LOSS_DZ_ADD ? 1.0f : 0.0f;
    Backend* be = f->be;
    float dz[N * V], losses[N];
    be->download(be, dz, f->dz, sizeof dz);
    be->download(be, losses, f->losses, sizeof losses);
    double ref_value = 0.0, gerr = 0.0, gscale = 0.0;
    for (int n = 0; n < N; n++) {
        double z[V];
        for (int v = 0; v < V; v++) z[v] = f->z[n * V + v];
        double l = fn(f, n, z, ctx);
        if (f->w[n] == 0.0f) {
            assert_true(losses[n] == 0.0f);
            for (int v = 0; v < V; v++) assert_true(dz[n * V + v] == base);
            continue;
        }
        assert_true(fabs(losses[n] - l) <= 1e-5 * fmax(1.0, fabs(l)));
        ref_value += f->w[n] * l;
        for (int v = 0; v < V; v++) {
            double zp[V], zm[V];
            memcpy(zp, z, sizeof z);
            memcpy(zm, z, sizeof z);
            zp[v] += FD_STEP;
            zm[v] -= FD_STEP;
            double fd = f->w[n] * (fn(f, n, zp, ctx) - fn(f, n, zm, ctx)) / (2 * FD_STEP);
            gerr = fmax(gerr, fabs((dz[n * V + v] - base) - fd));
            gscale = fmax(gscale, fabs(fd));
        }
    }
    print_message("%-22s %s value %.7f (ref %.7f), grad max abs err %.2g (scale %.2g)\n", what,
                  mode == LOSS_DZ_ADD ? "add" : "set", value, ref_value, gerr, gscale);
    assert_true(fabs(value - ref_value) <= 1e-5 * fmax(1.0, fabs(ref_value)));
    assert_true(gscale > 0.0);
    assert_true(gerr <= 2e-5 * gscale);
}

static void reset_dz(Fx* f) {
    float ones[N * V];
    for (int i = 0; i < N * V; i++) ones[i] = 1.0f;
    f->be->upload(f->be, f->dz, ones, sizeof ones);
}

// ----------------------------------------------------------------------------
// blocks

static double row_ce(const Fx* f, int n, const double* z, const void* ctx) {
    (void)ctx;
    return f_ce(z, f->tgt[n]);
}

static void test_cross_entropy(void** state) {
    (void)state;
    Fx* f = fx_create(1);
    for (LossDzMode mode = LOSS_DZ_SET; mode <= LOSS_DZ_ADD; mode++) {
        reset_dz(f);
        double v = loss_cross_entropy(f->be, f->bz, f->btgt, f->bw, N, V, f->losses, f->dz, mode);
        check_block(f, v, row_ce, NULL, "cross_entropy", mode);
    }
    fx_free(f);
}

static double row_kl_full(const Fx* f, int n, const double* z, const void* ctx) {
    double lp[V];
    for (int v = 0; v < V; v++) lp[v] = f->lp[n * V + v];
    return f_kl_full(z, lp, *(const int*)ctx);
}

static void test_kl_full(void** state) {
    (void)state;
    Fx* f = fx_create(2);
    for (int reverse = 0; reverse <= 1; reverse++) {
        for (LossDzMode mode = LOSS_DZ_SET; mode <= LOSS_DZ_ADD; mode++) {
            reset_dz(f);
            double v = loss_kl_full(f->be, f->bz, f->blp, f->bw, N, V, reverse, f->losses, f->dz, mode);
            check_block(f, v, row_kl_full, &reverse, reverse ? "kl_full reverse" : "kl_full forward", mode);
        }
    }
    fx_free(f);
}

static double row_kl_topk(const Fx* f, int n, const double* z, const void* ctx) {
    double lp[K];
    for (int i = 0; i < K; i++) lp[i] = f->tlp[n * K + i];
    return f_kl_topk(z, f->ids + n * K, lp, f->tail[n], K, *(const int*)ctx);
}

static void test_kl_topk(void** state) {
    (void)state;
    Fx* f = fx_create(3);
    for (int reverse = 0; reverse <= 1; reverse++) {
        for (LossDzMode mode = LOSS_DZ_SET; mode <= LOSS_DZ_ADD; mode++) {
            reset_dz(f);
            double v = loss_kl_topk(f->be, f->bz, f->bids, f->btlp, f->btail, f->bw, N, V, K, reverse, f->losses,
                                    f->dz, mode);
            check_block(f, v, row_kl_topk, &reverse, reverse ? "kl_topk reverse" : "kl_topk forward", mode);
        }
    }
    fx_free(f);
}

// with every id in the top-k and no tail, the collapsed KL is the full KL, value and gradient
static void test_kl_topk_all_ids_is_full(void** state) {
    (void)state;
    Fx* f = fx_create(4);
    Backend* be = f->be;
    int* ids = be->alloc(be, sizeof(int) * N * V);
    float* tail = be->alloc(be, sizeof(float) * N);
    int hids[N * V];
    float hlp[N * V];
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < V; i++) {
            hids[n * V + i] = (i * 7 + n) % V; // a permutation (7 and 37 are coprime)
            hlp[n * V + i] = f->lp[n * V + hids[n * V + i]];
        }
    }
    float* lp = be->alloc(be, sizeof hlp);
    be->upload(be, ids, hids, sizeof hids);
    be->upload(be, lp, hlp, sizeof hlp);
    for (int reverse = 0; reverse <= 1; reverse++) {
        float a[N * V], b[N * V];
        double vt = loss_kl_topk(be, f->bz, ids, lp, tail, f->bw, N, V, V, reverse, NULL, f->dz, LOSS_DZ_SET);
        be->download(be, a, f->dz, sizeof a);
        double vf = loss_kl_full(be, f->bz, f->blp, f->bw, N, V, reverse, NULL, f->dz, LOSS_DZ_SET);
        be->download(be, b, f->dz, sizeof b);
        assert_true(fabs(vt - vf) <= 1e-5 * fmax(1.0, fabs(vf)));
        for (int i = 0; i < N * V; i++) assert_true(fabsf(a[i] - b[i]) <= 1e-6f);
    }
    be->free(be, ids);
    be->free(be, tail);
    be->free(be, lp);
    fx_free(f);
}

// the sampled-token surrogate c * log q(y) with c held fixed (c is detached)
typedef struct {
    const float* old_lp; // (N) or NULL
} SampledCtx;

static double row_kl_sampled(const Fx* f, int n, const double* z, const void* ctx) {
    const SampledCtx* s = ctx;
    const int y = f->ids[n * K];
    double z0[V];
    for (int v = 0; v < V; v++) z0[v] = f->z[n * V + v];
    double lq0 = z0[y] - lse_d(z0, V), lpt = f->tlp[n * K];
    double rho = s->old_lp ? exp(lq0 - s->old_lp[n]) : 1.0;
    double c = rho * (lq0 - lpt);
    double lq = z[y] - lse_d(z, V);
    // the value is c itself; its gradient is c * grad log q(y): return c + c * (lq - lq0)
    return c + c * (lq - lq0);
}

static void test_kl_sampled(void** state) {
    (void)state;
    Fx* f = fx_create(5);
    Backend* be = f->be;
    // the sampled id and the teacher's log-prob of it are the first top-k entry of each row
    int* ids = be->alloc(be, sizeof(int) * N);
    float* tlp = be->alloc(be, sizeof(float) * N);
    int hids[N];
    float htlp[N], old[N];
    for (int n = 0; n < N; n++) {
        hids[n] = f->ids[n * K];
        htlp[n] = f->tlp[n * K];
        old[n] = (float)(f->z[n * V + hids[n]] - loss_row_logsumexp(f->z + n * V, V)) + 0.3f; // rho = e^-0.3
    }
    be->upload(be, ids, hids, sizeof hids);
    be->upload(be, tlp, htlp, sizeof htlp);
    be->upload(be, f->bold, old, sizeof old);
    SampledCtx plain = {NULL}, ratio = {old};
    for (LossDzMode mode = LOSS_DZ_SET; mode <= LOSS_DZ_ADD; mode++) {
        reset_dz(f);
        double v = loss_kl_sampled(be, f->bz, ids, tlp, NULL, f->bw, N, V, f->losses, f->dz, mode);
        check_block(f, v, row_kl_sampled, &plain, "kl_sampled", mode);
        reset_dz(f);
        v = loss_kl_sampled(be, f->bz, ids, tlp, f->bold, f->bw, N, V, f->losses, f->dz, mode);
        check_block(f, v, row_kl_sampled, &ratio, "kl_sampled with ratio", mode);
    }
    be->free(be, ids);
    be->free(be, tlp);
    fx_free(f);
}

// E_{y ~ q}[c(y) grad log q(y)] = grad KL(q || p): enumerate y with weights q(y)
static void test_kl_sampled_unbiased(void** state) {
    (void)state;
    Fx* f = fx_create(6);
    Backend* be = f->be;
    float zr[V * V], lpr[V], w[V], q[V], est[V * V], full[V];
    int ids[V];
    double l = loss_row_logsumexp(f->z, V);
    for (int y = 0; y < V; y++) {
        memcpy(zr + y * V, f->z, sizeof(float) * V);
        ids[y] = y;
        lpr[y] = f->lp[y];
        q[y] = (float)exp(f->z[y] - l);
        w[y] = q[y];
    }
    float* bz = be->alloc(be, sizeof zr);
    float* blp = be->alloc(be, sizeof lpr);
    float* bw = be->alloc(be, sizeof w);
    int* bids = be->alloc(be, sizeof ids);
    float* dz = be->alloc(be, sizeof est);
    be->upload(be, bz, zr, sizeof zr);
    be->upload(be, blp, lpr, sizeof lpr);
    be->upload(be, bw, w, sizeof w);
    be->upload(be, bids, ids, sizeof ids);
    double kl_est = loss_kl_sampled(be, bz, bids, blp, NULL, bw, V, V, NULL, dz, LOSS_DZ_SET);
    be->download(be, est, dz, sizeof est);
    // the full reverse KL of row 0 against the teacher's row 0
    float one = 1.0f;
    float* bone = be->alloc(be, sizeof one);
    float* dfull = be->alloc(be, sizeof full);
    be->upload(be, bone, &one, sizeof one);
    double kl = loss_kl_full(be, f->bz, f->blp, bone, 1, V, 1, NULL, dfull, LOSS_DZ_SET);
    be->download(be, full, dfull, sizeof full);
    assert_true(fabs(kl_est - kl) <= 1e-5 * fmax(1.0, fabs(kl)));
    for (int v = 0; v < V; v++) {
        double s = 0.0;
        for (int y = 0; y < V; y++) s += est[y * V + v];
        assert_true(fabs(s - full[v]) <= 1e-5);
    }
    void* bufs[] = {bz, blp, bw, bids, dz, bone, dfull};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->free(be, bufs[i]);
    fx_free(f);
}

static void test_softmax(void** state) {
    (void)state;
    Fx* f = fx_create(7);
    Backend* be = f->be;
    float* y = be->alloc(be, sizeof f->z);
    float out[N * V];
    for (int log_form = 0; log_form <= 1; log_form++) {
        if (log_form) loss_log_softmax(be, y, f->bz, N, V);
        else loss_softmax(be, y, f->bz, N, V);
        be->download(be, out, y, sizeof out);
        for (int n = 0; n < N; n++) {
            double z[V];
            for (int v = 0; v < V; v++) z[v] = f->z[n * V + v];
            double l = lse_d(z, V);
            for (int v = 0; v < V; v++) {
                double ref = log_form ? z[v] - l : exp(z[v] - l);
                assert_true(fabs(out[n * V + v] - ref) <= 1e-6 * fmax(1.0, fabs(ref)));
            }
        }
    }
    be->free(be, y);
    fx_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax),          cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_kl_full),          cmocka_unit_test(test_kl_topk),
        cmocka_unit_test(test_kl_topk_all_ids_is_full), cmocka_unit_test(test_kl_sampled),
        cmocka_unit_test(test_kl_sampled_unbiased),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
