// Sampling from one position's logits: greedy, the frequencies of temperature / top-k / top-p
// draws against their exact distributions (chi-square), the recorded temperature-1 statistics
// (log-prob, top-k, tail mass), determinism per seed, and parameter checks.
//
// Frequency check: 20000 draws per setting from a fixed 8-token distribution; the chi-square
// statistic over the kept tokens must stay below the 99.9% quantile of its degrees of freedom
// (Wilson-Hilferty approximation); tokens outside the kept set must never be drawn. Seeds are
// fixed, so the test is deterministic; the bound says how unlikely a failure would be by chance.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "model/decode.h"
#include "model/loss.h"

#define NV 8
#define DRAWS 20000

static const float logits8[NV] = {1.0f, 2.5f, -0.5f, 2.0f, 0.3f, 2.5f, -3.0f, 1.2f};

// ----------------------------------------------------------------------------
// the exact distribution of a setting (independent of sample.c: sorts all tokens)

static void expected(const float* z, int V, const SamplingParams* p, double* prob) {
    int order[64];
    for (int i = 0; i < V; i++) order[i] = i;
    for (int i = 0; i < V; i++) {
        for (int j = i + 1; j < V; j++) {
            const int a = order[i], b = order[j];
            if (z[b] > z[a] || (z[b] == z[a] && b < a)) {
                order[i] = b;
                order[j] = a;
            }
        }
    }
    const int k = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    double w[64], total = 0.0;
    for (int i = 0; i < V; i++) {
        w[i] = i < k ? exp((z[order[i]] - z[order[0]]) / p->temperature) : 0.0;
        total += w[i];
    }
    // nucleus: keep token i (best first) while the mass before it is below top_p
    double before = 0.0, kept = 0.0;
    for (int i = 0; i < V; i++) {
        if (before >= p->top_p * total) w[i] = 0.0;
        before += w[i] > 0.0 ? w[i] : 0.0;
        kept += w[i];
    }
    for (int i = 0; i < V; i++) prob[order[i]] = w[i] / kept;
}

// 99.9% quantile of chi-square with df degrees of freedom (Wilson-Hilferty)
static double chi2_bound(int df) {
    const double a = 2.0 / (9.0 * df), z = 3.090;
    return df * pow(1.0 - a + z * sqrt(a), 3.0);
}

static void check_frequencies(SamplingParams p, uint64_t seed) {
    double prob[NV];
    expected(logits8, NV, &p, prob);
    int count[NV] = {0};
    Rng r;
    rng_seed(&r, seed);
    SampledToken st;
    for (int i = 0; i < DRAWS; i++) {
        sample_token(logits8, NV, &p, &r, &st);
        assert_true(st.id >= 0 && st.id < NV);
        count[st.id]++;
    }
    double chi2 = 0.0;
    int support = 0;
    for (int v = 0; v < NV; v++) {
        if (prob[v] == 0.0) {
            assert_int_equal(count[v], 0);
            continue;
        }
        support++;
        const double e = DRAWS * prob[v];
        chi2 += (count[v] - e) * (count[v] - e) / e;
    }
    print_message("T=%.2f top_k=%d top_p=%.2f: support %d, chi2 %.2f (bound %.2f)\n", p.temperature, p.top_k, p.top_p,
                  support, chi2, support > 1 ? chi2_bound(support - 1) : 0.0);
    if (support > 1) assert_true(chi2 < chi2_bound(support - 1));
}

// ----------------------------------------------------------------------------
// tests

static void test_greedy(void** state) {
    (void)state;
    SamplingParams p = {.temperature = 0.0f, .top_p = 1.0f};
    Rng r;
    rng_seed(&r, 1);
    const Rng before = r;
    SampledToken st;
    sample_token(logits8, NV, &p, &r, &st);
    assert_int_equal(st.id, 1); // 2.5 at ids 1 and 5: the lower id wins
    assert_memory_equal(&r, &before, sizeof r); // greedy draws nothing
    float z[300];
    Rng g;
    rng_seed(&g, 3);
    for (int trial = 0; trial < 50; trial++) {
        for (int v = 0; v < 300; v++) z[v] = (float)rng_normal(&g);
        int best = 0;
        for (int v = 1; v < 300; v++) best = z[v] > z[best] ? v : best;
        sample_token(z, 300, &p, &r, &st);
        assert_int_equal(st.id, best);
    }
}

