// The kernels of CUDA causal grouped-query attention on bf16 tensor cores, flash-attention style:
// the bf16 mode's kernels for the training (tiled) shapes of attention.cu, head sizes 32, 64 and
// 128. Device code only; attention_mma.cu launches them. The includer provides bf16, the PTX
// wrappers (mma_ptx.cuh on the GPU; tests/emu/cuda_emu.h runs the same kernels on the host in
// emulation) and AttnArgs (attention_args.h).
//
// Interchangeable with the fp32 kernels of attention.cu: the same layouts, causal masking, GQA,
// lse, zeroed padded rows. The caller rounds q, k, v (and dout) once to packed bf16 copies; the
// kernels stream their tiles into shared memory with cp.async, two stages deep, and run every
// product as mma.sync m16n8k16 (bf16 operands, fp32 accumulators) on fragments read by ldmatrix.
// A warp owns 16 rows of its block's tile (the forward at head size 64: two blocks of 16, which
// share every B fragment read), and the scores stay in its registers: the layout of an
// (16, 8) accumulator pair is the layout of a (16, 16) A operand, so the probabilities feed the
// next product without a trip through shared memory, and softmax statistics need only shuffles
// among the 4 lanes that share a row.
// The forward walks the visible key tiles of a query tile with an online softmax (in log2 units)
// and saves the log-sum-exp; the backward recomputes the probabilities from it in one kernel
// per key tile of a kv head, which accumulates dk and dv over the query tiles of every query head
// of its group in a fixed order and adds its part of each query tile's dq in a fixed order of
// turns among the key tiles (no atomic sums). Every output element is the result of a fixed
// sequence of mma instructions and fp32 additions: results are bit-identical between runs.
#pragma once

#include "model/cuda/attention_args.h"

#define MMA_WARPS 4
#define MMA_THREADS (MMA_WARPS * 32)
#define MMA_ROWS (MMA_WARPS * 16) // rows of a block's own tile: queries (forward) or keys (backward)
// bf16 elements of padding per shared row: rows start 16 bytes apart in the banks, so the 8 row
// addresses of an ldmatrix hit distinct banks
#define MMA_PAD 8

static constexpr float MMA_LOG2E = 1.4426950408889634f;
static constexpr float MMA_LN2 = 0.6931471805599453f;

// Tiles by head size 32 / 64 / 128: forward keys 64 / 64 / 64 and row blocks of 16 queries per
// warp 1 / 2 / 1 (query tiles of 64 / 128 / 64), backward queries 64 / 32 / 32.
// fwd_rows: a forward warp's row blocks (MT). Two halve the shared-memory reads per product, as
// FlashAttention-2's forward does with 32 rows per warp. At head size 64 they take 254 registers
// without spilling (ptxas, sm_80 and sm_90): two blocks per SM against three at 140 registers with
// one. At head size 128 they spill (376 bytes of stack at 64 keys per tile, 88 at 32), so it keeps
// one. The head-size-64 choice is not yet timed on a GPU; with one row block the gpt2-124m forward
// took 3.2-3.4 ms per step on an H200, and setting fwd_rows back to 1 restores that kernel.
// At head size 64 the backward is held to 128 registers, four blocks per SM (20 bytes of spill
// stores; ptxas sm_90; 184 registers at head size 32 and 254 at 128, neither spilling). Its two earlier
// kernels (dq, then dk and dv) took 10.5 ms per gpt2-124m step on an H200 so, against 11.3 ms at
// 162-164 registers (three blocks) and 13.0 ms with 64-row tiles at 178-240 registers (two
// blocks); the one-kernel backward is not yet timed. bwd_blocks: the backward's minimum blocks
// per SM for __launch_bounds__, which caps its registers (0: the compiler's choice).
template <int HD> struct MmaTiles;
template <> struct MmaTiles<32> {
    static constexpr int fwd_keys = 64, fwd_rows = 1, bwd_queries = 64, bwd_blocks = 0;
};
template <> struct MmaTiles<64> {
    static constexpr int fwd_keys = 64, fwd_rows = 2, bwd_queries = 32, bwd_blocks = 4;
};
template <> struct MmaTiles<128> {
    static constexpr int fwd_keys = 64, fwd_rows = 1, bwd_queries = 32, bwd_blocks = 0;
};

// ----------------------------------------------------------------------------
// tiles and fragments

// rows [0, R) of a shared tile (row stride HD + MMA_PAD) from packed bf16 global rows (row i at
// src + i * ld); rows at or past `valid` are zero-filled
template <int R, int HD> __device__ __forceinline__ void tile_load(bf16* dst, const bf16* src, size_t ld, int valid) {
    constexpr int CH = HD / 8; // 16-byte chunks per row
    for (int c = threadIdx.x; c < R * CH; c += MMA_THREADS) {
        const int i = c / CH, d = c % CH * 8;
        const bool ok = i < valid;
        cp_async16(dst + i * (HD + MMA_PAD) + d, ok ? src + (size_t)i * ld + d : src, ok);
    }
}

