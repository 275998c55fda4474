// CUDA backend (see ops.h): construction, memory, cuBLAS matmuls, the elementwise ops and
// AdamW. The other kernels live in ops_cuda_kernels.cu (norms, rope, swiglu, embedding),
// ops_cuda_loss.cu (vocabulary-wide blocks) and attention.cu. Every op runs on the backend's
// one stream in issue order; ops that hand a value to the host wait for that stream.
// Determinism: cuBLAS with a fixed workspace on one stream, and no atomics in any reduction.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_bf16.h>
#include <stdint.h>

#include "model/cuda/ops_cuda.cuh"
#include "model/cuda/storage.cuh"

extern "C" {
#include "model/ops_list.h"
}

#define CUDA_CUBLAS_WS_BYTES (32u << 20) // cuBLAS workspace (NVIDIA's recommendation for Hopper)

// ----------------------------------------------------------------------------
// scratch and host results

// the device region *buf of *have bytes grown to hold `bytes` (doubling, 256-byte multiples);
// growing waits for the stream first, since earlier ops may still read the old region
static void* region(CudaImpl* c, void** buf, size_t* have, size_t bytes, const char* what, const char* hint) {
    if (bytes <= *have) return *buf;
    size_t grown = *have * 2 > bytes ? *have * 2 : bytes;
    grown = (grown + 255) / 256 * 256;
    if (*buf) {
        cudaCheck(cudaStreamSynchronize(c->stream));
        cudaCheck(cudaFree(*buf));
    }
    if (cudaMalloc(buf, grown) != cudaSuccess) {
        fatal("cuda backend: %s of %zu bytes (%.1f MiB) on GPU %d failed\n  hint: %s", what, grown,
              (double)grown / (1024.0 * 1024.0), c->device, hint);
    }
    *have = grown;
    return *buf;
}

void* cuda_scratch(Backend* be, size_t bytes) {
    CudaImpl* c = cuda_impl(be);
    return region(c, &c->scratch, &c->scratch_bytes, bytes, "scratch allocation",
                  "use a smaller batch, sequence length or vocabulary chunk");
}

void* cuda_stage(Backend* be, size_t bytes) {
    CudaImpl* c = cuda_impl(be);
    return region(c, &c->stage, &c->stage_bytes, bytes, "the allocation for fp32 copies of activations",
                  "use a smaller batch or sequence length");
}

void* cuda_zeroed(Backend* be, size_t bytes) {
    CudaImpl* c = cuda_impl(be);
    const size_t had = c->zeroed_bytes;
    void* z = region(c, &c->zeroed, &c->zeroed_bytes, bytes, "the allocation for the kernels' counters",
                     "use a smaller batch or sequence length");
    if (c->zeroed_bytes != had) cudaCheck(cudaMemsetAsync(z, 0, c->zeroed_bytes, c->stream));
    return z;
}

void cuda_results(Backend* be, double* out, int n) {
    CudaImpl* c = cuda_impl(be);
    cudaCheck(cudaMemcpyAsync(c->result_host, c->result_dev, n * sizeof(double), cudaMemcpyDeviceToHost, c->stream));
    cudaCheck(cudaStreamSynchronize(c->stream));
    memcpy(out, c->result_host, n * sizeof(double));
}

double cuda_result(Backend* be) {
    double r;
    cuda_results(be, &r, 1);
    return r;
}

// stage 1: block b sums the items i = b*256 + t + k*(grid*256), each thread in its order, then a
// shuffle tree; stage 2: one block sums the block partials the same way
__global__ void sum_doubles_kernel(double* out, const double* x, size_t n) {
    __shared__ double sh[32];
    double s = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        s += x[i];
    }
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) out[blockIdx.x] = s;
}

