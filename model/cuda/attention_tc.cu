// CUDA causal grouped-query attention on bf16 tensor cores: the bf16 mode's kernels for the
// training (tiled) shapes of attention.cu, head sizes 32, 64 and 128.
//
// Interchangeable with the fp32 kernels of attention.cu: the same layouts, causal masking, GQA,
// lse, zeroed padded rows and structure. The forward walks the visible key tiles of a query tile
// with an online softmax and saves the log-sum-exp; the backward recomputes the probabilities
// from the lse in two kernels without atomics: one per query tile accumulates dq over the key
// tiles, one per key tile of a kv head accumulates dk and dv over the query tiles of every query
// head of its group, in a fixed order.
// Tiles are read as fp32 from global memory and rounded to bf16 into shared memory; the products
// (Q K^T, P V, dO V^T, dS K, K Q^T, V dO^T, P^T dO, dS^T Q) run as 16x16x16 WMMA bf16 fragments
// with fp32 accumulators; softmax statistics, the lse and every sum stay in fp32.
// A block is 4 warps. Warp w owns rows 16w..16w+15 of the block's tile (queries; keys in the dk/dv
// kernel) and passes its score tiles through its own fp32 slice of shared memory, where lanes
// 2r and 2r+1 take row r (even and odd columns), so a row's max and sum are one shuffle. The
// forward's output accumulator lives in shared memory: rescaling it row by row needs the element
// layout that WMMA fragments leave unspecified. The backward's sums need no rescaling and stay in
// fragments until the end. Each output element is written by one warp after a fixed sequence of
// mma_sync calls: results are bit-identical between runs.
#include <cuda_bf16.h>
#include <mma.h>
#include <stdint.h>

#include "model/cuda/ops_cuda.cuh"

namespace wmma = nvcuda::wmma;
typedef __nv_bfloat16 bf16;

#define TC_WARPS 4
#define TC_THREADS (TC_WARPS * 32)
#define TC_ROWS (TC_WARPS * 16) // rows of a block's own tile: queries (forward, dq) or keys (dk, dv)

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> FragA;  // A (m, k) at [m ld + k]
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> FragB;  // B (k, n) at [k ld + n]
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> FragBt; // B (k, n) at [n ld + k]
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> FragC;

// Shared tiles: bf16 rows of HD + 8 and fp32 rows of width + 4 elements, so that the 8 rows a
// fragment load or store touches at once start 16 bytes apart in the banks; every WMMA pointer
// is 32-byte aligned (region offsets are multiples of 32 bytes, fragments start at multiples of
// 16 rows and 16 columns).
#define TC_PAD_H 8
#define TC_PAD_F 4

static constexpr size_t tc_max(size_t a, size_t b) { return a > b ? a : b; }

// ----------------------------------------------------------------------------
// warp helpers

// rows [0, R) of a bf16 shared tile (row stride HD + 8) from fp32 global rows (row i at
// src + i * ld), zero past `valid` rows; float4 reads where src and ld allow
template <int R, int HD>
__device__ __forceinline__ void load_bf16(bf16* dst, const float* src, size_t ld, int valid) {
    constexpr int LDH = HD + TC_PAD_H, V4 = HD / 4;
    if (((uintptr_t)src & 15) == 0 && (ld & 3) == 0) {
        for (int idx = threadIdx.x; idx < R * V4; idx += TC_THREADS) {
            const int i = idx / V4, d = idx % V4 * 4;
            const float4 x = i < valid ? *(const float4*)(src + (size_t)i * ld + d) : make_float4(0.f, 0.f, 0.f, 0.f);
            __nv_bfloat162* o = (__nv_bfloat162*)(dst + i * LDH + d);
            o[0] = __floats2bfloat162_rn(x.x, x.y);
            o[1] = __floats2bfloat162_rn(x.z, x.w);
        }
    } else {
        for (int idx = threadIdx.x; idx < R * HD; idx += TC_THREADS) {
            const int i = idx / HD, d = idx % HD;
            dst[i * LDH + d] = __float2bfloat16(i < valid ? src[(size_t)i * ld + d] : 0.0f);
        }
    }
}

