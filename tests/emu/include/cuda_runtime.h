// A host stand-in for the part of the CUDA runtime API the CUDA backend uses (model/cuda/*.cu),
// for its emulated build (tests/emu/CMakeLists.txt): one "device" whose memory is host memory and
// whose kernels run through tests/emu/cuda_emu.h as they are launched; every stream is in order
// and already synchronous. Calls that fail on a GPU for a bad argument fail here too.
#pragma once
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <unordered_map>

#include "tests/emu/cuda_emu.h"

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidDevice = 101,
} cudaError_t;

typedef struct EmuStream* cudaStream_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

struct cudaDeviceProp {
    char name[256];
    int major, minor, multiProcessorCount;
    size_t totalGlobalMem;
};

#define EMU_DEVICE_BYTES ((size_t)16 << 30) // what the emulated device reports as its memory

inline const char* cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    }
    return "cudaErrorUnknown";
}
inline const char* cudaGetErrorString(cudaError_t e) { return cudaGetErrorName(e); }
inline cudaError_t cudaGetLastError() { return cudaSuccess; } // a bad launch stops in cuda_emu.h

inline cudaError_t cudaGetDeviceCount(int* n) {
    *n = 1;
    return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
inline cudaError_t cudaGetDevice(int* d) {
    *d = 0;
    return cudaSuccess;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
    if (d != 0) return cudaErrorInvalidDevice;
    memset(p, 0, sizeof *p);
    strcpy(p->name, "cuda_emu (host emulation)");
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 8;
    p->totalGlobalMem = EMU_DEVICE_BYTES;
    return cudaSuccess;
}
// each process has a GPU of its own (its memory is the process's), so the bus id names the process:
// ranks on one host have distinct ones, as ranks on distinct GPUs do (devcomm_key)
inline cudaError_t cudaDeviceGetPCIBusId(char* bus, int len, int d) {
    if (d != 0) return cudaErrorInvalidDevice;
    snprintf(bus, (size_t)len, "emu-pid-%ld", (long)getpid());
    return cudaSuccess;
}
inline cudaError_t cudaMemGetInfo(size_t* free_b, size_t* total_b) {
    *free_b = *total_b = EMU_DEVICE_BYTES;
    return cudaSuccess;
}

// ----------------------------------------------------------------------------
// memory: 256-byte aligned host blocks, as cudaMalloc's alignment, each ending (its size rounded up
// to 256 bytes) where an inaccessible page begins, so that a kernel reading or writing past the
// end of an allocation faults here, as it may on a GPU. A block whose size is a whole number of
// pages begins where its mapping does, which may be right where another mapping ends, as the
// driver's reservations for device memory may on a GPU (the bf16 mode's activation handles are
// host reservations, and the backend must not take such a block for one). A fresh block holds
// 0xff bytes (NaN as fp32 and bf16), not zeros: a kernel that reads scratch it has not written shows.

struct EmuMapping {
    void* base;
    size_t bytes;
};
inline std::unordered_map<void*, EmuMapping> emu_mappings;

inline cudaError_t cudaMalloc(void** p, size_t n) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), used = (n + 255) / 256 * 256 + (n == 0) * 256;
    const size_t bytes = (used + page - 1) / page * page + page;
    char* base = (char*)mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == (char*)MAP_FAILED) return cudaErrorMemoryAllocation;
    char* guard = base + bytes - page;
    if (mprotect(guard, page, PROT_NONE) != 0) abort();
    *p = guard - used;
    memset(*p, 0xff, used); // as uninitialised device memory may hold anything: NaN in fp32 and bf16
    emu_mappings[*p] = {base, bytes};
    return cudaSuccess;
}
template <class T> inline cudaError_t cudaMalloc(T** p, size_t n) { return cudaMalloc((void**)p, n); }
inline cudaError_t cudaFree(void* p) {
    if (!p) return cudaSuccess;
    const auto m = emu_mappings.find(p);
    if (m == emu_mappings.end()) return cudaErrorInvalidValue;
    munmap(m->second.base, m->second.bytes);
    emu_mappings.erase(m);
    return cudaSuccess;
}
inline cudaError_t cudaMallocHost(void** p, size_t n) { return cudaMalloc(p, n); }
template <class T> inline cudaError_t cudaMallocHost(T** p, size_t n) { return cudaMalloc((void**)p, n); }
inline cudaError_t cudaFreeHost(void* p) { return cudaFree(p); }
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t = 0) {
    memset(p, v, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemset(void* p, int v, size_t n) { return cudaMemsetAsync(p, v, n); }
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind, cudaStream_t = 0) {
    if (n && dst != src) memcpy(dst, src, n); // cudaMemcpy's ranges may not overlap either
    return cudaSuccess;
}

// ----------------------------------------------------------------------------
// streams and kernels

inline cudaError_t cudaStreamCreate(cudaStream_t* s) {
    static int one;
    *s = (cudaStream_t)(void*)&one;
    return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

// events: the host's clock when recorded (every stream is synchronous)
typedef struct EmuEvent* cudaEvent_t;
inline cudaError_t cudaEventCreate(cudaEvent_t* e) {
    *e = (cudaEvent_t)calloc(1, sizeof(double));
    return *e ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
    free(e);
    return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t = 0) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    *(double*)(void*)e = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
    return cudaSuccess;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
    *ms = (float)(*(double*)(void*)b - *(double*)(void*)a);
    return cudaSuccess;
}

template <class K> inline cudaError_t cudaFuncSetAttribute(K, cudaFuncAttribute, int value) {
    return value >= 0 && value <= EMU_SMEM_BYTES ? cudaSuccess : cudaErrorInvalidValue;
}

// kernel<<<grid, block[, smem[, stream]]>>>(args), as tests/emu/unlaunch.py rewrites it
template <class F> inline void emu_launch_cfg(const char* name, dim3 grid, dim3 block, F kernel) {
    emu_launch(grid, block, 0, kernel, name);
}
template <class F> inline void emu_launch_cfg(const char* name, dim3 grid, dim3 block, size_t smem, F kernel) {
    emu_launch(grid, block, smem, kernel, name);
}
template <class F>
inline void emu_launch_cfg(const char* name, dim3 grid, dim3 block, size_t smem, cudaStream_t, F kernel) {
    emu_launch(grid, block, smem, kernel, name);
}