void cuda_sum_doubles(Backend* be, double* out, const double* x, size_t n, double* part) {
    const int threads = 256;
    size_t g = cuda_cdiv(n, threads);
    if (g > CUDA_SUM_PARTS) g = CUDA_SUM_PARTS;
    if (g == 0) g = 1;
    sum_doubles_kernel<<<(unsigned)g, threads, 0, cuda_stream(be)>>>(part, x, n);
    cudaCheckLaunch();
    sum_doubles_kernel<<<1, 1024, 0, cuda_stream(be)>>>(out, part, g);
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// address ranges (CudaRanges)

CudaRange* ranges_find(const CudaRanges* s, const void* p, int end_too) {
    const char* q = (const char*)p;
    int lo = 0, hi = s->n - 1, found = -1;
    while (lo <= hi) { // the last range starting at or before q
        const int mid = (lo + hi) / 2;
        if (s->r[mid].p <= q) found = mid, lo = mid + 1;
        else hi = mid - 1;
    }
    if (found < 0) return NULL;
    CudaRange* r = &s->r[found];
    return q < r->p + r->bytes || (end_too && q == r->p + r->bytes) ? r : NULL;
}

void ranges_add(CudaRanges* s, const void* p, size_t bytes, void* data) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->r = (CudaRange*)realloc(s->r, s->cap * sizeof(CudaRange));
        if (!s->r) fatal("cuda backend: out of host memory");
    }
    int i = s->n++;
    for (; i > 0 && s->r[i - 1].p > (const char*)p; i--) s->r[i] = s->r[i - 1];
    s->r[i].p = (const char*)p;
    s->r[i].bytes = bytes;
    s->r[i].data = data;
}

void ranges_remove(CudaRanges* s, CudaRange* r) {
    const int i = (int)(r - s->r);
    memmove(s->r + i, s->r + i + 1, (s->n - i - 1) * sizeof(CudaRange));
    s->n--;
}

// ----------------------------------------------------------------------------
// memory

static void* cuda_alloc(Backend* be, size_t bytes) {
    CudaImpl* c = cuda_impl(be);
    operands_forget(c); // the zeros may land where a kept copy's source was
    size_t rounded = (bytes + 255) / 256 * 256;
    if (rounded == 0) rounded = 256;
    void* p = NULL;
    cudaError_t err = cudaMalloc(&p, rounded);
    if (err != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaGetLastError();
        cudaMemGetInfo(&free_b, &total_b);
        fatal("cuda backend: allocation of %zu bytes (%.1f MiB) on GPU %d failed: %s (%.1f of %.1f GiB free)\n"
              "  hint: use a smaller model, batch or sequence length",
              bytes, (double)bytes / (1024.0 * 1024.0), c->device, cudaGetErrorString(err),
              (double)free_b / (1 << 30), (double)total_b / (1 << 30));
    }
    // waits for the zeros: a buffer may go to a library on another stream (NCCL) right away
    cudaCheck(cudaMemsetAsync(p, 0, rounded, c->stream));
    cudaCheck(cudaStreamSynchronize(c->stream));
    ranges_add(&c->allocs, p, rounded, NULL);
    return p;
}

static void cuda_free(Backend* be, void* p) {
    operands_forget(cuda_impl(be));
    if (!p || cuda_free_act(be, p)) return;
    CudaRange* r = ranges_find(&cuda_impl(be)->allocs, p, 0);
    if (r) ranges_remove(&cuda_impl(be)->allocs, r);
    cudaCheck(cudaFree(p)); // waits for the device: no op in flight reads p
}

// Waits for the copy: the caller may reuse or free its host buffer on return.
static void cuda_upload(Backend* be, void* dst, const void* host_src, size_t bytes) {
    if (!bytes) return;
    const CudaView d = cuda_view(be, dst);
    if (d.bf16) return cuda_act_upload(be, d.p, (const float*)host_src, cuda_act_elems("upload", bytes));
    cudaCheck(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, cuda_stream(be)));
    cudaCheck(cudaStreamSynchronize(cuda_stream(be)));
}

static void cuda_download(Backend* be, void* host_dst, const void* src, size_t bytes) {
    if (!bytes) return;
    const CudaView s = cuda_view(be, src);
    if (s.bf16) return cuda_act_download(be, (float*)host_dst, s.p, cuda_act_elems("download", bytes));
    cudaCheck(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, cuda_stream(be)));
    cudaCheck(cudaStreamSynchronize(cuda_stream(be)));
}

static void cuda_memset0(Backend* be, void* dst, size_t bytes) {
    if (!bytes) return;
    const CudaView d = cuda_view(be, dst);
    if (d.bf16) bytes = cuda_act_elems("memset0", bytes) * sizeof(__nv_bfloat16);
    cudaCheck(cudaMemsetAsync(d.p, 0, bytes, cuda_stream(be)));
}

// memmove semantics on device memory, as the CPU backend: overlapping ranges go through the
// scratch buffer
static void device_move(Backend* be, void* dst, const void* src, size_t bytes) {
    const char *d = (const char*)dst, *s = (const char*)src;
    if (d < s + bytes && s < d + bytes) {
        void* tmp = cuda_scratch(be, bytes);
        cudaCheck(cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, cuda_stream(be)));
        src = tmp;
    }
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda_stream(be)));
}

