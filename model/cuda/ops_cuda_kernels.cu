// CUDA backend kernels for the transformer blocks: bias, row masking, the sum of squares,
// RMSNorm, RoPE, SwiGLU and the embedding. The ops that take activation buffers (ops.h) run
// on fp32 or bf16 storage alike (storage.cuh), with fp32 arithmetic. Reductions are deterministic: sums over rows (bias
// and norm-weight gradients) run in two fixed-order stages through the backend's scratch, the
// embedding gradient sorts the tokens (a stable radix sort) so that each table row is summed by
// one block in row order, and nothing uses atomics.
#include <stdint.h>

#include <cub/device/device_radix_sort.cuh>

#include "model/cuda/ops_cuda.cuh"
#include "model/cuda/storage.cuh"

// ----------------------------------------------------------------------------
// bias and masking

template <typename T> __global__ void add_bias_kernel(T* y, const float* b, size_t n, int C) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        store_f(y + i, load_f(y + i) + b[i % C]);
    }
}

void cuda_add_bias(Backend* be, float* y, const float* b, int N, int C) {
    const size_t n = (size_t)N * C;
    if (!n) return;
    const CudaView vy = cuda_view(be, y);
    cuda_dispatch(vy.bf16, [&](auto tag) {
        add_bias_kernel<<<cuda_grid(n, 256), 256, 0, cuda_stream(be)>>>((CUDA_TAG_T(tag)*)vy.p, b, n, C);
    });
    cudaCheckLaunch();
}

// a block per row (grid-stride over rows): a valid row costs one read of its length, not a pass
// over its C elements (the LM head's dlogits rows are 50k wide)
template <typename T> __global__ void mask_rows_kernel(T* x, const int* lengths, int Tn, int C, size_t rows) {
    for (size_t row = blockIdx.x; row < rows; row += gridDim.x) {
        if ((int)(row % Tn) < lengths[row / Tn]) continue;
        T* xr = x + row * C;
        for (int j = threadIdx.x; j < C; j += blockDim.x) store_f(xr + j, 0.0f);
    }
}