// c[n] = A Bt^T, column blocks n < N: A (16, 16 KK) and Bt (16 N, 16 KK), both row-major bf16
template <int N, int KK>
__device__ __forceinline__ void warp_abt(FragC (&c)[N], const bf16* A, int lda, const bf16* Bt, int ldb) {
#pragma unroll
    for (int n = 0; n < N; n++) wmma::fill_fragment(c[n], 0.0f);
#pragma unroll
    for (int kk = 0; kk < KK; kk++) {
        FragA fa;
        wmma::load_matrix_sync(fa, A + kk * 16, lda);
#pragma unroll
        for (int n = 0; n < N; n++) {
            FragBt fb;
            wmma::load_matrix_sync(fb, Bt + n * 16 * ldb + kk * 16, ldb);
            wmma::mma_sync(c[n], fa, fb, c[n]);
        }
    }
}

// c[n] += A B, column blocks n < N: A (16, 16 KK) and B (16 KK, 16 N), both row-major bf16
template <int N, int KK>
__device__ __forceinline__ void warp_ab(FragC (&c)[N], const bf16* A, int lda, const bf16* B, int ldb) {
#pragma unroll
    for (int kk = 0; kk < KK; kk++) {
        FragA fa;
        wmma::load_matrix_sync(fa, A + kk * 16, lda);
#pragma unroll
        for (int n = 0; n < N; n++) {
            FragB fb;
            wmma::load_matrix_sync(fb, B + kk * 16 * ldb + n * 16, ldb);
            wmma::mma_sync(c[n], fa, fb, c[n]);
        }
    }
}

// c[n] to / from the row-major fp32 (16, 16 N) tile at dst (row stride ld)
template <int N> __device__ __forceinline__ void store_frags(float* dst, const FragC (&c)[N], int ld) {
#pragma unroll
    for (int n = 0; n < N; n++) wmma::store_matrix_sync(dst + n * 16, c[n], ld, wmma::mem_row_major);
}

// the backward's two score tiles of a warp, into its fp32 slices (row stride lds): S = A1 B1^T
// and dP = A2 B2^T, A (16, 16 KK) and B (16 N, 16 KK) row-major bf16 with stride ld
template <int N, int KK>
__device__ __forceinline__ void warp_two_scores(float* S, float* dP, int lds, const bf16* A1, const bf16* B1,
                                                const bf16* A2, const bf16* B2, int ld) {
    FragC s[N];
    warp_abt<N, KK>(s, A1, ld, B1, ld);
    store_frags<N>(S, s, lds);
    warp_abt<N, KK>(s, A2, ld, B2, ld);
    store_frags<N>(dP, s, lds);
}

template <int N> __device__ __forceinline__ void load_frags(FragC (&c)[N], const float* src, int ld) {
#pragma unroll
    for (int n = 0; n < N; n++) wmma::load_matrix_sync(c[n], src + n * 16, ld, wmma::mem_row_major);
}

// A warp's 16 rows of a fp32 shared tile (row stride ld) to global rows (row i at dst + i * ldd,
// HD columns), times `mul`; rows at or past `valid` get 0, rows at or past `rows` are not written.
// Consecutive lanes write consecutive columns.
template <int HD>
__device__ __forceinline__ void warp_write_rows(float* dst, size_t ldd, const float* src, int ld, float mul, int valid,
                                                int rows) {
    const int lane = threadIdx.x & 31;
    for (int idx = lane; idx < 16 * HD; idx += 32) {
        const int i = idx / HD, d = idx % HD;
        if (i < rows) dst[(size_t)i * ldd + d] = i < valid ? src[i * ld + d] * mul : 0.0f;
    }
}

// ----------------------------------------------------------------------------
// forward: block (query tile of TC_ROWS, head, sequence), key tiles of BK

