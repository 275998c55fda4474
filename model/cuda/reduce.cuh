// Device helpers shared by the CUDA backend's kernels: ceil division, 4-element alignment, the
// warp and block reductions (fixed shuffle trees), a pass over a row 4 elements per load, a row's
// max and sum of exponentials in one read, and the first index of a block's max. Plain CUDA
// without library headers, so that tests/emu can build the kernels that use them on the host.
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
// a row's max and sum of exponentials in one read

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

// f(v, z[v]) over a row of V floats, each thread its own elements in increasing order: 16-byte
// chunks, two loads in flight, where the row allows, else one element at a time
template <typename F> __device__ __forceinline__ void row_each(const float* z, int V, F f) {
    if (rows_vec4(z, V)) {
        const float4* z4 = (const float4*)z;
        const int n4 = V / 4, step = blockDim.x;
        auto each4 = [&](int j, float4 x) { f(4 * j, x.x), f(4 * j + 1, x.y), f(4 * j + 2, x.z), f(4 * j + 3, x.w); };
        int j = threadIdx.x;
        for (; j + step < n4; j += 2 * step) {
            const float4 a = z4[j], b = z4[j + step];
            each4(j, a);
            each4(j + step, b);
        }
        if (j < n4) each4(j, z4[j]);
    } else {
        for (int v = threadIdx.x; v < V; v += blockDim.x) f(v, z[v]);
    }
}

// The row's max (float) and sum of exp(z - max) in double, as loss_row_logsumexp defines them;
// every thread gets both. shf: 32 floats, shd: 32 doubles of shared memory.
__device__ __forceinline__ void row_max_sum(const float* z, int V, float* shf, double* shd, float* m_out,
                                            double* s_out) {
    float m = -INFINITY;
    double s = 0.0;
    row_each(z, V, [&](int, float x) { online_add(m, s, x); });
    const float M = block_max(m, shf);
    const double part = m == -INFINITY ? 0.0 : s * exp((double)m - (double)M);
    *s_out = block_sum_d(part, shd);
    *m_out = M;
}

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

