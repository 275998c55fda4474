// Host emulation of the CUDA features ingrain's kernels use, so that the kernels' own source runs
// on a CPU in tests: most sessions and all of CI have no GPU. Two users: test_attention_emu.cc
// launches the attention kernels directly; tests/emu/include/ (cuda_runtime.h, cublas_v2.h, ...)
// builds the whole CUDA backend on it, so the GPU tests run against it (tests/emu/CMakeLists.txt).
// Each thread of a block is a fiber on one OS thread, run until it reaches a barrier; blocks run
// one after another. Fibers switch by a few instructions on x86-64 (ucontext elsewhere).
// - __syncthreads is a barrier of the block's threads; the warp-wide instructions (__shfl_xor_sync,
//   ldmatrix, mma.sync m16n8k16) exchange the 32 lanes' operands through a per-warp slot table
//   between two barriers of the warp, then each lane computes its own result by the PTX ISA's
//   fragment layouts. A barrier that not every thread (or lane) reaches, undefined on a GPU, stops
//   the test with the block and thread.
// - __shared__ variables are thread_local: one instance shared by all the fibers of the OS thread,
//   i.e. by the block's threads, as on a GPU.
// - The threads between two barriers run in an order drawn afresh for every block (seeded, so a
//   failure reproduces): a kernel that lets a warp overwrite shared data that others still read
//   without a barrier between them tends to fail.
// - cp.async copies land in shared memory either at once or only when the thread's wait_group
//   releases their group (the latest moment the PTX ISA allows), drawn per copy (seeded): a read
//   of a tile before its wait sees the old contents, and a copy into a buffer that other warps
//   still read without a barrier overwrites it early.
// - mma sums its 16 products in double and adds them to the fp32 accumulator: not the tensor
//   core's rounding, which the tests' tolerances cover.
// - A block that waits for another block's flag (spin_wait) fails the test unless the flag is
//   already set: blocks run in grid order, one after another, so kernels that wait must hand out
//   their work in the order blocks start (an atomicAdd ticket), as they must on a GPU anyway.
// Device allocations (include/cuda_runtime.h) end where an inaccessible page begins: a kernel that
// reads or writes past its buffer's end faults, and the fault names the kernel, its launch site,
// block and thread.
// Checked on the way, as the hardware would fault or misbehave: ldmatrix and cp.async addresses
// inside the launch's dynamic shared memory and aligned, cp.async sources aligned, dynamic shared
// memory within the launch's request and the H100's 227 KiB. Shared memory starts each block as
// 0xFF bytes (bf16 NaN).
// The emulation's own check: the kernels that passed on H100/H200 pass here (test_attention_emu).
#pragma once
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <functional>
#include <utility>
#include <type_traits>
#include <vector>

// ----------------------------------------------------------------------------
// CUDA keywords and built-in variables

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __shared__ thread_local
#define __align__(n) __attribute__((aligned(n)))

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline uint3 threadIdx, blockIdx;
inline dim3 gridDim, blockDim;

template <class A, class B> inline typename std::common_type<A, B>::type min(A a, B b) { return a < b ? a : b; }
template <class A, class B> inline typename std::common_type<A, B>::type max(A a, B b) { return a < b ? b : a; }

// CUDA's alignments: with -fsanitize=alignment (tests/emu/CMakeLists.txt) an access through a
// misaligned pointer stops the test, as it faults on a GPU ("misaligned address")
struct alignas(16) float4 {
    float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
struct alignas(8) uint2 {
    unsigned x, y;
};
inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// conversions with an explicit rounding mode (round to nearest even, the host's default)
inline double __ll2double_rn(long long x) { return (double)x; }
inline long long __double2ll_rn(double x) { return llrint(x); }
inline float __double2float_rn(double x) { return (float)x; }

// the kernels' `extern __shared__ unsigned char smem_raw[]` (dynamic shared memory)
#define EMU_SMEM_BYTES (227 * 1024)
alignas(128) inline thread_local unsigned char smem_raw[EMU_SMEM_BYTES];
inline size_t emu_smem_bytes; // what the current launch asked for

[[noreturn]] inline void emu_fail(const char* what, const char* detail) {
    fprintf(stderr, "cuda_emu: %s: %s (block %u,%u,%u thread %u,%u,%u)\n", what, detail, blockIdx.x, blockIdx.y,
            blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z);
    abort();
}

// ----------------------------------------------------------------------------
// bf16: round to nearest even, as __floats2bfloat162_rn

struct __nv_bfloat16 {
    uint16_t bits;
};
struct alignas(4) __nv_bfloat162 {
    __nv_bfloat16 x, y;
};
typedef __nv_bfloat16 bf16;

inline uint16_t emu_bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); // NaN stays a (quiet) NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

