// Loss building blocks: the backend dispatch with argument checks, and the host row kernels
// that the CPU backend runs (the math is written out in loss.h).
#include "model/loss.h"

#include <math.h>

#include "common/log.h"

// ----------------------------------------------------------------------------
// dispatch

static void check_shape(const char* what, int N, int V) {
    if (N < 0 || V <= 0) fatal("%s: bad shape N=%d V=%d", what, N, V);
}

void loss_softmax(Backend* be, float* y, const float* z, int N, int V) {
    check_shape("loss_softmax", N, V);
    be->softmax(be, y, z, N, V);
}

void loss_log_softmax(Backend* be, float* y, const float* z, int N, int V) {
    check_shape("loss_log_softmax", N, V);
    be->log_softmax(be, y, z, N, V);
}

double loss_cross_entropy(Backend* be, const float* z, const int* targets, const float* w, int N, int V,
                          float* losses, float* dz, LossDzMode mode) {
    check_shape("loss_cross_entropy", N, V);
    return be->cross_entropy(be, z, targets, w, N, V, losses, dz, mode);
}

double loss_kl_full(Backend* be, const float* z, const float* teacher_lp, const float* w, int N, int V, int reverse,
                    float* losses, float* dz, LossDzMode mode) {
    check_shape("loss_kl_full", N, V);
    return be->kl_full(be, z, teacher_lp, w, N, V, reverse != 0, losses, dz, mode);
}

double loss_kl_topk(Backend* be, const float* z, const int* ids, const float* teacher_lp, const float* teacher_tail,
                    const float* w, int N, int V, int K, int reverse, float* losses, float* dz, LossDzMode mode) {
    check_shape("loss_kl_topk", N, V);
    if (K <= 0 || K > V) fatal("loss_kl_topk: K=%d must be in [1, V=%d]", K, V);
    return be->kl_topk(be, z, ids, teacher_lp, teacher_tail, w, N, V, K, reverse != 0, losses, dz, mode);
}

double loss_kl_sampled(Backend* be, const float* z, const int* ids, const float* teacher_lp, const float* old_lp,
                       const float* w, int N, int V, float* losses, float* dz, LossDzMode mode) {
    check_shape("loss_kl_sampled", N, V);
    return be->kl_sampled(be, z, ids, teacher_lp, old_lp, w, N, V, losses, dz, mode);
}

void loss_entropy(Backend* be, const float* z, const float* w, int N, int V, double* entropy, int* argmax) {
    check_shape("loss_entropy", N, V);
    be->entropy(be, z, w, N, V, entropy, argmax);
}

static void check_beta(const char* what, double beta) {
    if (!(beta > 0.0 && beta < 1.0)) fatal("%s: beta %g must be in (0, 1)", what, beta);
}

double loss_jsd_topk(Backend* be, const float* z, const int* ids, const float* lp, const float* tail, const float* w,
                     int N, int V, int K, double beta, float* lp_s, float* tail_s) {
    check_shape("loss_jsd_topk", N, V);
    check_beta("loss_jsd_topk", beta);
    if (K <= 0 || K > V || K > LOSS_TOPK_MAX)
        fatal("loss_jsd_topk: K=%d must be in [1, min(V=%d, %d)]", K, V, LOSS_TOPK_MAX);
    return be->jsd_topk(be, z, ids, lp, tail, w, N, V, K, beta, lp_s, tail_s);
}

double loss_jsd_full(Backend* be, const float* z, const float* lp, const float* w, int N, int V, double beta,
                     float* lp_s) {
    check_shape("loss_jsd_full", N, V);
    check_beta("loss_jsd_full", beta);
    return be->jsd_full(be, z, lp, w, N, V, beta, lp_s);
}

void loss_sampled_lp(Backend* be, float* lp_y, const float* z, const int* y, const int* ids, const float* lp,
                     const float* tail, const float* w, int N, int V, int K) {
    check_shape("loss_sampled_lp", N, V);
    if (K <= 0 || K > V || K > LOSS_TOPK_MAX)
        fatal("loss_sampled_lp: K=%d must be in [1, min(V=%d, %d)]", K, V, LOSS_TOPK_MAX);
    be->sampled_lp(be, lp_y, z, y, ids, lp, tail, w, N, V, K);
}

// ----------------------------------------------------------------------------
// row kernels

static float row_max(const float* z, int V) {
    float m = z[0];
    for (int v = 1; v < V; v++) m = z[v] > m ? z[v] : m;
    return m;
}

double loss_row_logsumexp(const float* z, int V) {
    float m = row_max(z, V);
    double s = 0.0;
    for (int v = 0; v < V; v++) s += expf(z[v] - m);
    return (double)m + log(s);
}

static void check_id(const char* what, int id, int V) {
    if (id < 0 || id >= V) fatal("%s: token id %d outside the vocabulary [0, %d)", what, id, V);
}

