// The kernels of CUDA causal grouped-query attention in fp32 on CUDA cores (see ops.h for the
// layouts): f32 mode, head sizes without a tensor-core kernel, and the decoding shapes.
// Device code only; attention.cu launches them. The includer provides AttnArgs' header and the
// reductions (reduce.cuh), so tests/emu can run the same kernels on the host in emulation.
//
// Training shapes run flash-style tiled kernels: a block of 128 threads takes a tile of queries
// of one head, keeps it in shared memory and walks the key/value tiles it can see (the causal
// triangle is skipped tile by tile) with an online softmax, saving the log-sum-exp. Threads
// form 16 row groups of 8 lanes: a thread owns rows r, r + 16, ... and columns c, c + 8, ... of
// every tile product, so a row's max and sum are a shuffle over its 8 lanes. Shared rows are
// padded by one float so the lanes' strided reads fall in distinct banks.
// The backward recomputes the probabilities from the saved lse (as FlashAttention does), in two
// kernels so that nothing needs atomics: one per query tile accumulates dq over the key tiles,
// one per key tile of a kv head accumulates dk and dv over the query tiles of every query head
// of its group, in a fixed order. Results are bit-identical between runs.
// Decoding shapes (a few query rows per kv head) split each query's keys into chunks, one block
// per (query, head, chunk), and combine the chunks' partial softmaxes in chunk order.
#pragma once

#include "model/cuda/attention_args.h"
#include "model/cuda/reduce.cuh"
#include "model/cuda/storage.cuh"

#define ATTN_THREADS 128
#define DEC_KEYS 128        // keys per chunk of the decoding path
#define DEC_WARPS 4

// Tiles of the fp32 kernels by the head size they are built for (64, 128, 256; hd <= HD): the
// forward's queries and keys, dq's queries and keys, dk/dv's keys and queries, and each kernel's
// shared memory in bytes.
template <int HD> struct AttnTiles;
template <int HD, int FQ, int FK, int QQ, int QK, int KK, int KQ> struct AttnTileSizes {
    static constexpr int fwd_q = FQ, fwd_k = FK, dq_q = QQ, dq_k = QK, dkdv_k = KK, dkdv_q = KQ, LD = HD + 1;
    static constexpr size_t fwd_smem = sizeof(float) * ((size_t)FQ * LD + 2 * (size_t)FK * LD + (size_t)FQ * (FK + 1));
    static constexpr size_t dq_smem =
        sizeof(float) * (2 * (size_t)QQ * LD + 2 * (size_t)QK * LD + (size_t)QQ * (QK + 1));
    static constexpr size_t dkdv_smem =
        sizeof(float) * (2 * (size_t)KK * LD + 2 * (size_t)KQ * LD + 2 * (size_t)KK * (KQ + 1) + 2 * (size_t)KQ);
};
template <> struct AttnTiles<64> : AttnTileSizes<64, 64, 64, 64, 64, 64, 64> {};
template <> struct AttnTiles<128> : AttnTileSizes<128, 64, 32, 64, 32, 32, 32> {};
template <> struct AttnTiles<256> : AttnTileSizes<256, 32, 32, 32, 32, 16, 32> {};

// ----------------------------------------------------------------------------
// shared tile helpers (HD: head size the kernel is built for, hd <= HD; LD = HD + 1)

// rows [0, R) of a (R, HD) shared tile from global rows (row i at src + (r0 + i) * ld), zero past
// `valid` rows and past hd columns
template <int R, int HD>
__device__ __forceinline__ void load_tile(float* dst, const float* src, size_t ld, int valid, int hd) {
    for (int idx = threadIdx.x; idx < R * HD; idx += ATTN_THREADS) {
        const int i = idx / HD, d = idx % HD;
        dst[i * (HD + 1) + d] = i < valid && d < hd ? src[(size_t)i * ld + d] : 0.0f;
    }
}

// acc[i][j] += sum_d A[(r + 16 i), d] * B[(c + 8 j), d] over shared (., HD + 1) tiles
template <int TR, int TC, int HD>
__device__ __forceinline__ void tile_dot(float (&acc)[TR][TC], const float* A, const float* B, int r, int c) {
#pragma unroll 4
    for (int d = 0; d < HD; d++) {
        float a[TR], bb[TC];
#pragma unroll
        for (int i = 0; i < TR; i++) a[i] = A[(r + 16 * i) * (HD + 1) + d];
#pragma unroll
        for (int j = 0; j < TC; j++) bb[j] = B[(c + 8 * j) * (HD + 1) + d];
#pragma unroll
        for (int i = 0; i < TR; i++) {
#pragma unroll
            for (int j = 0; j < TC; j++) acc[i][j] += a[i] * bb[j];
        }
    }
}