inline float emu_bf16_float(uint16_t b) {
    const uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

inline __nv_bfloat16 __float2bfloat16_rn(float f) { return {emu_bf16_bits(f)}; }
inline __nv_bfloat16 __float2bfloat16(float f) { return {emu_bf16_bits(f)}; }
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) { return {{emu_bf16_bits(lo)}, {emu_bf16_bits(hi)}}; }
inline float __bfloat162float(__nv_bfloat16 b) { return emu_bf16_float(b.bits); }

inline uint32_t pack_bf16(float lo, float hi) { return emu_bf16_bits(lo) | (uint32_t)emu_bf16_bits(hi) << 16; }
// ex2.approx.ftz.f32: 2^x, a subnormal result flushed to 0 (the approximation's 2 ulp not modelled)
inline float exp2_ftz(float x) {
    const float r = exp2f(x);
    return r < FLT_MIN ? 0.0f : r;
}

// ----------------------------------------------------------------------------
// fibers: the block's threads, and their barriers

#define EMU_STACK_BYTES (128 * 1024)

#if defined(__x86_64__)
// emu_switch(&from_sp, to_sp): save the callee-saved registers and the SSE/x87 control words on
// the current stack, store its pointer in *from_sp, continue on the stack to_sp where another
// emu_switch (or emu_fiber_init) left the same frame. Weak: every file that includes this header
// defines it, and the linker keeps one.
extern "C" void emu_switch(void** from_sp, void* to_sp);
asm(R"(
    .text
    .weak emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
)");
typedef void* EmuContext; // the stack pointer at the switch
// save the running context in *from, continue in *to
inline void emu_context_switch(EmuContext* from, EmuContext* to) { emu_switch(from, *to); }
#else
#include <ucontext.h>
typedef ucontext_t EmuContext;
inline void emu_context_switch(EmuContext* from, EmuContext* to) { swapcontext(from, to); }
#endif

enum EmuState { EMU_READY, EMU_AT_WARP, EMU_AT_BLOCK, EMU_DONE };
// a cp.async still in flight: its bytes (read at issue) and its group (the thread's commits before it)
struct EmuCopy {
    unsigned char* dst;
    unsigned char data[16];
    unsigned bytes, group;
};
struct EmuFiber {
    EmuContext ctx;
    uint3 tid;
    EmuState state;
    std::vector<EmuCopy> copies; // in flight
    unsigned committed;          // cp.async groups committed
};
struct EmuBlock {
    std::vector<EmuFiber> fibers;
    std::vector<char> stacks;
    EmuContext scheduler;
    EmuFiber* current;
    uint64_t copy_rng; // draws when each cp.async lands
    alignas(16) unsigned char slot[32][32][64]; // [warp][lane]: a lane's operands for a collective
};
inline EmuBlock* emu_block;

// back to the scheduler, to resume when `state`'s barrier is complete
inline void emu_yield(EmuState state) {
    EmuFiber* f = emu_block->current;
    f->state = state;
    emu_context_switch(&f->ctx, &emu_block->scheduler);
}

inline void __syncthreads() { emu_yield(EMU_AT_BLOCK); }

// the linear thread index within the block, whose low 5 bits are the lane (as on a GPU)
inline unsigned emu_linear_tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }

// Every lane of the calling warp puts `bytes` of `in` into its slot; once all have, each runs
// compute(slots of the warp, lane); a second barrier keeps the slots until all have read.
template <class F> inline void emu_warp_collective(const void* in, size_t bytes, F compute) {
    const unsigned t = emu_linear_tid(), lane = t & 31, w = t >> 5;
    memcpy(emu_block->slot[w][lane], in, bytes);
    emu_yield(EMU_AT_WARP);
    compute(emu_block->slot[w], lane);
    emu_yield(EMU_AT_WARP);
}

