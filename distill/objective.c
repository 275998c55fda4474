// The distillation objective of one micro-batch (see objective.h): the batch built from
// student-view records, the loss composed from the model/loss.h blocks, the per-row metrics
// computed by the backend where the logits are, and their host reference.
#include "distill/objective.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "model/loss.h"

// ----------------------------------------------------------------------------
// host reference of the metrics

// the teacher's top-1 id of a top-k row (records are descending; do not rely on it)
static int teacher_top(const int* ids, const float* lp, int K) {
    int top = 0;
    for (int i = 1; i < K; i++) {
        if (lp[i] > lp[top] || (lp[i] == lp[top] && ids[i] < ids[top])) top = i;
    }
    return ids[top];
}

void distill_row_stats(const float* z, int V, const int* ids, const float* lp, float tail, int K,
                       DistillRowStats* out) {
    int arg;
    out->entropy = loss_row_entropy(z, V, &arg);
    if (K == 0) {
        out->kl_forward = out->kl_reverse = out->agree = NAN;
        return;
    }
    out->agree = arg == teacher_top(ids, lp, K) ? 1.0 : 0.0;
    out->kl_forward = loss_row_kl_topk(z, V, ids, lp, tail, K, 0, 0.0f, NULL);
    out->kl_reverse = loss_row_kl_topk(z, V, ids, lp, tail, K, 1, 0.0f, NULL);
}

void distill_row_stats_full(const float* z, const float* lp, int V, DistillRowStats* out) {
    int arg;
    out->entropy = loss_row_entropy(z, V, &arg);
    out->agree = arg == loss_row_argmax(lp, V) ? 1.0 : 0.0;
    out->kl_forward = loss_row_kl_full(z, lp, V, 0, 0.0f, NULL);
    out->kl_reverse = loss_row_kl_full(z, lp, V, 1, 0.0f, NULL);
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
    float* mask; // 1 at the rows, for the metrics (which do not depend on the rows' weight)
    int* tgt;
    int* ids;
    float* lp;
    float* tail;
    float* aux; // sampled: the teacher's log-prob of the target (NaN: from the top-k row)
    float* old;
    // the metrics' per-position results, downloaded
    double* entropy;
    int* argmax;   // the student's
    int* t_argmax; // the full teacher's
    float* kl_fwd;
    float* kl_rev;
    // backend copies
    float* d_w;
    float* d_mask;
    int* d_tgt;
    int* d_ids;
    float* d_lp;
    float* d_tail;
    float* d_aux;
    float* d_old;
    double* d_entropy;
    int* d_argmax;
    int* d_t_argmax;
    float* d_kl_fwd;
    float* d_kl_rev;
};

DistillObjective* distill_objective_create(Backend* be, DistillLoss loss, double jsd_beta, int V) {
    DistillObjective* o = callocCheck(1, sizeof(DistillObjective));
    o->be = be;
    o->loss = loss;
    o->beta = jsd_beta;
    o->V = V;
    return o;
}

static void free_buffers(DistillObjective* o) {
    Backend* be = o->be;
    free(o->w), free(o->mask), free(o->tgt), free(o->ids), free(o->lp), free(o->tail), free(o->aux), free(o->old);
    free(o->entropy), free(o->argmax), free(o->t_argmax), free(o->kl_fwd), free(o->kl_rev);
    if (o->d_w) {
        void* dev[] = {o->d_w,   o->d_mask, o->d_tgt,     o->d_ids,      o->d_lp,      o->d_tail,  o->d_aux,
                       o->d_old, o->d_entropy, o->d_argmax, o->d_t_argmax, o->d_kl_fwd, o->d_kl_rev};
        for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++) be->free(be, dev[i]);
    }
}

