// CUDA backend: the trainer's fixed-point gradient sums and the gradient norm's block sums (see
// ops.h), bit for bit as their host definition (model/fixed_point.c): the same conversions, each rounding
// to nearest even (__double2ll_rn, __ll2double_rn, __double2float_rn); max and | are order-free;
// each block sum runs in one thread in increasing order. (double)x * (double)x is exact, so the
// fused multiply-add the compiler makes of the sum rounds as the CPU's separate add does.
#include "model/cuda/ops_cuda.cuh"

// ----------------------------------------------------------------------------
// fixed-point accumulation

#define FP_BLOCKS 1024 // block partials of the max and the flags

// block b writes the max |g| over its elements (non-finite ones left out), whether one was not
// added, and whether one was not finite, to part[b], part[FP_BLOCKS + b], part[2 FP_BLOCKS + b]
__global__ void fp_accumulate_kernel(long long* acc, const float* g, size_t n, double scale, double limit,
                                     float* part) {
    __shared__ float sh[32];
    float mx = 0.0f, bad = 0.0f, nonfinite = 0.0f;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float a = fabsf(g[i]);
        if (!isfinite(a)) {
            bad = nonfinite = 1.0f;
            continue;
        }
        mx = fmaxf(mx, a);
        const double x = (double)g[i] * scale; // exact: a power-of-two scaling of a float
        if (!(fabs(x) < limit)) {
            bad = 1.0f;
            continue;
        }
        acc[i] += __double2ll_rn(x);
    }
    const float v[3] = {block_max(mx, sh), block_max(bad, sh), block_max(nonfinite, sh)};
    if (threadIdx.x == 0) {
        for (int j = 0; j < 3; j++) part[j * FP_BLOCKS + blockIdx.x] = v[j];
    }
}

// out[j] = the max over the blocks of part[j FP_BLOCKS + b], j = 0..2
__global__ void fp_flags_kernel(double* out, const float* part, int blocks) {
    __shared__ float sh[32];
    for (int j = 0; j < 3; j++) {
        float m = 0.0f;
        for (int b = threadIdx.x; b < blocks; b += blockDim.x) m = fmaxf(m, part[j * FP_BLOCKS + b]);
        m = block_max(m, sh);
        if (threadIdx.x == 0) out[j] = m;
    }
}

int cuda_fp_accumulate(Backend* be, int64_t* acc, const float* g, size_t n, int k, double limit, double* max_abs) {
    CudaImpl* c = cuda_impl(be);
    if (!n) {
        *max_abs = 0.0;
        return 0;
    }
    size_t blocks = cuda_cdiv(n, 256 * 4);
    if (blocks > FP_BLOCKS) blocks = FP_BLOCKS;
    float* part = (float*)cuda_scratch(be, 3 * FP_BLOCKS * sizeof(float));
    fp_accumulate_kernel<<<(unsigned)blocks, 256, 0, c->stream>>>((long long*)acc, g, n, ldexp(1.0, k), limit, part);
    cudaCheckLaunch();
    fp_flags_kernel<<<1, 1024, 0, c->stream>>>(c->result_dev, part, (int)blocks);
    cudaCheckLaunch();
    double r[3];
    cuda_results(be, r, 3);
    *max_abs = r[2] != 0.0 ? NAN : r[0];
    return r[1] != 0.0;
}

__global__ void fp_to_float_kernel(float* g, const long long* acc, size_t n, double inv) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        g[i] = __double2float_rn(__ll2double_rn(acc[i]) * inv);
    }
}

void cuda_fp_to_float(Backend* be, float* g, const int64_t* acc, size_t n, int k) {
    if (!n) return;
    fp_to_float_kernel<<<cuda_grid(n, 256), 256, 0, cuda_stream(be)>>>(g, (const long long*)acc, n, ldexp(1.0, -k));
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// block sums of squares: CUDA block b sums checkpoint block b. Its threads stage the block through
// shared memory in chunks (two buffers: the next chunk loads while thread 0 adds the current one),
// and thread 0 makes the one chain of adds in increasing order, from shared memory: a thread
// reading its block from global memory alone was latency-bound (18-23 ms per step on an H200).
#define SSB_CHUNK 2048
#define SSB_THREADS 256

__global__ void __launch_bounds__(SSB_THREADS)
    sum_squares_blocks_kernel(double* sums, const float* x, size_t n, size_t block) {
    __shared__ float buf[2][SSB_CHUNK];
    const size_t lo = (size_t)blockIdx.x * block, hi = lo + block < n ? lo + block : n;
    double s = 0.0;
    int it = 0;
    for (size_t c0 = lo; c0 < hi; c0 += SSB_CHUNK, it ^= 1) {
        const int len = hi - c0 < SSB_CHUNK ? (int)(hi - c0) : SSB_CHUNK;
        for (int i = threadIdx.x; i < len; i += blockDim.x) buf[it][i] = x[c0 + i];
        // the chunk is whole before thread 0 reads it; and thread 0 arrives only after adding the
        // chunk before, so the next chunk's writes into that buffer come after those reads
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int i = 0; i < len; i++) s += (double)buf[it][i] * (double)buf[it][i];
        }
    }
    if (threadIdx.x == 0) sums[blockIdx.x] = s;
}

void cuda_sum_squares_blocks(Backend* be, double* sums, const float* x, size_t n, size_t block) {
    if (!n) return;
    const size_t nb = cuda_cdiv(n, block);
    double* dev = (double*)cuda_scratch(be, nb * sizeof(double));
    sum_squares_blocks_kernel<<<(unsigned)nb, SSB_THREADS, 0, cuda_stream(be)>>>(dev, x, n, block);
    cudaCheckLaunch();
    cudaCheck(cudaMemcpyAsync(sums, dev, nb * sizeof(double), cudaMemcpyDeviceToHost, cuda_stream(be)));
    cudaCheck(cudaStreamSynchronize(cuda_stream(be)));
}