template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    if (mask != 0xffffffffu) emu_fail("__shfl_xor_sync", "only full-warp masks are emulated");
    T r;
    emu_warp_collective(&v, sizeof v,
                        [&](unsigned char (*s)[64], unsigned lane) { memcpy(&r, s[lane ^ lane_mask], sizeof r); });
    return r;
}

// ----------------------------------------------------------------------------
// the PTX wrappers of model/cuda/mma_ptx.cuh

inline void emu_check_shared(const char* what, const void* p, size_t bytes, size_t align) {
    const unsigned char* c = (const unsigned char*)p;
    if (c < smem_raw || c + bytes > smem_raw + emu_smem_bytes) {
        emu_fail(what, "address outside the launch's shared memory");
    }
    if ((uintptr_t)p % align) emu_fail(what, "misaligned shared-memory address");
}

inline uint16_t emu_ld16(const bf16* p) { return p->bits; }

// four 8x8 matrices; lanes 8i..8i+7 give the row addresses of matrix i. Lane l gets row l/4,
// columns 2(l%4), +1 of each (trans: column l/4, rows 2(l%4), +1).
inline void emu_ldsm4(uint32_t (&r)[4], const bf16* p, bool trans) {
    emu_check_shared("ldmatrix", p, 16, 16);
    emu_warp_collective(&p, sizeof p, [&](unsigned char (*s)[64], unsigned lane) {
        for (int i = 0; i < 4; i++) {
            const bf16* rows[8];
            for (int j = 0; j < 8; j++) memcpy(&rows[j], s[8 * i + j], sizeof(const bf16*));
            const int a = lane / 4, c = 2 * (lane % 4);
            const uint16_t lo = trans ? emu_ld16(rows[c] + a) : emu_ld16(rows[a] + c);
            const uint16_t hi = trans ? emu_ld16(rows[c + 1] + a) : emu_ld16(rows[a] + c + 1);
            r[i] = lo | (uint32_t)hi << 16;
        }
    });
}
inline void ldsm4(uint32_t (&r)[4], const bf16* p) { emu_ldsm4(r, p, false); }
inline void ldsm4_trans(uint32_t (&r)[4], const bf16* p) { emu_ldsm4(r, p, true); }

// c += a b, m16n8k16, bf16 operands, fp32 accumulators. Lane l = 4g + t holds A (g | g+8,
// 2t | 2t+8 ..+1), B (2t | 2t+8 ..+1, g) and C (g | g+8, 2t..2t+1).
inline void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    uint32_t in[6] = {a[0], a[1], a[2], a[3], b0, b1};
    emu_warp_collective(in, sizeof in, [&](unsigned char (*s)[64], unsigned lane) {
        float A[16][16], B[16][8];
        for (int l = 0; l < 32; l++) {
            uint32_t r[6];
            memcpy(r, s[l], sizeof r);
            const int g = l / 4, t = l % 4;
            const int ar[4] = {g, g + 8, g, g + 8}, ac[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
            for (int i = 0; i < 4; i++) {
                A[ar[i]][ac[i]] = emu_bf16_float((uint16_t)r[i]);
                A[ar[i]][ac[i] + 1] = emu_bf16_float((uint16_t)(r[i] >> 16));
            }
            for (int i = 0; i < 2; i++) {
                B[2 * t + 8 * i][g] = emu_bf16_float((uint16_t)r[4 + i]);
                B[2 * t + 8 * i + 1][g] = emu_bf16_float((uint16_t)(r[4 + i] >> 16));
            }
        }
        const int g = lane / 4, t = lane % 4;
        for (int e = 0; e < 4; e++) {
            const int row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
            double sum = 0.0;
            for (int k = 0; k < 16; k++) sum += (double)A[row][k] * B[k][col];
            c[e] = (float)((double)c[e] + sum);
        }
    });
}

