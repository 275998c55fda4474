// The GPU's own numbers that the benchmarks report beside ingrain's: cuBLAS's bf16 GEMM
// throughput measured in the same run, and the device name (to look up the datasheet peak).
// Builds without the CUDA backend get versions that fail with a clear reason (device_nocuda.c).
#pragma once
#include <stddef.h>

#include "model/bench_matmul.h"

// Times an n x n x n bf16 cublasGemmEx (bf16 inputs and output, fp32 accumulation, random data
// in [-1, 1]) with CUDA events after warm-ups, on GPU `device`. Returns TFLOP/s (2 n^3 per
// product), or -1 with the reason in err. The calling thread's current device is restored.
double cuda_gemm_peak_tflops(int device, int n, char* err, size_t errlen);

// The name of GPU `device` ("NVIDIA H100 80GB HBM3"); 0, or -1 with the reason in err.
int cuda_device_name(int device, char* name, size_t n, char* err, size_t errlen);

// Bytes of GPU `device`'s memory in use (by every process: total - free, cudaMemGetInfo) and its
// total; 0, or -1 with the reason in err.
int cuda_memory_in_use(int device, size_t* used, size_t* total, char* err, size_t errlen);

// cuBLAS alone on the products of a training step in the bf16 mode: each call as one
// cublasGemmEx on operands already packed in bf16 (random data), fp32 accumulation and an fp32 C
// with the call's ldc, alpha and beta; what the backend's bf16 matmuls would cost without their
// operand copies. After one warm-up pass, seconds[p] = pass p over the calls (CUDA events), for
// `passes` passes. 0, or -1 with the reason in err. On GPU `device`; the calling thread's current
// device is restored.
int cuda_gemm_replay(int device, const MatmulCall* calls, int n, int passes, double* seconds, char* err,
                     size_t errlen);
