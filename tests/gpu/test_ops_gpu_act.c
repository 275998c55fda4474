// test_ops_gpu's activation buffers (ops.h, alloc_act), CUDA against CPU through the
// gpu_compare.h harness: in the bf16 mode they hold bf16 (the CPU's and the f32 mode's are fp32),
// so every op that takes them runs here on them, with their inputs rounded to bf16 at upload.
// Tolerances: TOL_ACT (f32 1e-5, bf16 1.5e-2) for the memory ops, norms, RoPE, SwiGLU and biases:
// an output of two rounded inputs, rounded itself, is off by up to three roundings of 2^-9 before
// the op's own amplification (emulation measured up to 6.4e-3, SwiGLU's backward); the matmul's
// and attention's own classes otherwise (see test_ops_gpu.c). Covered: the memory
// ops converting both ways and at element offsets, RMSNorm with an fp32 input and an activation
// output (the model's norms) and all activations (QK-norm), matmuls with any operand or C an
// activation buffer (beta 0 and 1, transposes, a product small enough for the f32 mode's mixed
// path), linear_bwd stacked and by blocks, masking, attention on the tensor cores (packed and
// strided inputs) and on the fp32 kernels (head size 16, decoding, odd strides) through fp32
// copies. The losses' dz as an activation
// buffer (the model's dlogits) is in test_ops_gpu_vocab.c. Also: no fp32 buffer can read as an
// activation buffer.
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "gpu_compare.h"
#include "model/ops.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

void test_activation_memory(void** state);
void test_activation_handle_ends(void** state);
void test_activation_ops(void** state);
void test_activation_matmul(void** state);
void test_activation_attention(void** state);
void test_activation_linear_bwd(void** state);

// ----------------------------------------------------------------------------
// memory ops

static void case_act_memory(GpuCtx* c, const void* arg) {
    (void)arg;
    Backend* be = c->be;
    enum { n = 100003 };
    float* x = gpu_act_randn(c, n, 1.0);
    gpu_out(c, "upload, download", x, n, 0);
    float* a = gpu_act_zeros(c, n);
    gpu_out(c, "alloc_act", a, n, 1);
    float* y = gpu_act_junk(c, n);
    be->copy(be, y + 7, x + 3, (n - 10) * sizeof(float));
    gpu_out(c, "copy act -> act", y, n, 0);
    be->copy(be, x + 1, x, (n - 1) * sizeof(float)); // overlapping: memmove
    gpu_out(c, "copy act -> act, overlapping", x, n, 0);
    float* f = gpu_junk(c, n);
    be->copy(be, f + 2, x + 5, (n - 5) * sizeof(float));
    gpu_out(c, "copy act -> f32", f, n, 0);
    float* g = gpu_randn(c, n, 1.0);
    be->copy(be, y + 1, g, (n - 1) * sizeof(float));
    be->memset0(be, y + 100, 5000 * sizeof(float));
    gpu_out(c, "copy f32 -> act, memset0", y, n, 1);
}

// scatter_rows as decoding appends to its caches: 40 of 97 rows, 4-wide and one element at a time
// (rows of 67, and rows of 256 one element into their buffers: misaligned, so not 4-wide)
static void case_act_scatter_rows(GpuCtx* c, const void* arg) {
    (void)arg;
    Backend* be = c->be;
    enum { R = 97, N = 40, C4 = 256, C1 = 67 };
    int rows[N];
    for (int i = 0; i < N; i++) rows[i] = (i * 31 + 5) % R;
    const int* dr = gpu_upload(c, rows, sizeof rows);
    float* cache = gpu_act_junk(c, (size_t)R * C4);
    float* k = gpu_act_randn(c, (size_t)N * C4, 1.0);
    be->scatter_rows(be, cache, k, dr, N, C4);
    gpu_out(c, "scatter_rows act -> act", cache, (size_t)R * C4, 0);
    float* kf = gpu_randn(c, (size_t)N * C4, 1.0);
    be->scatter_rows(be, cache, kf, dr, N, C4);
    gpu_out(c, "scatter_rows f32 -> act", cache, (size_t)R * C4, 0);
    float* cf = gpu_junk(c, (size_t)R * C1 + 1);
    be->scatter_rows(be, cf + 1, k + 3, dr, N, C1);
    gpu_out(c, "scatter_rows act -> f32, odd rows", cf, (size_t)R * C1 + 1, 0);
    float* cm = gpu_act_junk(c, (size_t)R * C4 + 1);
    float* km = gpu_act_randn(c, (size_t)N * C4 + 1, 1.0);
    be->scatter_rows(be, cm + 1, km + 1, dr, N, C4);
    gpu_out(c, "scatter_rows misaligned", cm, (size_t)R * C4 + 1, 0);
}