inline void emu_cp_async(void* dst, const void* src, bool valid, size_t bytes) {
    emu_check_shared("cp.async", dst, bytes, bytes);
    if (valid && (uintptr_t)src % bytes) emu_fail("cp.async", "misaligned global source");
    EmuFiber* f = emu_block->current;
    EmuCopy c = {(unsigned char*)dst, {0}, (unsigned)bytes, f->committed};
    if (valid) memcpy(c.data, src, bytes);
    uint64_t& r = emu_block->copy_rng;
    r ^= r << 13, r ^= r >> 7, r ^= r << 17;
    if (r & 1) memcpy(c.dst, c.data, bytes); // lands at once
    else f->copies.push_back(c);             // lands at its wait
}
inline void cp_async16(void* dst, const void* src, bool valid) { emu_cp_async(dst, src, valid, 16); }
inline void cp_async4(void* dst, const void* src, bool valid) { emu_cp_async(dst, src, valid, 4); }
inline void cp_async_commit() { emu_block->current->committed++; }
// the copies of every committed group but the newest N land
template <int N> inline void cp_async_wait() {
    EmuFiber* f = emu_block->current;
    size_t left = 0;
    for (const EmuCopy& c : f->copies) {
        if (c.group + N < f->committed) memcpy(c.dst, c.data, c.bytes);
        else f->copies[left++] = c;
    }
    f->copies.resize(left);
}

// ordering between blocks: blocks run one after another, so a block that has to wait for another
// would wait forever (the kernels take tickets so that they only wait for earlier blocks)
inline void st_release(int* p, int v) { *(volatile int*)p = v; }
inline void spin_wait(const int* flag, int want, const char* what) {
    if (*(const volatile int*)flag != want) emu_fail(what, "a block waits for a block that runs after it");
}
inline int atomicAdd(int* p, int v) {
    const int old = *p;
    *p = old + v;
    return old;
}
inline float4 __ldcg(const float4* p) { return *p; }
inline void __stcg(float4* p, float4 v) { *p = v; }

// ----------------------------------------------------------------------------
// launch: grid of blocks of `block` threads (a multiple of 32 in all), `smem` bytes of dynamic
// shared memory; kernel() is the kernel's call with its arguments bound

inline std::function<void()> emu_kernel;
[[noreturn]] inline void emu_fiber_main() {
    emu_kernel();
    emu_yield(EMU_DONE);
    abort(); // a finished fiber is never resumed
}

// runs fiber f until it waits at a barrier or ends
inline void emu_resume(EmuBlock* blk, EmuFiber* f) {
    blk->current = f;
    threadIdx = f->tid;
    f->state = EMU_READY;
    emu_context_switch(&blk->scheduler, &f->ctx);
}

// a fresh fiber i that starts in emu_fiber_main
inline void emu_fiber_init(EmuBlock* blk, unsigned i) {
    EmuFiber* f = &blk->fibers[i];
    char* stack = blk->stacks.data() + (size_t)i * EMU_STACK_BYTES;
#if defined(__x86_64__)
    // the frame emu_switch pops: control words, r15..rbx, rbp, then the return address; at a
    // function's entry rsp + 8 is 16-byte aligned
    uint64_t* top = (uint64_t*)(((uintptr_t)(stack + EMU_STACK_BYTES) & ~(uintptr_t)15) - 16);
    top[0] = (uint64_t)(uintptr_t)&emu_fiber_main;
    uint64_t* frame = top - 7;
    for (int r = 1; r < 7; r++) frame[r] = 0;
    uint32_t mxcsr;
    uint16_t fpucw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpucw));
    frame[0] = mxcsr | (uint64_t)fpucw << 32;
    f->ctx = frame;
#else
    getcontext(&f->ctx);
    f->ctx.uc_stack.ss_sp = stack;
    f->ctx.uc_stack.ss_size = EMU_STACK_BYTES;
    f->ctx.uc_link = NULL;
    makecontext(&f->ctx, (void (*)())emu_fiber_main, 0);
#endif
    f->state = EMU_READY;
    f->copies.clear();
    f->committed = 0;
}