float loss_row_cross_entropy(const float* z, int V, int target, float w, float* dz) {
    check_id("cross_entropy", target, V);
    double lse = loss_row_logsumexp(z, V);
    if (dz) {
        const float lsef = (float)lse;
        for (int v = 0; v < V; v++) dz[v] += w * expf(z[v] - lsef);
        dz[target] -= w;
    }
    return (float)(lse - z[target]);
}

float loss_row_kl_full(const float* z, const float* lp, int V, int reverse, float w, float* dz) {
    double lse = loss_row_logsumexp(z, V);
    double kl = 0.0;
    if (!reverse) {
        double psum = 0.0;
        for (int v = 0; v < V; v++) {
            double p = expf(lp[v]);
            if (p > 0.0) kl += p * ((double)lp[v] - (z[v] - lse));
            psum += p;
        }
        if (dz) {
            const float lsef = (float)lse, psumf = (float)psum;
            for (int v = 0; v < V; v++) dz[v] += w * (expf(z[v] - lsef) * psumf - expf(lp[v]));
        }
    } else {
        const double lp_floor = log(LOSS_PROB_FLOOR);
        for (int v = 0; v < V; v++) {
            double lq = z[v] - lse;
            kl += expf((float)lq) * (lq - fmax((double)lp[v], lp_floor));
        }
        if (dz) {
            for (int v = 0; v < V; v++) {
                double lq = z[v] - lse;
                dz[v] += w * expf((float)lq) * (float)(lq - fmax((double)lp[v], lp_floor) - kl);
            }
        }
    }
    return (float)kl;
}

float loss_row_kl_topk(const float* z, int V, const int* ids, const float* lp, float tail, int K, int reverse, float w,
                       float* dz) {
    for (int i = 0; i < K; i++) {
        check_id("kl_topk", ids[i], V);
        for (int j = 0; j < i; j++) {
            if (ids[j] == ids[i]) fatal("kl_topk: token id %d appears twice in one row's top-k", ids[i]);
        }
    }
    if (K > LOSS_TOPK_MAX) fatal("kl_topk: K = %d exceeds LOSS_TOPK_MAX = %d", K, LOSS_TOPK_MAX);
    if (!(tail >= 0.0f)) fatal("kl_topk: tail mass %g must be >= 0", tail);
    float saved[LOSS_TOPK_MAX]; // dz of the top-k ids before this row's update
    const double log_floor = log(LOSS_PROB_FLOOR);
    // student: Z over the vocabulary, Zt over the ids outside the top-k, both relative to max z
    float m = row_max(z, V);
    double Z = 0.0, Zs = 0.0;
    for (int v = 0; v < V; v++) Z += expf(z[v] - m);
    for (int i = 0; i < K; i++) Zs += expf(z[ids[i]] - m);
    double Zt = K < V && Z - Zs > 0.0 ? Z - Zs : 0.0; // K == V: no tail, exactly
    double logZ = log(Z);
    double Qt = Zt / Z, lQt = Zt > 0.0 ? fmax(log(Zt) - logZ, log_floor) : log_floor;
    // teacher: renormalised K + 1 buckets
    double S = tail;
    for (int i = 0; i < K; i++) S += exp((double)lp[i]);
    double logS = log(S);
    double Pt = tail / S, lPt = tail > 0.0f ? fmax(log((double)tail) - logS, log_floor) : log_floor;

    double kl = 0.0;
    if (!reverse) {
        for (int i = 0; i < K; i++) {
            double P = exp((double)lp[i] - logS);
            double lQ = fmax(z[ids[i]] - m - logZ, log_floor);
            if (P > 0.0) kl += P * ((double)lp[i] - logS - lQ);
        }
        if (Pt > 0.0) kl += Pt * (lPt - lQt);
        if (dz) {
            // every id as if in the tail, then the top-k ids overwritten from their saved values
            for (int i = 0; i < K; i++) saved[i] = dz[ids[i]];
            const float inv_Z = (float)(1.0 / Z), tail_scale = Zt > 0.0 ? (float)(Pt / Zt) : 0.0f;
            for (int v = 0; v < V; v++) dz[v] += w * expf(z[v] - m) * (inv_Z - tail_scale);
            for (int i = 0; i < K; i++) {
                dz[ids[i]] = saved[i] + w * (float)(exp(z[ids[i]] - m) / Z - exp((double)lp[i] - logS));
            }
        }
    } else {
        double gt = lQt - lPt;
        for (int i = 0; i < K; i++) {
            double lQ = z[ids[i]] - m - logZ;
            kl += exp(lQ) * (fmax(lQ, log_floor) - fmax((double)lp[i] - logS, log_floor));
        }
        kl += Qt * gt;
        if (dz) {
            for (int i = 0; i < K; i++) saved[i] = dz[ids[i]];
            const float c = (float)(gt - kl), shift = (float)(m + logZ);
            for (int v = 0; v < V; v++) dz[v] += w * expf(z[v] - shift) * c;
            for (int i = 0; i < K; i++) {
                double lQ = z[ids[i]] - m - logZ;
                double gi = fmax(lQ, log_floor) - fmax((double)lp[i] - logS, log_floor);
                dz[ids[i]] = saved[i] + w * (float)(exp(lQ) * (gi - kl));
            }
        }
    }
    return (float)kl;
}

