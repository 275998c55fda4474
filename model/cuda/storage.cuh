// Device-side loads and stores of the two storage types the CUDA backend's kernels read and
// write: fp32 (every buffer of the f32 mode, parameters and gradients always) and bf16 (the bf16
// mode's activation buffers, ops.h). Values are fp32 in registers either way; a bf16 store
// rounds to nearest even. Also the passes over a row of either type (row_each, row_max_sum).
#pragma once
#include <cuda_bf16.h>
#include <stddef.h>
#include <stdint.h>

#include "model/cuda/mma_ptx.cuh" // pack_bf16
#include "model/cuda/reduce.cuh"  // aligned4, rows_vec4, online_add, the block reductions

__device__ __forceinline__ float load_f(const float* p) { return *p; }
__device__ __forceinline__ float load_f(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void store_f(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_f(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
template <typename T> __device__ __forceinline__ void add_f(T* p, float v) { store_f(p, load_f(p) + v); }

// a row of floats or bf16 as VEC-wide chunks: chunk j holds elements VEC j .. VEC j + VEC - 1;
// VEC = 4 needs the chunk's address aligned to 4 elements (16 bytes for fp32, 8 for bf16)
template <typename T, int VEC>
struct Chunk;
template <typename T>
struct Chunk<T, 1> {
    float v[1];
    __device__ __forceinline__ void load(const T* p, size_t j) { v[0] = load_f(p + j); }
    __device__ __forceinline__ void store(T* p, size_t j) const { store_f(p + j, v[0]); }
};
template <>
struct Chunk<float, 4> {
    float v[4];
    __device__ __forceinline__ void load(const float* p, size_t j) {
        const float4 x = ((const float4*)p)[j];
        v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
    }
    __device__ __forceinline__ void store(float* p, size_t j) const {
        ((float4*)p)[j] = make_float4(v[0], v[1], v[2], v[3]);
    }
};
template <>
struct Chunk<__nv_bfloat16, 4> {
    float v[4];
    __device__ __forceinline__ void load(const __nv_bfloat16* p, size_t j) {
        const uint2 x = ((const uint2*)p)[j];
        v[0] = __uint_as_float(x.x << 16), v[1] = __uint_as_float(x.x & 0xffff0000u);
        v[2] = __uint_as_float(x.y << 16), v[3] = __uint_as_float(x.y & 0xffff0000u);
    }
    __device__ __forceinline__ void store(__nv_bfloat16* p, size_t j) const {
        uint2 x;
        x.x = pack_bf16(v[0], v[1]);
        x.y = pack_bf16(v[2], v[3]);
        ((uint2*)p)[j] = x;
    }
};

// VEC values stored as chunk j of p (a bf16 store rounds them to nearest even): a chunk loaded
// from one storage type and stored to another, or values computed in registers
template <typename T, int VEC> __device__ __forceinline__ void chunk_store(T* p, size_t j, const float (&v)[VEC]) {
    Chunk<T, VEC> c;
    for (int e = 0; e < VEC; e++) c.v[e] = v[e];
    c.store(p, j);
}

// ----------------------------------------------------------------------------
// passes over a row

// f(v, z[v]) over a row of V elements of either type, each thread its own elements in increasing
// order: 4-element chunks, two loads in flight, where the row allows, else one element at a time
template <typename T, typename F> __device__ __forceinline__ void row_each(const T* z, int V, F f) {
    if (rows_vec4(z, V)) {
        const int n4 = V / 4, step = blockDim.x;
        int j = threadIdx.x;
        for (; j + step < n4; j += 2 * step) {
            Chunk<T, 4> a, b;
            a.load(z, j);
            b.load(z, j + step);
#pragma unroll
            for (int e = 0; e < 4; e++) f(4 * j + e, a.v[e]);
#pragma unroll
            for (int e = 0; e < 4; e++) f(4 * (j + step) + e, b.v[e]);
        }
        if (j < n4) {
            Chunk<T, 4> a;
            a.load(z, j);
#pragma unroll
            for (int e = 0; e < 4; e++) f(4 * j + e, a.v[e]);
        }
    } else {
        for (int v = threadIdx.x; v < V; v += blockDim.x) f(v, load_f(z + v));
    }
}

// The row's max (float) and sum of exp(z - max) in double, as loss_row_logsumexp defines them;
// every thread gets both. shf: 32 floats, shd: 32 doubles of shared memory.
template <typename T>
__device__ __forceinline__ void row_max_sum(const T* z, int V, float* shf, double* shd, float* m_out, double* s_out) {
    float m = -INFINITY;
    double s = 0.0;
    row_each(z, V, [&](int, float x) { online_add(m, s, x); });
    const float M = block_max(m, shf);
    const double part = m == -INFINITY ? 0.0 : s * exp((double)m - (double)M);
    *s_out = block_sum_d(part, shd);
    *m_out = M;
}