static void test_frequencies(void** state) {
    (void)state;
    check_frequencies((SamplingParams){.temperature = 1.0f, .top_p = 1.0f}, 11);
    check_frequencies((SamplingParams){.temperature = 0.5f, .top_p = 1.0f}, 12);
    check_frequencies((SamplingParams){.temperature = 2.0f, .top_p = 1.0f}, 13);
    check_frequencies((SamplingParams){.temperature = 1.0f, .top_p = 1.0f, .top_k = 3}, 14);
    check_frequencies((SamplingParams){.temperature = 1.0f, .top_p = 0.7f}, 15);
    check_frequencies((SamplingParams){.temperature = 0.8f, .top_p = 0.9f, .top_k = 4}, 16);
    check_frequencies((SamplingParams){.temperature = 1.5f, .top_p = 0.5f, .top_k = 6}, 17);
}

// top-k with k = 2 on two tied logits: only those two, half each
static void test_topk_ties(void** state) {
    (void)state;
    SamplingParams p = {.temperature = 1.0f, .top_p = 1.0f, .top_k = 2};
    double prob[NV];
    expected(logits8, NV, &p, prob);
    assert_true(fabs(prob[1] - 0.5) < 1e-12 && fabs(prob[5] - 0.5) < 1e-12);
    check_frequencies(p, 18);
}

// the nucleus over a large vocabulary (where sample.c sorts only a pre-filtered set) is exactly
// the shortest best-first prefix: every draw lies in it, and its least likely member is drawn
static void test_top_p_large_vocab(void** state) {
    (void)state;
    enum { V = 5000 };
    float* z = malloc(V * sizeof(float));
    Rng g;
    rng_seed(&g, 21);
    for (int v = 0; v < V; v++) z[v] = (float)(2.0 * rng_normal(&g));
    SamplingParams p = {.temperature = 1.0f, .top_p = 0.3f};
    double* prob = malloc(V * sizeof(double));
    int* order = malloc(V * sizeof(int));
    // reference nucleus by a full sort (insertion into order by probability)
    const double lse = loss_row_logsumexp(z, V);
    for (int v = 0; v < V; v++) prob[v] = exp(z[v] - lse);
    for (int v = 0; v < V; v++) order[v] = v;
    for (int i = 1; i < V; i++) {
        const int x = order[i];
        int j = i;
        while (j > 0 && (z[order[j - 1]] < z[x] || (z[order[j - 1]] == z[x] && order[j - 1] > x))) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = x;
    }
    int m = 0;
    double cum = 0.0;
    while (cum < p.top_p) cum += prob[order[m++]];
    char* in = calloc(V, 1);
    for (int i = 0; i < m; i++) in[order[i]] = 1;
    Rng r;
    rng_seed(&r, 22);
    int hit_last = 0;
    SampledToken st;
    for (int i = 0; i < DRAWS / 5; i++) {
        sample_token(z, V, &p, &r, &st);
        assert_true(in[st.id]);
        hit_last += st.id == order[m - 1];
    }
    print_message("nucleus of %d tokens out of %d; its last member drawn %d times\n", m, V, hit_last);
    assert_true(m > 10);
    assert_true(hit_last > 0);
    free(z);
    free(prob);
    free(order);
    free(in);
}

