// CPU causal grouped-query attention, forward and backward, as blocks of small matmuls.
// Each OpenMP thread takes whole (sequence, head) tasks and multiplies blocks of ATTN_BQ queries
// against the keys they can see (the causal triangle is skipped block by block) on the register
// tiles (AVX-512 or AVX2) or with single-threaded sgemm, with the score block in a per-thread
// slice of the caller's workspace.
// With few queries (decoding) the forward runs direct vector loops instead, a kv head's query
// heads in one task; with AVX-512 they share each load of a key or value row (4 at a time).
// The backward recomputes the probabilities from the saved log-sum-exp (as FlashAttention
// does) instead of storing (T, T) matrices; its tasks are (sequence, kv head) so that the
// query heads sharing a kv head accumulate dk, dv in one thread, without atomics.
#include "model/ops_cpu_attention.h"
#include "model/ops_cpu_internal.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#define ATTN_BQ 64 // queries per block
// Query rows (queries x query heads per kv head) up to which the forward runs the direct loops
// rather than sgemm blocks; at most 2 * ATTN_BQ (a kv head's scores fit a thread's workspace).
// Measured on 2 Zen 5 cores, 8 layers of `small` (6 heads on 2 kv heads, hd 64, 128 keys), 32
// sequences: sgemm blocks 3.5 ms at 1 query per sequence, 3.8 at 4, 5.1 at 8; plain loops 1.0,
// 2.7, 5.0 ms; AVX-512 loops 0.9, 1.8, 3.0 ms. The AVX-512 loops would pay further, but a row's
// bits depend on the path, and the decoder's refeed (test_decode's test_truncate_refeed) gives
// bit-identical logits only while both feeds take the same one: feeds of a few tokens go
// direct, longer ones (prompts, refeeds) keep the blocked path they had.
#define ATTN_DIRECT_ROWS 16

// Head sizes up to which the blocks run on the register tiles (ops_cpu_tile.c: AVX-512 or AVX2),
// with the keys and values of a task transposed into the thread's workspace; larger heads take
// sgemm blocks.
#define ATTN_TILE_HD 64

// floats of one thread's workspace: probabilities and their gradients, (ATTN_BQ, Tk) each, then
// the transposed keys and values, (ATTN_TILE_HD, Tk) each
static size_t thread_floats(int Tk) { return (size_t)(2 * ATTN_BQ + 2 * ATTN_TILE_HD) * (size_t)Tk; }

size_t cpu_attention_work_bytes(Backend* be, int Tk) {
    return (size_t)be->threads * thread_floats(Tk) * sizeof(float);
}

// whether this shape runs on the register tiles
static int use_tiles(int hd) { return hd % 16 == 0 && hd <= ATTN_TILE_HD && cpu_has_tiles(); }