// A fragments (16 rows, HD / 16 steps of 16 columns) of packed bf16 global rows (row i at src + i * ld),
// rows at or past `valid` 0: operands that stay in registers for a whole block
template <int HD>
__device__ __forceinline__ void frag_a_global(uint32_t (&a)[HD / 16][4], const bf16* src, size_t ld, int valid) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const uint32_t* r0 = (const uint32_t*)(src + (size_t)g * ld + 2 * t);
    const uint32_t* r1 = (const uint32_t*)(src + (size_t)(g + 8) * ld + 2 * t);
    const bool v0 = g < valid, v1 = g + 8 < valid;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        a[kk][0] = v0 ? r0[8 * kk] : 0u;
        a[kk][1] = v1 ? r1[8 * kk] : 0u;
        a[kk][2] = v0 ? r0[8 * kk + 4] : 0u;
        a[kk][3] = v1 ? r1[8 * kk + 4] : 0u;
    }
}

// A fragment of rows 0..15, columns k0..k0+15 of a shared tile (row stride ld)
__device__ __forceinline__ void frag_a_shared(uint32_t (&a)[4], const bf16* tile, int ld, int k0) {
    const int lane = threadIdx.x & 31;
    ldsm4(a, tile + (lane & 15) * ld + k0 + (lane >> 4) * 8);
}

// B fragments of two 8-column blocks n0..n0+15 for k0..k0+15 where the shared tile holds B^T
// (row n, column k: keys or queries by head dims): {b0, b1} of block n0, then of block n0 + 8
__device__ __forceinline__ void frag_bt_shared(uint32_t (&b)[4], const bf16* tile, int ld, int n0, int k0) {
    const int lane = threadIdx.x & 31;
    ldsm4(b, tile + (n0 + (lane & 7) + (lane >> 4) * 8) * ld + k0 + ((lane >> 3) & 1) * 8);
}

// the same where the tile holds B itself (row k, column n: keys or queries by head dims)
__device__ __forceinline__ void frag_b_shared(uint32_t (&b)[4], const bf16* tile, int ld, int n0, int k0) {
    const int lane = threadIdx.x & 31;
    ldsm4_trans(b, tile + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + n0 + (lane >> 4) * 8);
}

// c[m][n] += A[m] B over K = 16 KK for MT row blocks of 16 (A[m]: a[m], KK register fragments);
// the shared tile holds B^T (8 N, 16 KK) where BT, else B (16 KK, 8 N). Each B fragment is read
// from shared memory once and used by all MT row blocks: shared-memory traffic per product falls
// as 1 / MT.
template <bool BT, int MT, int N, int KK>
__device__ __forceinline__ void warp_mma_rows(float (&c)[MT][N][4], const uint32_t (&a)[MT][KK][4], const bf16* tile,
                                              int ld) {
#pragma unroll
    for (int kk = 0; kk < KK; kk++) {
#pragma unroll
        for (int n = 0; n < N; n += 2) {
            uint32_t b[4];
            if (BT) frag_bt_shared(b, tile, ld, 8 * n, 16 * kk);
            else frag_b_shared(b, tile, ld, 8 * n, 16 * kk);
#pragma unroll
            for (int m = 0; m < MT; m++) {
                mma_bf16(c[m][n], a[m][kk], b[0], b[1]);
                mma_bf16(c[m][n + 1], a[m][kk], b[2], b[3]);
            }
        }
    }
}

// the same for one row block
template <bool BT, int N, int KK>
__device__ __forceinline__ void warp_mma(float (&c)[N][4], const uint32_t (&a)[KK][4], const bf16* tile, int ld) {
    warp_mma_rows<BT, 1, N, KK>(reinterpret_cast<float(&)[1][N][4]>(c),
                                reinterpret_cast<const uint32_t(&)[1][KK][4]>(a), tile, ld);
}

// c[n] += A Bt^T and c[n] += A B
template <int N, int KK>
__device__ __forceinline__ void warp_abt(float (&c)[N][4], const uint32_t (&a)[KK][4], const bf16* Bt, int ld) {
    warp_mma<true, N, KK>(c, a, Bt, ld);
}

template <int N, int KK>
__device__ __forceinline__ void warp_ab(float (&c)[N][4], const uint32_t (&a)[KK][4], const bf16* B, int ld) {
    warp_mma<false, N, KK>(c, a, B, ld);
}