// acc[i][j] += sum_k P[(r + 16 i), k] * M[k, (c + 8 j)]; P rows of stride ldp, M of HD + 1
template <int TR, int TC, int KK, int HD>
__device__ __forceinline__ void tile_mac(float (&acc)[TR][TC], const float* P, int ldp, const float* M, int r, int c) {
#pragma unroll 4
    for (int k = 0; k < KK; k++) {
        float a[TR], m[TC];
#pragma unroll
        for (int i = 0; i < TR; i++) a[i] = P[(r + 16 * i) * ldp + k];
#pragma unroll
        for (int j = 0; j < TC; j++) m[j] = M[k * (HD + 1) + c + 8 * j];
#pragma unroll
        for (int i = 0; i < TR; i++) {
#pragma unroll
            for (int j = 0; j < TC; j++) acc[i][j] += a[i] * m[j];
        }
    }
}

// max and sum over the 8 lanes of a row group
__device__ __forceinline__ float group_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 4));
}

__device__ __forceinline__ float group_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    v += __shfl_xor_sync(0xffffffffu, v, 2);
    return v + __shfl_xor_sync(0xffffffffu, v, 4);
}

// ----------------------------------------------------------------------------
// forward, tiled: block (query tile, head, sequence)

template <int HD, int BQ, int BK>
__global__ void __launch_bounds__(ATTN_THREADS) attn_fwd_kernel(float* out, float* lse, AttnArgs a) {
    constexpr int LD = HD + 1, TR = BQ / 16, TS = BK / 8, TO = HD / 8;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    float* smem = (float*)smem_raw;
    float* Qs = smem;         // (BQ, LD)
    float* Ks = Qs + BQ * LD; // (BK, LD)
    float* Vs = Ks + BK * LD; // (BK, LD)
    float* Ps = Vs + BK * LD; // (BQ, BK + 1)
    const int c = threadIdx.x & 7, r = threadIdx.x >> 3;
    const int q0 = blockIdx.x * BQ, h = blockIdx.y, b = blockIdx.z, g = h / (a.H / a.KV);
    const int ql = a.q_lens[b], kl = a.kv_lens[b], off = kl - ql, ldo = a.H * a.hd;
    const int nq = min(BQ, ql - q0); // rows of the tile that hold queries
    const float* kb = a.k + (size_t)b * a.Tk * a.ldkv + (size_t)g * a.hd;
    const float* vb = a.v + (size_t)b * a.Tk * a.ldkv + (size_t)g * a.hd;

    float o[TR][TO], mrow[TR], lrow[TR];
#pragma unroll
    for (int i = 0; i < TR; i++) {
        mrow[i] = -INFINITY;
        lrow[i] = 0.0f;
#pragma unroll
        for (int j = 0; j < TO; j++) o[i][j] = 0.0f;
    }
    if (nq > 0) {
        load_tile<BQ, HD>(Qs, a.q + ((size_t)b * a.Tq + q0) * a.ldq + (size_t)h * a.hd, a.ldq, nq, a.hd);
        const int kend = min(off + q0 + nq, kl); // keys 0..kend-1 are visible to some row
        for (int k0 = 0; k0 < kend; k0 += BK) {
            __syncthreads(); // the previous tile's readers are done
            load_tile<BK, HD>(Ks, kb + (size_t)k0 * a.ldkv, a.ldkv, kend - k0, a.hd);
            load_tile<BK, HD>(Vs, vb + (size_t)k0 * a.ldkv, a.ldkv, kend - k0, a.hd);
            __syncthreads();
            float s[TR][TS];
#pragma unroll
            for (int i = 0; i < TR; i++) {
#pragma unroll
                for (int j = 0; j < TS; j++) s[i][j] = 0.0f;
            }
            tile_dot<TR, TS, HD>(s, Qs, Ks, r, c);
#pragma unroll
            for (int i = 0; i < TR; i++) {
                // rows past the queries see key 0 too: their values stay finite and are dropped
                const int last = min(off + q0 + r + 16 * i, kl - 1) - k0;
                float mx = -INFINITY;
#pragma unroll
                for (int j = 0; j < TS; j++) {
                    s[i][j] = c + 8 * j <= last ? s[i][j] * a.scale : -INFINITY;
                    mx = fmaxf(mx, s[i][j]);
                }
                const float m_new = fmaxf(mrow[i], group_max(mx));
                const float alpha = expf(mrow[i] - m_new);
                float ps = 0.0f;
#pragma unroll
                for (int j = 0; j < TS; j++) {
                    s[i][j] = expf(s[i][j] - m_new);
                    ps += s[i][j];
                    Ps[(r + 16 * i) * (BK + 1) + c + 8 * j] = s[i][j];
                }
                lrow[i] = lrow[i] * alpha + group_sum(ps);
                mrow[i] = m_new;
#pragma unroll
                for (int j = 0; j < TO; j++) o[i][j] *= alpha;
            }
            __syncthreads();
            tile_mac<TR, TO, BK, HD>(o, Ps, BK + 1, Vs, r, c);
        }
    }
#pragma unroll
    for (int i = 0; i < TR; i++) {
        const int row = r + 16 * i, t = q0 + row;
        if (t >= a.Tq) continue;
        float* orow = out + ((size_t)b * a.Tq + t) * ldo + (size_t)h * a.hd;
        const int valid = row < nq;
        const float inv = valid ? 1.0f / lrow[i] : 0.0f;
#pragma unroll
        for (int j = 0; j < TO; j++) {
            const int d = c + 8 * j;
            if (d < a.hd) orow[d] = valid ? o[i][j] * inv : 0.0f;
        }
        if (c == 0) lse[((size_t)b * a.H + h) * a.Tq + t] = valid ? mrow[i] + logf(lrow[i]) : 0.0f;
    }
}