template <int HD, int BK> struct FwdLayout {
    static constexpr int LDH = HD + TC_PAD_H, LDS = BK + TC_PAD_F, LDP = BK + TC_PAD_H, LDO = HD + TC_PAD_F;
    static constexpr size_t q = 0;                                   // bf16 (TC_ROWS, LDH) queries
    static constexpr size_t k = q + sizeof(bf16) * TC_ROWS * LDH;    // bf16 (BK, LDH) keys
    static constexpr size_t v = k + sizeof(bf16) * BK * LDH;         // bf16 (BK, LDH) values
    static constexpr size_t s = v + sizeof(bf16) * BK * LDH;         // fp32 (TC_ROWS, LDS) scores
    static constexpr size_t p = s + sizeof(float) * TC_ROWS * LDS;   // bf16 (TC_ROWS, LDP) probabilities
    static constexpr size_t o = p + sizeof(bf16) * TC_ROWS * LDP;    // fp32 (TC_ROWS, LDO) output sums
    static constexpr size_t bytes = o + sizeof(float) * TC_ROWS * LDO;
    static_assert(k % 32 == 0 && v % 32 == 0 && s % 32 == 0 && p % 32 == 0 && o % 32 == 0,
                  "WMMA tiles need 32-byte aligned shared regions");
};

template <int HD, int BK>
__global__ void __launch_bounds__(TC_THREADS) attn_tc_fwd_kernel(float* out, float* lse, AttnArgs a) {
    typedef FwdLayout<HD, BK> L;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16* Qs = (bf16*)(smem + L::q);
    bf16* Ks = (bf16*)(smem + L::k);
    bf16* Vs = (bf16*)(smem + L::v);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, w0 = 16 * warp, r = lane >> 1, half = lane & 1;
    float* Sw = (float*)(smem + L::s) + w0 * L::LDS; // this warp's rows of each tile
    bf16* Pw = (bf16*)(smem + L::p) + w0 * L::LDP;
    float* Ow = (float*)(smem + L::o) + w0 * L::LDO;
    const int q0 = blockIdx.x * TC_ROWS, h = blockIdx.y, b = blockIdx.z, g = h / (a.H / a.KV);
    const int ql = a.q_lens[b], kl = a.kv_lens[b], off = kl - ql, ldo = a.H * HD;
    const int nq = min(TC_ROWS, ql - q0); // rows of the tile that hold queries
    const int row = w0 + r;               // the row of this lane pair
    // the row's last visible key; rows past the queries see every key (finite values, dropped)
    const int last = min(off + q0 + row, kl - 1);
    // the last key any query row of this warp sees: later key tiles are skipped (causal)
    const int wlast = min(off + q0 + min(w0 + 15, nq - 1), kl - 1);
    const float* kb = a.k + (size_t)b * a.Tk * a.ldkv + (size_t)g * HD;
    const float* vb = a.v + (size_t)b * a.Tk * a.ldkv + (size_t)g * HD;

    float m = -INFINITY, l = 0.0f; // the row's running max and sum (both lanes of the pair)
    for (int d = half; d < HD; d += 2) Ow[r * L::LDO + d] = 0.0f;
    if (nq > 0) {
        load_bf16<TC_ROWS, HD>(Qs, a.q + ((size_t)b * a.Tq + q0) * a.ldq + (size_t)h * HD, a.ldq, nq);
        const int kend = min(off + q0 + nq, kl); // keys 0..kend-1 are visible to some row
        for (int k0 = 0; k0 < kend; k0 += BK) {
            __syncthreads(); // the previous tile's readers are done
            load_bf16<BK, HD>(Ks, kb + (size_t)k0 * a.ldkv, a.ldkv, kend - k0);
            load_bf16<BK, HD>(Vs, vb + (size_t)k0 * a.ldkv, a.ldkv, kend - k0);
            __syncthreads();
            // skipping changes nothing: the tile's probabilities would all be 0 (tile 0 is never skipped)
            if (w0 >= nq || k0 > wlast) continue;
            {
                FragC s[BK / 16];
                warp_abt<BK / 16, HD / 16>(s, Qs + w0 * L::LDH, L::LDH, Ks, L::LDH);
                store_frags<BK / 16>(Sw, s, L::LDS);
            }
            __syncwarp();
            // online softmax of the row: key 0 is visible to every row, so m is finite from tile 0 on
            float sv[BK / 2], mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < BK / 2; j++) {
                const int c = half + 2 * j;
                sv[j] = k0 + c <= last ? Sw[r * L::LDS + c] * a.scale : -INFINITY;
                mx = fmaxf(mx, sv[j]);
            }
            const float m_new = fmaxf(m, fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1)));
            const float alpha = expf(m - m_new);
            float ps = 0.0f;