void test_activation_memory(void** state) {
    (void)state;
    gpu_check("activation memory ops", case_act_memory, NULL, 200, TOL_ACT);
    gpu_check("activation scatter_rows", case_act_scatter_rows, NULL, 201, TOL_ACT);
    gpu_done();
}

// The start of the process's mapping that holds address p (/proc/self/maps), or 0 if none does
static uintptr_t mapping_start(const void* p) {
    FILE* f = fopen("/proc/self/maps", "r");
    if (!f) fail_msg("cannot read /proc/self/maps: %s", strerror(errno));
    char line[512];
    uintptr_t found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo <= (uintptr_t)p && (uintptr_t)p < hi) found = lo;
    }
    fclose(f);
    return found;
}

// The backend takes the pointer one past an activation buffer's end as that buffer's (cuda_view),
// so that address must lie in the handle's own reservation: else the next mapping may start
// there, and on a GPU that was once the driver's reservation for device memory, whose first fp32
// buffer (the residual stream) the bf16 mode then took for an activation. Handles of whole pages,
// each followed by fp32 buffers large enough to be mappings of their own, as the model allocates.
void test_activation_handle_ends(void** state) {
    (void)state;
    Backend* be = gpu_cuda_backend(1);
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    enum { K = 6 };
    float *h[K], *f[K];
    for (int i = 0; i < K; i++) {
        const size_t pages = (size_t)1 << (2 * i), n = pages * page / sizeof(float);
        h[i] = be->alloc_act(be, n);
        f[i] = be->alloc(be, (size_t)(i + 1) << 20);
        const uintptr_t start = mapping_start(h[i] + n);
        if (!start || start > (uintptr_t)h[i]) {
            fail_msg("activation buffer of %zu pages at %p: the address past its end, %p, is %s", pages,
                     (void*)h[i], (void*)(h[i] + n), start ? "another mapping's" : "not mapped");
        }
    }
    for (int i = 0; i < K; i++) be->free(be, h[i]), be->free(be, f[i]);
}

// ----------------------------------------------------------------------------
// norms, RoPE, SwiGLU, biases

typedef struct {
    int N, C;
} ActRows;

// the model's norm (fp32 residual in, activation out), then QK-norm's (all activations), then the
// model's norm with the residual's add
static void case_act_rmsnorm(GpuCtx* c, const void* arg) {
    const ActRows* a = arg;
    Backend* be = c->be;
    const size_t nc = (size_t)a->N * a->C;
    float* x = gpu_randn(c, nc, 2.0);
    float* w = gpu_randn(c, (size_t)a->C, 1.0);
    float* y = gpu_act_junk(c, nc);
    float* rstd = gpu_junk(c, (size_t)a->N);
    be->rmsnorm_fwd(be, y, rstd, x, w, a->N, a->C, 1e-5f);
    gpu_out(c, "y (x fp32)", y, nc, 0);
    float* xa = gpu_act_randn(c, nc, 2.0);
    be->rmsnorm_fwd(be, y, rstd, xa, w, a->N, a->C, 1e-5f);
    gpu_out(c, "y (x act)", y, nc, 0);
    gpu_out(c, "rstd", rstd, (size_t)a->N, 0);
    float* dx = gpu_act_randn(c, nc, 1.0);
    float* dw = gpu_randn(c, (size_t)a->C, 1.0);
    float* dy = gpu_act_randn(c, nc, 1.0);
    be->rmsnorm_bwd(be, dx, dw, dy, xa, w, rstd, a->N, a->C);
    gpu_out(c, "dx", dx, nc, 0);
    gpu_out(c, "dw", dw, (size_t)a->C, 0);
    // the residual's add fused into the norm (the stream and the added sublayer output fp32)
    float* res = gpu_randn(c, nc, 1.0);
    float* rstd2 = gpu_junk(c, (size_t)a->N);
    be->add_rmsnorm_fwd(be, y, rstd2, res, x, w, a->N, a->C, 1e-5f);
    gpu_out(c, "add_rmsnorm y", y, nc, 0);
    gpu_out(c, "add_rmsnorm res", res, nc, 0);
    gpu_out(c, "add_rmsnorm rstd", rstd2, (size_t)a->N, 0);
}