void cuda_mask_rows(Backend* be, float* x, const int* lengths, int B, int T, int C) {
    const size_t rows = (size_t)B * T;
    if (!rows || C <= 0) return;
    const unsigned grid = rows < 65535u ? (unsigned)rows : 65535u;
    const CudaView vx = cuda_view(be, x);
    cuda_dispatch(vx.bf16, [&](auto tag) {
        mask_rows_kernel<<<grid, 256, 0, cuda_stream(be)>>>((CUDA_TAG_T(tag)*)vx.p, lengths, T, C, rows);
    });
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// column sums: out (C) += sum over rows n of dy[n, c] (times x[n, c] * rstd[n] for the RMSNorm
// weight). Stage 1: block (32 columns, 8 row lanes) per (column tile, chunk of rows) writes one
// partial per column; stage 2: block (32, 8) per column tile sums the partials of the chunks.
// Every sum has a fixed order: lane y takes rows y, y + 8, ...; lanes combine in order 0..7.

#define COLSUM_LANES 8

// rows per chunk: a fixed function of N, with at most 1024 chunks
static int colsum_chunk(int N) {
    int chunk = 64;
    while (cuda_cdiv((size_t)N, (size_t)chunk) > 1024) chunk *= 2;
    return chunk;
}

template <bool RMS, typename TD, typename TX>
__global__ void colsum_partial_kernel(float* part, const TD* dy, const TX* x, const float* rstd, int N, int C,
                                      int chunk) {
    __shared__ float sh[COLSUM_LANES][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    const int n0 = blockIdx.y * chunk, n1 = min(n0 + chunk, N);
    float s = 0.0f;
    if (c < C) {
        for (int n = n0 + threadIdx.y; n < n1; n += COLSUM_LANES) {
            const size_t i = (size_t)n * C + c;
            s += RMS ? load_f(dy + i) * load_f(x + i) * rstd[n] : load_f(dy + i);
        }
    }
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float t = 0.0f;
        for (int l = 0; l < COLSUM_LANES; l++) t += sh[l][threadIdx.x];
        part[(size_t)blockIdx.y * C + c] = t;
    }
}

__global__ void colsum_final_kernel(float* out, const float* part, int R, int C) {
    __shared__ float sh[COLSUM_LANES][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f;
    if (c < C) {
        for (int r = threadIdx.y; r < R; r += COLSUM_LANES) s += part[(size_t)r * C + c];
    }
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float t = 0.0f;
        for (int l = 0; l < COLSUM_LANES; l++) t += sh[l][threadIdx.x];
        out[c] += t;
    }
}

// dy, x: views of one storage type (x.p NULL: the bias gradient)
static void colsum(Backend* be, float* out, CudaView dy, CudaView x, const float* rstd, int N, int C) {
    if (N <= 0 || C <= 0) return;
    const int chunk = colsum_chunk(N), R = (int)cuda_cdiv((size_t)N, (size_t)chunk);
    float* part = (float*)cuda_scratch(be, (size_t)R * C * sizeof(float));
    const dim3 block(32, COLSUM_LANES), grid1((unsigned)cuda_cdiv((size_t)C, 32), (unsigned)R);
    cuda_dispatch(dy.bf16, [&](auto tag) {
        typedef CUDA_TAG_T(tag) T;
        if (x.p) {
            colsum_partial_kernel<true><<<grid1, block, 0, cuda_stream(be)>>>(part, (const T*)dy.p, (const T*)x.p,
                                                                               rstd, N, C, chunk);
        } else {
            colsum_partial_kernel<false><<<grid1, block, 0, cuda_stream(be)>>>(part, (const T*)dy.p, (const T*)NULL,
                                                                                rstd, N, C, chunk);
        }
    });
    cudaCheckLaunch();
    colsum_final_kernel<<<(unsigned)cuda_cdiv((size_t)C, 32), block, 0, cuda_stream(be)>>>(out, part, R, C);
    cudaCheckLaunch();
}

void cuda_bias_bwd(Backend* be, float* db, const float* dy, int N, int C) {
    const CudaView none = {NULL, 0};
    colsum(be, db, cuda_view(be, dy), none, NULL, N, C);
}

// ----------------------------------------------------------------------------
// sum of squares: per-thread double sums in a fixed stride pattern, block partials, then one
// block over the partials (the grid is a function of n only)

__global__ void sum_squares_kernel(double* part, const float* x, size_t n) {
    __shared__ double sh[32];
    double s = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float xi = x[i];
        s += (double)(xi * xi);
    }
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

double cuda_sum_squares(Backend* be, const float* x, size_t n) {
    CudaImpl* c = cuda_impl(be);
    if (!n) return 0.0;
    size_t g = cuda_cdiv(n, 256 * 8);
    if (g > CUDA_SUM_PARTS) g = CUDA_SUM_PARTS;
    double* part = (double*)cuda_scratch(be, 2 * CUDA_SUM_PARTS * sizeof(double));
    sum_squares_kernel<<<(unsigned)g, 256, 0, c->stream>>>(part, x, n);
    cudaCheckLaunch();
    cuda_sum_doubles(be, c->result_dev, part, g, part + g);
    return cuda_result(be);
}

// ----------------------------------------------------------------------------
// RMSNorm: one warp per row (rows of any width: lane l takes columns l, l + 32, ...); rows whose
// width is a multiple of 4 at 16-byte aligned addresses go 4 columns per load (lane l takes the
// column quads l, l + 32, ...), which keeps more of each row's bytes in flight.

// the rest of a row once each lane has its part ss of the sum of squares: r = rstd, y = x r w
template <int VEC, typename TY, typename TX>
__device__ __forceinline__ void rms_row_out(TY* yn, float* rstd, const TX* xn, const float* w, int row, int C,
                                            float ss, float eps, int lane) {
    ss = warp_sum(ss);
    const float r = 1.0f / sqrtf(ss / (float)C + eps);
    for (int j = lane; j < C / VEC; j += 32) {
        Chunk<TX, VEC> a;
        Chunk<float, VEC> wj;
        Chunk<TY, VEC> o;
        a.load(xn, j);
        wj.load(w, j);
        for (int e = 0; e < VEC; e++) o.v[e] = a.v[e] * r * wj.v[e];
        o.store(yn, j);
    }
    if (lane == 0) rstd[row] = r;
}

template <int VEC, typename TY, typename TX>
__global__ void rmsnorm_fwd_kernel(TY* y, float* rstd, const TX* x, const float* w, int N, int C, float eps) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= N) return;
    const TX* xn = x + (size_t)row * C;
    float ss = 0.0f;
    for (int j = lane; j < C / VEC; j += 32) {
        Chunk<TX, VEC> a;
        a.load(xn, j);
        for (int e = 0; e < VEC; e++) ss += a.v[e] * a.v[e];
    }
    rms_row_out<VEC>(y + (size_t)row * C, rstd, xn, w, row, C, ss, eps, lane);
}

