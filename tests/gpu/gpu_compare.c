// The CPU-versus-CUDA comparison harness (see gpu_compare.h).
#include "gpu_compare.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define GPU_TINY 1e-30

static struct {
    Backend* cpu;
    Backend* gpu[2]; // f32, bf16 matmuls
    int failed;      // cases off since the last gpu_done
} g;

static const char* const mode_names[2] = {"f32", "bf16"};

static double tolerance(TolClass t, int bf16) {
    switch (t) {
    case TOL_ELEMENTWISE: return 1e-5;
    case TOL_MATMUL: return bf16 ? 1e-2 : 1e-4;
    case TOL_ATTN_BWD: return bf16 ? 2e-2 : 1e-4;
    case TOL_EXACT: return 0.0;
    case TOL_ACT: return bf16 ? 1.5e-2 : 1e-5;
    }
    return 0.0;
}

// ----------------------------------------------------------------------------
// backends

int gpu_backends_open(char* err, size_t errlen) {
    for (int bf16 = 0; bf16 < 2; bf16++) {
        g.gpu[bf16] = backend_cuda_create(0, bf16, err, errlen);
        if (!g.gpu[bf16]) {
            gpu_backends_close();
            return -1;
        }
    }
    g.cpu = backend_cpu_create(0);
    return 0;
}

void gpu_backends_close(void) {
    for (int i = 0; i < 2; i++) {
        if (g.gpu[i]) backend_destroy(g.gpu[i]);
        g.gpu[i] = NULL;
    }
    if (g.cpu) backend_destroy(g.cpu);
    g.cpu = NULL;
}

Backend* gpu_cpu_backend(void) { return g.cpu; }
Backend* gpu_cuda_backend(int bf16) { return g.gpu[bf16 ? 1 : 0]; }

// ----------------------------------------------------------------------------
// case helpers

static void* track(GpuCtx* c, void* p) {
    if (c->nbufs == GPU_MAX_BUFS) fail_msg("a case allocates more than %d backend buffers", GPU_MAX_BUFS);
    c->bufs[c->nbufs++] = p;
    return p;
}

void* gpu_upload(GpuCtx* c, const void* host, size_t bytes) {
    void* p = track(c, c->be->alloc(c->be, bytes ? bytes : 4));
    if (bytes) c->be->upload(c->be, p, host, bytes);
    return p;
}

float* host_randn(GpuCtx* c, size_t n, double scale) {
    float* x = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * rng_normal(&c->rng));
    return x;
}

// the backend buffer d (n floats) filled with N(0, scale^2) entries
static float* fill_randn(GpuCtx* c, float* d, size_t n, double scale) {
    float* h = host_randn(c, n, scale);
    if (n) c->be->upload(c->be, d, h, n * sizeof(float));
    free(h);
    return d;
}

float* gpu_randn(GpuCtx* c, size_t n, double scale) {
    return fill_randn(c, track(c, c->be->alloc(c->be, (n ? n : 1) * sizeof(float))), n, scale);
}

void gpu_rope_inputs(GpuCtx* c, int N, int maxpos, int hd, float** cos_t, float** sin_t, int** pos) {
    const int half = hd / 2;
    float* cs = malloc(sizeof(float) * maxpos * half);
    float* sn = malloc(sizeof(float) * maxpos * half);
    for (int p = 0; p < maxpos; p++) {
        for (int i = 0; i < half; i++) {
            const double f = p * pow(10000.0, -2.0 * i / hd);
            cs[p * half + i] = (float)cos(f);
            sn[p * half + i] = (float)sin(f);
        }
    }
    int* ps = malloc(sizeof(int) * N);
    for (int n = 0; n < N; n++) ps[n] = (int)rng_below(&c->rng, (uint64_t)maxpos);
    *cos_t = gpu_upload(c, cs, sizeof(float) * maxpos * half);
    *sin_t = gpu_upload(c, sn, sizeof(float) * maxpos * half);
    *pos = gpu_upload(c, ps, sizeof(int) * N);
    free(cs), free(sn), free(ps);
}

float* gpu_zeros(GpuCtx* c, size_t n) { return track(c, c->be->alloc(c->be, (n ? n : 1) * sizeof(float))); }

float* gpu_junk(GpuCtx* c, size_t n) { return gpu_randn(c, n, 1e3); }

float* gpu_act_randn(GpuCtx* c, size_t n, double scale) {
    return fill_randn(c, track(c, c->be->alloc_act(c->be, n ? n : 1)), n, scale);
}

float* gpu_act_zeros(GpuCtx* c, size_t n) { return track(c, c->be->alloc_act(c->be, n ? n : 1)); }

float* gpu_act_junk(GpuCtx* c, size_t n) { return gpu_act_randn(c, n, 1e3); }

static void out_push(GpuCtx* c, const char* name, double* v, size_t n, int exact_zero) {
    GpuOutputs* o = c->out;
    if (o->n == GPU_MAX_OUT) fail_msg("a case has more than %d outputs", GPU_MAX_OUT);
    snprintf(o->name[o->n], sizeof o->name[o->n], "%s", name);
    o->v[o->n] = v;
    o->len[o->n] = n;
    o->exact_zero[o->n] = exact_zero;
    o->n++;
}