#pragma unroll
            for (int j = 0; j < BK / 2; j++) {
                const float p = expf(sv[j] - m_new);
                ps += p;
                Pw[r * L::LDP + half + 2 * j] = __float2bfloat16(p);
            }
            l = l * alpha + (ps + __shfl_xor_sync(0xffffffffu, ps, 1)); // the same sum in both lanes
            m = m_new;
            for (int d = half; d < HD; d += 2) Ow[r * L::LDO + d] *= alpha;
            __syncwarp();
            {
                FragC o[HD / 16];
                load_frags<HD / 16>(o, Ow, L::LDO);
                warp_ab<HD / 16, BK / 16>(o, Pw, L::LDP, Vs, L::LDH);
                store_frags<HD / 16>(Ow, o, L::LDO);
            }
            __syncwarp();
        }
    }
    // the rows' 1 / sum go to the warp's score slice, which its last tile is done with
    float* inv_w = Sw;
    if (half == 0) {
        const int t = q0 + row, valid = row < nq;
        inv_w[r] = valid ? 1.0f / l : 0.0f;
        if (t < a.Tq) lse[((size_t)b * a.H + h) * a.Tq + t] = valid ? m + logf(l) : 0.0f;
    }
    __syncwarp();
    const int t0 = q0 + w0;
    for (int idx = lane; idx < 16 * HD; idx += 32) {
        const int i = idx / HD, d = idx % HD;
        if (t0 + i < a.Tq) { // rows past the queries get an explicit 0 (a negative sum times 0 is -0)
            out[((size_t)b * a.Tq + t0 + i) * ldo + (size_t)h * HD + d] =
                w0 + i < nq ? Ow[i * L::LDO + d] * inv_w[i] : 0.0f;
        }
    }
}

// ----------------------------------------------------------------------------
// backward, dq: block (query tile of TC_ROWS, head, sequence), key tiles of BK

template <int HD, int BK> struct DqLayout {
    static constexpr int LDH = HD + TC_PAD_H, LDS = BK + TC_PAD_F, LDP = BK + TC_PAD_H, LDX = HD + TC_PAD_F;
    static constexpr size_t q = 0;                                  // bf16 (TC_ROWS, LDH) queries
    static constexpr size_t dout = q + sizeof(bf16) * TC_ROWS * LDH; // bf16 (TC_ROWS, LDH) output gradients
    static constexpr size_t k = dout + sizeof(bf16) * TC_ROWS * LDH; // bf16 (BK, LDH) keys
    static constexpr size_t v = k + sizeof(bf16) * BK * LDH;        // bf16 (BK, LDH) values
    static constexpr size_t s = v + sizeof(bf16) * BK * LDH;        // fp32 (TC_ROWS, LDS) scores
    static constexpr size_t dp = s + sizeof(float) * TC_ROWS * LDS; // fp32 (TC_ROWS, LDS) dO V^T
    static constexpr size_t ds = dp + sizeof(float) * TC_ROWS * LDS; // bf16 (TC_ROWS, LDP) dS
    // after the key loop the fp32 (TC_ROWS, LDX) dq staging tile overlays the region from 0
    static constexpr size_t bytes =
        tc_max(ds + sizeof(bf16) * TC_ROWS * LDP, sizeof(float) * TC_ROWS * LDX);
    static_assert(dout % 32 == 0 && k % 32 == 0 && v % 32 == 0 && s % 32 == 0 && dp % 32 == 0 && ds % 32 == 0,
                  "WMMA tiles need 32-byte aligned shared regions");
};