// the accumulators of N 8-column blocks as A fragments of N / 2 steps of 16 columns
template <int N> __device__ __forceinline__ void acc_to_a(uint32_t (&a)[N / 2][4], const float (&c)[N][4]) {
#pragma unroll
    for (int n = 0; n < N; n++) {
        a[n / 2][2 * (n & 1)] = pack_bf16(c[n][0], c[n][1]);
        a[n / 2][2 * (n & 1) + 1] = pack_bf16(c[n][2], c[n][3]);
    }
}

template <int N> __device__ __forceinline__ void acc_zero(float (&c)[N][4]) {
#pragma unroll
    for (int n = 0; n < N; n++) c[n][0] = c[n][1] = c[n][2] = c[n][3] = 0.0f;
}

// two adjacent output elements, fp32 or rounded to bf16 (the bf16 mode's activation buffers)
__device__ __forceinline__ void store_pair(float* d, float lo, float hi) { d[0] = lo, d[1] = hi; }
__device__ __forceinline__ void store_pair(bf16* d, float lo, float hi) { *(uint32_t*)d = pack_bf16(lo, hi); }

// the lane's two rows (g, g + 8) of a warp's (16, 8 N) accumulators, times mul, to global rows
// (row i at dst + i * ld) of fp32 or bf16; rows at or past `valid` get 0, rows at or past `rows`
// are not written
template <int N, typename TO>
__device__ __forceinline__ void acc_store(TO* dst, size_t ld, const float (&c)[N][4], float mul, int valid,
                                          int rows) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int row = g + 8 * i;
        if (row >= rows) continue;
        TO* d = dst + (size_t)row * ld + 2 * t;
#pragma unroll
        for (int n = 0; n < N; n++) { // an explicit 0: a negative value times 0 is -0
            store_pair(d + 8 * n, row < valid ? c[n][2 * i] * mul : 0.0f, row < valid ? c[n][2 * i + 1] * mul : 0.0f);
        }
    }
}

// the packed bf16 copies the kernels read: q and dout (B, Tq, H hd), k and v (B, Tk, KV hd)
struct AttnBf16 {
    const bf16 *q, *k, *v, *dout;
};

// ----------------------------------------------------------------------------
// forward: block (query tile of MMA_WARPS 16 MT rows, head, sequence), key tiles of BK, two stages;
// each warp owns MT row blocks of 16 queries

template <int HD, int BK> struct MmaKvTiles {
    static constexpr int LDH = HD + MMA_PAD;
    static constexpr int tile = BK * LDH;                             // elements of one K or V tile
    static constexpr size_t bytes = sizeof(bf16) * 4 * (size_t)tile; // K and V, two stages each
};

// the stage of key tile j: K at smem + 2 (j & 1) tile, V after it
template <int HD, int BK>
__device__ __forceinline__ void kv_tile_load(bf16* smem, int j, const bf16* kb, const bf16* vb, size_t ld, int kend) {
    typedef MmaKvTiles<HD, BK> L;
    bf16* Ks = smem + 2 * (j & 1) * L::tile;
    tile_load<BK, HD>(Ks, kb + (size_t)j * BK * ld, ld, kend - j * BK);
    tile_load<BK, HD>(Ks + L::tile, vb + (size_t)j * BK * ld, ld, kend - j * BK);
}

// The key and value tiles a query tile streams past: keys 0..kend-1 of kv head kvh in sequence b,
// in ntiles tiles. kv_stream_start issues tile 0; kv_stream_next(j), before tile j's products,
// issues tile j + 1 into the other stage and waits until tile j has landed.
struct KvStream {
    const bf16 *kb, *vb;
    int kend, ntiles;
};

template <int HD, int BK>
__device__ __forceinline__ KvStream kv_stream_start(bf16* smem, const AttnArgs& a, const AttnBf16& p, int b, int kvh,
                                                    int kend) {
    const size_t ld = (size_t)a.KV * HD, at = (size_t)b * a.Tk * ld + (size_t)kvh * HD;
    const KvStream s = {p.k + at, p.v + at, kend, (kend + BK - 1) / BK};
    kv_tile_load<HD, BK>(smem, 0, s.kb, s.vb, ld, kend);
    cp_async_commit();
    return s;
}

template <int HD, int BK>
__device__ __forceinline__ void kv_stream_next(bf16* smem, const KvStream& s, int j, const AttnArgs& a) {
    if (j + 1 < s.ntiles) kv_tile_load<HD, BK>(smem, j + 1, s.kb, s.vb, (size_t)a.KV * HD, s.kend);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
}

