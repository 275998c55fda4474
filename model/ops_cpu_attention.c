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

// One (sequence, kv head) task: the group's query heads h = 0..G-1 times the queries t = 0..nq-1
// form the rows r = h * nq + t; query t sits at position off + t. S holds the scores (R, nk),
// nk = off + nq, then the rows' 1/sum (R). Writes the out rows (stride ldo) and the lse entries
// (stride Tq per head).
CPU_CLONES static void attend_rows(float* out, int ldo, float* lse, int Tq, const float* q, int ldq, const float* k,
                                   const float* v, int ldkv, int G, int nq, int off, int hd, float scale, float* S) {
    const int nk = off + nq, R = G * nq;
    float* inv = S + (size_t)R * nk;
    // scores: each key row is loaded once for all the query rows that see it
    for (int j = 0; j < nk; j++) {
        const float* kj = k + (size_t)j * ldkv;
        const int t0 = j > off ? j - off : 0; // the first query that sees key j
        for (int h = 0; h < G; h++) {
            for (int t = t0; t < nq; t++) {
                const float* qr = q + (size_t)t * ldq + (size_t)h * hd;
                float d = 0.0f;
#pragma omp simd reduction(+ : d)
                for (int c = 0; c < hd; c++) d += qr[c] * kj[c];
                S[(size_t)(h * nq + t) * nk + j] = d * scale;
            }
        }
    }
    // softmax numerators in place; 1/sum scales the output rows at the end
    for (int h = 0; h < G; h++) {
        for (int t = 0; t < nq; t++) {
            const int r = h * nq + t, last = off + t;
            float* row = S + (size_t)r * nk;
            float m = row[0], sum = 0.0f;
#pragma omp simd reduction(max : m)
            for (int j = 0; j <= last; j++) m = row[j] > m ? row[j] : m;
#pragma omp simd reduction(+ : sum)
            for (int j = 0; j <= last; j++) {
                row[j] = cpu_expf(row[j] - m);
                sum += row[j];
            }
            inv[r] = 1.0f / sum;
            lse[(size_t)h * Tq + t] = m + logf(sum);
            memset(out + (size_t)t * ldo + (size_t)h * hd, 0, sizeof(float) * (size_t)hd);
        }
    }
    // weighted values: each value row is loaded once for all the query rows that see it
    for (int j = 0; j < nk; j++) {
        const float* vj = v + (size_t)j * ldkv;
        const int t0 = j > off ? j - off : 0;
        for (int h = 0; h < G; h++) {
            for (int t = t0; t < nq; t++) {
                float* o = out + (size_t)t * ldo + (size_t)h * hd;
                const float p = S[(size_t)(h * nq + t) * nk + j];
#pragma omp simd
                for (int c = 0; c < hd; c++) o[c] += p * vj[c];
            }
        }
    }
    for (int h = 0; h < G; h++) {
        for (int t = 0; t < nq; t++) {
            float* o = out + (size_t)t * ldo + (size_t)h * hd;
            const float f = inv[h * nq + t];
#pragma omp simd
            for (int c = 0; c < hd; c++) o[c] *= f;
        }
    }
}

// Decoding shapes: tasks (sequence, kv head), each on one thread from start to end, so the
// result does not depend on the thread count. Rows t >= q_lens[b] are zeroed as in the blocked
// path. The per-thread slice of work holds 2 * ATTN_BQ * Tk floats >= R * (Tk + 1).
static void attention_fwd_direct(Backend* be, float* out, float* lse, const float* q, int ldq, const float* k,
                                 const float* v, int ldkv, const int* q_lens, const int* kv_lens, int B, int Tq,
                                 int Tk, int H, int KV, int hd, void* work) {
    const float scale = 1.0f / sqrtf((float)hd);
    const int G = H / KV, ldo = H * hd;
#pragma omp parallel num_threads(be->threads) if((size_t)B * H * Tq * Tk * hd >= CPU_PAR_MIN)
    {
        float* S = (float*)work + (size_t)omp_get_thread_num() * 2 * ATTN_BQ * Tk;
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++) {
            for (int g = 0; g < KV; g++) {
                const int ql = q_lens[b], off = kv_lens[b] - ql;
                const size_t kv0 = (size_t)b * Tk * ldkv + (size_t)g * hd, h0 = (size_t)g * G;
                float* ob = out + (size_t)b * Tq * ldo + h0 * hd;
                float* lseb = lse + ((size_t)b * H + h0) * Tq;
                if (ql > 0) {
                    attend_rows(ob, ldo, lseb, Tq, q + (size_t)b * Tq * ldq + h0 * hd, ldq, k + kv0, v + kv0, ldkv, G,
                                ql, off, hd, scale, S);
                }
                for (int t = ql; t < Tq; t++) {
                    for (int h = 0; h < G; h++) {
                        memset(ob + (size_t)t * ldo + (size_t)h * hd, 0, sizeof(float) * (size_t)hd);
                        lseb[(size_t)h * Tq + t] = 0.0f;
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
