// The distillation objective of one micro-batch (see objective.h): host rows (top-k buckets and
// full distributions), the batch built from student-view records, and the loss composed from the
// model/loss.h blocks.
#include "distill/objective.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "model/loss.h"

#define OBJ_STAGE_ROWS 64 // logits rows per download of the host rows (see stage_end)

// ----------------------------------------------------------------------------
// host rows

// The K + 1 buckets of one row, computed as loss_row_kl_topk does (exponentials relative to the
// max logit summed in double, the student tail summed directly, the teacher renormalised).
typedef struct {
    double lse;                                          // log-sum-exp of z
    double lQ[LOSS_TOPK_MAX + 1], lP[LOSS_TOPK_MAX + 1]; // bucket log-probs, floored; index K = tail
    double Q[LOSS_TOPK_MAX + 1], P[LOSS_TOPK_MAX + 1];
} Buckets;

static void buckets(const float* z, int V, const int* ids, const float* lp, float tail, int K, Buckets* b) {
    const double log_floor = log(LOSS_PROB_FLOOR);
    float m = z[0];
    for (int v = 1; v < V; v++) m = z[v] > m ? z[v] : m;
    double Z = 0.0, Zs = 0.0;
    for (int v = 0; v < V; v++) Z += expf(z[v] - m);
    for (int i = 0; i < K; i++) Zs += expf(z[ids[i]] - m);
    const double logZ = log(Z), Zt = K < V && Z - Zs > 0.0 ? Z - Zs : 0.0;
    b->lse = m + logZ;
    double S = tail;
    for (int i = 0; i < K; i++) S += exp((double)lp[i]);
    const double logS = log(S);
    for (int i = 0; i < K; i++) {
        b->Q[i] = exp(z[ids[i]] - m) / Z;
        b->lQ[i] = fmax(z[ids[i]] - m - logZ, log_floor);
        b->P[i] = exp((double)lp[i] - logS);
        b->lP[i] = fmax((double)lp[i] - logS, log_floor);
    }
    b->Q[K] = Zt / Z;
    b->lQ[K] = Zt > 0.0 ? fmax(log(Zt) - logZ, log_floor) : log_floor;
    b->P[K] = tail / S;
    b->lP[K] = tail > 0.0f ? fmax(log((double)tail) - logS, log_floor) : log_floor;
}

void distill_row_stats(const float* z, int V, const int* ids, const float* lp, float tail, int K,
                       DistillRowStats* out) {
    const double lse = loss_row_logsumexp(z, V);
    double h = 0.0;
    int arg = 0;
    for (int v = 0; v < V; v++) {
        double lq = z[v] - lse;
        h -= exp(lq) * lq;
        if (z[v] > z[arg]) arg = v;
    }
    out->entropy = h;
    if (K == 0) {
        out->kl_forward = out->kl_reverse = out->agree = NAN;
        return;
    }
    int top = 0; // the teacher's top-1 (records are descending; do not rely on it)
    for (int i = 1; i < K; i++) {
        if (lp[i] > lp[top] || (lp[i] == lp[top] && ids[i] < ids[top])) top = i;
    }
    out->agree = arg == ids[top] ? 1.0 : 0.0;
    out->kl_forward = loss_row_kl_topk(z, V, ids, lp, tail, K, 0, 0.0f, NULL);
    out->kl_reverse = loss_row_kl_topk(z, V, ids, lp, tail, K, 1, 0.0f, NULL);
}

double distill_row_jsd(const float* z, int V, const int* ids, const float* lp, float tail, int K, double beta,
                       float* lp_s, float* tail_s) {
    Buckets bk, *b = &bk;
    buckets(z, V, ids, lp, tail, K, b);
    const double log_floor = log(LOSS_PROB_FLOOR);
    double jsd = 0.0;
    for (int i = 0; i <= K; i++) {
        double M = beta * b->P[i] + (1.0 - beta) * b->Q[i];
        double lM = M > 0.0 ? fmax(log(M), log_floor) : log_floor;
        if (b->P[i] > 0.0) jsd += beta * b->P[i] * (b->lP[i] - lM);
        if (b->Q[i] > 0.0) jsd += (1.0 - beta) * b->Q[i] * (b->lQ[i] - lM);
        double ls = beta * b->lQ[i] + (1.0 - beta) * lM; // log of the surrogate bucket
        if (i < K)
            lp_s[i] = (float)ls;
        else
            *tail_s = b->Q[K] > 0.0 ? (float)exp(ls) : 0.0f;
    }
    return jsd;
}