// res += x, then the norm of res: the sums are those rmsnorm_fwd_kernel takes of the new res
// (each lane rereads its own stores)
template <int VEC, typename TY>
__global__ void add_rmsnorm_fwd_kernel(TY* y, float* rstd, float* res, const float* x, const float* w, int N, int C,
                                       float eps) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= N) return;
    float* rn = res + (size_t)row * C;
    const float* xn = x + (size_t)row * C;
    float ss = 0.0f;
    for (int j = lane; j < C / VEC; j += 32) {
        Chunk<float, VEC> a, b;
        a.load(rn, j);
        b.load(xn, j);
        for (int e = 0; e < VEC; e++) {
            a.v[e] += b.v[e];
            ss += a.v[e] * a.v[e];
        }
        a.store(rn, j);
    }
    rms_row_out<VEC>(y + (size_t)row * C, rstd, (const float*)rn, w, row, C, ss, eps, lane);
}

void cuda_rmsnorm_fwd(Backend* be, float* y, float* rstd, const float* x, const float* w, int N, int C, float eps) {
    if (N <= 0 || C <= 0) return;
    const unsigned grid = (unsigned)cuda_cdiv((size_t)N, 8);
    const CudaView vy = cuda_view(be, y), vx = cuda_view(be, x);
    cuda_dispatch2(vy.bf16, vx.bf16, [&](auto ty, auto tx) {
        typedef CUDA_TAG_T(ty) TY;
        typedef CUDA_TAG_T(tx) TX;
        TY* yp = (TY*)vy.p;
        const TX* xp = (const TX*)vx.p;
        if (rows_vec4(xp, C) && rows_vec4(yp, C) && rows_vec4(w, C)) {
            rmsnorm_fwd_kernel<4><<<grid, 256, 0, cuda_stream(be)>>>(yp, rstd, xp, w, N, C, eps);
        } else {
            rmsnorm_fwd_kernel<1><<<grid, 256, 0, cuda_stream(be)>>>(yp, rstd, xp, w, N, C, eps);
        }
    });
    cudaCheckLaunch();
}

void cuda_add_rmsnorm_fwd(Backend* be, float* y, float* rstd, float* res, const float* x, const float* w, int N, int C,
                          float eps) {
    if (N <= 0 || C <= 0) return;
    const unsigned grid = (unsigned)cuda_cdiv((size_t)N, 8);
    const CudaView vy = cuda_view(be, y);
    cuda_dispatch(vy.bf16, [&](auto ty) {
        typedef CUDA_TAG_T(ty) TY;
        TY* yp = (TY*)vy.p;
        if (rows_vec4(res, C) && rows_vec4(x, C) && rows_vec4(yp, C) && rows_vec4(w, C)) {
            add_rmsnorm_fwd_kernel<4><<<grid, 256, 0, cuda_stream(be)>>>(yp, rstd, res, x, w, N, C, eps);
        } else {
            add_rmsnorm_fwd_kernel<1><<<grid, 256, 0, cuda_stream(be)>>>(yp, rstd, res, x, w, N, C, eps);
        }
    });
    cudaCheckLaunch();
}