// ----------------------------------------------------------------------------
// forward, decoding: block (query row, head, chunk of DEC_KEYS keys); warp w takes the chunk's
// keys w, w + 4, ... with a running softmax, lane l the head dims l, l + 32, ...; the warps
// combine in order into the chunk's partial (max, sum, unnormalised output) in `part`.

// the decoding kernel's shared memory: each warp's running max, sum and output
template <int HD> struct DecShared {
    float m[DEC_WARPS], l[DEC_WARPS], o[DEC_WARPS][HD];
};

// q, k, v: a.q, a.k, a.v as fp32, or as the bf16 mode's activation buffers (the decoder's KV cache)
template <int HD, typename T>
__global__ void __launch_bounds__(DEC_WARPS * 32)
    attn_dec_kernel(float* part, AttnArgs a, const T* q, const T* k, const T* v) {
    constexpr int NU = HD / 32;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    DecShared<HD>& sh = *(DecShared<HD>*)smem_raw;
    const int bt = blockIdx.x, h = blockIdx.y, chunk = blockIdx.z, nchunks = gridDim.z;
    const int b = bt / a.Tq, t = bt % a.Tq, g = h / (a.H / a.KV);
    const int ql = a.q_lens[b], kl = a.kv_lens[b];
    if (t >= ql) return;
    const int nk = min(kl - ql + t + 1, kl), j0 = chunk * DEC_KEYS, j1 = min(j0 + DEC_KEYS, nk);
    if (j0 >= j1) return; // the combine reads only the chunks that hold keys
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const T* qr = q + ((size_t)b * a.Tq + t) * a.ldq + (size_t)h * a.hd;
    const T* kb = k + (size_t)b * a.Tk * a.ldkv + (size_t)g * a.hd;
    const T* vb = v + (size_t)b * a.Tk * a.ldkv + (size_t)g * a.hd;
    float qv[NU], o[NU], m = -INFINITY, l = 0.0f;
#pragma unroll
    for (int u = 0; u < NU; u++) {
        const int d = lane + 32 * u;
        qv[u] = d < a.hd ? load_f(qr + d) : 0.0f;
        o[u] = 0.0f;
    }
    for (int j = j0 + warp; j < j1; j += DEC_WARPS) {
        const T* kj = kb + (size_t)j * a.ldkv;
        const T* vj = vb + (size_t)j * a.ldkv;
        float dot = 0.0f;
#pragma unroll
        for (int u = 0; u < NU; u++) {
            const int d = lane + 32 * u;
            if (d < a.hd) dot += qv[u] * load_f(kj + d);
        }
        const float s = warp_sum(dot) * a.scale;
        const float m_new = fmaxf(m, s), alpha = expf(m - m_new), p = expf(s - m_new);
        l = l * alpha + p;
        m = m_new;
#pragma unroll
        for (int u = 0; u < NU; u++) {
            const int d = lane + 32 * u;
            o[u] = o[u] * alpha + (d < a.hd ? p * load_f(vj + d) : 0.0f);
        }
    }
    if (lane == 0) {
        sh.m[warp] = m;
        sh.l[warp] = l;
    }
#pragma unroll
    for (int u = 0; u < NU; u++) sh.o[warp][lane + 32 * u] = o[u];
    __syncthreads();
    float M = -INFINITY;
    for (int w = 0; w < DEC_WARPS; w++) M = fmaxf(M, sh.m[w]);
    float* dst = part + (((size_t)bt * a.H + h) * nchunks + chunk) * (HD + 2);
    for (int d = threadIdx.x; d < HD + 1; d += blockDim.x) {
        float s = 0.0f;
        for (int w = 0; w < DEC_WARPS; w++) {
            const float f = sh.m[w] == -INFINITY ? 0.0f : expf(sh.m[w] - M);
            s += (d == 0 ? sh.l[w] : sh.o[w][d - 1]) * f;
        }
        dst[d + 1] = s; // dst[1] = sum, dst[2..] = output
    }
    if (threadIdx.x == 0) dst[0] = M;
}

