// cudaCheck / cublasCheck: abort the job with file, line, the CUDA error and a hint.
#pragma once
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