static void case_act_rope_swiglu_bias(GpuCtx* c, const void* arg) {
    const ActRows* a = arg;
    Backend* be = c->be;
    const int hd = 64, nh = a->C / hd;
    const size_t nc = (size_t)a->N * a->C;
    float *dcs, *dsn;
    int* dpos;
    gpu_rope_inputs(c, a->N, 512, hd, &dcs, &dsn, &dpos);
    float* x = gpu_act_randn(c, nc, 1.0);
    be->rope_fwd(be, x, dpos, dcs, dsn, a->N, nh, hd);
    gpu_out(c, "rope fwd", x, nc, 0);
    be->rope_bwd(be, x, dpos, dcs, dsn, a->N, nh, hd);
    gpu_out(c, "rope bwd", x, nc, 0);
    float* gate = gpu_act_randn(c, nc, 2.0);
    float* up = gpu_act_randn(c, nc, 1.0);
    float* h = gpu_act_junk(c, nc);
    be->swiglu_fwd(be, h, gate, up, nc);
    gpu_out(c, "swiglu fwd", h, nc, 0);
    float* dgate = gpu_act_junk(c, nc);
    float* dup = gpu_act_junk(c, nc);
    be->swiglu_bwd(be, dgate, dup, h, gate, up, nc);
    gpu_out(c, "swiglu bwd dgate", dgate, nc, 0);
    gpu_out(c, "swiglu bwd dup", dup, nc, 0);
    float* b = gpu_randn(c, (size_t)a->C, 1.0);
    be->add_bias(be, up, b, a->N, a->C);
    gpu_out(c, "add_bias", up, nc, 0);
    float* db = gpu_randn(c, (size_t)a->C, 1.0);
    be->bias_bwd(be, db, gate, a->N, a->C);
    gpu_out(c, "bias_bwd", db, (size_t)a->C, 0);
    int* lengths = malloc(sizeof(int) * a->N);
    for (int n = 0; n < a->N; n++) lengths[n] = (n * 5) % 4; // a->N sequences of 3 rows (B = N, T = 3)
    int* dl = gpu_upload(c, lengths, sizeof(int) * a->N);
    float* m = gpu_act_randn(c, (size_t)a->N * 3 * a->C, 1.0);
    be->mask_rows(be, m, dl, a->N, 3, a->C);
    gpu_out(c, "mask_rows", m, (size_t)a->N * 3 * a->C, 1);
    free(lengths);
}

void test_activation_ops(void** state) {
    (void)state;
    const ActRows shapes[] = {{77, 384}, {1024, 768}, {5, 1000}, {4096, 64}};
    char label[96];
    for (size_t i = 0; i < ARRAY_LEN(shapes); i++) {
        snprintf(label, sizeof label, "act rmsnorm fwd, bwd N=%d C=%d", shapes[i].N, shapes[i].C);
        gpu_check(label, case_act_rmsnorm, &shapes[i], 210 + i, TOL_ACT);
    }
    const ActRows rows[] = {{77, 384}, {300, 768}, {3, 128}};
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        snprintf(label, sizeof label, "act rope, swiglu, bias N=%d C=%d", rows[i].N, rows[i].C);
        gpu_check(label, case_act_rope_swiglu_bias, &rows[i], 220 + i, TOL_ACT);
    }
    gpu_done();
}

// ----------------------------------------------------------------------------
// matmul: the model's products with activation buffers on either side

typedef struct {
    int M, N, K;
} ActMM;

static void case_act_matmul(GpuCtx* c, const void* arg) {
    const ActMM* a = arg;
    Backend* be = c->be;
    const int M = a->M, N = a->N, K = a->K;
    float* x = gpu_act_randn(c, (size_t)M * K, 1.0); // (M, K) activation
    float* w = gpu_randn(c, (size_t)N * K, 0.1);     // (N, K) weight
    float* y = gpu_act_junk(c, (size_t)M * N);       // (M, N) activation
    be->matmul(be, 0, 1, M, N, K, 1.0f, x, K, w, K, 0.0f, y, N); // forward: y = x W^T
    gpu_out(c, "act = act W^T", y, (size_t)M * N, 0);
    be->matmul(be, 0, 1, M, N, K, 0.5f, x, K, w, K, 1.0f, y, N); // accumulated into an activation
    gpu_out(c, "act += act W^T", y, (size_t)M * N, 0);
    float* dy = gpu_randn(c, (size_t)M * N, 1.0);    // (M, N) fp32 gradient (the residual's)
    float* dx = gpu_act_junk(c, (size_t)M * K);
    be->matmul(be, 0, 0, M, K, N, 1.0f, dy, N, w, K, 0.0f, dx, K); // dx = dy W
    gpu_out(c, "act = f32 W", dx, (size_t)M * K, 0);
    float* dw = gpu_randn(c, (size_t)N * K, 1.0);
    be->matmul(be, 1, 0, N, K, M, 1.0f, y, N, x, K, 1.0f, dw, K); // dW += y^T x, both activations
    gpu_out(c, "f32 += act^T act", dw, (size_t)N * K, 0);
    float* z = gpu_junk(c, (size_t)M * N);
    be->matmul(be, 0, 1, M, N, K, 1.0f, x, K, w, K, 0.0f, z, N); // an activation into fp32 (the logits)
    gpu_out(c, "f32 = act W^T", z, (size_t)M * N, 0);
}