// between storage types it converts (overlap is possible only within one type)
static void cuda_copy(Backend* be, void* dst, const void* src, size_t bytes) {
    if (!bytes || dst == src) return;
    const CudaView d = cuda_view(be, dst), s = cuda_view(be, src);
    if (!d.bf16 && !s.bf16) return device_move(be, dst, src, bytes);
    const size_t n = cuda_act_elems("copy", bytes);
    if (d.bf16 && s.bf16) device_move(be, d.p, s.p, n * sizeof(__nv_bfloat16));
    else if (d.bf16) cuda_narrow(be, d, (const float*)s.p, 1, n, n);
    else cuda_widen(be, (float*)d.p, s, 1, n, n);
}

static void cuda_synchronize(Backend* be) { cudaCheck(cudaStreamSynchronize(cuda_stream(be))); }

// ----------------------------------------------------------------------------
// matmul: cuBLAS is column-major, the caller row-major. A row-major (R, C) matrix with leading
// dimension ld is the column-major (C, R) matrix with the same ld, i.e. its transpose; so the
// row-major C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T: cuBLAS gets B first,
// with each operand's transpose flag as the caller gave it.

__global__ void add_kernel(float* y, const float* x, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        y[i] += x[i];
    }
}

// C (M, N) *= beta, row stride ldc (the K = 0 product, which cuBLAS may reject)
template <typename T> __global__ void scale_rows_kernel(T* C, int M, int N, int ldc, float beta) {
    const size_t n = (size_t)M * N;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        T* c = C + (i / N) * (size_t)ldc + i % N;
        store_f(c, beta == 0.0f ? 0.0f : load_f(c) * beta);
    }
}

// dst (rows, cols) packed bf16 = the row-major block src (rows, cols), row stride ld; 4 values
// per thread where the rows allow (cols and ld multiples of 4, src aligned to 4 elements)
template <typename TS>
__global__ void to_bf16_kernel(__nv_bfloat16* dst, const TS* src, int rows, int cols, int ld, int vec4) {
    const size_t step = (size_t)gridDim.x * blockDim.x;
    if (vec4) {
        const int c4 = cols / 4;
        for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)rows * c4; i += step) {
            const size_t r = i / c4, c = (i % c4) * 4;
            Chunk<TS, 4> x;
            x.load(src + r * ld + c, 0);
            chunk_store(dst + r * cols + c, 0, x.v);
        }
        return;
    }
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)rows * cols; i += step) {
        store_f(dst + i, load_f(src + (i / cols) * ld + i % cols));
    }
}

template <typename TS>
static void to_bf16(Backend* be, __nv_bfloat16* dst, const TS* src, int rows, int cols, int ld) {
    const int vec4 = rows_vec4(src, cols) && ld % 4 == 0;
    const size_t items = (size_t)rows * (vec4 ? cols / 4 : cols);
    to_bf16_kernel<<<cuda_grid(items, 256), 256, 0, cuda_stream(be)>>>(dst, src, rows, cols, ld, vec4);
    cudaCheckLaunch();
}

void cuda_to_bf16(Backend* be, __nv_bfloat16* dst, const float* src, int rows, int cols, int ld) {
    to_bf16(be, dst, src, rows, cols, ld);
}

void cuda_to_bf16(Backend* be, __nv_bfloat16* dst, const __nv_bfloat16* src, int rows, int cols, int ld) {
    to_bf16(be, dst, src, rows, cols, ld);
}

// The bf16 mode multiplies bf16 operands with fp32 accumulation: on an H200 the GPT-2-124M
// step's GEMMs ran at 215-593 TFLOP/s, against 117-377 with cuBLAS's own mixed mode on fp32
// operands (CUBLAS_COMPUTE_32F_FAST_16BF). Activation buffers hold bf16 already (act.cu) and go
// in as they are, and C may be one (the product rounded to bf16 once, beta included). An fp32
// operand is rounded to a packed bf16 copy (round to nearest even) first; a copy costs a read
// and a half-size write of the operand, which only products with few rows or columns and no
// activation buffer (decoding's batch x weights) do not earn back: those keep cuBLAS's mixed
// mode. Copies are kept for the next products (CudaOperand): the model's products come in runs
// that share operands (x W_q, x W_k, x W_v share x; the backward's dY W and X^T dY share dY), and
// each run's sources stay unchanged until another op.