// a row's sum of dy w x over its C columns, summed over the warp (every lane gets it)
template <int VEC, typename T>
__device__ __forceinline__ float rms_row_dot(const T* xn, const T* dyn, const float* w, int C, int lane) {
    float dot = 0.0f;
    for (int j = lane; j < C / VEC; j += 32) {
        Chunk<T, VEC> a, d;
        Chunk<float, VEC> wj;
        a.load(xn, j);
        d.load(dyn, j);
        wj.load(w, j);
        for (int e = 0; e < VEC; e++) dot += d.v[e] * wj.v[e] * a.v[e];
    }
    return warp_sum(dot);
}

template <int VEC, typename T>
__global__ void rmsnorm_bwd_dx_kernel(T* dx, __nv_bfloat16* dx16, const T* dy, const T* x, const float* w,
                                      const float* rstd, int N, int C) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= N) return;
    const T* xn = x + (size_t)row * C;
    const T* dyn = dy + (size_t)row * C;
    T* dxn = dx + (size_t)row * C;
    const float r = rstd[row];
    const float k = r * r * r * rms_row_dot<VEC>(xn, dyn, w, C, lane) / (float)C;
    for (int j = lane; j < C / VEC; j += 32) {
        Chunk<T, VEC> a, d, o;
        Chunk<float, VEC> wj;
        a.load(xn, j);
        d.load(dyn, j);
        wj.load(w, j);
        o.load(dxn, j);
        for (int e = 0; e < VEC; e++) o.v[e] += r * wj.v[e] * d.v[e] - k * a.v[e];
        o.store(dxn, j);
        if (dx16) chunk_store(dx16 + (size_t)row * C, j, o.v); // dx's kept bf16 copy
    }
}

