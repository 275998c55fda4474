// Stand-ins for builds without the CUDA backend (INGRAIN_CUDA=OFF or no nvcc): the device query,
// backend_cuda_create and the GPU benchmark helpers, each failing with the reason.
#include <stdio.h>

#include "model/cuda_peak.h"
#include "model/device.h"
#include "model/ops.h"

int device_cuda_built(void) { return 0; }

int device_cuda_count(char* desc, size_t n) {
    snprintf(desc, n, "this binary was built without the CUDA backend (configure with -DINGRAIN_CUDA=ON)");
    return 0;
}

Backend* backend_cuda_create(int device, int bf16, char* err, size_t errlen) {
    (void)device;
    (void)bf16;
    snprintf(err, errlen, "this binary was built without the CUDA backend (configure with -DINGRAIN_CUDA=ON)");
    return NULL;
}

double cuda_gemm_peak_tflops(int device, int n, char* err, size_t errlen) {
    (void)device;
    (void)n;
    snprintf(err, errlen, "this binary was built without the CUDA backend (configure with -DINGRAIN_CUDA=ON)");
    return -1.0;
}

int cuda_device_name(int device, char* name, size_t n, char* err, size_t errlen) {
    (void)device;
    if (n) name[0] = '\0';
    snprintf(err, errlen, "this binary was built without the CUDA backend (configure with -DINGRAIN_CUDA=ON)");
    return -1;
}

int cuda_memory_in_use(int device, size_t* used, size_t* total, char* err, size_t errlen) {
    (void)device;
    *used = *total = 0;
    snprintf(err, errlen, "this binary was built without the CUDA backend (configure with -DINGRAIN_CUDA=ON)");
    return -1;
}

int cuda_gemm_replay(int device, const MatmulCall* calls, int n, int passes, double* seconds, char* err,
                     size_t errlen) {
    (void)device;
    (void)calls;
    (void)n;
    (void)passes;
    (void)seconds;
    snprintf(err, errlen, "this binary was built without the CUDA backend (configure with -DINGRAIN_CUDA=ON)");
    return -1;
}