// the row-major C (M, N) = alpha op(A) op(B) + beta C on packed bf16 operands (leading dimensions
// in elements), C fp32 or bf16
static void gemm_bf16(CudaImpl* c, int trans_a, int trans_b, int M, int N, int K, float alpha,
                      const __nv_bfloat16* A, int lda, const __nv_bfloat16* B, int ldb, float beta, void* C,
                      int c_bf16, int ldc) {
    cublasCheck(cublasGemmEx(c->cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N,
                             M, K, &alpha, B, CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C,
                             c_bf16 ? CUDA_R_16BF : CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

static void cuda_matmul(Backend* be, int trans_a, int trans_b, int M, int N, int K, float alpha, const float* A,
                        int lda, const float* B, int ldb, float beta, float* C, int ldc) {
    CudaImpl* c = cuda_impl(be);
    if (M <= 0 || N <= 0) return;
    const CudaView va = cuda_view(be, A), vb = cuda_view(be, B), vc = cuda_view(be, C);
    c->operand_clock++; // this product's copies are not evicted for each other
    if (K <= 0) {
        cuda_dispatch(vc.bf16, [&](auto tag) {
            scale_rows_kernel<<<cuda_grid((size_t)M * N, 256), 256, 0, c->stream>>>((CUDA_TAG_T(tag)*)vc.p, M, N,
                                                                                    ldc, beta);
        });
        cudaCheckLaunch();
    } else if (!va.bf16 && !vb.bf16 && !vc.bf16 && (!c->bf16 || M < CUDA_BF16_COPY_MIN || N < CUDA_BF16_COPY_MIN)) {
        const cublasComputeType_t compute = c->bf16 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
        cublasCheck(cublasGemmEx(c->cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 N, M, K, &alpha, B, CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta, C, CUDA_R_32F, ldc,
                                 compute, CUBLAS_GEMM_DEFAULT));
    } else {
        // the operands as stored: A (M, K) or, transposed, (K, M); B (K, N) or (N, K)
        const int a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
        const int b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
        const __nv_bfloat16* a16 = va.bf16 ? (const __nv_bfloat16*)va.p : operand_bf16(be, A, a_rows, a_cols, lda);
        const __nv_bfloat16* b16 = vb.bf16 ? (const __nv_bfloat16*)vb.p : operand_bf16(be, B, b_rows, b_cols, ldb);
        gemm_bf16(c, trans_a, trans_b, M, N, K, alpha, a16, va.bf16 ? lda : a_cols, b16, vb.bf16 ? ldb : b_cols, beta,
                  vc.p, vc.bf16, ldc);
    }
    if (!vc.bf16) operands_forget_block(c, C, M, N, ldc); // an activation buffer is never a copy's source
}

// ----------------------------------------------------------------------------
// linear_bwd (ops.h): in the bf16 mode, with every dy[i] an activation buffer, two products over
// the stacked blocks instead of 2n. The model's q, k, v projections are the case: their backward
// was 3 products of depth 768 into dx (gpt2-124m) and 3 weight gradients of 768 x 768 over 16,384
// rows, whose 36 output tiles (128 x 128) leave most of an H200's 132 SMs idle; stacked, dx is one
// product of depth 2,304 and the weight gradient one of 2,304 x 768. The price is a copy of the
// dy blocks side by side (2 bytes per element, written and read once) and of the weights' kept
// bf16 copies (the forward's) one after another.

typedef struct {
    const __nv_bfloat16* p[LINEAR_MAX_BLOCKS]; // (M, cols[i]) packed
    int cols[LINEAR_MAX_BLOCKS];
} StackCols;

// dst (M, P) = [src 0 | src 1 | ...], VEC elements per step (4: 8-byte moves, when every block's
// columns are a multiple of 4 and every row 8-byte aligned)
template <int VEC> __global__ void stack_cols_kernel(__nv_bfloat16* dst, StackCols s, int M, int P) {
    const size_t per = (size_t)P / VEC, step = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)M * per; i += step) {
        const size_t r = i / per, col = i % per * VEC;
        int b = 0, c = (int)col;
        while (c >= s.cols[b]) c -= s.cols[b++];
        const __nv_bfloat16* src = s.p[b] + r * s.cols[b] + c;
        __nv_bfloat16* d = dst + r * P + col;
        if constexpr (VEC == 4) *(uint2*)d = *(const uint2*)src;
        else *d = *src;
    }
}

static void cuda_linear_bwd(Backend* be, const LinearBlocks* b, const float* x, float* dx, float beta, int M, int K) {
    CudaImpl* c = cuda_impl(be);
    linear_bwd_check(b, M, K);
    CudaView vdy[LINEAR_MAX_BLOCKS];
    int stacked = c->bf16 && b->n > 1 && M > 0;
    for (int i = 0; stacked && i < b->n; i++) {
        vdy[i] = cuda_view(be, b->dy[i]);
        stacked = vdy[i].bf16;
    }
    if (!stacked) return linear_bwd_by_matmuls(be, cuda_matmul, b, x, dx, beta, M, K);
    c->operand_clock++;
    int P = 0, vec4 = 1;
    StackCols s;
    const __nv_bfloat16* w16[LINEAR_MAX_BLOCKS];
    for (int i = 0; i < b->n; i++) {
        s.p[i] = (const __nv_bfloat16*)vdy[i].p;
        s.cols[i] = b->rows[i];
        vec4 = vec4 && b->rows[i] % 4 == 0 && (uintptr_t)s.p[i] % 8 == 0;
        P += b->rows[i];
        w16[i] = operand_bf16(be, b->w[i], b->rows[i], K, K); // the forward's kept copies
    }
    const CudaView vx = cuda_view(be, x), vdx = cuda_view(be, dx);
    const __nv_bfloat16* x16 = vx.bf16 ? (const __nv_bfloat16*)vx.p : operand_bf16(be, x, M, K, K);
    // scratch after the operand copies: a check of a kept copy (the emulated build) uses it too
    const size_t dy_bytes = cuda_cdiv((size_t)M * P * sizeof(__nv_bfloat16), 256) * 256;
    const size_t w_bytes = cuda_cdiv((size_t)P * K * sizeof(__nv_bfloat16), 256) * 256;
    char* scratch = (char*)cuda_scratch(be, dy_bytes + w_bytes + (size_t)P * K * sizeof(float));
    __nv_bfloat16* dy16 = (__nv_bfloat16*)scratch;
    __nv_bfloat16* wst = (__nv_bfloat16*)(scratch + dy_bytes);
    float* dw = (float*)(scratch + dy_bytes + w_bytes);
    const size_t items = (size_t)M * (vec4 ? P / 4 : P);
    if (vec4) stack_cols_kernel<4><<<cuda_grid(items, 256), 256, 0, c->stream>>>(dy16, s, M, P);
    else stack_cols_kernel<1><<<cuda_grid(items, 256), 256, 0, c->stream>>>(dy16, s, M, P);
    cudaCheckLaunch();
    for (int i = 0, r = 0; i < b->n; r += b->rows[i++]) {
        cudaCheck(cudaMemcpyAsync(wst + (size_t)r * K, w16[i], (size_t)b->rows[i] * K * sizeof(__nv_bfloat16),
                                  cudaMemcpyDeviceToDevice, c->stream));
    }
    gemm_bf16(c, 0, 0, M, K, P, 1.0f, dy16, P, wst, K, beta, vdx.p, vdx.bf16, K);
    gemm_bf16(c, 1, 0, P, K, M, 1.0f, dy16, P, x16, K, 0.0f, dw, 0, K);
    for (int i = 0, r = 0; i < b->n; r += b->rows[i++]) {
        operands_forget_alloc(c, b->dw[i]);
        add_kernel<<<cuda_grid((size_t)b->rows[i] * K, 256), 256, 0, c->stream>>>(b->dw[i], dw + (size_t)r * K,
                                                                                  (size_t)b->rows[i] * K);
        cudaCheckLaunch();
    }
    if (!vdx.bf16) operands_forget_block(c, dx, M, K, K);
}

// ----------------------------------------------------------------------------
// elementwise

__global__ void scale_kernel(float* y, float a, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        y[i] *= a;
    }
}

