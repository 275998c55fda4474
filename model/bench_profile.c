// The model benchmark's per-op profile (see bench_profile.h).
#include "model/bench_profile.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "model/ops_list.h"
#include "model/timer.h"

#define OP_ENUM(name, params, args) OP_##name,
enum { OP_matmul, BACKEND_VOID_OPS(OP_ENUM) BACKEND_DOUBLE_OPS(OP_ENUM) BACKEND_INT_OPS(OP_ENUM) OP_COUNT };
#define OP_NAME(name, params, args) #name,
static const char* const op_names[OP_COUNT] = {"matmul", BACKEND_VOID_OPS(OP_NAME) BACKEND_DOUBLE_OPS(OP_NAME)
                                                   BACKEND_INT_OPS(OP_NAME)};

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
BACKEND_VOID_OPS(WRAP_VOID)

#define WRAP_VALUE(type, name, params, args)                                                                       \
    static type profiled_##name params {                                                                           \
        op_begin(be);                                                                                              \
        const type r = prof.inner.name args;                                                                       \
        op_end(be, OP_##name);                                                                                     \
        return r;                                                                                                  \
    }
#define WRAP_DOUBLE(name, params, args) WRAP_VALUE(double, name, params, args)
#define WRAP_INT(name, params, args) WRAP_VALUE(int, name, params, args)
BACKEND_DOUBLE_OPS(WRAP_DOUBLE)
BACKEND_INT_OPS(WRAP_INT)

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
    BACKEND_VOID_OPS(INSTALL)
    BACKEND_DOUBLE_OPS(INSTALL)
    BACKEND_INT_OPS(INSTALL)
}

void bench_profile_uninstall(Backend* be) {
    if (!prof.installed) return;
    be->matmul = prof.inner.matmul;
#define RESTORE(name, params, args) be->name = prof.inner.name;
    BACKEND_VOID_OPS(RESTORE)
    BACKEND_DOUBLE_OPS(RESTORE)
    BACKEND_INT_OPS(RESTORE)
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

double bench_profile_seconds(void) {
    double total = 0.0;
    for (int op = 0; op < OP_COUNT; op++) total += prof.seconds[op];
    return total;
}

long bench_profile_calls(void) {
    long total = 0;
    for (int op = 0; op < OP_COUNT; op++) total += prof.calls[op];
    return total;
}

void bench_profile_print(FILE* f, int steps) {
    if (steps < 1) steps = 1;
    const double total = bench_profile_seconds();
    int order[OP_COUNT], n = 0;
    for (int op = 0; op < OP_COUNT; op++) {
        if (prof.calls[op]) order[n++] = op;
    }
    qsort(order, (size_t)n, sizeof(int), cmp_op_desc);
    const double share = total > 0.0 ? 100.0 / total : 0.0;
    fprintf(f, "  profile (%d step%s, every op synchronised): %.2f ms per step in ops\n", steps, steps > 1 ? "s" : "",
            1e3 * total / steps);
    fprintf(f, "    %-18s %7s %10s %7s\n", "op", "calls", "ms/step", "share");
    for (int i = 0; i < n; i++) {
        const int op = order[i];
        fprintf(f, "    %-18s %7ld %10.3f %6.1f%%\n", op_names[op], prof.calls[op] / steps, 1e3 * prof.seconds[op] / steps,
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
