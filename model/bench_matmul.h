// The model benchmarks' matmul recorder (bench.c, bench_decode.c): interposed on Backend.matmul
// and Backend.linear_bwd, it logs every product (shape, leading dimensions, scalars, operands)
// while recording is on, so a benchmark can replay exactly the matmuls of one step alone and
// compare the step with the matmul library it is built on. A linear_bwd is logged as its two
// products over the stacked blocks (dx of depth sum(rows), the stacked weight gradient: the same
// FLOPs as its 2n block products) with NULL operands, so it replays on scratch operands only.
// One recorder per process (Backend.matmul carries no context).
#pragma once
#include "model/ops.h"

typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B; // backend operands as recorded (NULL: a linear_bwd's stacked product)
    float* C;
} MatmulCall;

// Interposes the recorder on be->matmul (recording off, no calls logged); uninstall restores it.
void bench_matmul_install(Backend* be);
void bench_matmul_uninstall(Backend* be);
void bench_matmul_record(int on);
int bench_matmul_count(void);
const MatmulCall* bench_matmul_calls(void);
double bench_matmul_flops(void); // 2 M N K summed over the logged calls
void bench_matmul_clear(void);   // forget the logged calls

// Scratch operands big enough for every logged call (backend buffers; free with be->free).
typedef struct {
    float *A, *B, *C;
} MatmulScratch;
MatmulScratch bench_matmul_scratch(Backend* be);

// The logged calls once, back to back, through fn (NULL: the backend's own matmul): on the
// recorded operands (s NULL), or on the scratch operands with alpha 1. Returns seconds,
// synchronised.
double bench_matmul_replay(Backend* be, const MatmulScratch* s, MatmulFn fn);