static void cuda_add(Backend* be, float* y, const float* x, size_t n) {
    if (!n) return;
    add_kernel<<<cuda_grid(n, 256), 256, 0, cuda_stream(be)>>>(y, x, n);
    cudaCheckLaunch();
}

static void cuda_scale(Backend* be, float* y, float a, size_t n) {
    if (!n) return;
    scale_kernel<<<cuda_grid(n, 256), 256, 0, cuda_stream(be)>>>(y, a, n);
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// AdamW (the same expression as the CPU backend, constants computed on the host alike). In the
// bf16 mode the update renews the kept bf16 copies of the weights it writes (the forward's
// products made them the step before): it stores each new weight's rounding into them as it
// goes, so the next forward finds them fresh instead of copying every weight matrix again (per
// weight 2 bytes written instead of a pass that reads 4 and writes 2, and no copy launches).

typedef struct {
    float beta1, beta2, eps, grad_scale, step, sqrt_bc2, decay;
} AdamWConsts;

// A launch's range cut into pieces: the blocks whose kept copies it renews and the gaps between
// them, so that one launch serves a whole tensor of layers (gpt2-124m: 16 launches per step).
#define ADAMW_PIECES 96
typedef struct {
    int n;
    size_t end[ADAMW_PIECES];          // piece k is [end[k - 1], end[k]) of the range, end[-1] = 0
    __nv_bfloat16* copy[ADAMW_PIECES]; // its kept copy, or NULL
} AdamWPieces;

// VEC consecutive elements per step (4 where every array and piece is aligned for it)
template <int VEC>
__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, size_t n, AdamWConsts k, AdamWPieces pcs) {
    int piece = 0; // the thread's elements only increase, and so does their piece
    for (size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x; j < n / VEC; j += (size_t)gridDim.x * blockDim.x) {
        Chunk<float, VEC> pc, gc, mc, vc;
        pc.load(p, j);
        gc.load(g, j);
        mc.load(m, j);
        vc.load(v, j);
        for (int e = 0; e < VEC; e++) {
            const float gi = gc.v[e] * k.grad_scale;
            const float mi = k.beta1 * mc.v[e] + (1.0f - k.beta1) * gi;
            const float vi = k.beta2 * vc.v[e] + (1.0f - k.beta2) * gi * gi;
            mc.v[e] = mi;
            vc.v[e] = vi;
            pc.v[e] = pc.v[e] * k.decay - k.step * mi / (sqrtf(vi) / k.sqrt_bc2 + k.eps);
        }
        mc.store(m, j);
        vc.store(v, j);
        pc.store(p, j);
        while (j * VEC >= pcs.end[piece]) piece++;
        if (pcs.copy[piece]) chunk_store(pcs.copy[piece], j - (piece ? pcs.end[piece - 1] : 0) / VEC, pc.v);
    }
}