template <int HD, int BK, int MT, int MB, typename TO = float>
__global__ void __launch_bounds__(MMA_THREADS, MB) attn_mma_fwd_kernel(TO* out, float* lse, AttnArgs a, AttnBf16 p) {
    typedef MmaKvTiles<HD, BK> L;
    constexpr int KT = HD / 16, NS = BK / 8, NO = HD / 8, WR = 16 * MT, ROWS = MMA_WARPS * WR;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    bf16* smem = (bf16*)smem_raw;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, w0 = WR * warp;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * ROWS; // the longest query tiles start first
    const int h = blockIdx.y, b = blockIdx.z, kvh = h / (a.H / a.KV);
    const int ql = a.q_lens[b], kl = a.kv_lens[b], off = kl - ql, ldq = a.H * HD;
    const int nq = min(ROWS, ql - q0); // rows of the tile that hold queries
    // the last visible key of the lane's rows; rows past the queries see every key (finite values, dropped)
    int last[MT][2], wfirst[MT];
#pragma unroll
    for (int m = 0; m < MT; m++) {
        for (int i = 0; i < 2; i++) last[m][i] = min(off + q0 + w0 + 16 * m + g + 8 * i, kl - 1);
        wfirst[m] = min(off + q0 + w0 + 16 * m, kl - 1); // the first row of row block m sees keys up to this
    }
    // the last key any query row of this warp sees (later tiles are skipped)
    const int wlast = min(off + q0 + min(w0 + WR - 1, nq - 1), kl - 1);
    const float sl = a.scale * MMA_LOG2E;

    float o[MT][NO][4], mrow[MT][2], l[MT][2];
#pragma unroll
    for (int m = 0; m < MT; m++) {
        acc_zero(o[m]);
        mrow[m][0] = mrow[m][1] = -INFINITY;
        l[m][0] = l[m][1] = 0.0f;
    }
    if (nq > 0) {
        uint32_t qa[MT][KT][4];
#pragma unroll
        for (int m = 0; m < MT; m++) {
            const int r0 = w0 + 16 * m;
            frag_a_global<HD>(qa[m], p.q + ((size_t)b * a.Tq + q0 + r0) * ldq + (size_t)h * HD, ldq, nq - r0);
        }
        // keys 0..kend-1 are visible to some row
        const KvStream kv = kv_stream_start<HD, BK>(smem, a, p, b, kvh, min(off + q0 + nq, kl));
        for (int j = 0; j < kv.ntiles; j++) {
            const int k0 = j * BK;
            kv_stream_next<HD, BK>(smem, kv, j, a);
            // skipping changes nothing: the tile's probabilities would all be 0 (tile 0 is never skipped)
            if (w0 < nq && k0 <= wlast) {
                const bf16* Ks = smem + 2 * (j & 1) * L::tile;
                float s[MT][NS][4];
#pragma unroll
                for (int m = 0; m < MT; m++) acc_zero(s[m]);
                warp_mma_rows<true, MT, NS, KT>(s, qa, Ks, L::LDH);
                uint32_t pa[MT][BK / 16][4];
#pragma unroll
                for (int m = 0; m < MT; m++) {
                    // online softmax in log2 units (mrow is the scaled max): the max over the raw
                    // scores, then 2^(s sl - mrow) in one FFMA and one MUFU.EX2 per score. Key 0 is
                    // visible to every row, so the max is finite from tile 0 on
                    const bool edge = k0 + BK - 1 > wfirst[m]; // some key of the tile is masked for some row
                    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
                    for (int n = 0; n < NS; n++) {
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            if (edge && k0 + 8 * n + 2 * t + (e & 1) > last[m][e >> 1]) s[m][n][e] = -INFINITY;
                            mx[e >> 1] = fmaxf(mx[e >> 1], s[m][n][e]);
                        }
                    }
                    float alpha[2];
#pragma unroll
                    for (int i = 0; i < 2; i++) {
                        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
                        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
                        const float m_new = fmaxf(mrow[m][i], mx[i] * sl);
                        alpha[i] = exp2_ftz(mrow[m][i] - m_new);
                        mrow[m][i] = m_new;
                        l[m][i] *= alpha[i];
                    }
#pragma unroll
                    for (int n = 0; n < NS; n++) {
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            s[m][n][e] = exp2_ftz(fmaf(s[m][n][e], sl, -mrow[m][e >> 1]));
                            l[m][e >> 1] += s[m][n][e]; // this lane's columns; the row's 4 lanes are summed at the end
                        }
                    }
#pragma unroll
                    for (int n = 0; n < NO; n++) {
                        o[m][n][0] *= alpha[0], o[m][n][1] *= alpha[0];
                        o[m][n][2] *= alpha[1], o[m][n][3] *= alpha[1];
                    }
                    acc_to_a<NS>(pa[m], s[m]);
                }
                warp_mma_rows<false, MT, NO, BK / 16>(o, pa, Ks + L::tile, L::LDH);
            }
            __syncthreads(); // the stage is free for tile j + 2
        }
    }
    const int ldo = a.H * HD;