void test_activation_matmul(void** state) {
    (void)state;
    const ActMM shapes[] = {{300, 384, 128}, {1024, 768, 768}, {8, 512, 256}, {130, 1000, 64}};
    char label[96];
    for (size_t i = 0; i < ARRAY_LEN(shapes); i++) {
        snprintf(label, sizeof label, "act matmul M=%d N=%d K=%d", shapes[i].M, shapes[i].N, shapes[i].K);
        gpu_check(label, case_act_matmul, &shapes[i], 230 + i, TOL_MATMUL);
    }
    gpu_done();
}

// ----------------------------------------------------------------------------
// linear_bwd: the q, k, v projections' backward, stacked in the bf16 mode when the dy blocks are
// activation buffers (rows a multiple of 4: 8-byte moves; odd rows: one element at a time), by
// blocks when one is fp32. dw accumulates onto random values, dx with beta 0 (over junk) and 1.
// A product reading dw[0] before and after checks that the op forgets dw's kept copies (the
// emulated build fails on a stale one).

typedef struct {
    int n, rows[LINEAR_MAX_BLOCKS], M, K;
    int f32_dy; // block 1's dy in fp32: the by-blocks path
    int off;    // each dy one element into its buffer (misaligned: the stacking copy's 4-wide moves refused)
} ActLinear;

static void case_act_linear_bwd(GpuCtx* c, const void* arg) {
    const ActLinear* a = arg;
    Backend* be = c->be;
    const int M = a->M, K = a->K;
    LinearBlocks b = {.n = a->n};
    for (int i = 0; i < a->n; i++) {
        const size_t nw = (size_t)a->rows[i] * K, ny = (size_t)M * a->rows[i];
        b.rows[i] = a->rows[i];
        b.w[i] = gpu_randn(c, nw, 0.1);
        b.dw[i] = gpu_randn(c, nw, 1.0);
        b.dy[i] = (a->f32_dy && i == 1 ? gpu_randn(c, ny + a->off, 1.0) : gpu_act_randn(c, ny + a->off, 1.0)) + a->off;
    }
    float* x = gpu_act_randn(c, (size_t)M * K, 1.0);
    float* dx = gpu_junk(c, (size_t)M * K);
    float* probe = gpu_junk(c, (size_t)M * a->rows[0]);
    be->matmul(be, 0, 1, M, a->rows[0], K, 1.0f, x, K, b.dw[0], K, 0.0f, probe, a->rows[0]); // keeps dw[0]'s copy
    be->linear_bwd(be, &b, x, dx, 0.0f, M, K);
    gpu_out(c, "dx = dy W", dx, (size_t)M * K, 0);
    for (int i = 0; i < a->n; i++) {
        char name[32];
        snprintf(name, sizeof name, "dw[%d] += dy[%d]^T x", i, i);
        gpu_out(c, name, b.dw[i], (size_t)a->rows[i] * K, 0);
    }
    be->matmul(be, 0, 1, M, a->rows[0], K, 1.0f, x, K, b.dw[0], K, 0.0f, probe, a->rows[0]);
    gpu_out(c, "x dw[0]^T after", probe, (size_t)M * a->rows[0], 0);
    be->linear_bwd(be, &b, x, dx, 1.0f, M, K);
    gpu_out(c, "dx += dy W", dx, (size_t)M * K, 0);
}

void test_activation_linear_bwd(void** state) {
    (void)state;
    const ActLinear cases[] = {{3, {128, 64, 64}, 256, 128, 0, 0}, // GQA's q, k, v
                               {3, {5, 7, 3}, 37, 24, 0, 0},
                               {2, {64, 32, 0}, 96, 64, 1, 0},
                               {3, {128, 64, 64}, 64, 128, 0, 1}};
    char label[96];
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        snprintf(label, sizeof label, "act linear_bwd %d blocks M=%d K=%d%s%s", cases[i].n, cases[i].M, cases[i].K,
                 cases[i].f32_dy ? " (an fp32 dy)" : "", cases[i].off ? " off=1" : "");
        gpu_check(label, case_act_linear_bwd, &cases[i], 260 + i, TOL_MATMUL);
    }
    gpu_done();
}