static void adamw_launch(CudaImpl* c, float* p, const float* g, float* m, float* v, size_t n, const AdamWConsts& k,
                         const AdamWPieces& pcs) {
    bool vec4 = n % 4 == 0 && aligned4(p) && aligned4(g) && aligned4(m) && aligned4(v);
    for (int i = 0; i < pcs.n; i++) vec4 = vec4 && pcs.end[i] % 4 == 0; // the copies are 256-byte aligned
    if (vec4) adamw_kernel<4><<<cuda_grid(n / 4, 256), 256, 0, c->stream>>>(p, g, m, v, n, k, pcs);
    else adamw_kernel<1><<<cuda_grid(n, 256), 256, 0, c->stream>>>(p, g, m, v, n, k, pcs);
    cudaCheckLaunch();
}

// installed without the generic forgetting (renews_copies): the copies in p's range are renewed
// or forgotten here
static void cuda_adamw(Backend* be, float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1,
                       float beta2, float eps, float weight_decay, float grad_scale, long t) {
    if (!n) return;
    CudaImpl* c = cuda_impl(be);
    const float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
    const AdamWConsts k = {beta1, beta2, eps, grad_scale, lr / bc1, sqrtf(bc2), 1.0f - lr * weight_decay};
    operands_forget_alloc(c, m);
    operands_forget_alloc(c, v);
    CudaOperand* renew[CUDA_OPERAND_SLOTS];
    const int r = operands_renew(c, p, n, renew);
    size_t at = 0; // the launches so far updated [0, at)
    for (int i = 0; at < n;) {
        AdamWPieces pcs;
        pcs.n = 0;
        size_t done = at; // pieces so far cover [at, done)
        for (; i < r && pcs.n + 2 <= ADAMW_PIECES; i++) {
            const size_t off = (size_t)(renew[i]->src - p), len = (size_t)renew[i]->rows * renew[i]->cols;
            if (off > done) pcs.end[pcs.n] = off - at, pcs.copy[pcs.n++] = NULL;
            pcs.end[pcs.n] = off + len - at, pcs.copy[pcs.n++] = renew[i]->buf;
            done = off + len;
        }
        const size_t stop = i < r ? done : n; // more copies left: the next launch starts after these
        if (stop > done) pcs.end[pcs.n] = stop - at, pcs.copy[pcs.n++] = NULL;
        adamw_launch(c, p + at, g + at, m + at, v + at, stop - at, k, pcs);
        at = stop;
    }
}

// ----------------------------------------------------------------------------
// the ops as installed: each forgets the kept operand copies in the allocations it writes (AdamW
// renews them instead), fails clearly on an activation buffer where it takes none (ops.h), then
// runs

