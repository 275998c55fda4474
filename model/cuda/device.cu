// Device query for builds with the CUDA backend: counts GPUs without aborting when there is
// none, so a CPU-only node runs the same binary.
#include <stdio.h>
#include <string.h>

#include "model/cuda/check.cuh"

extern "C" {
#include "model/device.h"
}

extern "C" int device_cuda_built(void) { return 1; }

extern "C" int device_cuda_count(char* desc, size_t n) {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        snprintf(desc, n, "no usable CUDA GPU: %s", err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
        cudaGetLastError(); // clear the sticky error so later CPU work is unaffected
        return 0;
    }
    size_t used = 0;
    for (int i = 0; i < count && used < n; i++) {
        cudaDeviceProp prop;
        cudaCheck(cudaGetDeviceProperties(&prop, i));
        used += (size_t)snprintf(desc + used, n - used, "%sGPU %d: %s (sm_%d%d, %.0f GiB)", i ? "; " : "", i,
                                 prop.name, prop.major, prop.minor, (double)prop.totalGlobalMem / (1 << 30));
    }
    return count;
}