// The backward in one pass over dy and x for rows of up to RMS_FUSED_CMAX columns, 4 per load
// (the model's norms): block b takes rows RMS_FUSED_ROWS b and on, warp w its rows w, w + 8, ...;
// besides dx, each lane adds dy x rstd of its columns over its rows in registers, the warps' sums
// meet in shared memory in warp order, and part[b] gets the block's share of dw, which
// colsum_final_kernel sums over the blocks in order. The two-pass path reads dy and x again.
#define RMS_FUSED_ROWS 64
#define RMS_FUSED_CMAX 1024
template <typename T>
__global__ void __launch_bounds__(256) rmsnorm_bwd_fused_kernel(T* dx, __nv_bfloat16* dx16, float* part, const T* dy,
                                                                const T* x, const float* w, const float* rstd, int N,
                                                                int C) {
    constexpr int NJ = RMS_FUSED_CMAX / 128; // column quads per lane
    __shared__ float sh[8][RMS_FUSED_CMAX];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, C4 = C / 4;
    float acc[NJ][4];
    for (int jj = 0; jj < NJ; jj++) acc[jj][0] = acc[jj][1] = acc[jj][2] = acc[jj][3] = 0.0f;
    for (int k = 0; k < RMS_FUSED_ROWS / 8; k++) {
        const int row = blockIdx.x * RMS_FUSED_ROWS + 8 * k + warp;
        if (row >= N) break;
        const T* xn = x + (size_t)row * C;
        const T* dyn = dy + (size_t)row * C;
        T* dxn = dx + (size_t)row * C;
        const float r = rstd[row];
        const float kr = r * r * r * rms_row_dot<4>(xn, dyn, w, C, lane) / (float)C;
#pragma unroll
        for (int jj = 0; jj < NJ; jj++) {
            const int j = lane + 32 * jj;
            if (j >= C4) break;
            Chunk<T, 4> a, d, o;
            Chunk<float, 4> wj;
            a.load(xn, j);
            d.load(dyn, j);
            wj.load(w, j);
            o.load(dxn, j);
            for (int e = 0; e < 4; e++) {
                o.v[e] += r * wj.v[e] * d.v[e] - kr * a.v[e];
                acc[jj][e] += d.v[e] * a.v[e] * r;
            }
            o.store(dxn, j);
            if (dx16) chunk_store(dx16 + (size_t)row * C, j, o.v);
        }
    }
#pragma unroll
    for (int jj = 0; jj < NJ; jj++) {
        const int j = lane + 32 * jj;
        if (j < C4) {
            for (int e = 0; e < 4; e++) sh[warp][4 * j + e] = acc[jj][e];
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float t = 0.0f;
        for (int v = 0; v < 8; v++) t += sh[v][c];
        part[(size_t)blockIdx.x * C + c] = t;
    }
}

void cuda_rmsnorm_bwd(Backend* be, float* dx, float* dw, const float* dy, const float* x, const float* w,
                      const float* rstd, int N, int C) {
    if (N <= 0 || C <= 0) return;
    const CudaView v[3] = {cuda_view(be, dx), cuda_view(be, dy), cuda_view(be, x)};
    const unsigned grid = (unsigned)cuda_cdiv((size_t)N, 8); // the two-pass path: 8 rows per block
    // in the bf16 mode an fp32 dx is the model's residual gradient, whose next use is as the operand
    // of two products: its kept bf16 copy is written here as dx is (operands.cu) instead of by a
    // copy pass there
    __nv_bfloat16* dx16 = cuda_impl(be)->bf16 && !v[0].bf16 ? operand_produce(be, dx, N, C) : NULL;
    int fused = 0;
    cuda_dispatch(cuda_views_bf16("rmsnorm_bwd", v, 3), [&](auto tag) {
        typedef CUDA_TAG_T(tag) T;
        T* dxp = (T*)v[0].p;
        const T *dyp = (const T*)v[1].p, *xp = (const T*)v[2].p;
        const int vec4 = rows_vec4(dxp, C) && rows_vec4(dyp, C) && rows_vec4(xp, C) && rows_vec4(w, C);
        if (vec4 && C <= RMS_FUSED_CMAX) {
            const int R = (int)cuda_cdiv((size_t)N, RMS_FUSED_ROWS);
            float* part = (float*)cuda_scratch(be, (size_t)R * C * sizeof(float));
            rmsnorm_bwd_fused_kernel<<<(unsigned)R, 256, 0, cuda_stream(be)>>>(dxp, dx16, part, dyp, xp, w, rstd, N,
                                                                                  C);
            cudaCheckLaunch();
            const dim3 block(32, COLSUM_LANES);
            colsum_final_kernel<<<(unsigned)cuda_cdiv((size_t)C, 32), block, 0, cuda_stream(be)>>>(dw, part, R, C);
            fused = 1;
        } else if (vec4) {
            rmsnorm_bwd_dx_kernel<4><<<grid, 256, 0, cuda_stream(be)>>>(dxp, dx16, dyp, xp, w, rstd, N, C);
        } else {
            rmsnorm_bwd_dx_kernel<1><<<grid, 256, 0, cuda_stream(be)>>>(dxp, dx16, dyp, xp, w, rstd, N, C);
        }
    });
    cudaCheckLaunch();
    if (!fused) colsum(be, dw, v[1], v[2], rstd, N, C);
}

// ----------------------------------------------------------------------------
// RoPE (HF rotate_half: element i pairs with i + hd/2); one thread per VEC consecutive pairs
// (4 when hd/2 is a multiple of 4 and the buffers are 16-byte aligned)

template <int VEC, typename T>
__global__ void rope_kernel(T* x, const int* pos, const float* cos_t, const float* sin_t, int nh, int hd,
                            size_t n, float sign) {
    const int half = hd / 2, chunks = half / VEC;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t head = i / chunks; // (row, head) index
        const int j = (int)(i - head * chunks);
        const size_t row = head / nh;
        T* xh = x + head * hd;
        const float* ct = cos_t + (size_t)pos[row] * half;
        const float* st = sin_t + (size_t)pos[row] * half;
        Chunk<T, VEC> x1, x2;
        Chunk<float, VEC> c, sn;
        x1.load(xh, j);
        x2.load(xh + half, j);
        c.load(ct, j);
        sn.load(st, j);
        for (int e = 0; e < VEC; e++) {
            const float a = x1.v[e], b = x2.v[e], s = sign * sn.v[e];
            x1.v[e] = a * c.v[e] - b * s;
            x2.v[e] = b * c.v[e] + a * s;
        }
        x1.store(xh, j);
        x2.store(xh + half, j);
    }
}