#pragma unroll
    for (int m = 0; m < MT; m++) {
        const int r0 = w0 + 16 * m, t0 = q0 + r0;
        float inv[2];
#pragma unroll
        for (int i = 0; i < 2; i++) {
            l[m][i] += __shfl_xor_sync(0xffffffffu, l[m][i], 1);
            l[m][i] += __shfl_xor_sync(0xffffffffu, l[m][i], 2);
            const int row = r0 + g + 8 * i;
            inv[i] = row < nq ? 1.0f / l[m][i] : 0.0f;
            if (t == 0 && q0 + row < a.Tq) {
                lse[((size_t)b * a.H + h) * a.Tq + q0 + row] = row < nq ? mrow[m][i] * MMA_LN2 + logf(l[m][i]) : 0.0f;
            }
        }
#pragma unroll
        for (int n = 0; n < NO; n++) {
            o[m][n][0] *= inv[0], o[m][n][1] *= inv[0], o[m][n][2] *= inv[1], o[m][n][3] *= inv[1];
        }
        if (t0 < a.Tq) {
            acc_store<NO>(out + ((size_t)b * a.Tq + t0) * ldo + (size_t)h * HD, (size_t)ldo, o[m], 1.0f, nq - r0,
                          a.Tq - t0);
        }
    }
}

// ----------------------------------------------------------------------------
// backward: block (key tile of MMA_ROWS, kv head, sequence); the key and value tiles stay in
// shared memory while the query tiles (BQ, two stages) of each query head of the group stream
// past, in order. Per query tile the block adds P^T dO to dv and dS^T Q to dk in registers, and
// dS K to the query tile's dq, which every key tile that the queries see contributes to.
//
// dq without atomics: the contributions to a query tile are summed in one fixed order, the key
// tiles from the last visible one (the diagonal) down to key tile 0, in an fp32 accumulator in
// global memory (MmaDqSync). The diagonal's block stores its part, each later block waits until
// the tile's counter says its turn has come, adds its part and passes the turn on; key tile 0
// writes dq itself and resets the counter for the next launch. The blocks take their work in
// ticket order (an atomic counter, so a block only ever waits for one that is already running or
// done) with key tiles in descending order within a kv head: a block reaches a query tile after
// the block of the next key tile did, which had MMA_ROWS / BQ query tiles less work before it, so
// the turns are normally there when asked for. The sums, and so the results, are the same in every
// run: this is FlashAttention-2's one-pass backward without its dq atomics, 5 products per tile
// pair against 7 for separate dq and dk/dv kernels that both recompute S and dP.

template <int HD, int BQ> struct MmaDkvLayout {
    static constexpr int LDH = HD + MMA_PAD, LDS = BQ + MMA_PAD;
    static constexpr int kv_tile = MMA_ROWS * LDH, q_tile = BQ * LDH;
    static constexpr size_t k = 0;                                          // bf16 (MMA_ROWS, LDH) keys
    static constexpr size_t v = k + sizeof(bf16) * kv_tile;                 // bf16 (MMA_ROWS, LDH) values
    static constexpr size_t q = v + sizeof(bf16) * kv_tile;                 // bf16 (2, BQ, LDH) queries
    static constexpr size_t dout = q + sizeof(bf16) * 2 * q_tile;          // bf16 (2, BQ, LDH) output gradients
    static constexpr size_t ds = dout + sizeof(bf16) * 2 * q_tile;         // bf16 (MMA_ROWS, LDS) dS, keys by queries
    static constexpr size_t lse = ds + sizeof(bf16) * MMA_ROWS * LDS;       // fp32 (2, BQ) the queries' lse
    static constexpr size_t D = lse + sizeof(float) * 2 * BQ;               // fp32 (2, BQ) the queries' dO . O
    static constexpr size_t bytes = D + sizeof(float) * 2 * BQ;
    static_assert(v % 16 == 0 && q % 16 == 0 && dout % 16 == 0 && ds % 16 == 0,
                  "cp.async and ldmatrix need 16-byte aligned shared rows");
};

// The dq product of a (BQ, MMA_ROWS) x (MMA_ROWS, HD) tile pair split among the warps: row block
// w % RB of 16 queries, NO 8-column blocks from column w / RB NO 8.
template <int HD, int BQ> struct MmaDqSplit {
    static constexpr int RB = BQ / 16, NO = HD / 8 / (MMA_WARPS / RB);
    static_assert(MMA_WARPS % RB == 0 && HD / 8 % (MMA_WARPS / RB) == 0, "the warps split the dq tile evenly");
};

// The order of the dq sums (see above): acc (tiles, BQ HD) fp32, in the warps' fragment order;
// turn (tiles) the contributions added so far to each query tile, 0 between launches; ticket 0
// between launches. Tiles: (B, H, ceil(Tq / BQ)).
struct MmaDqSync {
    float* acc;
    int *turn, *ticket;
};