// ----------------------------------------------------------------------------
// attention on activation buffers

typedef struct {
    int B, Tq, Tk, H, KV, hd, pad; // pad: extra elements per q/k/v row (strided inputs)
    const int *q_lens, *kv_lens;
    int bwd;
} ActAttn;

// an output of `rows` rows of `width` elements at row stride ld
static void out_rows(GpuCtx* c, const char* name, const float* dev, size_t rows, int ld, int width) {
    float* packed = gpu_packed_rows(c, dev, rows, ld, width);
    gpu_out_host(c, name, packed, rows * width, 0);
    free(packed);
}

static void case_act_attention(GpuCtx* c, const void* arg) {
    const ActAttn* a = arg;
    Backend* be = c->be;
    const int ldq = a->H * a->hd + a->pad, ldkv = a->KV * a->hd + a->pad;
    const size_t nq = (size_t)a->B * a->Tq * ldq, nkv = (size_t)a->B * a->Tk * ldkv;
    const size_t nout = (size_t)a->B * a->Tq * a->H * a->hd, nlse = (size_t)a->B * a->H * a->Tq;
    float* q = gpu_act_randn(c, nq, 1.0);
    float* k = gpu_act_randn(c, nkv, 1.0);
    float* v = gpu_act_randn(c, nkv, 1.0);
    float* out = gpu_act_junk(c, nout);
    float* lse = gpu_junk(c, nlse);
    int* ql = gpu_upload(c, a->q_lens, sizeof(int) * a->B);
    int* kl = gpu_upload(c, a->kv_lens, sizeof(int) * a->B);
    void* work = gpu_zeros(c, (be->attention_work_bytes(be, a->Tk) + 3) / 4);
    be->attention_fwd(be, out, lse, q, ldq, k, v, ldkv, ql, kl, a->B, a->Tq, a->Tk, a->H, a->KV, a->hd, work);
    if (!a->bwd) {
        gpu_out(c, "out", out, nout, 1);
        gpu_out(c, "lse", lse, nlse, 0);
        return;
    }
    float* dout = gpu_act_randn(c, nout, 1.0);
    float* dq = gpu_act_junk(c, nq);
    float* dk = gpu_act_junk(c, nkv);
    float* dv = gpu_act_junk(c, nkv);
    be->attention_bwd(be, dq, dk, dv, dout, out, lse, q, ldq, k, v, ldkv, ql, kl, a->B, a->Tq, a->Tk, a->H, a->KV,
                      a->hd, work);
    gpu_out(c, "dq", dq, nout, 0); // dq is dense (ops.h): its first B Tq H hd elements
    out_rows(c, "dk", dk, (size_t)a->B * a->Tk, ldkv, a->KV * a->hd);
    out_rows(c, "dv", dv, (size_t)a->B * a->Tk, ldkv, a->KV * a->hd);
}

void test_activation_attention(void** state) {
    (void)state;
    static const int l3[] = {77, 40, 1}, l2[] = {40, 23}, q1[] = {1, 1, 0, 1}, k1[] = {300, 17, 40, 1};
    static const int pq[] = {100, 37}, pk[] = {140, 45}; // queries after a prefix of keys
    const ActAttn shapes[] = {
        {3, 77, 77, 8, 2, 64, 0, l3, l3, 0},  {3, 77, 77, 8, 2, 64, 0, l3, l3, 1},   // tensor cores, packed
        {3, 77, 77, 8, 2, 32, 64, l3, l3, 1},                                        // strided: copied
        {2, 100, 140, 8, 2, 64, 3, pq, pk, 1}, // odd strides (dk, dv rows not 4-byte aligned): fp32 kernels
        {2, 40, 40, 4, 4, 16, 0, l2, l2, 1},                                         // head size 16: fp32 kernels
        {4, 1, 300, 8, 2, 64, 0, q1, k1, 0},                                         // decoding: fp32 kernels
    };
    char label[128];
    for (size_t i = 0; i < ARRAY_LEN(shapes); i++) {
        const ActAttn* s = &shapes[i];
        snprintf(label, sizeof label, "act attention_%s B=%d Tq=%d Tk=%d H=%d KV=%d hd=%d%s", s->bwd ? "bwd" : "fwd",
                 s->B, s->Tq, s->Tk, s->H, s->KV, s->hd, s->pad ? " strided" : "");
        gpu_check(label, case_act_attention, s, 240 + i, s->bwd ? TOL_ATTN_BWD : TOL_MATMUL);
    }
    gpu_done();
}