float distill_row_sampled_lp(const float* z, int V, int y, const int* ids, const float* lp, float tail, int K) {
    Buckets b;
    buckets(z, V, ids, lp, tail, K, &b);
    double out = b.lP[K] + (z[y] - b.lse) - b.lQ[K];
    for (int i = 0; i < K; i++) {
        if (ids[i] == y) out = b.lP[i];
    }
    return (float)out;
}

// the full-vocabulary rows: log q in double, relative to the log-sum-exp
static double full_lq(const float* z, int v, double lse) { return (double)z[v] - lse; }

void distill_row_stats_full(const float* z, const float* lp, int V, DistillRowStats* out) {
    const double lse = loss_row_logsumexp(z, V);
    double h = 0.0;
    int arg = 0, targ = 0;
    for (int v = 0; v < V; v++) {
        const double lq = full_lq(z, v, lse);
        h -= exp(lq) * lq;
        if (z[v] > z[arg]) arg = v;
        if (lp[v] > lp[targ]) targ = v;
    }
    out->entropy = h;
    out->agree = arg == targ ? 1.0 : 0.0;
    out->kl_forward = loss_row_kl_full(z, lp, V, 0, 0.0f, NULL);
    out->kl_reverse = loss_row_kl_full(z, lp, V, 1, 0.0f, NULL);
}

double distill_row_jsd_full(const float* z, const float* lp, int V, double beta, float* lp_s) {
    const double lse = loss_row_logsumexp(z, V), log_floor = log(LOSS_PROB_FLOOR);
    double jsd = 0.0;
    for (int v = 0; v < V; v++) {
        const double lq = full_lq(z, v, lse), q = exp(lq), p = exp((double)lp[v]);
        const double M = beta * p + (1.0 - beta) * q, lM = M > 0.0 ? fmax(log(M), log_floor) : log_floor;
        if (p > 0.0) jsd += beta * p * (fmax((double)lp[v], log_floor) - lM);
        if (q > 0.0) jsd += (1.0 - beta) * q * (fmax(lq, log_floor) - lM);
        lp_s[v] = (float)(beta * fmax(lq, log_floor) + (1.0 - beta) * lM);
    }
    return jsd;
}

// ----------------------------------------------------------------------------
// the batch

void distill_batch_fill(DistillBatch* b, Trajectory* const* seqs, int B, int T, float weight) {
    const int K = seqs[0]->topk;
    int rows = 0;
    for (int s = 0; s < B; s++) rows += seqs[s]->n_agent;
    if (B * T > b->cap_tokens) b->cap_tokens = B * T, b->tokens = reallocCheck(b->tokens, sizeof(int) * (size_t)B * T);
    if (B > b->cap_B) b->cap_B = B, b->lengths = reallocCheck(b->lengths, sizeof(int) * (size_t)B);
    if (rows > b->cap_rows) {
        b->cap_rows = rows;
        b->pos = reallocCheck(b->pos, sizeof(int) * (size_t)rows);
        b->target = reallocCheck(b->target, sizeof(int) * (size_t)rows);
        b->tail = reallocCheck(b->tail, sizeof(float) * (size_t)rows);
        b->old_lp = reallocCheck(b->old_lp, sizeof(float) * (size_t)rows);
        b->exact = reallocCheck(b->exact, sizeof(float) * (size_t)rows);
    }
    if (rows * K > b->cap_K) {
        b->cap_K = rows * K;
        b->ids = reallocCheck(b->ids, sizeof(int) * (size_t)b->cap_K);
        b->lp = reallocCheck(b->lp, sizeof(float) * (size_t)b->cap_K);
    }
    b->B = B;
    b->T = T;
    b->K = K;
    b->weight = weight;
    memset(b->tokens, 0, sizeof(int) * (size_t)B * T);
    int r = 0;
    for (int s = 0; s < B; s++) {
        const Trajectory* t = seqs[s];
        b->lengths[s] = t->n_tokens;
        memcpy(b->tokens + (size_t)s * T, t->tokens, sizeof(int) * (size_t)t->n_tokens);
        int a = 0; // agent row of the record
        for (int i = 0; i < t->n_tokens; i++) {
            if (!t->agent_mask[i]) continue;
            if (i > 0) {
                b->pos[r] = s * T + i - 1;
                b->target[r] = t->tokens[i];
                if (K) {
                    memcpy(b->ids + (size_t)r * K, t->topk_ids + (size_t)a * K, sizeof(int) * (size_t)K);
                    memcpy(b->lp + (size_t)r * K, t->topk_lp + (size_t)a * K, sizeof(float) * (size_t)K);
                }
                b->tail[r] = K ? t->tail_mass[a] : 0.0f;
                b->old_lp[r] = t->logprob[i];
                b->exact[r] = t->teacher_lp ? t->teacher_lp[a] : NAN;
                r++;
            }
            a++;
        }
    }
    b->n_rows = r;
}

