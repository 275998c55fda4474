// Running one op case on the CPU backend and on the CUDA backend and comparing the outputs (the
// harness of test_ops_gpu.c). A case is a function that builds its inputs from the case's seed
// (so every backend sees the same numbers), runs the op through Backend and hands its outputs
// back as host arrays. gpu_check runs it once on the CPU (the reference) and twice in each CUDA
// mode, f32 and bf16 matmuls, then checks per output
//   error = max |gpu - cpu| / max(max |cpu|, 1e-30)  <=  the tolerance of the case's class and mode
//   the two GPU runs are bit-identical                  (ops.h: results are deterministic)
//   where the case asks, every element the CPU leaves exactly 0 (padded rows) is exactly 0
// and prints each error, so a run on a GPU records the measured errors beside the tolerances.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "model/ops.h"
#include "model/rng.h"

#define GPU_MAX_OUT 8   // outputs per case
#define GPU_MAX_BUFS 24 // backend buffers per case

// tolerance classes (values in gpu_compare.c)
typedef enum {
    TOL_ELEMENTWISE, // f32 1e-5, bf16 mode 1e-5: ops that bf16 mode leaves in f32
    TOL_MATMUL,      // f32 1e-4, bf16 mode 1e-2: matmuls and the attention forward
    TOL_ATTN_BWD,    // f32 1e-4, bf16 mode 2e-2: the attention backward (two chained products)
    TOL_EXACT,       // 0 in both modes: the trainer's fixed-point sums and block norms
    TOL_ACT,         // f32 1e-5, bf16 mode 1.5e-2: ops on activation buffers (bf16 storage there)
} TolClass;

typedef struct {
    int n;
    char name[GPU_MAX_OUT][32]; // copied: a case may build names in a loop
    double* v[GPU_MAX_OUT];
    size_t len[GPU_MAX_OUT];
    int exact_zero[GPU_MAX_OUT];
} GpuOutputs;

// what a case function gets: the backend, a fresh Rng seeded from the case's seed, whether this
// is the reference run, and the buffers it allocated (freed after the case)
typedef struct {
    Backend* be;
    int is_ref;
    Rng rng;
    void* bufs[GPU_MAX_BUFS];
    int nbufs;
    GpuOutputs* out;
} GpuCtx;

typedef void (*GpuCase)(GpuCtx* c, const void* arg);

// The backends the harness compares: the CPU reference and the CUDA backend in f32 and bf16
// mode. Returns 0, or -1 with the reason (no GPU) in err.
int gpu_backends_open(char* err, size_t errlen);
void gpu_backends_close(void);
Backend* gpu_cpu_backend(void);
Backend* gpu_cuda_backend(int bf16); // the CUDA backend of f32 (0) or bf16 (1) mode

// Runs `run(ctx, arg)` on every backend with Rng seed `seed`, checks the outputs and prints each
// one's error (FAIL when off). gpu_done, at the end of a cmocka test, fails the test when a case
// since the last gpu_done was off: one run on a GPU reports every failing case.
void gpu_check(const char* label, GpuCase run, const void* arg, uint64_t seed, TolClass tol);
void gpu_done(void);

// ----------------------------------------------------------------------------
// helpers for case functions (every buffer is a backend buffer owned by the ctx)

void* gpu_upload(GpuCtx* c, const void* host, size_t bytes);
float* gpu_randn(GpuCtx* c, size_t n, double scale); // N(0, scale^2) entries
float* gpu_zeros(GpuCtx* c, size_t n);
float* gpu_junk(GpuCtx* c, size_t n); // large random values: an output every element of which must be written
// the same as activation buffers (Backend.alloc_act: bf16 storage in the bf16 mode)
float* gpu_act_randn(GpuCtx* c, size_t n, double scale);
float* gpu_act_zeros(GpuCtx* c, size_t n);
float* gpu_act_junk(GpuCtx* c, size_t n);
float* host_randn(GpuCtx* c, size_t n, double scale); // malloc'ed; the caller frees
// RoPE's tables (maxpos, hd / 2) for theta 10000, and N positions drawn below maxpos
void gpu_rope_inputs(GpuCtx* c, int N, int maxpos, int hd, float** cos_t, float** sin_t, int** pos);
// an output: n floats downloaded from dev, or copied from host
void gpu_out(GpuCtx* c, const char* name, const float* dev, size_t n, int exact_zero);
void gpu_out_host(GpuCtx* c, const char* name, const float* host, size_t n, int exact_zero);
// rows of a backend buffer (rows, ld), width columns each, packed into a malloc'ed host array (the
// gaps between rows are not an op's to write); the caller frees
float* gpu_packed_rows(GpuCtx* c, const float* dev, size_t rows, int ld, int width);
void gpu_out_scalar(GpuCtx* c, const char* name, double v);
void gpu_out_f64(GpuCtx* c, const char* name, const double* dev, size_t n); // n doubles from dev
void gpu_out_int(GpuCtx* c, const char* name, const int* dev, size_t n);    // n ints from dev
// n int64 downloaded from dev, each as two exact doubles (its high and low 32 bits)
void gpu_out_i64(GpuCtx* c, const char* name, const int64_t* dev, size_t n);