// query tile q0 / BQ of head h in sequence b, in that order; mma_dq_tiles: how many there are
__host__ __device__ inline int mma_dq_tile(const AttnArgs& a, int b, int h, int q0, int BQ) {
    return (b * a.H + h) * ((a.Tq + BQ - 1) / BQ) + q0 / BQ;
}
__host__ __device__ inline int mma_dq_tiles(const AttnArgs& a, int B, int BQ) { return mma_dq_tile(a, B, 0, 0, BQ); }

// query tile `it` of the block's sequence into stage it & 1: head g G + it / nqt, queries
// first + (it % nqt) BQ ..
template <int HD, int BQ>
__device__ __forceinline__ void q_tile_load(unsigned char* smem, int it, int nqt, int first, int kvh, int b,
                                            const float* lse, const float* Dv, const AttnArgs& a, const AttnBf16& p) {
    typedef MmaDkvLayout<HD, BQ> L;
    const int G = a.H / a.KV, h = kvh * G + it / nqt, q0 = first + it % nqt * BQ, st = it & 1;
    const int nq = min(BQ, a.q_lens[b] - q0), ldq = a.H * HD;
    const size_t at = ((size_t)b * a.Tq + q0) * ldq + (size_t)h * HD;
    tile_load<BQ, HD>((bf16*)(smem + L::q) + st * L::q_tile, p.q + at, ldq, nq);
    tile_load<BQ, HD>((bf16*)(smem + L::dout) + st * L::q_tile, p.dout + at, ldq, nq);
    const size_t row = ((size_t)b * a.H + h) * a.Tq + q0;
    for (int i = threadIdx.x; i < BQ; i += MMA_THREADS) {
        cp_async4((float*)(smem + L::lse) + st * BQ + i, lse + row + min(i, nq - 1), i < nq);
        cp_async4((float*)(smem + L::D) + st * BQ + i, Dv + row + min(i, nq - 1), i < nq);
    }
}

// A fragment of rows m0..m0+15, columns k0..k0+15 of A where the shared tile holds A^T (row k,
// column m; row stride ld)
__device__ __forceinline__ void frag_at_shared(uint32_t (&a)[4], const bf16* tile, int ld, int m0, int k0) {
    const int lane = threadIdx.x & 31;
    ldsm4_trans(a, tile + (k0 + (lane & 7) + (lane >> 4) * 8) * ld + m0 + ((lane >> 3) & 1) * 8);
}

// A warp's 16 rows of dS (keys by the BQ queries: its accumulators as A fragments) into the
// block's shared dS
template <int BQ>
__device__ __forceinline__ void ds_store(bf16* ds, int ld, const uint32_t (&dsa)[BQ / 16][4]) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int n = 0; n < BQ / 8; n++) {
        *(uint32_t*)(ds + g * ld + 8 * n + 2 * t) = dsa[n / 2][2 * (n & 1)];
        *(uint32_t*)(ds + (g + 8) * ld + 8 * n + 2 * t) = dsa[n / 2][2 * (n & 1) + 1];
    }
}

// This block's turn at query tile `tile`: the tile's pos-th contribution (pos 0: the first; last:
// the final one, from key tile 0). The caller waits for the turn (spin_wait by thread 0 before a
// barrier), starts its accumulators `c` from dq_turn_load (the warp's part of the sum so far, 0
// at the first turn), adds its part of dS K, and hands `c` to dq_turn_pass, which stores the sum
// or, at the final turn, writes dq (rows `dst`, row stride ldo, scaled; rows at or past nq 0,
// rows at or past `rows` not written) and resets the tile's counter, then passes the turn on.
template <int HD, int BQ> __device__ __forceinline__ float4* dq_turn_acc(const MmaDqSync& s, int tile) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    return (float4*)(s.acc + (size_t)tile * BQ * HD) + warp * MmaDqSplit<HD, BQ>::NO * 32 + lane;
}

template <int HD, int BQ>
__device__ __forceinline__ void dq_turn_load(float (&c)[MmaDqSplit<HD, BQ>::NO][4], const MmaDqSync& s, int tile,
                                             int pos) {
    const float4* acc = dq_turn_acc<HD, BQ>(s, tile);
#pragma unroll
    for (int n = 0; n < MmaDqSplit<HD, BQ>::NO; n++) {
        const float4 v = pos > 0 ? __ldcg(acc + 32 * n) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        c[n][0] = v.x, c[n][1] = v.y, c[n][2] = v.z, c[n][3] = v.w;
    }
}