// the recorded statistics are those of temperature 1, whatever shapes the draw
static void test_recorded_stats(void** state) {
    (void)state;
    enum { V = 300, K = 10 };
    float z[V];
    Rng g;
    rng_seed(&g, 5);
    for (int v = 0; v < V; v++) z[v] = (float)(3.0 * rng_normal(&g));
    z[17] = z[42] = 9.0f; // a tie at the top: 17 is listed first
    const double lse = loss_row_logsumexp(z, V);
    int ids[K];
    float lp[K];
    SamplingParams p = {.temperature = 0.3f, .top_p = 0.8f, .top_k = 5, .record_topk = K};
    Rng r;
    rng_seed(&r, 6);
    for (int i = 0; i < 200; i++) {
        SampledToken st = {.topk_ids = ids, .topk_lp = lp};
        sample_token(z, V, &p, &r, &st);
        assert_true(fabs(st.logprob - (z[st.id] - lse)) <= 1e-5);
        assert_int_equal(ids[0], 17);
        assert_int_equal(ids[1], 42);
        double mass = st.tail_mass;
        for (int j = 0; j < K; j++) {
            assert_true(fabs(lp[j] - (z[ids[j]] - lse)) <= 1e-5);
            if (j > 0) assert_true(lp[j] <= lp[j - 1]);
            mass += exp(lp[j]);
        }
        assert_true(fabs(mass - 1.0) <= 1e-6);
        // nothing outside the list is more likely than its last member
        for (int v = 0; v < V; v++) {
            int listed = 0;
            for (int j = 0; j < K; j++) listed |= ids[j] == v;
            if (!listed) assert_true(z[v] <= z[ids[K - 1]]);
        }
    }
    // score_token gives the same statistics for a given id
    SampledToken sc = {.topk_ids = ids, .topk_lp = lp};
    score_token(z, V, 123, K, &sc);
    assert_int_equal(sc.id, 123);
    assert_true(fabs(sc.logprob - (z[123] - lse)) <= 1e-5);
    // k = V: the tail is empty
    int all_ids[NV];
    float all_lp[NV];
    SampledToken full = {.topk_ids = all_ids, .topk_lp = all_lp};
    score_token(logits8, NV, 0, NV, &full);
    assert_true(full.tail_mass >= 0.0f && full.tail_mass <= 1e-6f);
}

static void test_determinism(void** state) {
    (void)state;
    SamplingParams p = {.temperature = 1.0f, .top_p = 0.95f, .top_k = 6};
    int a[64], b[64], c[64];
    Rng r1, r2, r3;
    rng_seed(&r1, 77);
    rng_seed(&r2, 77);
    rng_seed(&r3, 78);
    SampledToken st;
    for (int i = 0; i < 64; i++) {
        sample_token(logits8, NV, &p, &r1, &st);
        a[i] = st.id;
        sample_token(logits8, NV, &p, &r2, &st);
        b[i] = st.id;
        sample_token(logits8, NV, &p, &r3, &st);
        c[i] = st.id;
    }
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    // one uniform per draw: the stream after a draw is the stream after one rng_uniform
    Rng x, y;
    rng_seed(&x, 5);
    rng_seed(&y, 5);
    sample_token(logits8, NV, &p, &x, &st);
    (void)rng_uniform(&y);
    assert_memory_equal(&x, &y, sizeof x);
}

static void test_params_check(void** state) {
    (void)state;
    char err[256];
    SamplingParams ok = {.temperature = 0.7f, .top_p = 1.0f, .top_k = 0, .record_topk = 8};
    assert_int_equal(sampling_params_check(&ok, NV, err, sizeof err), 0);
    SamplingParams bad = ok;
    bad.temperature = -1.0f;
    assert_int_equal(sampling_params_check(&bad, NV, err, sizeof err), -1);
    assert_non_null(strstr(err, "temperature"));
    bad = ok;
    bad.top_p = 0.0f;
    assert_int_equal(sampling_params_check(&bad, NV, err, sizeof err), -1);
    assert_non_null(strstr(err, "top_p"));
    bad = ok;
    bad.top_k = -2;
    assert_int_equal(sampling_params_check(&bad, NV, err, sizeof err), -1);
    assert_non_null(strstr(err, "top_k"));
    bad = ok;
    bad.record_topk = NV + 1;
    assert_int_equal(sampling_params_check(&bad, NV, err, sizeof err), -1);
    assert_non_null(strstr(err, "record_topk"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),         cmocka_unit_test(test_frequencies),
        cmocka_unit_test(test_topk_ties),      cmocka_unit_test(test_top_p_large_vocab),
        cmocka_unit_test(test_recorded_stats), cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_params_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
