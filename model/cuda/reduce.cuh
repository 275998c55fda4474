// Device helpers shared by the CUDA backend's kernels: ceil division, the warp and block
// reductions (fixed shuffle trees), and a row's max and sum of exponentials in one read. Plain
// CUDA without library headers, so that tests/emu can build the kernels that use them on the host.
#pragma once
#include <math.h>
#include <stddef.h>

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

// The row's max (float) and sum of exp(z - max) in double, as loss_row_logsumexp defines them;
// every thread gets both. shf: 32 floats, shd: 32 doubles of shared memory.
__device__ __forceinline__ void row_max_sum(const float* z, int V, float* shf, double* shd, float* m_out,
                                            double* s_out) {
    float m = -INFINITY;
    double s = 0.0;
    for (int v = threadIdx.x; v < V; v += blockDim.x) online_add(m, s, z[v]);
    const float M = block_max(m, shf);
    const double part = m == -INFINITY ? 0.0 : s * exp((double)m - (double)M);
    *s_out = block_sum_d(part, shd);
    *m_out = M;
}