// C (M, N) = alpha op(A) B + beta C on the calling thread, A stored (M, K) or, transposed,
// (K, M) with row stride lda: on the tiles where `tiles` (B row-major, (K, N)), else with sgemm
// on Bt, B's transpose (N, K), or where Bt is NULL on B
static void block_gemm(int tiles, int trans_a, int M, int N, int K, float alpha, const float* A, size_t lda,
                       const float* B, size_t ldb, const float* Bt, size_t ldbt, float beta, float* C, size_t ldc) {
#if defined(CPU_AVX512_KERNELS)
    if (tiles) {
        cpu_tile_gemm(M, N, K, alpha, A, trans_a ? 1 : lda, trans_a ? lda : 1, B, ldb, beta, C, ldc);
        return;
    }
#else
    (void)tiles;
#endif
    const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    if (Bt) cblas_sgemm(CblasRowMajor, ta, CblasTrans, M, N, K, alpha, A, (int)lda, Bt, (int)ldbt, beta, C, (int)ldc);
    else cblas_sgemm(CblasRowMajor, ta, CblasNoTrans, M, N, K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

// ----------------------------------------------------------------------------
// row kernels (vector code: compiled for AVX2 and for the baseline, picked at load time)

// S (nq, nk) scores in place -> causal softmax probabilities; row i sees keys 0..last0 + i
CPU_CLONES_V4 static void softmax_rows(float* S, float* lse, int nq, int nk, int last0) {
    for (int i = 0; i < nq; i++) {
        float* row = S + (size_t)i * nk;
        const int last = last0 + i; // the query's own position: its last visible key
        float m = row[0], sum = 0.0f;
#pragma omp simd reduction(max : m)
        for (int j = 0; j <= last; j++) m = row[j] > m ? row[j] : m;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j <= last; j++) {
            row[j] = cpu_expf(row[j] - m);
            sum += row[j];
        }
        const float inv = 1.0f / sum;
        for (int j = 0; j <= last; j++) row[j] *= inv;
        for (int j = last + 1; j < nk; j++) row[j] = 0.0f;
        lse[i] = m + logf(sum);
    }
}

// P (nq, nk) scores in place -> probabilities from the saved lse; dS (nq, nk) dP in place -> dS
CPU_CLONES_V4 static void softmax_bwd_rows(float* P, float* dS, const float* lse, const float* dout, const float* out,
                                        int ldo, int hd, int nq, int nk, int last0) {
    for (int i = 0; i < nq; i++) {
        float* prow = P + (size_t)i * nk;
        float* dsrow = dS + (size_t)i * nk;
        const int last = last0 + i;
        const float l = lse[i];
        float D = 0.0f; // sum_j P_j dP_j = dO . O
        for (int c = 0; c < hd; c++) D += dout[(size_t)i * ldo + c] * out[(size_t)i * ldo + c];
        for (int j = 0; j <= last; j++) {
            prow[j] = cpu_expf(prow[j] - l);
            dsrow[j] = prow[j] * (dsrow[j] - D);
        }
        for (int j = last + 1; j < nk; j++) prow[j] = dsrow[j] = 0.0f;
    }
}

// ----------------------------------------------------------------------------
// forward, few queries: direct loops

// The sum of 8 lane partial sums, in a fixed order
static inline float lane_sum8(const float* a) {
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

// One query row q (hd) against keys 0..nk-1: out (hd) = softmax(scale q K^T) V; returns the
// log-sum-exp of the scaled scores. s is scratch for nk scores. Inlined with hd a constant
// where attend_row_hd can, so the loops unroll: each dot product accumulates 8 lane partial
// sums (one vector, summed once per key, four keys at a time), and the output accumulates in
// blocks of 64 values that stay in registers across the keys. In these shapes GCC's code for a
// plain dot loop stalls on a horizontal sum per key, and an output updated in memory on a
// store-to-load chain: both measured about twice slower.
static inline __attribute__((always_inline)) float attend_row(float* out, const float* q, const float* k,
                                                              const float* v, int ldkv, int nk, int hd, float scale,
                                                              float* s) {
    const int hd8 = hd & ~7;
    int j = 0;
    for (; j + 4 <= nk; j += 4) {
        const float* kj = k + (size_t)j * ldkv;
        float a[4][8] = {{0.0f}};
        for (int c = 0; c < hd8; c += 8) {
            for (int u = 0; u < 4; u++) {
                for (int l = 0; l < 8; l++) a[u][l] += q[c + l] * kj[(size_t)u * ldkv + c + l];
            }
        }
        for (int u = 0; u < 4; u++) {
            for (int c = hd8; c < hd; c++) a[u][0] += q[c] * kj[(size_t)u * ldkv + c];
            s[j + u] = lane_sum8(a[u]) * scale;
        }
    }
    for (; j < nk; j++) {
        const float* kj = k + (size_t)j * ldkv;
        float a[8] = {0.0f};
        for (int c = 0; c < hd8; c += 8) {
            for (int l = 0; l < 8; l++) a[l] += q[c + l] * kj[c + l];
        }
        for (int c = hd8; c < hd; c++) a[0] += q[c] * kj[c];
        s[j] = lane_sum8(a) * scale;
    }
    float m = s[0], sum = 0.0f;
    for (int i = 1; i < nk; i++) m = s[i] > m ? s[i] : m;
    for (int i = 0; i < nk; i++) {
        s[i] = cpu_expf(s[i] - m);
        sum += s[i];
    }
    const float inv = 1.0f / sum;
    for (int c0 = 0; c0 < hd; c0 += 64) {
        const int w = hd - c0 < 64 ? hd - c0 : 64;
        float acc[64] = {0.0f};
        for (int i = 0; i < nk; i++) {
            const float* vi = v + (size_t)i * ldkv + c0;
            const float p = s[i];
            for (int c = 0; c < w; c++) acc[c] += p * vi[c];
        }
        for (int c = 0; c < w; c++) out[c0 + c] = acc[c] * inv;
    }
    return m + logf(sum);
}

// attend_row with the common head sizes as constants
CPU_CLONES static float attend_row_hd(float* out, const float* q, const float* k, const float* v, int ldkv, int nk,
                                      int hd, float scale, float* s) {
    switch (hd) {
    case 32: return attend_row(out, q, k, v, ldkv, nk, 32, scale, s);
    case 64: return attend_row(out, q, k, v, ldkv, nk, 64, scale, s);
    case 128: return attend_row(out, q, k, v, ldkv, nk, 128, scale, s);
    default: return attend_row(out, q, k, v, ldkv, nk, hd, scale, s);
    }
}

#if defined(CPU_AVX512_KERNELS)
#include <immintrin.h>

// out rows r < mr (stride hd) = inv[r] * sum_j p[r][j] v_j, 16 * nv values of each: the rows
// share every load of a value row; mr <= 4 and nv <= 4 are constants once inlined
CPU_AVX512 static inline __attribute__((always_inline)) void group_values_block(int mr, int nv, float* out, int hd,
                                                                                const float* p, int ldp, int nk,
                                                                                const float* v, int ldkv,
                                                                                const float* inv) {
    __m512 acc[4][4];
    for (int r = 0; r < 4; r++) {
        for (int u = 0; u < 4; u++) acc[r][u] = _mm512_setzero_ps();
    }
    for (int j = 0; j < nk; j++) {
        __m512 x[4];
        for (int u = 0; u < nv; u++) x[u] = _mm512_loadu_ps(v + (size_t)j * ldkv + 16 * u);
        for (int r = 0; r < mr; r++) {
            const __m512 pr = _mm512_set1_ps(p[(size_t)r * ldp + j]);
            for (int u = 0; u < nv; u++) acc[r][u] = _mm512_fmadd_ps(pr, x[u], acc[r][u]);
        }
    }
    for (int r = 0; r < mr; r++) {
        const __m512 f = _mm512_set1_ps(inv[r]);
        for (int u = 0; u < nv; u++) _mm512_storeu_ps(out + (size_t)r * hd + 16 * u, _mm512_mul_ps(acc[r][u], f));
    }
}

// The G query heads of one kv head for one query that sees keys 0..nk-1: q and out are (G, hd)
// (the heads' slices of a row), s is scratch for (G, nk) scores. The scores are the dot kernel's
// product of the G query rows with the key rows, 4 keys by up to 4 heads per tile; the values
// are summed 4 heads by 64 values at a time. Each key and value row is loaded once for up to 4
// heads. hd is a multiple of 16.
CPU_AVX512 static void attend_group_avx512(float* out, float* lse, int lse_stride, const float* q, const float* k,
                                           const float* v, int ldkv, int G, int nk, int hd, float scale, float* s) {
    float inv[4];
    cpu_dot_kernel_avx512(G, nk, hd, scale, q, hd, k, ldkv, 0.0f, s, nk);
    for (int r0 = 0; r0 < G; r0 += 4) {
        const int mr = G - r0 < 4 ? G - r0 : 4;
        for (int r = 0; r < mr; r++) {
            float* row = s + (size_t)(r0 + r) * nk;
            float m = row[0], sum = 0.0f;
            for (int j = 1; j < nk; j++) m = row[j] > m ? row[j] : m;
            for (int j = 0; j < nk; j++) {
                row[j] = cpu_expf(row[j] - m);
                sum += row[j];
            }
            inv[r] = 1.0f / sum;
            lse[(size_t)(r0 + r) * lse_stride] = m + logf(sum);
        }
        const float* p = s + (size_t)r0 * nk;
        for (int c0 = 0; c0 < hd;) {
            const int nv = hd - c0 >= 64 ? 4 : hd - c0 >= 32 ? 2 : 1;
            float* o = out + (size_t)r0 * hd + c0;
            const float* vc = v + c0;
            switch (mr * 8 + nv) {
            case 1 * 8 + 1: group_values_block(1, 1, o, hd, p, nk, nk, vc, ldkv, inv); break;
            case 1 * 8 + 2: group_values_block(1, 2, o, hd, p, nk, nk, vc, ldkv, inv); break;
            case 1 * 8 + 4: group_values_block(1, 4, o, hd, p, nk, nk, vc, ldkv, inv); break;
            case 2 * 8 + 1: group_values_block(2, 1, o, hd, p, nk, nk, vc, ldkv, inv); break;
            case 2 * 8 + 2: group_values_block(2, 2, o, hd, p, nk, nk, vc, ldkv, inv); break;
            case 2 * 8 + 4: group_values_block(2, 4, o, hd, p, nk, nk, vc, ldkv, inv); break;
            case 3 * 8 + 1: group_values_block(3, 1, o, hd, p, nk, nk, vc, ldkv, inv); break;
            case 3 * 8 + 2: group_values_block(3, 2, o, hd, p, nk, nk, vc, ldkv, inv); break;
            case 3 * 8 + 4: group_values_block(3, 4, o, hd, p, nk, nk, vc, ldkv, inv); break;
            case 4 * 8 + 1: group_values_block(4, 1, o, hd, p, nk, nk, vc, ldkv, inv); break;
            case 4 * 8 + 2: group_values_block(4, 2, o, hd, p, nk, nk, vc, ldkv, inv); break;
            default: group_values_block(4, 4, o, hd, p, nk, nk, vc, ldkv, inv); break;
            }
            c0 += 16 * nv;
        }
    }
}
#endif

// the arguments of one attention_fwd call
typedef struct {
    float* out;
    float* lse;
    const float *q, *k, *v;
    const int *q_lens, *kv_lens;
    int ldq, ldkv, Tq, Tk, H, KV, hd, avx512;
    float scale;
} AttnFwd;

// the query heads of kv head g of sequence b, one after the other; s: (G, Tk) scratch
static void attend_kv_head(const AttnFwd* a, int b, int g, float* s) {
    const int G = a->H / a->KV, hd = a->hd, ldo = a->H * hd, ql = a->q_lens[b], off = a->kv_lens[b] - ql;
    const size_t h0 = (size_t)g * G;
    const float* kb = a->k + (size_t)b * a->Tk * a->ldkv + (size_t)g * hd;
    const float* vb = a->v + (size_t)b * a->Tk * a->ldkv + (size_t)g * hd;
    for (int t = 0; t < a->Tq; t++) {
        const size_t row = (size_t)b * a->Tq + t;
        float* o = a->out + row * ldo + h0 * hd;
        float* l = a->lse + ((size_t)b * a->H + h0) * a->Tq + t; // stride Tq per head
        const float* qr = a->q + row * a->ldq + h0 * hd;
        if (t >= ql) {
            memset(o, 0, sizeof(float) * (size_t)G * hd);
            for (int h = 0; h < G; h++) l[(size_t)h * a->Tq] = 0.0f;
        }
#if defined(CPU_AVX512_KERNELS)
        else if (a->avx512) {
            attend_group_avx512(o, l, a->Tq, qr, kb, vb, a->ldkv, G, off + t + 1, hd, a->scale, s);
        }
#endif
        else {
            for (int h = 0; h < G; h++) {
                l[(size_t)h * a->Tq] = attend_row_hd(o + (size_t)h * hd, qr + (size_t)h * hd, kb, vb, a->ldkv,
                                                     off + t + 1, hd, a->scale, s);
            }
        }
    }
}

// Decoding shapes. A task is a sequence, all its kv heads in turn, when there are enough
// sequences to share out: a core then uses whole cache lines of the keys and values (a kv
// head's slice of a row is a part of a line that the other kv heads' tasks would read again).
// With fewer sequences a task is a (sequence, kv head). Within a kv head, its query heads
// attend one after the other (plain loops) or together, each key and value row loaded once
// for up to 4 of them (AVX-512 with hd a multiple of 16). Every row is computed by one thread
// in a fixed order, whatever the thread count or the tasks. Rows t >= q_lens[b] are zeroed as
// in the blocked path.
static void attention_fwd_direct(Backend* be, float* out, float* lse, const float* q, int ldq, const float* k,
                                 const float* v, int ldkv, const int* q_lens, const int* kv_lens, int B, int Tq,
                                 int Tk, int H, int KV, int hd, void* work) {
    const AttnFwd a = {.out = out, .lse = lse, .q = q, .k = k, .v = v, .q_lens = q_lens, .kv_lens = kv_lens,
                       .ldq = ldq, .ldkv = ldkv, .Tq = Tq, .Tk = Tk, .H = H, .KV = KV, .hd = hd,
                       .avx512 = hd % 16 == 0 && cpu_has_avx512(), .scale = 1.0f / sqrtf((float)hd)};
    const int per_seq = B >= 4 * be->threads, ntasks = per_seq ? B : B * KV;
#pragma omp parallel num_threads(be->threads) if((size_t)B * H * Tq * Tk * hd >= CPU_PAR_MIN)
    {
        float* s = (float*)work + (size_t)omp_get_thread_num() * thread_floats(Tk);
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < ntasks; task++) {
            if (per_seq) {
                for (int g = 0; g < KV; g++) attend_kv_head(&a, task, g, s);
            } else {
                attend_kv_head(&a, task / KV, task % KV, s);
            }
        }
    }
}

// ----------------------------------------------------------------------------
// forward

void cpu_attention_fwd(Backend* be, float* out, float* lse, const float* q, int ldq, const float* k, const float* v,
                       int ldkv, const int* q_lens, const int* kv_lens, int B, int Tq, int Tk, int H, int KV, int hd,
                       void* work) {
    if (Tq * (H / KV) <= ATTN_DIRECT_ROWS) {
        attention_fwd_direct(be, out, lse, q, ldq, k, v, ldkv, q_lens, kv_lens, B, Tq, Tk, H, KV, hd, work);
        return;
    }
    const float scale = 1.0f / sqrtf((float)hd);
    const int group = H / KV, ldo = H * hd, tiles = use_tiles(hd);
#pragma omp parallel num_threads(be->threads) if((size_t)B * H * Tq * Tk * hd >= CPU_PAR_MIN)
    {
        float* S = (float*)work + (size_t)omp_get_thread_num() * thread_floats(Tk); // (nq, nk)
        float* Kt = S + (size_t)2 * ATTN_BQ * Tk;                                    // (hd, Tk) on the tiles
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < H; h++) {
                const int ql = q_lens[b], off = kv_lens[b] - ql;
                const float* kb = k + (size_t)b * Tk * ldkv + (size_t)(h / group) * hd;
                const float* vb = v + (size_t)b * Tk * ldkv + (size_t)(h / group) * hd;
                float* lseb = lse + ((size_t)b * H + h) * Tq;
                if (tiles) cpu_transpose(Kt, Tk, kb, ldkv, kv_lens[b], hd);
                for (int t0 = 0; t0 < ql; t0 += ATTN_BQ) {
                    const int nq = ql - t0 < ATTN_BQ ? ql - t0 : ATTN_BQ, nk = off + t0 + nq;
                    const float* qb = q + ((size_t)b * Tq + t0) * ldq + (size_t)h * hd;
                    float* ob = out + ((size_t)b * Tq + t0) * ldo + (size_t)h * hd;
                    block_gemm(tiles, 0, nq, nk, hd, scale, qb, ldq, Kt, Tk, kb, ldkv, 0.0f, S, nk);
                    softmax_rows(S, lseb + t0, nq, nk, off + t0);
                    block_gemm(tiles, 0, nq, hd, nk, 1.0f, S, nk, vb, ldkv, NULL, 0, 0.0f, ob, ldo);
                }
                for (int t = ql; t < Tq; t++) {
                    memset(out + ((size_t)b * Tq + t) * ldo + (size_t)h * hd, 0, sizeof(float) * (size_t)hd);
                    lseb[t] = 0.0f;
                }
            }
        }
    }
}