template <int HD, int BK>
__global__ void __launch_bounds__(TC_THREADS) attn_tc_dq_kernel(float* dq, const float* dout, const float* lse,
                                                                const float* Dv, AttnArgs a) {
    typedef DqLayout<HD, BK> L;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16* Qs = (bf16*)(smem + L::q);
    bf16* dOs = (bf16*)(smem + L::dout);
    bf16* Ks = (bf16*)(smem + L::k);
    bf16* Vs = (bf16*)(smem + L::v);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, w0 = 16 * warp, r = lane >> 1, half = lane & 1;
    float* Sw = (float*)(smem + L::s) + w0 * L::LDS;
    float* dPw = (float*)(smem + L::dp) + w0 * L::LDS;
    bf16* dSw = (bf16*)(smem + L::ds) + w0 * L::LDP;
    const int q0 = blockIdx.x * TC_ROWS, h = blockIdx.y, b = blockIdx.z, g = h / (a.H / a.KV);
    const int ql = a.q_lens[b], kl = a.kv_lens[b], off = kl - ql, ldo = a.H * HD;
    const int nq = min(TC_ROWS, ql - q0);
    const int row = w0 + r, last = min(off + q0 + row, kl - 1);
    const int wlast = min(off + q0 + min(w0 + 15, nq - 1), kl - 1);
    const size_t at = ((size_t)b * a.H + h) * a.Tq + q0 + row;
    const float lrow = row < nq ? lse[at] : 0.0f, drow = row < nq ? Dv[at] : 0.0f;
    const float* kb = a.k + (size_t)b * a.Tk * a.ldkv + (size_t)g * HD;
    const float* vb = a.v + (size_t)b * a.Tk * a.ldkv + (size_t)g * HD;

    FragC acc[HD / 16]; // this warp's (16, HD) sum of dS K
#pragma unroll
    for (int n = 0; n < HD / 16; n++) wmma::fill_fragment(acc[n], 0.0f);
    if (nq > 0) {
        load_bf16<TC_ROWS, HD>(Qs, a.q + ((size_t)b * a.Tq + q0) * a.ldq + (size_t)h * HD, a.ldq, nq);
        load_bf16<TC_ROWS, HD>(dOs, dout + ((size_t)b * a.Tq + q0) * ldo + (size_t)h * HD, ldo, nq);
        const int kend = min(off + q0 + nq, kl);
        for (int k0 = 0; k0 < kend; k0 += BK) {
            __syncthreads();
            load_bf16<BK, HD>(Ks, kb + (size_t)k0 * a.ldkv, a.ldkv, kend - k0);
            load_bf16<BK, HD>(Vs, vb + (size_t)k0 * a.ldkv, a.ldkv, kend - k0);
            __syncthreads();
            if (w0 >= nq || k0 > wlast) continue; // dS would be 0 over the whole tile
            warp_two_scores<BK / 16, HD / 16>(Sw, dPw, L::LDS, Qs + w0 * L::LDH, Ks, dOs + w0 * L::LDH, Vs, L::LDH);
            __syncwarp();
#pragma unroll
            for (int j = 0; j < BK / 2; j++) {
                const int c = half + 2 * j;
                const float p = row < nq && k0 + c <= last ? expf(Sw[r * L::LDS + c] * a.scale - lrow) : 0.0f;
                dSw[r * L::LDP + c] = __float2bfloat16(p * (dPw[r * L::LDS + c] - drow));
            }
            __syncwarp();
            warp_ab<HD / 16, BK / 16>(acc, dSw, L::LDP, Ks, L::LDH);
        }
    }
    __syncthreads(); // every warp is done with the tiles that the staging tile overlays
    float* Xw = (float*)smem + w0 * L::LDX;
    store_frags<HD / 16>(Xw, acc, L::LDX);
    __syncwarp();
    warp_write_rows<HD>(dq + ((size_t)b * a.Tq + q0 + w0) * ldo + (size_t)h * HD, (size_t)ldo, Xw, L::LDX, a.scale,
                        nq - w0, a.Tq - q0 - w0);
}

