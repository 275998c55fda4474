// PTX wrappers of the tensor-core attention kernels (attention_mma_kernels.cuh; storage.cuh packs
// bf16 pairs with pack_bf16 too): the bf16 type, mma.sync, ldmatrix, cp.async, bf16 packing and
// the acquire/release pair that orders blocks, sm_80 and later. tests/emu/cuda_emu.h defines the
// same functions for the host so that the kernels can run there in emulation.
#pragma once
#include <cuda_bf16.h>
#include <stdint.h>
#include <stdio.h>

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ uint32_t smem_addr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

// c += a b for an A (16, 16) row-major fragment, a B (16, 8) column fragment and an fp32 (16, 8)
// accumulator. Lane l = 4 g + t holds A (g | g+8, 2t | 2t+8 ..+1), B (2t | 2t+8 ..+1, g) and
// C (g | g+8, 2t..2t+1).
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// four 8x8 bf16 matrices; lanes 8i..8i+7 give the row addresses of matrix i
__device__ __forceinline__ void ldsm4(uint32_t (&r)[4], const bf16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p))
                 : "memory");
}

__device__ __forceinline__ void ldsm4_trans(uint32_t (&r)[4], const bf16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p))
                 : "memory");
}

// 16 (or 4) bytes from global to shared memory, or zeros where !valid (src is not read then)
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}

__device__ __forceinline__ void cp_async4(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(valid ? 4 : 0)
                 : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// waits until at most N of this thread's committed groups are still in flight
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// 2^x in one MUFU.EX2: ex2.approx with subnormal results flushed to 0. exp2f compiles to the
// non-ftz ex2.approx, for which ptxas adds a range check and two scalings around MUFU.EX2. The
// softmax's exponents are <= 0, and a probability below 2^-126 adds nothing to its fp32 sums.
__device__ __forceinline__ float exp2_ftz(float x) {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(r) : "f"(x));
    return r;
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(const uint32_t*)&v;
}

// A flag between blocks at GPU scope: after spin_wait(flag, want) returns, loads see what the
// block that st_release'd `want` wrote before it (and, after a __syncthreads, what its other
// threads wrote before their barrier). A wait that has not ended after 10 s of GPU time (a
// correct one takes microseconds) prints what it waited for and traps, so that the launch fails
// with an error instead of hanging the job.
__device__ __forceinline__ int ld_acquire(const int* p) {
    int v;
    asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ void st_release(int* p, int v) {
    asm volatile("st.release.gpu.global.b32 [%0], %1;\n" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ uint64_t global_ns() {
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
    return t;
}

static __device__ __noinline__ void spin_timeout(const int* flag, int want, const char* what) {
    printf("ingrain: %s: block %u waited 10 s for flag %d at %p (it holds %d): a bug, stopping\n", what, blockIdx.x,
           want, (const void*)flag, ld_acquire(flag));
    __trap();
}

__device__ __forceinline__ void spin_wait(const int* flag, int want, const char* what) {
    const uint64_t t0 = global_ns();
    while (ld_acquire(flag) != want) {
        __nanosleep(64);
        if (global_ns() - t0 > 10000000000ull) spin_timeout(flag, want, what);
    }
}