template <int HD, int BQ, typename TO>
__device__ __forceinline__ void dq_turn_pass(const float (&c)[MmaDqSplit<HD, BQ>::NO][4], const MmaDqSync& s,
                                             int tile, int pos, bool last, TO* dst, size_t ldo, float scale, int nq,
                                             int rows) {
    typedef MmaDqSplit<HD, BQ> D;
    const int warp = threadIdx.x >> 5;
    if (last) {
        const int r0 = 16 * (warp % D::RB);
        acc_store<D::NO>(dst + (size_t)r0 * ldo + warp / D::RB * D::NO * 8, ldo, c, scale, nq - r0, rows - r0);
    } else {
        float4* acc = dq_turn_acc<HD, BQ>(s, tile);
#pragma unroll
        for (int n = 0; n < D::NO; n++) __stcg(acc + 32 * n, make_float4(c[n][0], c[n][1], c[n][2], c[n][3]));
    }
    __syncthreads();
    if (threadIdx.x == 0) st_release(s.turn + tile, last ? 0 : pos + 1);
}

// dq rows [r0, Tq) of the heads of kv head kvh in sequence b: 0 (rows past the queries)
template <int HD, typename TO> __device__ void dq_zero_rows(TO* dq, const AttnArgs& a, int b, int kvh, int r0) {
    const int G = a.H / a.KV, ldo = a.H * HD, per_row = G * HD / 2;
    for (int i = threadIdx.x; i < (a.Tq - r0) * per_row; i += MMA_THREADS) {
        const int r = r0 + i / per_row, c = 2 * (i % per_row);
        store_pair(dq + ((size_t)b * a.Tq + r) * ldo + (size_t)kvh * G * HD + c, 0.0f, 0.0f);
    }
}