void distill_batch_free(DistillBatch* b) {
    free(b->tokens);
    free(b->lengths);
    free(b->pos);
    free(b->target);
    free(b->ids);
    free(b->lp);
    free(b->tail);
    free(b->old_lp);
    free(b->exact);
    memset(b, 0, sizeof(*b));
}

// ----------------------------------------------------------------------------
// the objective

struct DistillObjective {
    Backend* be;
    DistillLoss loss;
    double beta;
    int V;
    size_t cap_rows, cap_K; // capacity of the (N) and (N, K) buffers
    // host staging, one entry per position of the (B, T) batch (rows without a loss have w = 0)
    float* w;
    int* tgt;
    int* ids;
    float* lp;
    float* tail;
    float* aux; // sampled: the teacher's log-prob of the target
    float* old;
    float* z;  // (OBJ_STAGE_ROWS, V) downloaded logits rows
    float* tz; // (OBJ_STAGE_ROWS, V) downloaded rows of the teacher's full log-probs
    DistillRowStats* row_stats; // (N) the host rows' results, by row, summed in row order
    double* row_loss;           // (N)
    // backend copies
    float* d_w;
    int* d_tgt;
    int* d_ids;
    float* d_lp;
    float* d_tail;
    float* d_aux;
    float* d_old;
};

DistillObjective* distill_objective_create(Backend* be, DistillLoss loss, double jsd_beta, int V) {
    DistillObjective* o = callocCheck(1, sizeof(DistillObjective));
    o->be = be;
    o->loss = loss;
    o->beta = jsd_beta;
    o->V = V;
    o->z = mallocCheck(sizeof(float) * OBJ_STAGE_ROWS * (size_t)V);
    o->tz = mallocCheck(sizeof(float) * OBJ_STAGE_ROWS * (size_t)V);
    return o;
}

static void free_buffers(DistillObjective* o) {
    Backend* be = o->be;
    free(o->w), free(o->tgt), free(o->ids), free(o->lp), free(o->tail), free(o->aux), free(o->old);
    free(o->row_stats), free(o->row_loss);
    if (o->d_w) {
        be->free(be, o->d_w), be->free(be, o->d_tgt), be->free(be, o->d_tail), be->free(be, o->d_aux);
        be->free(be, o->d_old), be->free(be, o->d_ids), be->free(be, o->d_lp);
    }
}

void distill_objective_free(DistillObjective* o) {
    if (!o) return;
    free_buffers(o);
    free(o->z);
    free(o->tz);
    free(o);
}

// staging for N positions with K teacher ids each
static void reserve(DistillObjective* o, size_t N, size_t K) {
    if (N <= o->cap_rows && K <= o->cap_K) return;
    free_buffers(o);
    Backend* be = o->be;
    o->cap_rows = N > o->cap_rows ? N : o->cap_rows;
    o->cap_K = K > o->cap_K ? K : o->cap_K;
    const size_t n = o->cap_rows, nk = o->cap_rows * (o->cap_K ? o->cap_K : 1);
    o->w = mallocCheck(sizeof(float) * n);
    o->tgt = mallocCheck(sizeof(int) * n);
    o->tail = mallocCheck(sizeof(float) * n);
    o->aux = mallocCheck(sizeof(float) * n);
    o->old = mallocCheck(sizeof(float) * n);
    o->row_stats = mallocCheck(sizeof(DistillRowStats) * n);
    o->row_loss = mallocCheck(sizeof(double) * n);
    o->ids = mallocCheck(sizeof(int) * nk);
    o->lp = mallocCheck(sizeof(float) * nk);
    o->d_w = be->alloc(be, sizeof(float) * n);
    o->d_tgt = be->alloc(be, sizeof(int) * n);
    o->d_tail = be->alloc(be, sizeof(float) * n);
    o->d_aux = be->alloc(be, sizeof(float) * n);
    o->d_old = be->alloc(be, sizeof(float) * n);
    o->d_ids = be->alloc(be, sizeof(int) * nk);
    o->d_lp = be->alloc(be, sizeof(float) * nk);
}

