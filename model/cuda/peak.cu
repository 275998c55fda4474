// cuBLAS's own bf16 GEMM throughput, cuBLAS alone on a step's products, and the device name (see
// model/cuda_peak.h). Errors are returned, not fatal: a benchmark prints them beside its own figures.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

extern "C" {
#include "model/cuda_peak.h"
}

#define PEAK_WARMUP 3
#define PEAK_ITERS 10
#define PEAK_CUBLAS_WS_BYTES (32u << 20) // the backend's cuBLAS workspace

// uniform in [-1, 1) from a hash of the index: random data draws the power a real product does
// (an all-zero product runs measurably faster)
__global__ static void peak_fill(__nv_bfloat16* x, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 16;
        h *= 0x85ebca6bu;
        h ^= h >> 13;
        x[i] = __float2bfloat16((float)(h >> 8) * (2.0f / 16777216.0f) - 1.0f);
    }
}

// record the first failure in err; later calls keep it
static int peak_cuda(cudaError_t e, const char* what, char* err, size_t errlen) {
    if (e == cudaSuccess) return 0;
    snprintf(err, errlen, "%s: %s", what, cudaGetErrorString(e));
    cudaGetLastError(); // clear a non-sticky error so the caller's later work is unaffected
    return -1;
}

static int peak_cublas(cublasStatus_t s, const char* what, char* err, size_t errlen) {
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    snprintf(err, errlen, "%s: cuBLAS status %d", what, (int)s);
    return -1;
}

// the milliseconds from start to stop, recorded now on the default stream; -1 on failure
static int peak_elapsed(cudaEvent_t start, cudaEvent_t stop, float* ms, char* err, size_t errlen) {
    return peak_cuda(cudaEventRecord(stop), "cudaEventRecord", err, errlen) ||
                   peak_cuda(cudaEventSynchronize(stop), "cudaEventSynchronize", err, errlen) ||
                   peak_cuda(cudaEventElapsedTime(ms, start, stop), "cudaEventElapsedTime", err, errlen)
               ? -1
               : 0;
}

// What a measurement runs on: random bf16 operands A (na) and B (nb), a zeroed C of c_bytes, a
// cuBLAS handle (with its own workspace of ws_bytes when nonzero, as the backend's), two events,
// all on GPU `device`; prev is the device to go back to.
typedef struct {
    __nv_bfloat16 *A, *B;
    void *C, *ws;
    cublasHandle_t h;
    cudaEvent_t start, stop;
    int prev;
} PeakRun;

// releases what peak_open set up (the parts it got to) and restores the device
static void peak_close(PeakRun* r) {
    if (r->start) cudaEventDestroy(r->start);
    if (r->stop) cudaEventDestroy(r->stop);
    if (r->h) cublasDestroy(r->h);
    cudaFree(r->A);
    cudaFree(r->B);
    cudaFree(r->C);
    cudaFree(r->ws);
    cudaSetDevice(r->prev);
}

// 0, or -1 with the reason in err; either way peak_close releases what was set up
static int peak_open(PeakRun* r, int device, size_t na, size_t nb, size_t c_bytes, size_t ws_bytes, char* err,
                     size_t errlen) {
    memset(r, 0, sizeof(*r));
    if (peak_cuda(cudaGetDevice(&r->prev), "cudaGetDevice", err, errlen)) return -1;
    if (peak_cuda(cudaSetDevice(device), "cudaSetDevice", err, errlen)) return -1;
    int bad = peak_cuda(cudaMalloc(&r->A, na * sizeof(__nv_bfloat16)), "cudaMalloc", err, errlen) ||
              peak_cuda(cudaMalloc(&r->B, nb * sizeof(__nv_bfloat16)), "cudaMalloc", err, errlen) ||
              peak_cuda(cudaMalloc(&r->C, c_bytes), "cudaMalloc", err, errlen) ||
              peak_cuda(cudaMemset(r->C, 0, c_bytes), "cudaMemset", err, errlen) ||
              peak_cublas(cublasCreate(&r->h), "cublasCreate", err, errlen) ||
              peak_cuda(cudaEventCreate(&r->start), "cudaEventCreate", err, errlen) ||
              peak_cuda(cudaEventCreate(&r->stop), "cudaEventCreate", err, errlen);
    if (!bad && ws_bytes) {
        bad = peak_cuda(cudaMalloc(&r->ws, ws_bytes), "cudaMalloc", err, errlen) ||
              peak_cublas(cublasSetWorkspace(r->h, r->ws, ws_bytes), "cublasSetWorkspace", err, errlen);
    }
    if (bad) return -1;
    peak_fill<<<1024, 256>>>(r->A, na, 1u);
    peak_fill<<<1024, 256>>>(r->B, nb, 2u);
    return peak_cuda(cudaGetLastError(), "peak_fill", err, errlen);
}

