// cudaCheck / cublasCheck: abort the job with file, line, the CUDA error and a hint.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

extern "C" {
#include "common/log.h"
}

static inline void cuda_check(cudaError_t err, const char* call, const char* file, int line) {
    if (err == cudaSuccess) return;
    fatal_at(INGRAIN_EXIT_FAILURE, file, line, "CUDA call failed: %s\n  -> %s: %s (at %s:%d)\n"
             "  hint: check that the GPU is visible (nvidia-smi, CUDA_VISIBLE_DEVICES) and has free memory",
             call, cudaGetErrorName(err), cudaGetErrorString(err), file, line);
}
#define cudaCheck(call) cuda_check((call), #call, __FILE__, __LINE__)

static inline void cublas_check(cublasStatus_t st, const char* call, const char* file, int line) {
    if (st == CUBLAS_STATUS_SUCCESS) return;
    fatal_at(INGRAIN_EXIT_FAILURE, file, line, "cuBLAS call failed: %s\n  -> %s: %s (at %s:%d)\n"
             "  hint: an invalid shape or leading dimension, or the GPU ran out of memory",
             call, cublasGetStatusName(st), cublasGetStatusString(st), file, line);
}
#define cublasCheck(call) cublas_check((call), #call, __FILE__, __LINE__)

// a kernel launch: the launch error now (bad shape, too much shared memory); faults surface at
// the next synchronising call
#define cudaCheckLaunch() cudaCheck(cudaGetLastError())