static constexpr bool str_eq(const char* a, const char* b) { return *a == *b && (!*a || str_eq(a + 1, b + 1)); }
// the arguments of an op that may be activation buffers, as a bit mask of their positions in the
// op's parameter list (be is 1): every pointer of the memory ops and the transformer blocks that
// take them, x and dx of linear_bwd, the logits z of the vocabulary rows and the losses' dz
// (dlogits), none elsewhere
static constexpr unsigned act_args(const char* op) {
    constexpr const char* all[] = {"upload",        "download",    "memset0",     "copy",          "scatter_rows",
                                   "add_bias",      "bias_bwd",    "rope_fwd",    "rope_bwd",      "rmsnorm_fwd",
                                   "rmsnorm_bwd",   "swiglu_fwd",  "swiglu_bwd",  "attention_fwd", "attention_bwd",
                                   "mask_rows"};
    for (const char* o : all) {
        if (str_eq(o, op)) return ~0u;
    }
    if (str_eq(op, "linear_bwd")) return 1u << 3 | 1u << 4; // x, dx (the dy blocks are checked by the op)
    if (str_eq(op, "add_rmsnorm_fwd")) return 1u << 2;    // y (the residual stream and x are fp32)
    // the logits z and the losses' dz
    if (str_eq(op, "cross_entropy")) return 1u << 2 | 1u << 8;
    if (str_eq(op, "kl_full")) return 1u << 2 | 1u << 9;
    if (str_eq(op, "kl_topk")) return 1u << 2 | 1u << 12;
    if (str_eq(op, "kl_sampled")) return 1u << 2 | 1u << 10;
    if (str_eq(op, "entropy") || str_eq(op, "jsd_topk") || str_eq(op, "jsd_full")) return 1u << 2;
    if (str_eq(op, "sampled_lp")) return 1u << 3;
    return 0;
}

// ops that keep the copies of what they write right themselves instead of forgetting them
static constexpr bool renews_copies(const char* op) { return str_eq(op, "adamw"); }

template <typename T> static void reject_act_arg(Backend* be, const char* op, unsigned allowed, int i, T x) {
    if constexpr (std::is_pointer<T>::value) {
        if (!(allowed >> i & 1) && cuda_view(be, (const void*)x).bf16) {
            fatal("cuda backend: argument %d of %s is an activation buffer (bf16), which %s does not take there", i,
                  op, op);
        }
    }
}

template <typename... A> static void reject_act(const char* op, unsigned allowed, Backend* be, A... a) {
    if (!cuda_impl(be)->acts.n) return;
    int i = 1;
    (reject_act_arg(be, op, allowed, ++i, a), ...);
}

// forget the copies in the allocations an op writes: those of its non-const pointer arguments
template <typename T> static void forget_written_arg(CudaImpl* c, T x) {
    if constexpr (std::is_pointer<T>::value && !std::is_const<typename std::remove_pointer<T>::type>::value) {
        if (x) operands_forget_alloc(c, (const void*)x);
    }
}

template <typename... A> static void forget_written(Backend* be, A... a) {
    CudaImpl* c = cuda_impl(be);
    if (!c->operand_bytes) return; // no copies (the f32 mode)
    (forget_written_arg(c, a), ...);
}