// ----------------------------------------------------------------------------
// backward

void cpu_attention_bwd(Backend* be, float* dq, float* dk, float* dv, const float* dout, const float* out,
                       const float* lse, const float* q, int ldq, const float* k, const float* v, int ldkv,
                       const int* q_lens, const int* kv_lens, int B, int Tq, int Tk, int H, int KV, int hd,
                       void* work) {
    const float scale = 1.0f / sqrtf((float)hd);
    const int group = H / KV, ldo = H * hd, tiles = use_tiles(hd);
#pragma omp parallel num_threads(be->threads) if((size_t)B * H * Tq * Tk * hd >= CPU_PAR_MIN)
    {
        float* P = (float*)work + (size_t)omp_get_thread_num() * thread_floats(Tk); // (nq, nk)
        float* dS = P + (size_t)ATTN_BQ * Tk;                                        // (nq, nk)
        float* Kt = dS + (size_t)ATTN_BQ * Tk;                                       // (hd, Tk) on the tiles
        float* Vt = Kt + (size_t)ATTN_TILE_HD * Tk;                                  // (hd, Tk) on the tiles
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++) {
            for (int g = 0; g < KV; g++) {
                const int ql = q_lens[b], off = kv_lens[b] - ql;
                const float* kb = k + (size_t)b * Tk * ldkv + (size_t)g * hd;
                const float* vb = v + (size_t)b * Tk * ldkv + (size_t)g * hd;
                float* dkb = dk + (size_t)b * Tk * ldkv + (size_t)g * hd;
                float* dvb = dv + (size_t)b * Tk * ldkv + (size_t)g * hd;
                for (int j = 0; j < Tk; j++) {
                    memset(dkb + (size_t)j * ldkv, 0, sizeof(float) * (size_t)hd);
                    memset(dvb + (size_t)j * ldkv, 0, sizeof(float) * (size_t)hd);
                }
                if (tiles) {
                    cpu_transpose(Kt, Tk, kb, ldkv, kv_lens[b], hd);
                    cpu_transpose(Vt, Tk, vb, ldkv, kv_lens[b], hd);
                }
                for (int h = g * group; h < (g + 1) * group; h++) {
                    const float* lseb = lse + ((size_t)b * H + h) * Tq;
                    for (int t0 = 0; t0 < ql; t0 += ATTN_BQ) {
                        const int nq = ql - t0 < ATTN_BQ ? ql - t0 : ATTN_BQ, nk = off + t0 + nq;
                        const float* qb = q + ((size_t)b * Tq + t0) * ldq + (size_t)h * hd;
                        const float* ob = out + ((size_t)b * Tq + t0) * ldo + (size_t)h * hd;
                        const float* dob = dout + ((size_t)b * Tq + t0) * ldo + (size_t)h * hd;
                        float* dqb = dq + ((size_t)b * Tq + t0) * ldo + (size_t)h * hd;
                        // P = softmax from the saved lse; dP = dO V^T
                        block_gemm(tiles, 0, nq, nk, hd, scale, qb, ldq, Kt, Tk, kb, ldkv, 0.0f, P, nk);
                        block_gemm(tiles, 0, nq, nk, hd, 1.0f, dob, ldo, Vt, Tk, vb, ldkv, 0.0f, dS, nk);
                        softmax_bwd_rows(P, dS, lseb + t0, dob, ob, ldo, hd, nq, nk, off + t0);
                        // dQ = scale dS K; dK += scale dS^T Q; dV += P^T dO
                        block_gemm(tiles, 0, nq, hd, nk, scale, dS, nk, kb, ldkv, NULL, 0, 0.0f, dqb, ldo);
                        block_gemm(tiles, 1, nk, hd, nq, scale, dS, nk, qb, ldq, NULL, 0, 1.0f, dkb, ldkv);
                        block_gemm(tiles, 1, nk, hd, nq, 1.0f, P, nk, dob, ldo, NULL, 0, 1.0f, dvb, ldkv);
                    }
                    for (int t = ql; t < Tq; t++) memset(dq + ((size_t)b * Tq + t) * ldo + (size_t)h * hd, 0,
                                                         sizeof(float) * (size_t)hd);
                }
            }
        }
    }
}