// The host rows run in stages: one download of up to OBJ_STAGE_ROWS consecutive logits rows (the
// staged rows' span), then the rows in parallel, each into its own slot, then the slots summed in
// row order, so the sums are those of one row after another. One synchronous download per row
// cost a GPU trainer most of its step.

// the rows [r0, end) whose positions lie within OBJ_STAGE_ROWS of b->pos[r0] (positions increase)
static int stage_end(const DistillBatch* b, int r0) {
    int r1 = r0 + 1;
    while (r1 < b->n_rows && b->pos[r1] - b->pos[r0] < OBJ_STAGE_ROWS) r1++;
    return r1;
}

// row r (at position p) against the teacher's full distribution (tz, its staged row, becomes the
// JSD's surrogate); its host loss (the JSD), else 0
static double full_row(DistillObjective* o, int p, const float* z, float* tz, DistillLoss loss, DistillRowStats* rs) {
    distill_row_stats_full(z, tz, o->V, rs);
    if (loss == DISTILL_LOSS_JSD) return distill_row_jsd_full(z, tz, o->V, o->beta, tz);
    if (loss == DISTILL_LOSS_REVERSE_KL_SAMPLED) o->aux[p] = tz[o->tgt[p]];
    return 0.0;
}

// row r (at position p) against its record's top-k buckets (and the exact sampled log-prob where
// recorded); its host loss (the JSD), else 0
static double topk_row(DistillObjective* o, const DistillBatch* b, int r, int p, const float* z, DistillLoss loss,
                       DistillRowStats* rs) {
    const int V = o->V, K = b->K;
    int* ids = o->ids + (size_t)p * K;
    float* lp = o->lp + (size_t)p * K;
    distill_row_stats(z, V, ids, lp, o->tail[p], K, rs);
    if (loss == DISTILL_LOSS_JSD) return distill_row_jsd(z, V, ids, lp, o->tail[p], K, o->beta, lp, &o->tail[p]);
    if (loss == DISTILL_LOSS_REVERSE_KL_SAMPLED)
        o->aux[p] = !isnan(b->exact[r]) ? b->exact[r] : distill_row_sampled_lp(z, V, o->tgt[p], ids, lp, o->tail[p], K);
    return 0.0;
}

// The host rows: metrics, the JSD's surrogate and the sampled id's log-prob, against the
// teacher's full distribution when teacher, else the records' top-k; returns the weighted sum of
// the rows' host losses (the JSD).
static double host_rows(DistillObjective* o, const float* logits, const DistillBatch* b, float* teacher,
                        DistillLoss loss, DistillStats* st) {
    Backend* be = o->be;
    const int V = o->V;
    for (int r0 = 0, r1; r0 < b->n_rows; r0 = r1) {
        r1 = stage_end(b, r0);
        const int p0 = b->pos[r0];
        const size_t span = (size_t)(b->pos[r1 - 1] - p0 + 1) * V;
        be->download(be, o->z, logits + (size_t)p0 * V, sizeof(float) * span);
        if (teacher) be->download(be, o->tz, teacher + (size_t)p0 * V, sizeof(float) * span);
#pragma omp parallel for schedule(dynamic)
        for (int r = r0; r < r1; r++) {
            const int p = b->pos[r];
            const size_t at = (size_t)(p - p0) * V;
            o->row_loss[r] = teacher ? full_row(o, p, o->z + at, o->tz + at, loss, &o->row_stats[r])
                                     : topk_row(o, b, r, p, o->z + at, loss, &o->row_stats[r]);
        }
        // the JSD's surrogate replaces the teacher's rows (the others in the span go back as they came)
        if (teacher && loss == DISTILL_LOSS_JSD) be->upload(be, teacher + (size_t)p0 * V, o->tz, sizeof(float) * span);
    }
    double host_loss = 0.0;
    for (int r = 0; r < b->n_rows; r++) {
        const DistillRowStats* rs = &o->row_stats[r];
        st->kl_forward += rs->kl_forward;
        st->kl_reverse += rs->kl_reverse;
        st->agree += rs->agree;
        st->entropy += rs->entropy;
        host_loss += (double)b->weight * o->row_loss[r];
    }
    return host_loss;
}