#define CUDA_UNPAREN(...) __VA_ARGS__
#define CUDA_INSTALLED_VOID(name, params, args)                                                                    \
    static void installed_##name params {                                                                          \
        if constexpr (!renews_copies(#name)) forget_written(be, CUDA_UNPAREN args);                                \
        if constexpr (act_args(#name) != ~0u) reject_act(#name, act_args(#name), CUDA_UNPAREN args);               \
        cuda_##name args;                                                                                          \
    }
#define CUDA_INSTALLED_VALUE(type, name, params, args)                                                             \
    static type installed_##name params {                                                                          \
        forget_written(be, CUDA_UNPAREN args);                                                                     \
        if constexpr (act_args(#name) != ~0u) reject_act(#name, act_args(#name), CUDA_UNPAREN args);               \
        return cuda_##name args;                                                                                   \
    }
#define CUDA_INSTALLED_DOUBLE(name, params, args) CUDA_INSTALLED_VALUE(double, name, params, args)
#define CUDA_INSTALLED_INT(name, params, args) CUDA_INSTALLED_VALUE(int, name, params, args)
BACKEND_VOID_OPS(CUDA_INSTALLED_VOID)
BACKEND_DOUBLE_OPS(CUDA_INSTALLED_DOUBLE)
BACKEND_INT_OPS(CUDA_INSTALLED_INT)

// ----------------------------------------------------------------------------
// construction

static void cuda_destroy(Backend* be) {
    CudaImpl* c = cuda_impl(be);
    cudaCheck(cudaStreamSynchronize(c->stream));
    if (c->scratch) cudaCheck(cudaFree(c->scratch));
    if (c->stage) cudaCheck(cudaFree(c->stage));
    if (c->zeroed) cudaCheck(cudaFree(c->zeroed));
    while (c->acts.n) cuda_free_act(be, (void*)c->acts.r[0].p);
    free(c->acts.r);
    for (int i = 0; i < CUDA_OPERAND_SLOTS; i++) cudaCheck(cudaFree(c->operands[i].buf));
    free(c->allocs.r);
    cudaCheck(cudaFree(c->cublas_ws));
    cudaCheck(cudaFree(c->result_dev));
    cudaCheck(cudaFreeHost(c->result_host));
    cublasCheck(cublasDestroy(c->cublas));
    cudaCheck(cudaStreamDestroy(c->stream));
    free(c);
    free(be);
}

extern "C" Backend* backend_cuda_create(int device, int bf16, char* err, size_t errlen) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        snprintf(err, errlen, "no usable CUDA GPU: %s", e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        cudaGetLastError(); // clear the sticky error so later CPU work is unaffected
        return NULL;
    }
    if (device < 0 || device >= count) {
        snprintf(err, errlen, "CUDA device %d does not exist: this node has %d GPU%s (ordinals 0..%d)", device, count,
                 count == 1 ? "" : "s", count - 1);
        return NULL;
    }
    e = cudaSetDevice(device);
    if (e != cudaSuccess) {
        snprintf(err, errlen, "cannot use CUDA device %d: %s", device, cudaGetErrorString(e));
        cudaGetLastError();
        return NULL;
    }
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, device));
    if (prop.major < 8) {
        snprintf(err, errlen, "CUDA device %d (%s, sm_%d%d) is older than sm_80, the oldest this build supports",
                 device, prop.name, prop.major, prop.minor);
        return NULL;
    }

    CudaImpl* c = (CudaImpl*)calloc(1, sizeof(CudaImpl));
    Backend* be = (Backend*)calloc(1, sizeof(Backend));
    if (!c || !be) fatal("cuda backend: out of host memory");
    c->device = device;
    c->bf16 = bf16 != 0;
    size_t free_b = 0, total_b = 0;
    cudaCheck(cudaMemGetInfo(&free_b, &total_b));
    c->operand_limit = total_b / 16; // 5 GB of an 80 GB GPU: the bf16 copies of 2.5 billion weights
    c->num_sms = prop.multiProcessorCount;
    cudaCheck(cudaStreamCreate(&c->stream));
    cublasCheck(cublasCreate(&c->cublas));
    cublasCheck(cublasSetStream(c->cublas, c->stream));
    cudaCheck(cudaMalloc(&c->cublas_ws, CUDA_CUBLAS_WS_BYTES));
    // a fixed workspace on one stream makes cuBLAS's GEMMs deterministic; the default math mode
    // keeps fp32 products in fp32 (no TF32); the bf16 mode picks its operands in cuda_matmul
    cublasCheck(cublasSetWorkspace(c->cublas, c->cublas_ws, CUDA_CUBLAS_WS_BYTES));
    cublasCheck(cublasSetMathMode(c->cublas, CUBLAS_DEFAULT_MATH));
    cublasCheck(cublasSetPointerMode(c->cublas, CUBLAS_POINTER_MODE_HOST));
    cudaCheck(cudaMalloc(&c->result_dev, CUDA_RESULTS * sizeof(double)));
    cudaCheck(cudaMallocHost(&c->result_host, CUDA_RESULTS * sizeof(double)));

    be->name = "cuda";
    be->impl = c;
    be->threads = c->num_sms;
    be->destroy = cuda_destroy;
    be->alloc = cuda_alloc;
    be->alloc_act = cuda_alloc_act;
    be->free = cuda_free;
    be->synchronize = cuda_synchronize;
    be->matmul = cuda_matmul;
    be->attention_work_bytes = cuda_attention_work_bytes;
#define CUDA_INSTALL(name, params, args) be->name = installed_##name;
    BACKEND_VOID_OPS(CUDA_INSTALL)
    BACKEND_DOUBLE_OPS(CUDA_INSTALL)
    BACKEND_INT_OPS(CUDA_INSTALL)
    return be;
}
