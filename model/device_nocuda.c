// Device query for builds without the CUDA backend (INGRAIN_CUDA=OFF or no nvcc).
#include <stdio.h>

#include "model/device.h"

int device_cuda_built(void) { return 0; }

int device_cuda_count(char* desc, size_t n) {
    snprintf(desc, n, "this binary was built without the CUDA backend (configure with -DINGRAIN_CUDA=ON)");
    return 0;
}