extern "C" int cuda_device_name(int device, char* name, size_t n, char* err, size_t errlen) {
    cudaDeviceProp prop;
    if (peak_cuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties", err, errlen)) return -1;
    snprintf(name, n, "%s", prop.name);
    return 0;
}

extern "C" int cuda_memory_in_use(int device, size_t* used, size_t* total, char* err, size_t errlen) {
    int prev = 0;
    size_t free_b = 0;
    if (peak_cuda(cudaGetDevice(&prev), "cudaGetDevice", err, errlen) ||
        peak_cuda(cudaSetDevice(device), "cudaSetDevice", err, errlen)) {
        return -1;
    }
    const int bad = peak_cuda(cudaMemGetInfo(&free_b, total), "cudaMemGetInfo", err, errlen);
    cudaSetDevice(prev);
    if (bad) return -1;
    *used = *total - free_b;
    return 0;
}

extern "C" double cuda_gemm_peak_tflops(int device, int n, char* err, size_t errlen) {
    const size_t nn = (size_t)n * n;
    const float alpha = 1.0f, beta = 0.0f;
    float ms = 0.0f;
    PeakRun r;
    int bad = peak_open(&r, device, nn, nn, nn * sizeof(__nv_bfloat16), 0, err, errlen);
    for (int i = 0; !bad && i < PEAK_WARMUP + PEAK_ITERS; i++) {
        if (i == PEAK_WARMUP) bad = peak_cuda(cudaEventRecord(r.start), "cudaEventRecord", err, errlen);
        if (!bad) {
            bad = peak_cublas(cublasGemmEx(r.h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, r.A, CUDA_R_16BF, n, r.B,
                                           CUDA_R_16BF, n, &beta, r.C, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                                           CUBLAS_GEMM_DEFAULT),
                              "cublasGemmEx (bf16, fp32 accumulation)", err, errlen);
        }
    }
    if (!bad) bad = peak_elapsed(r.start, r.stop, &ms, err, errlen);
    peak_close(&r);
    if (bad) return -1.0;
    return 2.0 * (double)n * n * n * PEAK_ITERS / (1e-3 * (double)ms) / 1e12;
}

extern "C" int cuda_gemm_replay(int device, const MatmulCall* calls, int n, int passes, double* seconds, char* err,
                                size_t errlen) {
    size_t na = 1, nb = 1, nc = 1; // packed operands (as the backend's copies), C as recorded
    for (int i = 0; i < n; i++) {
        const size_t a = (size_t)calls[i].M * calls[i].K, b = (size_t)calls[i].K * calls[i].N;
        const size_t c = (size_t)calls[i].M * calls[i].ldc;
        na = a > na ? a : na;
        nb = b > nb ? b : nb;
        nc = c > nc ? c : nc;
    }
    float ms = 0.0f;
    PeakRun r;
    int bad = peak_open(&r, device, na, nb, nc * sizeof(float), PEAK_CUBLAS_WS_BYTES, err, errlen);
    // as cuda_matmul: the row-major C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T
    for (int pass = -1; pass < passes && !bad; pass++) {
        if (pass >= 0) bad = peak_cuda(cudaEventRecord(r.start), "cudaEventRecord", err, errlen);
        for (int i = 0; i < n && !bad; i++) {
            const MatmulCall* c = &calls[i];
            const int a_cols = c->ta ? c->M : c->K, b_cols = c->tb ? c->K : c->N;
            bad = peak_cublas(cublasGemmEx(r.h, c->tb ? CUBLAS_OP_T : CUBLAS_OP_N, c->ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                           c->N, c->M, c->K, &c->alpha, r.B, CUDA_R_16BF, b_cols, r.A, CUDA_R_16BF,
                                           a_cols, &c->beta, r.C, CUDA_R_32F, c->ldc, CUBLAS_COMPUTE_32F,
                                           CUBLAS_GEMM_DEFAULT),
                              "cublasGemmEx (bf16 operands, fp32 C)", err, errlen);
        }
        if (pass >= 0 && !bad) {
            bad = peak_elapsed(r.start, r.stop, &ms, err, errlen);
            seconds[pass] = 1e-3 * (double)ms;
        }
    }
    peak_close(&r);
    return bad ? -1 : 0;
}
