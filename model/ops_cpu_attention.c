// CPU causal grouped-query attention, forward and backward, as blocks of small matmuls.
// Each OpenMP thread takes whole (sequence, head) tasks and runs single-threaded sgemm on
// blocks of ATTN_BQ queries against the keys they can see (the causal triangle is skipped
// block by block), with the score block in a per-thread slice of the caller's workspace.
// With few queries (decoding) the forward runs direct vector loops instead, one task per
// (sequence, kv head): the query heads sharing the kv head read each key and value row once.
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
// Query rows (queries x query heads per kv head) up to which the forward runs the direct loops.
// Measured on 2 Zen 5 cores, decode steps of `small` (32 sequences, 1 query, 6 heads on 2 kv
// heads, hd 64, about 128 keys, 8 layers): sgemm blocks 3.5 ms, direct loops 0.X ms.
#define ATTN_DIRECT_ROWS 16

size_t cpu_attention_work_bytes(Backend* be, int Tk) {
    // backward: probabilities and their gradients, (ATTN_BQ, Tk) each, per thread
    return (size_t)be->threads * 2 * ATTN_BQ * (size_t)Tk * sizeof(float);
}

// ----------------------------------------------------------------------------
// row kernels (vector code: compiled for AVX2 and for the baseline, picked at load time)

// S (nq, nk) scores in place -> causal softmax probabilities; row i sees keys 0..last0 + i
CPU_CLONES static void softmax_rows(float* S, float* lse, int nq, int nk, int last0) {
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
CPU_CLONES static void softmax_bwd_rows(float* P, float* dS, const float* lse, const float* dout, const float* out,
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
// store-to-load chain; both ran at half this speed.
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

// Decoding shapes: one task per (sequence, kv head), whose query heads attend one after the
// other while that kv head's keys and values are in the core's L1/L2 (loading each row into
// registers once for the whole group instead measured slower: GCC spills the accumulators).
// Every row is computed by one thread in a fixed order, whatever the thread count. Rows
// t >= q_lens[b] are zeroed as in the blocked path.
static void attention_fwd_direct(Backend* be, float* out, float* lse, const float* q, int ldq, const float* k,
                                 const float* v, int ldkv, const int* q_lens, const int* kv_lens, int B, int Tq,
                                 int Tk, int H, int KV, int hd, void* work) {
    const float scale = 1.0f / sqrtf((float)hd);
    const int G = H / KV, ldo = H * hd;
#pragma omp parallel num_threads(be->threads) if((size_t)B * H * Tq * Tk * hd >= CPU_PAR_MIN)
    {
        float* s = (float*)work + (size_t)omp_get_thread_num() * 2 * ATTN_BQ * Tk; // (Tk) scores
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++) {
            for (int g = 0; g < KV; g++) {
                const int ql = q_lens[b], off = kv_lens[b] - ql;
                const float* kb = k + (size_t)b * Tk * ldkv + (size_t)g * hd;
                const float* vb = v + (size_t)b * Tk * ldkv + (size_t)g * hd;
                for (int h = g * G; h < (g + 1) * G; h++) {
                    float* lseb = lse + ((size_t)b * H + h) * Tq;
                    for (int t = 0; t < Tq; t++) {
                        const size_t row = (size_t)b * Tq + t;
                        float* o = out + row * ldo + (size_t)h * hd;
                        if (t < ql) {
                            lseb[t] = attend_row_hd(o, q + row * ldq + (size_t)h * hd, kb, vb, ldkv, off + t + 1, hd,
                                                    scale, s);
                        } else {
                            memset(o, 0, sizeof(float) * (size_t)hd);
                            lseb[t] = 0.0f;
                        }
                    }
                }
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
    const int group = H / KV, ldo = H * hd;
#pragma omp parallel num_threads(be->threads) if((size_t)B * H * Tq * Tk * hd >= CPU_PAR_MIN)
    {
        float* S = (float*)work + (size_t)omp_get_thread_num() * 2 * ATTN_BQ * Tk; // (nq, nk)
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < H; h++) {
                const int ql = q_lens[b], off = kv_lens[b] - ql;
                const float* kb = k + (size_t)b * Tk * ldkv + (size_t)(h / group) * hd;
                const float* vb = v + (size_t)b * Tk * ldkv + (size_t)(h / group) * hd;
                float* lseb = lse + ((size_t)b * H + h) * Tq;
                for (int t0 = 0; t0 < ql; t0 += ATTN_BQ) {
                    const int nq = ql - t0 < ATTN_BQ ? ql - t0 : ATTN_BQ, nk = off + t0 + nq;
                    const float* qb = q + ((size_t)b * Tq + t0) * ldq + (size_t)h * hd;
                    float* ob = out + ((size_t)b * Tq + t0) * ldo + (size_t)h * hd;
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, scale, qb, ldq, kb, ldkv, 0.0f, S,
                                nk);
                    softmax_rows(S, lseb + t0, nq, nk, off + t0);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f, S, nk, vb, ldkv, 0.0f, ob,
                                ldo);
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
    const int group = H / KV, ldo = H * hd;
#pragma omp parallel num_threads(be->threads) if((size_t)B * H * Tq * Tk * hd >= CPU_PAR_MIN)
    {
        float* P = (float*)work + (size_t)omp_get_thread_num() * 2 * ATTN_BQ * Tk; // (nq, nk)
        float* dS = P + (size_t)ATTN_BQ * Tk;                                         // (nq, nk)
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
                for (int h = g * group; h < (g + 1) * group; h++) {
                    const float* lseb = lse + ((size_t)b * H + h) * Tq;
                    for (int t0 = 0; t0 < ql; t0 += ATTN_BQ) {
                        const int nq = ql - t0 < ATTN_BQ ? ql - t0 : ATTN_BQ, nk = off + t0 + nq;
                        const float* qb = q + ((size_t)b * Tq + t0) * ldq + (size_t)h * hd;
                        const float* ob = out + ((size_t)b * Tq + t0) * ldo + (size_t)h * hd;
                        const float* dob = dout + ((size_t)b * Tq + t0) * ldo + (size_t)h * hd;
                        float* dqb = dq + ((size_t)b * Tq + t0) * ldo + (size_t)h * hd;
                        // P = softmax from the saved lse; dP = dO V^T
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, scale, qb, ldq, kb, ldkv, 0.0f,
                                    P, nk);
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, 1.0f, dob, ldo, vb, ldkv, 0.0f,
                                    dS, nk);
                        softmax_bwd_rows(P, dS, lseb + t0, dob, ob, ldo, hd, nq, nk, off + t0);
                        // dQ = scale dS K; dK += scale dS^T Q; dV += P^T dO
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, scale, dS, nk, kb, ldkv,
                                    0.0f, dqb, ldo);
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, scale, dS, nk, qb, ldq, 1.0f,
                                    dkb, ldkv);
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, 1.0f, P, nk, dob, ldo, 1.0f,
                                    dvb, ldkv);
                    }
                    for (int t = ql; t < Tq; t++) memset(dq + ((size_t)b * Tq + t) * ldo + (size_t)h * hd, 0,
                                                         sizeof(float) * (size_t)hd);
                }
            }
        }
    }
}