// ----------------------------------------------------------------------------
// backward, dk and dv: block (key tile of TC_ROWS, kv head, sequence); the key tile stays in
// shared memory while the query tiles (BQ) of each query head of the group stream past, in order

template <int HD, int BQ> struct DkvLayout {
    static constexpr int LDH = HD + TC_PAD_H, LDS = BQ + TC_PAD_F, LDP = BQ + TC_PAD_H, LDX = HD + TC_PAD_F;
    static constexpr size_t k = 0;                                  // bf16 (TC_ROWS, LDH) keys
    static constexpr size_t v = k + sizeof(bf16) * TC_ROWS * LDH;   // bf16 (TC_ROWS, LDH) values
    static constexpr size_t q = v + sizeof(bf16) * TC_ROWS * LDH;   // bf16 (BQ, LDH) queries
    static constexpr size_t dout = q + sizeof(bf16) * BQ * LDH;     // bf16 (BQ, LDH) output gradients
    static constexpr size_t s = dout + sizeof(bf16) * BQ * LDH;     // fp32 (TC_ROWS, LDS) scores, keys by queries
    static constexpr size_t dp = s + sizeof(float) * TC_ROWS * LDS; // fp32 (TC_ROWS, LDS) V dO^T
    static constexpr size_t p = dp + sizeof(float) * TC_ROWS * LDS; // bf16 (TC_ROWS, LDP) P^T
    static constexpr size_t ds = p + sizeof(bf16) * TC_ROWS * LDP;  // bf16 (TC_ROWS, LDP) dS^T
    static constexpr size_t lse = ds + sizeof(bf16) * TC_ROWS * LDP; // fp32 (BQ) the queries' lse
    static constexpr size_t D = lse + sizeof(float) * BQ;           // fp32 (BQ) the queries' dO . O
    // after the query loop the fp32 (TC_ROWS, LDX) dk / dv staging tile overlays the region from 0
    static constexpr size_t bytes = tc_max(D + sizeof(float) * BQ, sizeof(float) * TC_ROWS * LDX);
    static_assert(v % 32 == 0 && q % 32 == 0 && dout % 32 == 0 && s % 32 == 0 && dp % 32 == 0 && p % 32 == 0 &&
                      ds % 32 == 0 && lse % 32 == 0 && D % 32 == 0,
                  "WMMA tiles need 32-byte aligned shared regions");
};

