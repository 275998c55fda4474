// The model benchmark's per-op profile (see bench_profile.h).
#include "model/bench_profile.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "model/timer.h"

// ----------------------------------------------------------------------------
// the ops: X(name, parameter list, argument list) for every void op but matmul, R(...) for the
// ops that return a double

#define PROFILE_VOID_OPS(X)                                                                                        \
    X(upload, (Backend * be, void* dst, const void* src, size_t bytes), (be, dst, src, bytes))                     \
    X(download, (Backend * be, void* dst, const void* src, size_t bytes), (be, dst, src, bytes))                   \
    X(memset0, (Backend * be, void* dst, size_t bytes), (be, dst, bytes))                                          \
    X(copy, (Backend * be, void* dst, const void* src, size_t bytes), (be, dst, src, bytes))                       \
    X(add, (Backend * be, float* y, const float* x, size_t n), (be, y, x, n))                                      \
    X(scale, (Backend * be, float* y, float a, size_t n), (be, y, a, n))                                           \
    X(add_bias, (Backend * be, float* y, const float* b, int N, int C), (be, y, b, N, C))                          \
    X(bias_bwd, (Backend * be, float* db, const float* dy, int N, int C), (be, db, dy, N, C))                      \
    X(mask_rows, (Backend * be, float* x, const int* lengths, int B, int T, int C), (be, x, lengths, B, T, C))     \
    X(rmsnorm_fwd, (Backend * be, float* y, float* rstd, const float* x, const float* w, int N, int C, float eps),  \
      (be, y, rstd, x, w, N, C, eps))                                                                              \
    X(rmsnorm_bwd,                                                                                                 \
      (Backend * be, float* dx, float* dw, const float* dy, const float* x, const float* w, const float* rstd,     \
       int N, int C),                                                                                              \
      (be, dx, dw, dy, x, w, rstd, N, C))                                                                          \
    X(rope_fwd, (Backend * be, float* x, const int* pos, const float* c, const float* s, int N, int nh, int hd),    \
      (be, x, pos, c, s, N, nh, hd))                                                                               \
    X(rope_bwd, (Backend * be, float* x, const int* pos, const float* c, const float* s, int N, int nh, int hd),    \
      (be, x, pos, c, s, N, nh, hd))                                                                               \
    X(attention_fwd,                                                                                               \
      (Backend * be, float* out, float* lse, const float* q, int ldq, const float* k, const float* v, int ldkv,    \
       const int* ql, const int* kl, int B, int Tq, int Tk, int H, int KV, int hd, void* work),                    \
      (be, out, lse, q, ldq, k, v, ldkv, ql, kl, B, Tq, Tk, H, KV, hd, work))                                      \
    X(attention_bwd,                                                                                               \
      (Backend * be, float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse,       \
       const float* q, int ldq, const float* k, const float* v, int ldkv, const int* ql, const int* kl, int B,      \
       int Tq, int Tk, int H, int KV, int hd, void* work),                                                         \
      (be, dq, dk, dv, dout, out, lse, q, ldq, k, v, ldkv, ql, kl, B, Tq, Tk, H, KV, hd, work))                    \
    X(swiglu_fwd, (Backend * be, float* h, const float* g, const float* u, size_t n), (be, h, g, u, n))            \
    X(swiglu_bwd, (Backend * be, float* dg, float* du, const float* dh, const float* g, const float* u, size_t n),  \
      (be, dg, du, dh, g, u, n))                                                                                   \
    X(embedding_fwd, (Backend * be, float* y, const int* t, const float* table, int N, int D),                     \
      (be, y, t, table, N, D))                                                                                     \
    X(embedding_bwd, (Backend * be, float* dtable, const float* dy, const int* t, int N, int D, int V),            \
      (be, dtable, dy, t, N, D, V))                                                                                \
    X(softmax, (Backend * be, float* y, const float* z, int N, int V), (be, y, z, N, V))                           \
    X(log_softmax, (Backend * be, float* y, const float* z, int N, int V), (be, y, z, N, V))                       \
    X(adamw,                                                                                                       \
      (Backend * be, float* p, const float* g, float* m, float* v, size_t n, float lr, float b1, float b2,         \
       float eps, float wd, float gs, long t),                                                                     \
      (be, p, g, m, v, n, lr, b1, b2, eps, wd, gs, t))