static void rope(Backend* be, float* x, const int* pos, const float* cos_t, const float* sin_t, int N, int nh, int hd,
                 float sign) {
    const int half = hd / 2;
    const CudaView vx = cuda_view(be, x);
    cuda_dispatch(vx.bf16, [&](auto tag) {
        typedef CUDA_TAG_T(tag) T;
        T* xp = (T*)vx.p;
        const int vec = rows_vec4(xp, half) && aligned4(cos_t) && aligned4(sin_t) ? 4 : 1;
        const size_t n = (size_t)N * nh * (half / vec);
        if (!n) return;
        if (vec == 4) {
            rope_kernel<4><<<cuda_grid(n, 256), 256, 0, cuda_stream(be)>>>(xp, pos, cos_t, sin_t, nh, hd, n, sign);
        } else {
            rope_kernel<1><<<cuda_grid(n, 256), 256, 0, cuda_stream(be)>>>(xp, pos, cos_t, sin_t, nh, hd, n, sign);
        }
        cudaCheckLaunch();
    });
}

void cuda_rope_fwd(Backend* be, float* x, const int* pos, const float* cos_t, const float* sin_t, int N, int nh,
                   int hd) {
    rope(be, x, pos, cos_t, sin_t, N, nh, hd, 1.0f);
}

void cuda_rope_bwd(Backend* be, float* dx, const int* pos, const float* cos_t, const float* sin_t, int N, int nh,
                   int hd) {
    // the rotation is orthogonal: its transpose is the rotation by -angle
    rope(be, dx, pos, cos_t, sin_t, N, nh, hd, -1.0f);
}

// ----------------------------------------------------------------------------
// SwiGLU (the CPU's sigmoid formulation: through exp(-|x|), so no huge denominators)

__device__ __forceinline__ float sigmoid_f(float x) {
    const float e = expf(-fabsf(x));
    const float s = 1.0f / (1.0f + e);
    return x >= 0.0f ? s : e * s;
}

// n / VEC chunks of VEC elements (4: n a multiple of 4, every buffer 16-byte aligned)
template <int VEC, typename T>
__global__ void swiglu_fwd_kernel(T* h, const T* gate, const T* up, size_t chunks) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < chunks; i += (size_t)gridDim.x * blockDim.x) {
        Chunk<T, VEC> g, u;
        g.load(gate, i);
        u.load(up, i);
        for (int e = 0; e < VEC; e++) u.v[e] *= g.v[e] * sigmoid_f(g.v[e]);
        u.store(h, i);
    }
}

template <int VEC, typename T>
__global__ void swiglu_bwd_kernel(T* dgate, T* dup, const T* dh, const T* gate, const T* up, size_t chunks) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < chunks; i += (size_t)gridDim.x * blockDim.x) {
        Chunk<T, VEC> g, u, d, dg, du;
        g.load(gate, i);
        u.load(up, i);
        d.load(dh, i);
        for (int e = 0; e < VEC; e++) {
            const float sg = sigmoid_f(g.v[e]);
            dg.v[e] = d.v[e] * u.v[e] * sg * (1.0f + g.v[e] * (1.0f - sg));
            du.v[e] = d.v[e] * g.v[e] * sg;
        }
        dg.store(dgate, i);
        du.store(dup, i);
    }
}

void cuda_swiglu_fwd(Backend* be, float* h, const float* gate, const float* up, size_t n) {
    if (!n) return;
    const CudaView v[3] = {cuda_view(be, h), cuda_view(be, gate), cuda_view(be, up)};
    cuda_dispatch(cuda_views_bf16("swiglu_fwd", v, 3), [&](auto tag) {
        typedef CUDA_TAG_T(tag) T;
        T* hp = (T*)v[0].p;
        const T *gp = (const T*)v[1].p, *up_ = (const T*)v[2].p;
        if (n % 4 == 0 && aligned4(hp) && aligned4(gp) && aligned4(up_)) {
            swiglu_fwd_kernel<4><<<cuda_grid(n / 4, 256), 256, 0, cuda_stream(be)>>>(hp, gp, up_, n / 4);
        } else {
            swiglu_fwd_kernel<1><<<cuda_grid(n, 256), 256, 0, cuda_stream(be)>>>(hp, gp, up_, n);
        }
    });
    cudaCheckLaunch();
}