// one block: fibers run in a shuffled order until all wait; then a complete warp barrier or block
// barrier releases its waiters, and so on until all are done
inline void emu_run_block(EmuBlock* blk, unsigned threads, uint64_t& rng) {
    for (unsigned i = 0; i < threads; i++) emu_fiber_init(blk, i);
    std::vector<unsigned> order(threads);
    for (unsigned i = 0; i < threads; i++) order[i] = i;
    for (;;) {
        for (unsigned i = threads - 1; i > 0; i--) { // Fisher-Yates with xorshift
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            std::swap(order[i], order[rng % (i + 1)]);
        }
        bool ran = false;
        for (unsigned i : order) {
            if (blk->fibers[i].state == EMU_READY) {
                emu_resume(blk, &blk->fibers[i]);
                ran = true;
            }
        }
        if (ran) continue;
        unsigned at_block = 0, done = 0;
        for (unsigned w = 0; w < threads / 32; w++) {
            unsigned at_warp = 0;
            for (unsigned l = 0; l < 32; l++) at_warp += blk->fibers[32 * w + l].state == EMU_AT_WARP;
            if (at_warp == 32) {
                for (unsigned l = 0; l < 32; l++) blk->fibers[32 * w + l].state = EMU_READY;
            } else if (at_warp) {
                threadIdx = blk->fibers[32 * w].tid;
                emu_fail("warp collective", "not every lane of the warp reached it");
            }
        }
        for (unsigned i = 0; i < threads; i++) {
            at_block += blk->fibers[i].state == EMU_AT_BLOCK;
            done += blk->fibers[i].state == EMU_DONE;
        }
        if (done == threads) return;
        if (at_block == threads) {
            for (unsigned i = 0; i < threads; i++) blk->fibers[i].state = EMU_READY;
        } else if (at_block && at_block + done == threads) {
            emu_fail("__syncthreads", "some threads of the block ended without reaching it");
        }
    }
}

// A memory fault inside a kernel (device allocations end at an inaccessible page, see
// include/cuda_runtime.h) names the kernel, block and thread before the fault goes on to the
// handler that was there before the launch (cmocka's in the tests).
inline const char* emu_kernel_name;
inline struct sigaction emu_old_segv, emu_old_bus;
inline void emu_fault(int, siginfo_t* info, void*) {
    char msg[512];
    const int n = snprintf(msg, sizeof msg,
                           "cuda_emu: memory fault at %p in kernel %s (block %u,%u,%u thread %u,%u,%u): an access "
                           "outside its buffers\n",
                           info->si_addr, emu_kernel_name, blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y,
                           threadIdx.z);
    if (n > 0 && write(2, msg, (size_t)n) < 0) abort();
    sigaction(SIGSEGV, &emu_old_segv, NULL); // the faulting access runs again, under the old handlers
    sigaction(SIGBUS, &emu_old_bus, NULL);
}

template <class F> void emu_launch(dim3 grid, dim3 block, size_t smem, F kernel, const char* name = "(direct launch)") {
    const unsigned threads = block.x * block.y * block.z;
    if (threads == 0 || threads % 32 || threads > 1024) emu_fail("launch", "threads must be a multiple of 32, <= 1024");
    if (smem > EMU_SMEM_BYTES) emu_fail("launch", "more dynamic shared memory than an H100 block may have");
    gridDim = grid;
    blockDim = block;
    emu_smem_bytes = smem;
    emu_kernel = kernel;
    static EmuBlock* blk = new EmuBlock; // kept: launches are many, and stacks need no zeroing
    if (blk->fibers.size() < threads) {
        blk->fibers.resize(threads);
        blk->stacks.resize((size_t)threads * EMU_STACK_BYTES);
    }
    for (unsigned i = 0; i < threads; i++) {
        blk->fibers[i].tid = {i % block.x, i / block.x % block.y, i / (block.x * block.y)};
    }
    emu_block = blk;
    emu_kernel_name = name;
    struct sigaction fault = {};
    fault.sa_sigaction = emu_fault;
    fault.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &fault, &emu_old_segv);
    sigaction(SIGBUS, &fault, &emu_old_bus);
    uint64_t rng = 0x2545F4914F6CDD1Dull;
    blk->copy_rng = 0x9E3779B97F4A7C15ull;
    for (unsigned z = 0; z < grid.z; z++) {
        for (unsigned y = 0; y < grid.y; y++) {
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx = {x, y, z};
                memset(smem_raw, 0xff, emu_smem_bytes);
                emu_run_block(blk, threads, rng);
            }
        }
    }
    sigaction(SIGSEGV, &emu_old_segv, NULL);
    sigaction(SIGBUS, &emu_old_bus, NULL);
    emu_block = NULL;
    emu_kernel = nullptr;
}