template <int HD, int BQ>
__global__ void __launch_bounds__(TC_THREADS) attn_tc_dkdv_kernel(float* dk, float* dv, const float* dout,
                                                                  const float* lse, const float* Dv, AttnArgs a) {
    typedef DkvLayout<HD, BQ> L;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16* Ks = (bf16*)(smem + L::k);
    bf16* Vs = (bf16*)(smem + L::v);
    bf16* Qs = (bf16*)(smem + L::q);
    bf16* dOs = (bf16*)(smem + L::dout);
    float* lse_s = (float*)(smem + L::lse);
    float* D_s = (float*)(smem + L::D);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, w0 = 16 * warp, r = lane >> 1, half = lane & 1;
    float* Sw = (float*)(smem + L::s) + w0 * L::LDS;
    float* dPw = (float*)(smem + L::dp) + w0 * L::LDS;
    bf16* Pw = (bf16*)(smem + L::p) + w0 * L::LDP;
    bf16* dSw = (bf16*)(smem + L::ds) + w0 * L::LDP;
    const int k0 = blockIdx.x * TC_ROWS, g = blockIdx.y, b = blockIdx.z, G = a.H / a.KV;
    const int ql = a.q_lens[b], kl = a.kv_lens[b], off = kl - ql, ldo = a.H * HD;
    const int nkeys = min(TC_ROWS, kl - k0);
    const int key = k0 + w0 + r; // the key of this lane pair's row

    FragC dka[HD / 16], dva[HD / 16]; // this warp's (16, HD) sums of dS^T Q and P^T dO
#pragma unroll
    for (int n = 0; n < HD / 16; n++) {
        wmma::fill_fragment(dka[n], 0.0f);
        wmma::fill_fragment(dva[n], 0.0f);
    }
    if (nkeys > 0) {
        const size_t kv_at = ((size_t)b * a.Tk + k0) * a.ldkv + (size_t)g * HD;
        load_bf16<TC_ROWS, HD>(Ks, a.k + kv_at, a.ldkv, nkeys);
        load_bf16<TC_ROWS, HD>(Vs, a.v + kv_at, a.ldkv, nkeys);
        const int first = max(0, k0 - off) / BQ * BQ; // the first query tile that sees key k0
        for (int h = g * G; h < (g + 1) * G; h++) {
            for (int q0 = first; q0 < ql; q0 += BQ) {
                const int nq = min(BQ, ql - q0);
                __syncthreads();
                load_bf16<BQ, HD>(Qs, a.q + ((size_t)b * a.Tq + q0) * a.ldq + (size_t)h * HD, a.ldq, nq);
                load_bf16<BQ, HD>(dOs, dout + ((size_t)b * a.Tq + q0) * ldo + (size_t)h * HD, ldo, nq);
                for (int i = threadIdx.x; i < BQ; i += TC_THREADS) {
                    const size_t at = ((size_t)b * a.H + h) * a.Tq + q0 + i;
                    lse_s[i] = i < nq ? lse[at] : 0.0f;
                    D_s[i] = i < nq ? Dv[at] : 0.0f;
                }
                __syncthreads();
                // the tile's last query sees keys up to off + q0 + nq - 1: a warp whose keys all
                // lie beyond (or past the sequence) would add zeros only
                if (w0 >= nkeys || k0 + w0 > off + q0 + nq - 1) continue;
                warp_two_scores<BQ / 16, HD / 16>(Sw, dPw, L::LDS, Ks + w0 * L::LDH, Qs, Vs + w0 * L::LDH, dOs,
                                                  L::LDH);
                __syncwarp();
#pragma unroll
                for (int j = 0; j < BQ / 2; j++) {
                    const int qi = half + 2 * j;
                    const int vis = qi < nq && key < kl && key <= off + q0 + qi;
                    const float p = vis ? expf(Sw[r * L::LDS + qi] * a.scale - lse_s[qi]) : 0.0f;
                    Pw[r * L::LDP + qi] = __float2bfloat16(p);
                    dSw[r * L::LDP + qi] = __float2bfloat16(p * (dPw[r * L::LDS + qi] - D_s[qi]));
                }
                __syncwarp();
                warp_ab<HD / 16, BQ / 16>(dva, Pw, L::LDP, dOs, L::LDH);
                warp_ab<HD / 16, BQ / 16>(dka, dSw, L::LDP, Qs, L::LDH);
            }
        }
    }
    __syncthreads(); // every warp is done with the tiles that the staging tile overlays
    float* Xw = (float*)smem + w0 * L::LDX;
    float* dkw = dk + ((size_t)b * a.Tk + k0 + w0) * a.ldkv + (size_t)g * HD;
    float* dvw = dv + ((size_t)b * a.Tk + k0 + w0) * a.ldkv + (size_t)g * HD;
    store_frags<HD / 16>(Xw, dka, L::LDX);
    __syncwarp();
    warp_write_rows<HD>(dkw, (size_t)a.ldkv, Xw, L::LDX, a.scale, nkeys - w0, a.Tk - k0 - w0);
    __syncwarp(); // the lanes are done reading the staging tile
    store_frags<HD / 16>(Xw, dva, L::LDX);
    __syncwarp();
    warp_write_rows<HD>(dvw, (size_t)a.ldkv, Xw, L::LDX, 1.0f, nkeys - w0, a.Tk - k0 - w0);
}