// one block per (query row, head): the chunks in order; out fp32 or bf16
template <int HD, typename TO>
__global__ void attn_dec_combine_kernel(TO* out, float* lse, const float* part, int nchunks, AttnArgs a) {
    const int bt = blockIdx.x, h = blockIdx.y, b = bt / a.Tq, t = bt % a.Tq;
    const int ql = a.q_lens[b], kl = a.kv_lens[b];
    TO* orow = out + (size_t)bt * a.H * a.hd + (size_t)h * a.hd;
    float* l_out = lse + ((size_t)b * a.H + h) * a.Tq + t;
    if (t >= ql) {
        for (int d = threadIdx.x; d < a.hd; d += blockDim.x) store_f(orow + d, 0.0f);
        if (threadIdx.x == 0) *l_out = 0.0f;
        return;
    }
    const int nk = min(kl - ql + t + 1, kl), nc = (int)cuda_cdiv((size_t)nk, DEC_KEYS);
    const float* src = part + ((size_t)bt * a.H + h) * nchunks * (HD + 2);
    float M = -INFINITY;
    for (int ch = 0; ch < nc; ch++) M = fmaxf(M, src[(size_t)ch * (HD + 2)]);
    float l = 0.0f;
    for (int ch = 0; ch < nc; ch++) l += src[(size_t)ch * (HD + 2) + 1] * expf(src[(size_t)ch * (HD + 2)] - M);
    const float inv = 1.0f / l;
    for (int d = threadIdx.x; d < a.hd; d += blockDim.x) {
        float s = 0.0f;
        for (int ch = 0; ch < nc; ch++) {
            s += src[(size_t)ch * (HD + 2) + 2 + d] * expf(src[(size_t)ch * (HD + 2)] - M);
        }
        store_f(orow + d, s * inv);
    }
    if (threadIdx.x == 0) *l_out = M + logf(l);
}

// ----------------------------------------------------------------------------
// backward: D = rowsum(dO * O), then dq (per query tile) and dk, dv (per key tile)

// one warp per (sequence, query, head); rows t >= q_lens[b] get 0. dout and out are fp32 or, in
// the bf16 mode's activation buffers, bf16.
template <typename TD, typename TO>
__global__ void attn_bwd_dot_kernel(float* Dv, const TD* dout, const TO* out, const int* q_lens, int B, int Tq, int H,
                                    int hd) {
    const size_t row = (size_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= (size_t)B * Tq * H) return;
    const int h = (int)(row % H), t = (int)(row / H % Tq), b = (int)(row / H / Tq);
    const size_t at = ((size_t)b * Tq + t) * H * hd + (size_t)h * hd;
    float s = 0.0f;
    if (t < q_lens[b]) {
        for (int d = lane; d < hd; d += 32) s += load_f(dout + at + d) * load_f(out + at + d);
    }
    s = warp_sum(s);
    if (lane == 0) Dv[((size_t)b * H + h) * Tq + t] = s;
}