#define PROFILE_DOUBLE_OPS(R)                                                                                      \
    R(sum_squares, (Backend * be, const float* x, size_t n), (be, x, n))                                           \
    R(cross_entropy,                                                                                               \
      (Backend * be, const float* z, const int* t, const float* w, int N, int V, float* losses, float* dz),        \
      (be, z, t, w, N, V, losses, dz))                                                                             \
    R(kl_full,                                                                                                     \
      (Backend * be, const float* z, const float* tlp, const float* w, int N, int V, int rev, float* losses,       \
       float* dz),                                                                                                 \
      (be, z, tlp, w, N, V, rev, losses, dz))                                                                      \
    R(kl_topk,                                                                                                     \
      (Backend * be, const float* z, const int* ids, const float* tlp, const float* tail, const float* w, int N,   \
       int V, int K, int rev, float* losses, float* dz),                                                           \
      (be, z, ids, tlp, tail, w, N, V, K, rev, losses, dz))                                                        \
    R(kl_sampled,                                                                                                  \
      (Backend * be, const float* z, const int* ids, const float* tlp, const float* olp, const float* w, int N,    \
       int V, float* losses, float* dz),                                                                           \
      (be, z, ids, tlp, olp, w, N, V, losses, dz))

#define OP_ENUM(name, params, args) OP_##name,
enum { OP_matmul, PROFILE_VOID_OPS(OP_ENUM) PROFILE_DOUBLE_OPS(OP_ENUM) OP_COUNT };
#define OP_NAME(name, params, args) #name,
static const char* const op_names[OP_COUNT] = {"matmul", PROFILE_VOID_OPS(OP_NAME) PROFILE_DOUBLE_OPS(OP_NAME)};

// ----------------------------------------------------------------------------
// totals

#define MAX_SHAPES 64

typedef struct {
    int ta, tb, M, N, K;
    long calls;
    double seconds;
} ShapeTotal;

static struct {
    int installed;
    Backend inner; // the backend's own ops while installed
    long calls[OP_COUNT];
    double seconds[OP_COUNT];
    ShapeTotal shapes[MAX_SHAPES];
    int n_shapes;
    long other_shapes; // matmul calls past MAX_SHAPES distinct shapes (time in the op total only)
    double t0;
} prof;

static void op_begin(Backend* be) {
    prof.inner.synchronize(be);
    prof.t0 = timer_now();
}

static double op_end(Backend* be, int op) {
    prof.inner.synchronize(be);
    const double dt = timer_now() - prof.t0;
    prof.calls[op]++;
    prof.seconds[op] += dt;
    return dt;
}

#define WRAP_VOID(name, params, args)                                                                              \
    static void profiled_##name params {                                                                           \
        op_begin(be);                                                                                              \
        prof.inner.name args;                                                                                      \
        op_end(be, OP_##name);                                                                                     \
    }
PROFILE_VOID_OPS(WRAP_VOID)

#define WRAP_DOUBLE(name, params, args)                                                                            \
    static double profiled_##name params {                                                                         \
        op_begin(be);                                                                                              \
        const double r = prof.inner.name args;                                                                     \
        op_end(be, OP_##name);                                                                                     \
        return r;                                                                                                  \
    }
PROFILE_DOUBLE_OPS(WRAP_DOUBLE)

