// The model benchmarks' matmul recorder (see bench_matmul.h).
#include "model/bench_matmul.h"

#include <stdlib.h>

#include "common/check.h"
#include "common/log.h"
#include "model/timer.h"

static struct {
    MatmulCall* calls;
    int n, cap, on;
    MatmulFn inner; // the backend's own matmul while installed
} rec;

static void recording_matmul(Backend* be, int ta, int tb, int M, int N, int K, float alpha, const float* A, int lda,
                             const float* B, int ldb, float beta, float* C, int ldc) {
    if (rec.on) {
        if (rec.n == rec.cap) {
            rec.cap = rec.cap ? 2 * rec.cap : 128;
            rec.calls = reallocCheck(rec.calls, (size_t)rec.cap * sizeof(MatmulCall));
        }
        rec.calls[rec.n++] = (MatmulCall){ta, tb, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C};
    }
    rec.inner(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void bench_matmul_install(Backend* be) {
    if (rec.inner) fatal("bench_matmul_install: the recorder is already installed");
    rec.inner = be->matmul;
    rec.on = 0;
    be->matmul = recording_matmul;
}

void bench_matmul_uninstall(Backend* be) {
    be->matmul = rec.inner;
    rec.inner = NULL;
    rec.on = 0;
}

void bench_matmul_record(int on) { rec.on = on; }
int bench_matmul_count(void) { return rec.n; }
const MatmulCall* bench_matmul_calls(void) { return rec.calls; }

double bench_matmul_flops(void) {
    double f = 0.0;
    for (int i = 0; i < rec.n; i++) f += 2.0 * rec.calls[i].M * rec.calls[i].N * rec.calls[i].K;
    return f;
}

void bench_matmul_clear(void) {
    free(rec.calls);
    rec.calls = NULL;
    rec.n = rec.cap = 0;
}

MatmulScratch bench_matmul_scratch(Backend* be) {
    size_t na = 1, nb = 1, nc = 1;
    for (int i = 0; i < rec.n; i++) {
        const MatmulCall* c = &rec.calls[i];
        const size_t a = (size_t)(c->ta ? c->K : c->M) * c->lda, b = (size_t)(c->tb ? c->N : c->K) * c->ldb;
        const size_t cc = (size_t)c->M * c->ldc;
        na = a > na ? a : na;
        nb = b > nb ? b : nb;
        nc = cc > nc ? cc : nc;
    }
    return (MatmulScratch){be->alloc(be, na * sizeof(float)), be->alloc(be, nb * sizeof(float)),
                           be->alloc(be, nc * sizeof(float))};
}

double bench_matmul_replay(Backend* be, const MatmulScratch* s, MatmulFn fn) {
    // outside install/uninstall the backend's matmul is the real one
    MatmulFn mm = fn ? fn : rec.inner ? rec.inner : be->matmul;
    be->synchronize(be);
    const double t0 = timer_now();
    for (int i = 0; i < rec.n; i++) {
        const MatmulCall* c = &rec.calls[i];
        if (s) mm(be, c->ta, c->tb, c->M, c->N, c->K, 1.0f, s->A, c->lda, s->B, c->ldb, c->beta, s->C, c->ldc);
        else mm(be, c->ta, c->tb, c->M, c->N, c->K, c->alpha, c->A, c->lda, c->B, c->ldb, c->beta, c->C, c->ldc);
    }
    be->synchronize(be);
    return timer_now() - t0;
}