template <int HD, int BQ, int BK>
__global__ void __launch_bounds__(ATTN_THREADS) attn_bwd_dq_kernel(float* dq, const float* dout, const float* lse,
                                                                   const float* Dv, AttnArgs a) {
    constexpr int LD = HD + 1, TR = BQ / 16, TS = BK / 8, TO = HD / 8;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    float* smem = (float*)smem_raw;
    float* Qs = smem;          // (BQ, LD)
    float* dOs = Qs + BQ * LD; // (BQ, LD)
    float* Ks = dOs + BQ * LD; // (BK, LD)
    float* Vs = Ks + BK * LD;  // (BK, LD)
    float* dSs = Vs + BK * LD; // (BQ, BK + 1)
    const int c = threadIdx.x & 7, r = threadIdx.x >> 3;
    const int q0 = blockIdx.x * BQ, h = blockIdx.y, b = blockIdx.z, g = h / (a.H / a.KV);
    const int ql = a.q_lens[b], kl = a.kv_lens[b], off = kl - ql, ldo = a.H * a.hd;
    const int nq = min(BQ, ql - q0);
    const float* kb = a.k + (size_t)b * a.Tk * a.ldkv + (size_t)g * a.hd;
    const float* vb = a.v + (size_t)b * a.Tk * a.ldkv + (size_t)g * a.hd;

    float acc[TR][TO], lrow[TR], drow[TR];
#pragma unroll
    for (int i = 0; i < TR; i++) {
        const int t = q0 + r + 16 * i;
        const size_t at = ((size_t)b * a.H + h) * a.Tq + t;
        lrow[i] = r + 16 * i < nq ? lse[at] : 0.0f;
        drow[i] = r + 16 * i < nq ? Dv[at] : 0.0f;
#pragma unroll
        for (int j = 0; j < TO; j++) acc[i][j] = 0.0f;
    }
    if (nq > 0) {
        load_tile<BQ, HD>(Qs, a.q + ((size_t)b * a.Tq + q0) * a.ldq + (size_t)h * a.hd, a.ldq, nq, a.hd);
        load_tile<BQ, HD>(dOs, dout + ((size_t)b * a.Tq + q0) * ldo + (size_t)h * a.hd, ldo, nq, a.hd);
        const int kend = min(off + q0 + nq, kl);
        for (int k0 = 0; k0 < kend; k0 += BK) {
            __syncthreads();
            load_tile<BK, HD>(Ks, kb + (size_t)k0 * a.ldkv, a.ldkv, kend - k0, a.hd);
            load_tile<BK, HD>(Vs, vb + (size_t)k0 * a.ldkv, a.ldkv, kend - k0, a.hd);
            __syncthreads();
            float s[TR][TS], dp[TR][TS];
#pragma unroll
            for (int i = 0; i < TR; i++) {
#pragma unroll
                for (int j = 0; j < TS; j++) s[i][j] = dp[i][j] = 0.0f;
            }
            tile_dot<TR, TS, HD>(s, Qs, Ks, r, c);
            tile_dot<TR, TS, HD>(dp, dOs, Vs, r, c);
#pragma unroll
            for (int i = 0; i < TR; i++) {
                const int row = r + 16 * i, last = min(off + q0 + row, kl - 1) - k0;
#pragma unroll
                for (int j = 0; j < TS; j++) {
                    const float p = row < nq && c + 8 * j <= last ? expf(s[i][j] * a.scale - lrow[i]) : 0.0f;
                    dSs[row * (BK + 1) + c + 8 * j] = p * (dp[i][j] - drow[i]);
                }
            }
            __syncthreads();
            tile_mac<TR, TO, BK, HD>(acc, dSs, BK + 1, Ks, r, c);
        }
    }
#pragma unroll
    for (int i = 0; i < TR; i++) {
        const int row = r + 16 * i, t = q0 + row;
        if (t >= a.Tq) continue;
        float* drow_out = dq + ((size_t)b * a.Tq + t) * ldo + (size_t)h * a.hd;
#pragma unroll
        for (int j = 0; j < TO; j++) {
            const int d = c + 8 * j;
            if (d < a.hd) drow_out[d] = row < nq ? acc[i][j] * a.scale : 0.0f;
        }
    }
}

