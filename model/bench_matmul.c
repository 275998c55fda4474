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
    void (*inner_linear)(Backend*, const LinearBlocks*, const float*, float*, float, int, int);
} rec;

static void log_call(MatmulCall c) {
    if (rec.n == rec.cap) {
        rec.cap = rec.cap ? 2 * rec.cap : 128;
        rec.calls = reallocCheck(rec.calls, (size_t)rec.cap * sizeof(MatmulCall));
    }
    rec.calls[rec.n++] = c;
}

static void recording_matmul(Backend* be, int ta, int tb, int M, int N, int K, float alpha, const float* A, int lda,
                             const float* B, int ldb, float beta, float* C, int ldc) {
    if (rec.on) log_call((MatmulCall){ta, tb, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C});
    rec.inner(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void recording_linear_bwd(Backend* be, const LinearBlocks* b, const float* x, float* dx, float beta, int M,
                                 int K) {
    if (rec.on) {
        int P = 0;
        for (int i = 0; i < b->n; i++) P += b->rows[i];
        log_call((MatmulCall){0, 0, M, K, P, P, K, K, 1.0f, beta, NULL, NULL, NULL});
        log_call((MatmulCall){1, 0, P, K, M, P, K, K, 1.0f, 1.0f, NULL, NULL, NULL});
    }
    rec.inner_linear(be, b, x, dx, beta, M, K);
}

void bench_matmul_install(Backend* be) {
    if (rec.inner) fatal("bench_matmul_install: the recorder is already installed");
    rec.inner = be->matmul;
    rec.inner_linear = be->linear_bwd;
    rec.on = 0;
    be->matmul = recording_matmul;
    be->linear_bwd = recording_linear_bwd;
}

void bench_matmul_uninstall(Backend* be) {
    be->matmul = rec.inner;
    be->linear_bwd = rec.inner_linear;
    rec.inner = NULL;
    rec.inner_linear = NULL;
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
        else if (!c->A) fatal("bench_matmul_replay: call %d (a linear_bwd's) has no recorded operands", i);
        else mm(be, c->ta, c->tb, c->M, c->N, c->K, c->alpha, c->A, c->lda, c->B, c->ldb, c->beta, c->C, c->ldc);
    }
    be->synchronize(be);
    return timer_now() - t0;
}