static void profiled_matmul(Backend* be, int ta, int tb, int M, int N, int K, float alpha, const float* A, int lda,
                            const float* B, int ldb, float beta, float* C, int ldc) {
    op_begin(be);
    prof.inner.matmul(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    const double dt = op_end(be, OP_matmul);
    int i = 0;
    while (i < prof.n_shapes && !(prof.shapes[i].ta == ta && prof.shapes[i].tb == tb && prof.shapes[i].M == M &&
                                  prof.shapes[i].N == N && prof.shapes[i].K == K))
        i++;
    if (i == prof.n_shapes) {
        if (i == MAX_SHAPES) {
            prof.other_shapes++;
            return;
        }
        prof.shapes[prof.n_shapes++] = (ShapeTotal){ta, tb, M, N, K, 0, 0.0};
    }
    prof.shapes[i].calls++;
    prof.shapes[i].seconds += dt;
}

// ----------------------------------------------------------------------------
// install, print

void bench_profile_install(Backend* be) {
    if (prof.installed) fatal("bench_profile_install: the profiler is already installed");
    memset(&prof, 0, sizeof prof);
    prof.installed = 1;
    prof.inner = *be;
    be->matmul = profiled_matmul;
#define INSTALL(name, params, args) be->name = profiled_##name;
    PROFILE_VOID_OPS(INSTALL)
    PROFILE_DOUBLE_OPS(INSTALL)
}

void bench_profile_uninstall(Backend* be) {
    if (!prof.installed) return;
    be->matmul = prof.inner.matmul;
#define RESTORE(name, params, args) be->name = prof.inner.name;
    PROFILE_VOID_OPS(RESTORE)
    PROFILE_DOUBLE_OPS(RESTORE)
    prof.installed = 0;
}

static int cmp_op_desc(const void* a, const void* b) {
    const double x = prof.seconds[*(const int*)a], y = prof.seconds[*(const int*)b];
    return (x < y) - (x > y);
}

static int cmp_shape_desc(const void* a, const void* b) {
    const double x = ((const ShapeTotal*)a)->seconds, y = ((const ShapeTotal*)b)->seconds;
    return (x < y) - (x > y);
}

void bench_profile_print(FILE* f, int steps) {
    if (steps < 1) steps = 1;
    double total = 0.0;
    int order[OP_COUNT], n = 0;
    for (int op = 0; op < OP_COUNT; op++) {
        total += prof.seconds[op];
        if (prof.calls[op]) order[n++] = op;
    }
    qsort(order, (size_t)n, sizeof(int), cmp_op_desc);
    const double share = total > 0.0 ? 100.0 / total : 0.0;
    fprintf(f, "  profile (%d step%s, every op synchronised): %.2f ms per step in ops\n", steps, steps > 1 ? "s" : "",
            1e3 * total / steps);
    fprintf(f, "    %-16s %7s %10s %7s\n", "op", "calls", "ms/step", "share");
    for (int i = 0; i < n; i++) {
        const int op = order[i];
        fprintf(f, "    %-16s %7ld %10.3f %6.1f%%\n", op_names[op], prof.calls[op] / steps, 1e3 * prof.seconds[op] / steps,
                share * prof.seconds[op]);
    }
    qsort(prof.shapes, (size_t)prof.n_shapes, sizeof(ShapeTotal), cmp_shape_desc);
    fprintf(f, "    matmul shapes (M x N x K, op(A) op(B); T = transposed operand):\n");
    for (int i = 0; i < prof.n_shapes; i++) {
        const ShapeTotal* s = &prof.shapes[i];
        const double flops = 2.0 * s->M * s->N * (double)s->K * s->calls;
        fprintf(f, "    %6d x %6d x %6d %c%c %7ld %10.3f %6.1f%% %8.2f TFLOP/s\n", s->M, s->N, s->K, s->ta ? 'T' : 'N',
                s->tb ? 'T' : 'N', s->calls / steps, 1e3 * s->seconds / steps, share * s->seconds,
                s->seconds > 0.0 ? flops / s->seconds / 1e12 : 0.0);
    }
    if (prof.other_shapes) fprintf(f, "    (%ld more matmul calls of further shapes)\n", prof.other_shapes / steps);
}