void distill_objective_free(DistillObjective* o) {
    if (!o) return;
    free_buffers(o);
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
    const size_t f = sizeof(float) * n, i = sizeof(int) * n, d = sizeof(double) * n;
    o->w = mallocCheck(f), o->mask = mallocCheck(f), o->tgt = mallocCheck(i), o->tail = mallocCheck(f);
    o->aux = mallocCheck(f), o->old = mallocCheck(f);
    o->ids = mallocCheck(sizeof(int) * nk), o->lp = mallocCheck(sizeof(float) * nk);
    o->entropy = mallocCheck(d), o->argmax = mallocCheck(i), o->t_argmax = mallocCheck(i);
    o->kl_fwd = mallocCheck(f), o->kl_rev = mallocCheck(f);
    o->d_w = be->alloc(be, f), o->d_mask = be->alloc(be, f), o->d_tgt = be->alloc(be, i);
    o->d_tail = be->alloc(be, f), o->d_aux = be->alloc(be, f), o->d_old = be->alloc(be, f);
    o->d_ids = be->alloc(be, sizeof(int) * nk), o->d_lp = be->alloc(be, sizeof(float) * nk);
    o->d_entropy = be->alloc(be, d);
    o->d_argmax = be->alloc(be, i), o->d_t_argmax = be->alloc(be, i);
    o->d_kl_fwd = be->alloc(be, f), o->d_kl_rev = be->alloc(be, f);
}

