// The compute backend a command asks for: the CPU, or a CUDA GPU with f32 or bf16 matmuls. Runs
// name it in the config (model.device, model.dtype), the single-process commands (generate, score,
// the model benchmarks) with --device and --bf16; every command creates its Backend here, so the
// rules live in one place.
#pragma once
#include <stddef.h>

#include "io/config.h"
#include "model/ops.h"

// "cpu" or "cuda" into *out; -1 for another name
int backend_device_parse(const char* name, DeviceKind* out);

// DEVICE_CPU: backend_cpu_create(threads). DEVICE_CUDA: backend_cuda_create on GPU
// local_rank % (GPUs on this node), with bf16 matmuls when bf16. NULL with the reason in err for
// bf16 on the CPU (the CPU backend computes in f32 only), no usable GPU, or a GPU that fails to start.
Backend* backend_open(DeviceKind device, int bf16, int threads, int local_rank, char* err, size_t errlen);

// backend_open for a command's --device NAME [--bf16] (GPU 0, or the CPU with threads); err
// starts with those options and also covers a NAME other than cpu or cuda
Backend* backend_open_flags(const char* device, int bf16, int threads, char* err, size_t errlen);

// backend_open from model.device and model.dtype; err names the keys and where they were set
Backend* model_backend_create(const Config* c, int threads, int local_rank, char* err, size_t errlen);

// One line on a backend from backend_open(..., bf16, ..., local_rank, ...):
// "cpu with 8 threads (OpenBLAS SkylakeX kernels)" or "cuda GPU 1 of 4 (NVIDIA H100 80GB HBM3), bf16 matmuls".
void backend_describe(const Backend* be, int bf16, int local_rank, char* buf, size_t n);
