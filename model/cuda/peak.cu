// cuBLAS's own bf16 GEMM throughput, cuBLAS alone on a step's products, and the device name (see
// model/cuda_peak.h). Errors are returned, not fatal: a benchmark prints them beside its own figures.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

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

// releases what a measurement set up (NULL parts are skipped) and restores the device
static void peak_release(cudaEvent_t start, cudaEvent_t stop, cublasHandle_t h, void* a, void* b, void* c, void* ws,
                         int prev) {
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    if (h) cublasDestroy(h);
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);
    cudaFree(ws);
    cudaSetDevice(prev);
}

extern "C" int cuda_device_name(int device, char* name, size_t n, char* err, size_t errlen) {
    cudaDeviceProp prop;
    if (peak_cuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties", err, errlen)) return -1;
    snprintf(name, n, "%s", prop.name);
    return 0;
}

extern "C" double cuda_gemm_peak_tflops(int device, int n, char* err, size_t errlen) {
    int prev = 0;
    if (peak_cuda(cudaGetDevice(&prev), "cudaGetDevice", err, errlen)) return -1.0;
    if (peak_cuda(cudaSetDevice(device), "cudaSetDevice", err, errlen)) return -1.0;
    const size_t nn = (size_t)n * n;
    __nv_bfloat16 *A = NULL, *B = NULL, *C = NULL;
    cublasHandle_t h = NULL;
    cudaEvent_t start = NULL, stop = NULL;
    const float alpha = 1.0f, beta = 0.0f;
    float ms = 0.0f;
    int bad = peak_cuda(cudaMalloc(&A, nn * sizeof(__nv_bfloat16)), "cudaMalloc", err, errlen) ||
              peak_cuda(cudaMalloc(&B, nn * sizeof(__nv_bfloat16)), "cudaMalloc", err, errlen) ||
              peak_cuda(cudaMalloc(&C, nn * sizeof(__nv_bfloat16)), "cudaMalloc", err, errlen) ||
              peak_cublas(cublasCreate(&h), "cublasCreate", err, errlen) ||
              peak_cuda(cudaEventCreate(&start), "cudaEventCreate", err, errlen) ||
              peak_cuda(cudaEventCreate(&stop), "cudaEventCreate", err, errlen);
    if (!bad) {
        peak_fill<<<1024, 256>>>(A, nn, 1u);
        peak_fill<<<1024, 256>>>(B, nn, 2u);
        bad = peak_cuda(cudaGetLastError(), "peak_fill", err, errlen);
    }
    for (int i = 0; !bad && i < PEAK_WARMUP + PEAK_ITERS; i++) {
        if (i == PEAK_WARMUP) bad = peak_cuda(cudaEventRecord(start), "cudaEventRecord", err, errlen);
        if (!bad) {
            bad = peak_cublas(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, A, CUDA_R_16BF, n, B,
                                           CUDA_R_16BF, n, &beta, C, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                                           CUBLAS_GEMM_DEFAULT),
                              "cublasGemmEx (bf16, fp32 accumulation)", err, errlen);
        }
    }
    if (!bad) bad = peak_elapsed(start, stop, &ms, err, errlen);
    peak_release(start, stop, h, A, B, C, NULL, prev);
    if (bad) return -1.0;
    return 2.0 * (double)n * n * n * PEAK_ITERS / (1e-3 * (double)ms) / 1e12;
}

extern "C" int cuda_gemm_replay(int device, const MatmulCall* calls, int n, int passes, double* seconds, char* err,
                                size_t errlen) {
    int prev = 0;
    if (peak_cuda(cudaGetDevice(&prev), "cudaGetDevice", err, errlen)) return -1;
    if (peak_cuda(cudaSetDevice(device), "cudaSetDevice", err, errlen)) return -1;
    size_t na = 1, nb = 1, nc = 1; // packed operands (as the backend's copies), C as recorded
    for (int i = 0; i < n; i++) {
        const size_t a = (size_t)calls[i].M * calls[i].K, b = (size_t)calls[i].K * calls[i].N;
        const size_t c = (size_t)calls[i].M * calls[i].ldc;
        na = a > na ? a : na;
        nb = b > nb ? b : nb;
        nc = c > nc ? c : nc;
    }
    __nv_bfloat16 *A = NULL, *B = NULL;
    float* C = NULL;
    void* ws = NULL;
    cublasHandle_t h = NULL;
    cudaEvent_t start = NULL, stop = NULL;
    float ms = 0.0f;
    int bad = peak_cuda(cudaMalloc(&A, na * sizeof(__nv_bfloat16)), "cudaMalloc", err, errlen) ||
              peak_cuda(cudaMalloc(&B, nb * sizeof(__nv_bfloat16)), "cudaMalloc", err, errlen) ||
              peak_cuda(cudaMalloc(&C, nc * sizeof(float)), "cudaMalloc", err, errlen) ||
              peak_cuda(cudaMemset(C, 0, nc * sizeof(float)), "cudaMemset", err, errlen) ||
              peak_cuda(cudaMalloc(&ws, PEAK_CUBLAS_WS_BYTES), "cudaMalloc", err, errlen) ||
              peak_cublas(cublasCreate(&h), "cublasCreate", err, errlen) ||
              peak_cublas(cublasSetWorkspace(h, ws, PEAK_CUBLAS_WS_BYTES), "cublasSetWorkspace", err, errlen) ||
              peak_cuda(cudaEventCreate(&start), "cudaEventCreate", err, errlen) ||
              peak_cuda(cudaEventCreate(&stop), "cudaEventCreate", err, errlen);
    if (!bad) {
        peak_fill<<<1024, 256>>>(A, na, 3u);
        peak_fill<<<1024, 256>>>(B, nb, 4u);
        bad = peak_cuda(cudaGetLastError(), "peak_fill", err, errlen);
    }
    // as cuda_matmul: the row-major C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T
    for (int pass = -1; pass < passes && !bad; pass++) {
        if (pass >= 0) bad = peak_cuda(cudaEventRecord(start), "cudaEventRecord", err, errlen);
        for (int i = 0; i < n && !bad; i++) {
            const MatmulCall* c = &calls[i];
            const int a_cols = c->ta ? c->M : c->K, b_cols = c->tb ? c->K : c->N;
            bad = peak_cublas(cublasGemmEx(h, c->tb ? CUBLAS_OP_T : CUBLAS_OP_N, c->ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                           c->N, c->M, c->K, &c->alpha, B, CUDA_R_16BF, b_cols, A, CUDA_R_16BF,
                                           a_cols, &c->beta, C, CUDA_R_32F, c->ldc, CUBLAS_COMPUTE_32F,
                                           CUBLAS_GEMM_DEFAULT),
                              "cublasGemmEx (bf16 operands, fp32 C)", err, errlen);
        }
        if (pass >= 0 && !bad) {
            bad = peak_elapsed(start, stop, &ms, err, errlen);
            seconds[pass] = 1e-3 * (double)ms;
        }
    }
    peak_release(start, stop, h, A, B, C, ws, prev);
    return bad ? -1 : 0;
}