template <int HD, int BQ, int MB, typename TO = float>
__global__ void __launch_bounds__(MMA_THREADS, MB)
    attn_mma_bwd_kernel(TO* dq, TO* dk, TO* dv, const float* lse, const float* Dv, AttnArgs a, AttnBf16 p,
                        MmaDqSync sync) {
    typedef MmaDkvLayout<HD, BQ> L;
    typedef MmaDqSplit<HD, BQ> DS;
    constexpr int KT = HD / 16, NS = BQ / 8, NO = HD / 8;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    __shared__ int ticket;
    unsigned char* smem = smem_raw;
    const bf16* Ks = (const bf16*)(smem + L::k);
    const bf16* Vs = (const bf16*)(smem + L::v);
    bf16* dS = (bf16*)(smem + L::ds);
    if (threadIdx.x == 0) {
        ticket = atomicAdd(sync.ticket, 1);
        if (ticket == (int)gridDim.x - 1) *sync.ticket = 0; // every block has its ticket: ready for the next launch
    }
    __syncthreads();
    // tickets in order: sequences, kv heads, then key tiles from the last
    const int nkt = (a.Tk + MMA_ROWS - 1) / MMA_ROWS, kt = nkt - 1 - ticket % nkt;
    const int kvh = ticket / nkt % a.KV, b = ticket / nkt / a.KV;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, w0 = 16 * warp;
    const int k0 = kt * MMA_ROWS, G = a.H / a.KV;
    const int ql = a.q_lens[b], kl = a.kv_lens[b], off = kl - ql, ldkv = a.KV * HD, ldo = a.H * HD;
    const int nkeys = min(MMA_ROWS, kl - k0), key_tiles = (kl + MMA_ROWS - 1) / MMA_ROWS;
    const float sl = a.scale * MMA_LOG2E;
    int key[2]; // the keys of the lane's rows
    for (int i = 0; i < 2; i++) key[i] = k0 + w0 + g + 8 * i;

    float dka[NO][4], dva[NO][4]; // this warp's (16, HD) sums of dS^T Q and P^T dO
    acc_zero(dka);
    acc_zero(dva);
    int nqt = 0; // query tiles of a head that see this key tile
    if (nkeys > 0) {
        const size_t kv_at = ((size_t)b * a.Tk + k0) * ldkv + (size_t)kvh * HD;
        tile_load<MMA_ROWS, HD>((bf16*)(smem + L::k), p.k + kv_at, ldkv, nkeys);
        tile_load<MMA_ROWS, HD>((bf16*)(smem + L::v), p.v + kv_at, ldkv, nkeys);
        const int first = max(0, k0 - off) / BQ * BQ; // the first query tile that sees key k0
        nqt = ql > first ? (ql - first + BQ - 1) / BQ : 0;
        const int total = G * nqt;
        if (total > 0) q_tile_load<HD, BQ>(smem, 0, nqt, first, kvh, b, lse, Dv, a, p);
        cp_async_commit();
        for (int it = 0; it < total; it++) {
            if (it + 1 < total) q_tile_load<HD, BQ>(smem, it + 1, nqt, first, kvh, b, lse, Dv, a, p);
            cp_async_commit();
            cp_async_wait<1>();
            __syncthreads();
            const int h = kvh * G + it / nqt, q0 = first + it % nqt * BQ, nq = min(BQ, ql - q0), st = it & 1;
            const bf16* Qs = (const bf16*)(smem + L::q) + st * L::q_tile;
            uint32_t dsa[BQ / 16][4] = {}; // dS, 0 where the warp's keys are all masked
            // the tile's last query sees keys up to off + q0 + nq - 1: a warp whose keys all lie
            // beyond (or past the sequence) would add zeros only
            if (w0 < nkeys && k0 + w0 <= off + q0 + nq - 1) {
                const bf16* dOs = (const bf16*)(smem + L::dout) + st * L::q_tile;
                const float* lse_s = (const float*)(smem + L::lse) + st * BQ;
                const float* D_s = (const float*)(smem + L::D) + st * BQ;
                float s[NS][4], dp[NS][4]; // keys by queries: K Q^T and V dO^T
                acc_zero(s);
                acc_zero(dp);
#pragma unroll
                for (int kk = 0; kk < KT; kk++) {
                    uint32_t ka[1][4], va[1][4];
                    frag_a_shared(ka[0], Ks + w0 * L::LDH, L::LDH, 16 * kk);
                    frag_a_shared(va[0], Vs + w0 * L::LDH, L::LDH, 16 * kk);
                    warp_abt<NS, 1>(s, ka, Qs + 16 * kk, L::LDH);
                    warp_abt<NS, 1>(dp, va, dOs + 16 * kk, L::LDH);
                }
                const bool edge = k0 + w0 + 15 > off + q0; // some key of the warp is masked for some query
#pragma unroll
                for (int n = 0; n < NS; n++) {
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int qi = 8 * n + 2 * t + (e & 1), i = e >> 1;
                        const bool vis = qi < nq && key[i] < kl && (!edge || key[i] <= off + q0 + qi);
                        const float pr = vis ? exp2_ftz(s[n][e] * sl - lse_s[qi] * MMA_LOG2E) : 0.0f;
                        s[n][e] = pr;
                        dp[n][e] = pr * (dp[n][e] - D_s[qi]);
                    }
                }
                uint32_t pa[BQ / 16][4];
                acc_to_a<NS>(pa, s);
                acc_to_a<NS>(dsa, dp);
                warp_ab<NO, BQ / 16>(dva, pa, dOs, L::LDH);
                warp_ab<NO, BQ / 16>(dka, dsa, Qs, L::LDH);
            }
            ds_store<BQ>(dS + w0 * L::LDS, L::LDS, dsa);
            // the key tiles that q0's tile sees (key tile 0 up to the diagonal) take turns from the last
            const int turns = min(key_tiles, (off + q0 + BQ - 1) / MMA_ROWS + 1), pos = turns - 1 - kt;
            const int tile = mma_dq_tile(a, b, h, q0, BQ);
            if (pos > 0 && threadIdx.x == 0) spin_wait(sync.turn + tile, pos, "attention backward, dq turn");
            __syncthreads(); // the block's dS is complete, and the turn is this block's
            // the sum so far loads while the product runs, which then adds to it
            float dqa[DS::NO][4];
            dq_turn_load<HD, BQ>(dqa, sync, tile, pos);
            uint32_t da[MMA_ROWS / 16][4];
#pragma unroll
            for (int kk = 0; kk < MMA_ROWS / 16; kk++) {
                frag_at_shared(da[kk], dS, L::LDS, 16 * (warp % DS::RB), 16 * kk);
            }
            warp_ab<DS::NO, MMA_ROWS / 16>(dqa, da, Ks + warp / DS::RB * DS::NO * 8, L::LDH);
            dq_turn_pass<HD, BQ>(dqa, sync, tile, pos, kt == 0, dq + ((size_t)b * a.Tq + q0) * ldo + (size_t)h * HD,
                                 (size_t)ldo, a.scale, nq, a.Tq - q0);
            // dq_turn_pass ends with a barrier: the stage and dS are free again
        }
    }
    cp_async_wait<0>(); // nothing is left in flight when the block ends
    if (kt == 0) dq_zero_rows<HD>(dq, a, b, kvh, min(a.Tq, nqt * BQ)); // key tile 0 sees every query tile
    const int r0 = k0 + w0;
    if (r0 < a.Tk) {
        const size_t at = ((size_t)b * a.Tk + r0) * a.ldkv + (size_t)kvh * HD;
        acc_store<NO>(dk + at, (size_t)a.ldkv, dka, a.scale, nkeys - w0, a.Tk - r0);
        acc_store<NO>(dv + at, (size_t)a.ldkv, dva, 1.0f, nkeys - w0, a.Tk - r0);
    }
}