// The rows' metrics (distill_row_stats, distill_row_stats_full): computed where the logits are,
// by the backend's row ops, then summed on the host in row order. Runs before the JSD rewrites
// the teacher's rows into its surrogate.
static void row_metrics(DistillObjective* o, const float* logits, const DistillBatch* b, const float* teacher, int K,
                        DistillStats* st) {
    Backend* be = o->be;
    const int N = b->B * b->T, V = o->V, kl = teacher || K;
    const size_t f = sizeof(float) * (size_t)N, i = sizeof(int) * (size_t)N;
    loss_entropy(be, logits, o->d_mask, N, V, o->d_entropy, o->d_argmax);
    if (teacher) {
        loss_entropy(be, teacher, o->d_mask, N, V, NULL, o->d_t_argmax); // the teacher's argmax
        loss_kl_full(be, logits, teacher, o->d_mask, N, V, 0, o->d_kl_fwd, NULL, LOSS_DZ_SET);
        loss_kl_full(be, logits, teacher, o->d_mask, N, V, 1, o->d_kl_rev, NULL, LOSS_DZ_SET);
        be->download(be, o->t_argmax, o->d_t_argmax, i);
    } else if (K) {
        loss_kl_topk(be, logits, o->d_ids, o->d_lp, o->d_tail, o->d_mask, N, V, K, 0, o->d_kl_fwd, NULL, LOSS_DZ_SET);
        loss_kl_topk(be, logits, o->d_ids, o->d_lp, o->d_tail, o->d_mask, N, V, K, 1, o->d_kl_rev, NULL, LOSS_DZ_SET);
    }
    be->download(be, o->entropy, o->d_entropy, sizeof(double) * (size_t)N);
    be->download(be, o->argmax, o->d_argmax, i);
    if (kl) be->download(be, o->kl_fwd, o->d_kl_fwd, f), be->download(be, o->kl_rev, o->d_kl_rev, f);
    for (int r = 0; r < b->n_rows; r++) {
        const int p = b->pos[r];
        if (kl) {
            const int top = teacher ? o->t_argmax[p] : teacher_top(o->ids + (size_t)p * K, o->lp + (size_t)p * K, K);
            st->kl_forward += o->kl_fwd[p];
            st->kl_reverse += o->kl_rev[p];
            st->agree += o->argmax[p] == top ? 1.0 : 0.0;
        }
        st->entropy += o->entropy[p];
    }
    if (!kl && b->n_rows > 0) st->kl_forward = st->kl_reverse = st->agree = NAN; // no teacher rows to compare
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
    const size_t f = sizeof(float) * (size_t)N;
    memset(o->w, 0, f), memset(o->mask, 0, f), memset(o->tail, 0, f), memset(o->aux, 0, f), memset(o->old, 0, f);
    for (int p = 0; p < N; p++) o->tgt[p] = -1;
    if (K) memset(o->ids, 0, sizeof(int) * (size_t)N * K), memset(o->lp, 0, sizeof(float) * (size_t)N * K);
    for (int r = 0; r < b->n_rows; r++) {
        const int p = b->pos[r];
        o->w[p] = b->weight;
        o->mask[p] = 1.0f;
        o->tgt[p] = b->target[r];
        if (K) memcpy(o->ids + (size_t)p * K, b->ids + (size_t)r * K, sizeof(int) * (size_t)K);
        if (K) memcpy(o->lp + (size_t)p * K, b->lp + (size_t)r * K, sizeof(float) * (size_t)K);
        o->tail[p] = b->tail[r];
        o->old[p] = b->old_lp[r];
        o->aux[p] = b->exact[r]; // NaN where the record has none
    }
    be->upload(be, o->d_w, o->w, f);
    be->upload(be, o->d_mask, o->mask, f);
    be->upload(be, o->d_tgt, o->tgt, sizeof(int) * (size_t)N);
    if (K) be->upload(be, o->d_ids, o->ids, sizeof(int) * (size_t)N * K);
    if (K) be->upload(be, o->d_lp, o->lp, sizeof(float) * (size_t)N * K);
    be->upload(be, o->d_tail, o->tail, f);
    be->upload(be, o->d_aux, o->aux, f);
    be->upload(be, o->d_old, o->old, f);
    row_metrics(o, logits, b, teacher, K, st);

    switch (loss) {
    case DISTILL_LOSS_FORWARD_KL:
        st->loss += teacher ? loss_kl_full(be, logits, teacher, o->d_w, N, V, 0, NULL, dz, LOSS_DZ_SET)
                            : loss_kl_topk(be, logits, o->d_ids, o->d_lp, o->d_tail, o->d_w, N, V, K, 0, NULL, dz,
                                           LOSS_DZ_SET);
        break;
    case DISTILL_LOSS_SFT:
        st->loss += loss_cross_entropy(be, logits, o->d_tgt, o->d_w, N, V, NULL, dz, LOSS_DZ_SET);
        break;
    case DISTILL_LOSS_REVERSE_KL:
        st->loss += teacher ? loss_kl_full(be, logits, teacher, o->d_w, N, V, 1, NULL, dz, LOSS_DZ_SET)
                            : loss_kl_topk(be, logits, o->d_ids, o->d_lp, o->d_tail, o->d_w, N, V, K, 1, NULL, dz,
                                           LOSS_DZ_SET);
        break;
    case DISTILL_LOSS_REVERSE_KL_SAMPLED:
        // the teacher's log-prob of the target: from its full row, else the record's exact one,
        // else from the top-k row
        if (teacher)
            be->pick(be, o->d_aux, teacher, o->d_tgt, N, V);
        else
            loss_sampled_lp(be, o->d_aux, logits, o->d_tgt, o->d_ids, o->d_lp, o->d_tail, o->d_mask, N, V, K);
        st->loss += loss_kl_sampled(be, logits, o->d_tgt, o->d_aux, o->d_old, o->d_w, N, V, NULL, dz, LOSS_DZ_SET);
        break;
    case DISTILL_LOSS_JSD:
        // the surrogate replaces the teacher's rows in place; the reverse block's value is the KL to
        // the surrogate, not the JSD: report the JSD
        if (teacher) {
            st->loss += loss_jsd_full(be, logits, teacher, o->d_w, N, V, o->beta, teacher);
            loss_kl_full(be, logits, teacher, o->d_w, N, V, 1, NULL, dz, LOSS_DZ_SET);
        } else {
            st->loss += loss_jsd_topk(be, logits, o->d_ids, o->d_lp, o->d_tail, o->d_w, N, V, K, o->beta, o->d_lp,
                                      o->d_tail);
            loss_kl_topk(be, logits, o->d_ids, o->d_lp, o->d_tail, o->d_w, N, V, K, 1, NULL, dz, LOSS_DZ_SET);
        }
        break;
    }
}
