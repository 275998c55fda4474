// Sampling from one position's logits (see decode.h): greedy, temperature, top-k and nucleus
// (top-p) draws from a caller's Rng, and the temperature-1 statistics recorded with every token
// (its log-prob, the top-k log-probs and the tail mass).
//
// Order of candidates everywhere: larger logit first, ties to the lower id. A draw takes exactly
// one rng_uniform (none when greedy), so a slot's stream depends only on its own logits.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/check.h"
#include "common/log.h"
#include "model/decode.h"
#include "model/loss.h"
#include "model/sample.h"

typedef struct {
    float z;
    int id;
} Cand;

static int cand_before(Cand a, Cand b) { return a.z > b.z || (a.z == b.z && a.id < b.id); }

static int cand_cmp(const void* pa, const void* pb) {
    const Cand a = *(const Cand*)pa, b = *(const Cand*)pb;
    return cand_before(a, b) ? -1 : cand_before(b, a) ? 1 : 0;
}

// ----------------------------------------------------------------------------
// parameters

int sampling_params_check(const SamplingParams* p, int V, char* err, size_t errlen) {
    if (!(p->temperature >= 0.0f) || isinf(p->temperature)) {
        snprintf(err, errlen, "temperature must be finite and >= 0, got %g", p->temperature);
        return -1;
    }
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f)) {
        snprintf(err, errlen, "top_p must be in (0, 1], got %g", p->top_p);
        return -1;
    }
    if (p->top_k < 0) {
        snprintf(err, errlen, "top_k must be >= 0 (0 = no limit), got %d", p->top_k);
        return -1;
    }
    const int kmax = V < LOSS_TOPK_MAX ? V : LOSS_TOPK_MAX;
    if (p->record_topk < 0 || p->record_topk > kmax) {
        snprintf(err, errlen, "record_topk must be in 0..%d, got %d", kmax, p->record_topk);
        return -1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// top-k selection: a heap of the k best seen so far with the worst at the root

static void heap_down(Cand* h, int n, int i) {
    for (;;) {
        int w = i;
        const int l = 2 * i + 1, r = l + 1;
        if (l < n && cand_before(h[w], h[l])) w = l;
        if (r < n && cand_before(h[w], h[r])) w = r;
        if (w == i) return;
        const Cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

// the k (<= V) best of z into out, sorted best first
static void top_k(const float* z, int V, int k, Cand* out) {
    if (k <= 0) return;
    for (int v = 0; v < k; v++) out[v] = (Cand){z[v], v};
    for (int i = k / 2 - 1; i >= 0; i--) heap_down(out, k, i);
    for (int v = k; v < V; v++) {
        const Cand c = {z[v], v};
        if (cand_before(c, out[0])) {
            out[0] = c;
            heap_down(out, k, 0);
        }
    }
    qsort(out, (size_t)k, sizeof(Cand), cand_cmp);
}

// ----------------------------------------------------------------------------
// statistics at temperature 1

void sample_row_record(const float* z, int V, double lse, int id, int K, float* lp, int* topk_ids, float* topk_lp,
                       float* tail) {
    *lp = (float)(z[id] - lse);
    if (K <= 0) return;
    Cand* c = mallocCheck((size_t)K * sizeof(Cand));
    top_k(z, V, K, c);
    double mass = 0.0;
    for (int i = 0; i < K; i++) {
        topk_ids[i] = c[i].id;
        topk_lp[i] = (float)(c[i].z - lse);
        mass += exp(c[i].z - lse);
    }
    const double rest = 1.0 - mass;
    *tail = (float)(rest < 0.0 ? 0.0 : rest > 1.0 ? 1.0 : rest);
    free(c);
}

static void record(const float* z, int V, double lse, int id, int k, SampledToken* out) {
    out->id = id;
    out->tail_mass = 0.0f;
    sample_row_record(z, V, lse, id, k, &out->logprob, out->topk_ids, out->topk_lp, &out->tail_mass);
}

void score_token(const float* logits, int V, int id, int record_topk, SampledToken* out) {
    if (id < 0 || id >= V) fatal("score_token: id %d outside the vocabulary [0, %d)", id, V);
    record(logits, V, loss_row_logsumexp(logits, V), id, record_topk, out);
}

// ----------------------------------------------------------------------------
// drawing

static int argmax(const float* z, int V) {
    int best = 0;
    for (int v = 1; v < V; v++) {
        if (z[v] > z[best]) best = v;
    }
    return best;
}

// one draw at u from candidates c[0..n) with weights w (sum total), walked in order
static int draw(const Cand* c, const double* w, int n, double total, double u) {
    const double target = u * total;
    double cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += w[i];
        if (target < cum) return c[i].id;
    }
    // u within rounding of the total: the last candidate with weight
    for (int i = n - 1; i > 0; i--) {
        if (w[i] > 0.0) return c[i].id;
    }
    return c[0].id;
}

int sample_row_id(const float* z, int V, float temperature, float top_p, int top_k_limit, double u) {
    if (temperature == 0.0f) return argmax(z, V);
    const double inv_t = 1.0 / temperature;
    const float zmax = z[argmax(z, V)];
    const int k = top_k_limit > 0 && top_k_limit < V ? top_k_limit : V;
    Cand* c = mallocCheck((size_t)V * sizeof(Cand));
    double* w = mallocCheck((size_t)V * sizeof(double));
    int n;
    double base = 0.0; // mass of the set top_p is a fraction of: the top-k, else the vocabulary
    if (k < V) {
        top_k(z, V, k, c);
        n = k;
    } else if (top_p < 1.0f) {
        // the nucleus lies among the tokens of weight >= eps (the mass outside them is below
        // V eps = (1 - top_p) / 2 of the total), so only those are sorted
        for (int v = 0; v < V; v++) base += (w[v] = exp((z[v] - zmax) * inv_t));
        const double eps = base * (1.0 - top_p) / (2.0 * V);
        n = 0;
        for (int v = 0; v < V; v++) {
            if (w[v] >= eps) c[n++] = (Cand){z[v], v};
        }
        qsort(c, (size_t)n, sizeof(Cand), cand_cmp);
    } else {
        // the whole vocabulary in id order
        for (int v = 0; v < V; v++) c[v] = (Cand){z[v], v};
        n = V;
    }
    double total = 0.0;
    for (int i = 0; i < n; i++) total += (w[i] = exp((c[i].z - zmax) * inv_t));
    if (top_p < 1.0f) {
        // nucleus: the shortest prefix (best first) holding top_p of the set's mass
        const double want = top_p * (k < V ? total : base);
        double cum = 0.0;
        int m = 0;
        while (m < n && cum < want) cum += w[m++];
        n = m;
        total = cum;
    }
    const int id = draw(c, w, n, total, u);
    free(c);
    free(w);
    return id;
}

void sample_token(const float* logits, int V, const SamplingParams* p, Rng* rng, SampledToken* out) {
    char msg[256];
    if (sampling_params_check(p, V, msg, sizeof msg) != 0) fatal("sample_token: %s", msg);
    // exactly one uniform per draw, none when greedy
    const double u = p->temperature == 0.0f ? 0.0 : rng_uniform(rng);
    const int id = sample_row_id(logits, V, p->temperature, p->top_p, p->top_k, u);
    record(logits, V, loss_row_logsumexp(logits, V), id, p->record_topk, out);
}