void cuda_swiglu_bwd(Backend* be, float* dgate, float* dup, const float* dh, const float* gate, const float* up,
                     size_t n) {
    if (!n) return;
    const CudaView v[5] = {cuda_view(be, dgate), cuda_view(be, dup), cuda_view(be, dh), cuda_view(be, gate),
                           cuda_view(be, up)};
    cuda_dispatch(cuda_views_bf16("swiglu_bwd", v, 5), [&](auto tag) {
        typedef CUDA_TAG_T(tag) T;
        T *dg = (T*)v[0].p, *du = (T*)v[1].p;
        const T *dhp = (const T*)v[2].p, *gp = (const T*)v[3].p, *up_ = (const T*)v[4].p;
        if (n % 4 == 0 && aligned4(dg) && aligned4(du) && aligned4(dhp) && aligned4(gp) && aligned4(up_)) {
            swiglu_bwd_kernel<4><<<cuda_grid(n / 4, 256), 256, 0, cuda_stream(be)>>>(dg, du, dhp, gp, up_, n / 4);
        } else {
            swiglu_bwd_kernel<1><<<cuda_grid(n, 256), 256, 0, cuda_stream(be)>>>(dg, du, dhp, gp, up_, n);
        }
    });
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// embedding

__global__ void embedding_fwd_kernel(float* y, const int* tokens, const float* table, int D, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t row = i / D;
        y[i] = table[(size_t)tokens[row] * D + (i - row * D)];
    }
}

void cuda_embedding_fwd(Backend* be, float* y, const int* tokens, const float* table, int N, int D) {
    const size_t n = (size_t)N * D;
    if (!n) return;
    embedding_fwd_kernel<<<cuda_grid(n, 256), 256, 0, cuda_stream(be)>>>(y, tokens, table, D, n);
    cudaCheckLaunch();
}

__global__ void iota_kernel(int* x, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) x[i] = i;
}

// Block i of the sorted (token, row) pairs starts the run of its token when the previous pair
// has another token, and then adds the run's rows of dy to the token's table row, column by
// column in row order: the CPU's order, so the sums are the CPU's bits.
__global__ void embedding_bwd_kernel(float* dtable, const float* dy, const int* keys, const int* rows, int N, int D) {
    const int i = blockIdx.x;
    const int tok = keys[i];
    if (i > 0 && keys[i - 1] == tok) return;
    int end = i + 1;
    while (end < N && keys[end] == tok) end++;
    float* dt = dtable + (size_t)tok * D;
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        float acc = dt[c];
        for (int r = i; r < end; r++) acc += dy[(size_t)rows[r] * D + c];
        dt[c] = acc;
    }
}

static size_t align256(size_t x) { return (x + 255) / 256 * 256; }

void cuda_embedding_bwd(Backend* be, float* dtable, const float* dy, const int* tokens, int N, int D, int V) {
    if (N <= 0 || D <= 0) return;
    cudaStream_t st = cuda_stream(be);
    int end_bit = 1;
    while (end_bit < 31 && (1u << end_bit) < (unsigned)V) end_bit++;
    size_t temp_bytes = 0;
    cudaCheck(cub::DeviceRadixSort::SortPairs(NULL, temp_bytes, (const int*)NULL, (int*)NULL, (const int*)NULL,
                                              (int*)NULL, N, 0, end_bit, st));
    const size_t arr = align256((size_t)N * sizeof(int));
    char* s = (char*)cuda_scratch(be, 3 * arr + align256(temp_bytes));
    int* rows_in = (int*)s;
    int* keys_out = (int*)(s + arr);
    int* rows_out = (int*)(s + 2 * arr);
    void* temp = s + 3 * arr;
    iota_kernel<<<cuda_grid((size_t)N, 256), 256, 0, st>>>(rows_in, N);
    cudaCheckLaunch();
    // radix sort is stable: the rows of one token stay in increasing order
    cudaCheck(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, tokens, keys_out, rows_in, rows_out, N, 0, end_bit,
                                              st));
    const int threads = D >= 256 ? 256 : (D + 31) / 32 * 32;
    embedding_bwd_kernel<<<(unsigned)N, threads, 0, st>>>(dtable, dy, keys_out, rows_out, N, D);
    cudaCheckLaunch();
}
