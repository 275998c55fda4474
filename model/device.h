// Which compute devices this build and this node offer (CPU always; CUDA when built with nvcc
// and a GPU is present). Used by `ingrain version`, config checks and GPU test skipping.
#pragma once
#include <stddef.h>

// 1 if this binary was built with the CUDA backend
int device_cuda_built(void);
// number of usable CUDA GPUs on this node (0 without a GPU or without the CUDA backend);
// fills `desc` with a one-line description (GPU names, or why there is none)
int device_cuda_count(char* desc, size_t n);
