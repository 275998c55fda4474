// Device-side loads and stores of the two storage types the CUDA backend's kernels read and
// write: fp32 (every buffer of the f32 mode, parameters and gradients always) and bf16 (the bf16
// mode's activation buffers, ops.h). Values are fp32 in registers either way; a bf16 store
// rounds to nearest even.
#pragma once
#include <cuda_bf16.h>
#include <stddef.h>
#include <stdint.h>

#include "model/cuda/mma_ptx.cuh" // pack_bf16
#include "model/cuda/reduce.cuh"  // aligned4, rows_vec4

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