float* gpu_packed_rows(GpuCtx* c, const float* dev, size_t rows, int ld, int width) {
    float* all = malloc(rows * ld * sizeof(float));
    float* packed = malloc(rows * width * sizeof(float));
    c->be->download(c->be, all, dev, rows * ld * sizeof(float));
    for (size_t r = 0; r < rows; r++) memcpy(packed + r * width, all + r * ld, width * sizeof(float));
    free(all);
    return packed;
}

void gpu_out_host(GpuCtx* c, const char* name, const float* host, size_t n, int exact_zero) {
    double* v = malloc((n ? n : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++) v[i] = host[i];
    out_push(c, name, v, n, exact_zero);
}

void gpu_out(GpuCtx* c, const char* name, const float* dev, size_t n, int exact_zero) {
    float* h = malloc((n ? n : 1) * sizeof(float));
    c->be->download(c->be, h, dev, n * sizeof(float));
    gpu_out_host(c, name, h, n, exact_zero);
    free(h);
}

void gpu_out_scalar(GpuCtx* c, const char* name, double v) {
    double* p = malloc(sizeof(double));
    *p = v;
    out_push(c, name, p, 1, 0);
}

void gpu_out_f64(GpuCtx* c, const char* name, const double* dev, size_t n) {
    double* v = malloc((n ? n : 1) * sizeof(double));
    c->be->download(c->be, v, dev, n * sizeof(double));
    out_push(c, name, v, n, 0);
}

void gpu_out_int(GpuCtx* c, const char* name, const int* dev, size_t n) {
    int* h = malloc((n ? n : 1) * sizeof(int));
    c->be->download(c->be, h, dev, n * sizeof(int));
    double* v = malloc((n ? n : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++) v[i] = h[i];
    free(h);
    out_push(c, name, v, n, 0);
}

void gpu_out_i64(GpuCtx* c, const char* name, const int64_t* dev, size_t n) {
    int64_t* h = malloc((n ? n : 1) * sizeof(int64_t));
    c->be->download(c->be, h, dev, n * sizeof(int64_t));
    double* v = malloc((n ? 2 * n : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        v[2 * i] = (double)(h[i] >> 32);
        v[2 * i + 1] = (double)(h[i] & 0xffffffff);
    }
    free(h);
    out_push(c, name, v, 2 * n, 0);
}

// ----------------------------------------------------------------------------
// running and comparing

static void run_case(Backend* be, int is_ref, GpuCase run, const void* arg, uint64_t seed, GpuOutputs* out) {
    memset(out, 0, sizeof(*out));
    GpuCtx c = {.be = be, .is_ref = is_ref, .out = out};
    rng_seed(&c.rng, seed);
    run(&c, arg);
    for (int i = 0; i < c.nbufs; i++) be->free(be, c.bufs[i]);
}

static void outputs_free(GpuOutputs* o) {
    for (int i = 0; i < o->n; i++) free(o->v[i]);
}

// max |a - b| / max(max |b|, tiny); NaN anywhere gives NaN
static double normalised_error(const double* a, const double* b, size_t n) {
    double err = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs(a[i] - b[i]);
        if (isnan(d)) return NAN;
        err = d > err ? d : err;
        scale = fabs(b[i]) > scale ? fabs(b[i]) : scale;
    }
    return err / (scale > GPU_TINY ? scale : GPU_TINY);
}

void gpu_check(const char* label, GpuCase run, const void* arg, uint64_t seed, TolClass tol) {
    GpuOutputs ref;
    run_case(g.cpu, 1, run, arg, seed, &ref);
    int bad = 0;
    for (int mode = 0; mode < 2; mode++) {
        GpuOutputs a, b;
        run_case(g.gpu[mode], 0, run, arg, seed, &a);
        run_case(g.gpu[mode], 0, run, arg, seed, &b);
        if (a.n != ref.n) fail_msg("%s: the case gave %d outputs on the GPU, %d on the CPU", label, a.n, ref.n);
        const double t = tolerance(tol, mode);
        for (int i = 0; i < ref.n; i++) {
            const double err = normalised_error(a.v[i], ref.v[i], ref.len[i]);
            const int same = memcmp(a.v[i], b.v[i], ref.len[i] * sizeof(double)) == 0;
            size_t zeros_broken = 0;
            if (ref.exact_zero[i]) {
                for (size_t j = 0; j < ref.len[i]; j++) zeros_broken += ref.v[i][j] == 0.0 && a.v[i][j] != 0.0;
            }
            const int ok = err <= t && same && zeros_broken == 0;
            print_message("%s %-44s %-8s %-4s error %.2e (tol %.0e)%s%s\n", ok ? "  ok" : "FAIL", label, ref.name[i],
                          mode_names[mode], err, t, same ? "" : ", two runs differ",
                          zeros_broken ? ", nonzero where the CPU gives exactly 0" : "");
            bad += !ok;
        }
        outputs_free(&a);
        outputs_free(&b);
    }
    outputs_free(&ref);
    g.failed += bad > 0;
}

void gpu_done(void) {
    const int failed = g.failed;
    g.failed = 0;
    if (failed) fail_msg("%d case(s) off (marked FAIL above)", failed);
}