float loss_row_kl_sampled(const float* z, int V, int id, float lp_t, const float* old_lp, float w, float* dz) {
    check_id("kl_sampled", id, V);
    double lse = loss_row_logsumexp(z, V);
    double lq = z[id] - lse;
    double rho = old_lp ? exp(lq - (double)*old_lp) : 1.0;
    double c = rho * (lq - (double)lp_t);
    if (dz) {
        const float wc = w * (float)c, lsef = (float)lse;
        for (int v = 0; v < V; v++) dz[v] -= wc * expf(z[v] - lsef);
        dz[id] += wc;
    }
    return (float)c;
}

int loss_row_argmax(const float* z, int V) {
    int arg = 0;
    for (int v = 1; v < V; v++) arg = z[v] > z[arg] ? v : arg;
    return arg;
}

double loss_row_entropy(const float* z, int V, int* argmax) {
    const double lse = loss_row_logsumexp(z, V);
    double h = 0.0;
    int arg = 0;
    for (int v = 0; v < V; v++) {
        const double lq = (double)z[v] - lse;
        h -= exp(lq) * lq;
        if (z[v] > z[arg]) arg = v;
    }
    *argmax = arg;
    return h;
}

// The K + 1 buckets of one row, computed as loss_row_kl_topk does (exponentials relative to the
// max logit summed in double, the student tail summed directly, the teacher renormalised).
typedef struct {
    double lse;                                          // log-sum-exp of z
    double lQ[LOSS_TOPK_MAX + 1], lP[LOSS_TOPK_MAX + 1]; // bucket log-probs, floored; index K = tail
    double Q[LOSS_TOPK_MAX + 1], P[LOSS_TOPK_MAX + 1];
} Buckets;

static void buckets(const float* z, int V, const int* ids, const float* lp, float tail, int K, Buckets* b) {
    const double log_floor = log(LOSS_PROB_FLOOR);
    const float m = row_max(z, V);
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

double loss_row_jsd_topk(const float* z, int V, const int* ids, const float* lp, float tail, int K, double beta,
                         float* lp_s, float* tail_s) {
    Buckets bk, *b = &bk;
    buckets(z, V, ids, lp, tail, K, b);
    const double log_floor = log(LOSS_PROB_FLOOR);
    double jsd = 0.0;
    for (int i = 0; i <= K; i++) {
        const double M = beta * b->P[i] + (1.0 - beta) * b->Q[i];
        const double lM = M > 0.0 ? fmax(log(M), log_floor) : log_floor;
        if (b->P[i] > 0.0) jsd += beta * b->P[i] * (b->lP[i] - lM);
        if (b->Q[i] > 0.0) jsd += (1.0 - beta) * b->Q[i] * (b->lQ[i] - lM);
        const double ls = beta * b->lQ[i] + (1.0 - beta) * lM; // log of the surrogate bucket
        if (i < K)
            lp_s[i] = (float)ls;
        else
            *tail_s = b->Q[K] > 0.0 ? (float)exp(ls) : 0.0f;
    }
    return jsd;
}

float loss_row_sampled_lp(const float* z, int V, int y, const int* ids, const float* lp, float tail, int K) {
    check_id("sampled_lp", y, V);
    Buckets b;
    buckets(z, V, ids, lp, tail, K, &b);
    double out = b.lP[K] + (z[y] - b.lse) - b.lQ[K];
    for (int i = 0; i < K; i++) {
        if (ids[i] == y) out = b.lP[i];
    }
    return (float)out;
}

double loss_row_jsd_full(const float* z, const float* lp, int V, double beta, float* lp_s) {
    const double lse = loss_row_logsumexp(z, V), log_floor = log(LOSS_PROB_FLOOR);
    double jsd = 0.0;
    for (int v = 0; v < V; v++) {
        const double lq = (double)z[v] - lse, q = exp(lq), p = exp((double)lp[v]);
        const double M = beta * p + (1.0 - beta) * q, lM = M > 0.0 ? fmax(log(M), log_floor) : log_floor;
        if (p > 0.0) jsd += beta * p * (fmax((double)lp[v], log_floor) - lM);
        if (q > 0.0) jsd += (1.0 - beta) * q * (fmax(lq, log_floor) - lM);
        lp_s[v] = (float)(beta * fmax(lq, log_floor) + (1.0 - beta) * lM);
    }
    return jsd;
}
