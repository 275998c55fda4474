// Device helpers shared by the CUDA backend's kernels: ceil division, 4-element alignment, the
// warp and block reductions (fixed shuffle trees), the running max and sum of exponentials that
// storage.cuh's row_max_sum combines, and the first index of a block's max. Plain CUDA without
// library headers, so that tests/emu can build the kernels that use them on the host.
#pragma once
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

// ceil(a / b)
__host__ __device__ static inline size_t cuda_cdiv(size_t a, size_t b) { return (a + b - 1) / b; }
// ----------------------------------------------------------------------------
// block reductions (fixed shuffle trees: results depend on the data only, never on timing)

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// every thread of the block gets the result; sh: 32 floats of shared memory; blockDim.x a
// multiple of 32. Starts and ends with a barrier so sh can be reused right away.
__device__ __forceinline__ float block_max(float v, float* sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    v = warp_max(v);
    __syncthreads();
    return v;
}

__device__ __forceinline__ float block_sum(float v, float* sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    v = warp_sum(v);
    __syncthreads();
    return v;
}

// sh: 32 doubles
__device__ __forceinline__ double block_sum_d(double v, double* sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0;
    v = warp_sum_d(v);
    __syncthreads();
    return v;
}

// ----------------------------------------------------------------------------
// a running max and sum of exponentials (storage.cuh's row_max_sum), and alignment

// x into the running (max m, sum s of exp(. - m)) of one thread
__device__ __forceinline__ void online_add(float& m, double& s, float x) {
    if (x > m) {
        s = (m == -INFINITY ? 0.0 : s * (double)expf(m - x)) + 1.0;
        m = x;
    } else if (m != -INFINITY) {
        s += (double)expf(x - m);
    }
}

// whether p is aligned to 4 elements, and whether every row of (rows, C) elements of type T at p
// can go 4 at a time (host and device)
template <typename T> __host__ __device__ inline int aligned4(const T* p) {
    return (uintptr_t)p % (4 * sizeof(T)) == 0;
}
template <typename T> __host__ __device__ inline int rows_vec4(const T* p, int C) { return C % 4 == 0 && aligned4(p); }

// ----------------------------------------------------------------------------
// first index of the max

// (va, ia) before (vb, ib): the larger value, ties to the lower index, as the CPU's first-max scans
__device__ __forceinline__ bool argmax_before(float va, int ia, float vb, int ib) {
    return va > vb || (va == vb && ia < ib);
}

// (v, i) becomes the first of itself and (ov, oi)
__device__ __forceinline__ void argmax_merge(float& v, int& i, float ov, int oi) {
    if (argmax_before(ov, oi, v, i)) v = ov, i = oi;
}

// the block's first (v, i) in that order; every thread gets both. shf: 32 floats, shi: 32 ints.
__device__ __forceinline__ void block_argmax(float& v, int& i, float* shf, int* shi) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1)
        argmax_merge(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
    __syncthreads();
    if (lane == 0) shf[warp] = v, shi[warp] = i;
    __syncthreads();
    v = lane < nw ? shf[lane] : -INFINITY;
    i = lane < nw ? shi[lane] : INT_MAX;
    for (int o = 16; o > 0; o >>= 1)
        argmax_merge(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
    __syncthreads();
}