void distill_objective_run(DistillObjective* o, const float* logits, const DistillBatch* b, float* teacher, float* dz,
                           DistillStats* st) {
    Backend* be = o->be;
    const int N = b->B * b->T, V = o->V, K = teacher ? 0 : b->K;
    DistillLoss loss = o->loss;
    if (loss == DISTILL_LOSS_JSD && o->beta <= 0.0) loss = DISTILL_LOSS_FORWARD_KL;
    if (loss == DISTILL_LOSS_JSD && o->beta >= 1.0) loss = DISTILL_LOSS_REVERSE_KL;
    if (!teacher && loss != DISTILL_LOSS_SFT && K == 0)
        fatal("distill objective: the loss needs the teacher's top-k (K = 0) or its full distribution");
    reserve(o, (size_t)N, (size_t)K);

    // stage the rows at their positions; every other position has weight 0 (skipped by the blocks)
    memset(o->w, 0, sizeof(float) * (size_t)N);
    for (int p = 0; p < N; p++) o->tgt[p] = -1;
    if (K) memset(o->ids, 0, sizeof(int) * (size_t)N * K), memset(o->lp, 0, sizeof(float) * (size_t)N * K);
    memset(o->tail, 0, sizeof(float) * (size_t)N);
    memset(o->aux, 0, sizeof(float) * (size_t)N);
    memset(o->old, 0, sizeof(float) * (size_t)N);
    for (int r = 0; r < b->n_rows; r++) {
        const int p = b->pos[r];
        o->w[p] = b->weight;
        o->tgt[p] = b->target[r];
        if (K) memcpy(o->ids + (size_t)p * K, b->ids + (size_t)r * K, sizeof(int) * (size_t)K);
        if (K) memcpy(o->lp + (size_t)p * K, b->lp + (size_t)r * K, sizeof(float) * (size_t)K);
        o->tail[p] = b->tail[r];
        o->old[p] = b->old_lp[r];
    }
    const double host_loss = host_rows(o, logits, b, teacher, loss, st);
    be->upload(be, o->d_w, o->w, sizeof(float) * (size_t)N);
    be->upload(be, o->d_tgt, o->tgt, sizeof(int) * (size_t)N);
    if (K) be->upload(be, o->d_ids, o->ids, sizeof(int) * (size_t)N * K);
    if (K) be->upload(be, o->d_lp, o->lp, sizeof(float) * (size_t)N * K);
    be->upload(be, o->d_tail, o->tail, sizeof(float) * (size_t)N);
    be->upload(be, o->d_aux, o->aux, sizeof(float) * (size_t)N);
    be->upload(be, o->d_old, o->old, sizeof(float) * (size_t)N);

    switch (loss) {
    case DISTILL_LOSS_FORWARD_KL:
        st->loss += teacher ? loss_kl_full(be, logits, teacher, o->d_w, N, V, 0, NULL, dz)
                            : loss_kl_topk(be, logits, o->d_ids, o->d_lp, o->d_tail, o->d_w, N, V, K, 0, NULL, dz);
        break;
    case DISTILL_LOSS_SFT:
        st->loss += loss_cross_entropy(be, logits, o->d_tgt, o->d_w, N, V, NULL, dz);
        break;
    case DISTILL_LOSS_REVERSE_KL:
        st->loss += teacher ? loss_kl_full(be, logits, teacher, o->d_w, N, V, 1, NULL, dz)
                            : loss_kl_topk(be, logits, o->d_ids, o->d_lp, o->d_tail, o->d_w, N, V, K, 1, NULL, dz);
        break;
    case DISTILL_LOSS_REVERSE_KL_SAMPLED:
        st->loss += loss_kl_sampled(be, logits, o->d_tgt, o->d_aux, o->d_old, o->d_w, N, V, NULL, dz);
        break;
    case DISTILL_LOSS_JSD:
        // the block's value is the KL to the surrogate, not the JSD: report the host value
        if (teacher)
            loss_kl_full(be, logits, teacher, o->d_w, N, V, 1, NULL, dz);
        else
            loss_kl_topk(be, logits, o->d_ids, o->d_lp, o->d_tail, o->d_w, N, V, K, 1, NULL, dz);
        st->loss += host_loss;
        break;
    }
}