// block (key tile, kv head, sequence): the key tile stays in shared memory while the query
// tiles of each query head of the group stream past, in order
template <int HD, int BK, int BQ>
__global__ void __launch_bounds__(ATTN_THREADS) attn_bwd_dkdv_kernel(float* dk, float* dv, const float* dout,
                                                                     const float* lse, const float* Dv, AttnArgs a) {
    constexpr int LD = HD + 1, TR = BK / 16, TS = BQ / 8, TO = HD / 8;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    float* smem = (float*)smem_raw;
    float* Ks = smem;          // (BK, LD)
    float* Vs = Ks + BK * LD;  // (BK, LD)
    float* Qs = Vs + BK * LD;  // (BQ, LD)
    float* dOs = Qs + BQ * LD; // (BQ, LD)
    float* Ps = dOs + BQ * LD; // (BK, BQ + 1), keys by queries
    float* dSs = Ps + BK * (BQ + 1);
    float* lse_s = dSs + BK * (BQ + 1); // (BQ)
    float* D_s = lse_s + BQ;            // (BQ)
    const int c = threadIdx.x & 7, r = threadIdx.x >> 3;
    const int k0 = blockIdx.x * BK, g = blockIdx.y, b = blockIdx.z, G = a.H / a.KV;
    const int ql = a.q_lens[b], kl = a.kv_lens[b], off = kl - ql, ldo = a.H * a.hd;
    const int nkeys = min(BK, kl - k0);

    float dka[TR][TO], dva[TR][TO];
#pragma unroll
    for (int i = 0; i < TR; i++) {
#pragma unroll
        for (int j = 0; j < TO; j++) dka[i][j] = dva[i][j] = 0.0f;
    }
    if (nkeys > 0) {
        const size_t kv_at = (size_t)b * a.Tk * a.ldkv + (size_t)k0 * a.ldkv + (size_t)g * a.hd;
        load_tile<BK, HD>(Ks, a.k + kv_at, a.ldkv, nkeys, a.hd);
        load_tile<BK, HD>(Vs, a.v + kv_at, a.ldkv, nkeys, a.hd);
        const int first = max(0, k0 - off) / BQ * BQ; // the first query tile that sees key k0
        for (int h = g * G; h < (g + 1) * G; h++) {
            for (int q0 = first; q0 < ql; q0 += BQ) {
                const int nq = min(BQ, ql - q0);
                __syncthreads();
                load_tile<BQ, HD>(Qs, a.q + ((size_t)b * a.Tq + q0) * a.ldq + (size_t)h * a.hd, a.ldq, nq, a.hd);
                load_tile<BQ, HD>(dOs, dout + ((size_t)b * a.Tq + q0) * ldo + (size_t)h * a.hd, ldo, nq, a.hd);
                for (int i = threadIdx.x; i < BQ; i += ATTN_THREADS) {
                    const size_t at = ((size_t)b * a.H + h) * a.Tq + q0 + i;
                    lse_s[i] = i < nq ? lse[at] : 0.0f;
                    D_s[i] = i < nq ? Dv[at] : 0.0f;
                }
                __syncthreads();
                float s[TR][TS], dp[TR][TS];
#pragma unroll
                for (int i = 0; i < TR; i++) {
#pragma unroll
                    for (int j = 0; j < TS; j++) s[i][j] = dp[i][j] = 0.0f;
                }
                tile_dot<TR, TS, HD>(s, Ks, Qs, r, c);
                tile_dot<TR, TS, HD>(dp, Vs, dOs, r, c);
#pragma unroll
                for (int i = 0; i < TR; i++) {
                    const int key = k0 + r + 16 * i;
#pragma unroll
                    for (int j = 0; j < TS; j++) {
                        const int qi = c + 8 * j;
                        const int vis = qi < nq && key < kl && key <= off + q0 + qi;
                        const float p = vis ? expf(s[i][j] * a.scale - lse_s[qi]) : 0.0f;
                        Ps[(r + 16 * i) * (BQ + 1) + qi] = p;
                        dSs[(r + 16 * i) * (BQ + 1) + qi] = p * (dp[i][j] - D_s[qi]);
                    }
                }
                __syncthreads();
                tile_mac<TR, TO, BQ, HD>(dva, Ps, BQ + 1, dOs, r, c);
                tile_mac<TR, TO, BQ, HD>(dka, dSs, BQ + 1, Qs, r, c);
            }
        }
    }
#pragma unroll
    for (int i = 0; i < TR; i++) {
        const int key = k0 + r + 16 * i;
        if (key >= a.Tk) continue;
        const size_t at = ((size_t)b * a.Tk + key) * a.ldkv + (size_t)g * a.hd;
        const int valid = r + 16 * i < nkeys;
#pragma unroll
        for (int j = 0; j < TO; j++) {
            const int d = c + 8 * j;
            if (d < a.hd) {
                dk[at + d] = valid ? dka[i][j] * a.scale : 0.0f;
                dv[at + d] = valid ? dva[i][j] : 0.0f;
            }
        }
    }
}