// ----------------------------------------------------------------------------
// launches, by head size

template <typename Kernel> static void tc_opt_in(Kernel kernel, size_t bytes) {
    cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <int HD, int BK> static void tc_fwd(Backend* be, float* out, float* lse, const AttnArgs& a, int B) {
    const size_t smem = FwdLayout<HD, BK>::bytes;
    tc_opt_in(attn_tc_fwd_kernel<HD, BK>, smem);
    const dim3 grid((unsigned)cuda_cdiv((size_t)a.Tq, TC_ROWS), (unsigned)a.H, (unsigned)B);
    attn_tc_fwd_kernel<HD, BK><<<grid, TC_THREADS, smem, cuda_stream(be)>>>(out, lse, a);
    cudaCheckLaunch();
}

// BK: keys per tile of the dq kernel; BQ: queries per tile of the dk/dv kernel
template <int HD, int BK, int BQ>
static void tc_bwd(Backend* be, float* dq, float* dk, float* dv, const float* dout, const float* lse, const float* Dv,
                   const AttnArgs& a, int B) {
    const size_t smem_q = DqLayout<HD, BK>::bytes;
    tc_opt_in(attn_tc_dq_kernel<HD, BK>, smem_q);
    const dim3 grid_q((unsigned)cuda_cdiv((size_t)a.Tq, TC_ROWS), (unsigned)a.H, (unsigned)B);
    attn_tc_dq_kernel<HD, BK><<<grid_q, TC_THREADS, smem_q, cuda_stream(be)>>>(dq, dout, lse, Dv, a);
    cudaCheckLaunch();
    const size_t smem_kv = DkvLayout<HD, BQ>::bytes;
    tc_opt_in(attn_tc_dkdv_kernel<HD, BQ>, smem_kv);
    const dim3 grid_k((unsigned)cuda_cdiv((size_t)a.Tk, TC_ROWS), (unsigned)a.KV, (unsigned)B);
    attn_tc_dkdv_kernel<HD, BQ><<<grid_k, TC_THREADS, smem_kv, cuda_stream(be)>>>(dk, dv, dout, lse, Dv, a);
    cudaCheckLaunch();
}

int cuda_attention_tc_supported(int hd) { return hd == 32 || hd == 64 || hd == 128; }

// Shared memory per block (bytes) for head sizes 32 / 64 / 128: forward 51,200 / 71,680 / 82,944,
// dq 64,512 / 80,896 / 75,776, dk/dv 74,240 / 56,576 / 81,152: two or more blocks per SM on
// sm_80 (164 KiB, 1 KiB reserved per block) and sm_90 (228 KiB).
void cuda_attention_tc_fwd(Backend* be, float* out, float* lse, const AttnArgs& a, int B) {
    switch (a.hd) {
    case 32: tc_fwd<32, 64>(be, out, lse, a, B); break;
    case 64: tc_fwd<64, 64>(be, out, lse, a, B); break;
    case 128: tc_fwd<128, 32>(be, out, lse, a, B); break;
    default: fatal("cuda attention: the tensor-core path has no kernel for head size %d", a.hd);
    }
}

void cuda_attention_tc_bwd(Backend* be, float* dq, float* dk, float* dv, const float* dout, const float* lse,
                           const float* Dv, const AttnArgs& a, int B) {
    switch (a.hd) {
    case 32: tc_bwd<32, 64, 64>(be, dq, dk, dv, dout, lse, Dv, a, B); break;
    case 64: tc_bwd<64, 64, 32>(be, dq, dk, dv, dout, lse, Dv, a, B); break;
    case 128: tc_bwd<128, 32, 32>(be, dq, dk, dv, dout, lse, Dv, a, B); break;
    default: fatal("cuda attention: the tensor-core path has no kernel for head size %d", a.hd);
    }
}
