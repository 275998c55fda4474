// Unit tests of the distillation trainer's pieces that need no MPI: every loss variant against
// PyTorch autograd (tests/data/distill/losses.json from tools/distill_reference.py) and against
// direct double-precision computations written here, the JSD composition against finite
// differences, the rows of a batch (position i - 1 predicts agent token i), the plan (coverage,
// budgets, independence from input order), fixed-point arithmetic, an end-to-end gradient check
// through a small transformer, and the config checks.
//
// Tolerances (C computes in float32 on float32 inputs, the references in float64):
//   loss values   |c - ref| <= 2e-5 * max(1, |ref|)
//   gradients     max |dz - ref| <= 2e-5 * max(1, max |ref|)
//   JSD vs central differences (step 1e-4)  max |dz - fd| <= 1e-4 * max(1, max |fd|)
//   model gradient check: directional derivative within 1e-2 relative (float32 forward, step 1e-3)
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "distill/objective.h"
#include "distill/plan.h"
#include "distill/trainer.h"
#include "io/config.h"
#include "model/loss.h"
#include "model/model.h"
#include "model/rng.h"

static Backend* be;

static int setup(void** state) {
    (void)state;
    be = backend_cpu_create(1);
    return 0;
}

static int teardown(void** state) {
    (void)state;
    backend_destroy(be);
    return 0;
}

// ----------------------------------------------------------------------------
// independent double-precision definitions (docs/DISTILL.md)

typedef struct {
    double P[64], Q[64]; // K + 1 buckets
} Bk;

static void bk(const double* z, int V, const int* ids, const double* lp, double tail, int K, Bk* b) {
    double m = z[0], s = 0.0, S = tail, in = 0.0;
    for (int v = 1; v < V; v++) m = fmax(m, z[v]);
    for (int v = 0; v < V; v++) s += exp(z[v] - m);
    for (int i = 0; i < K; i++) S += exp(lp[i]);
    for (int i = 0; i < K; i++) {
        b->Q[i] = exp(z[ids[i]] - m) / s;
        in += b->Q[i];
        b->P[i] = exp(lp[i]) / S;
    }
    b->Q[K] = 0.0;
    for (int v = 0; v < V; v++) {
        int hit = 0;
        for (int i = 0; i < K; i++) hit |= ids[i] == v;
        if (!hit) b->Q[K] += exp(z[v] - m) / s;
    }
    b->P[K] = tail / S;
}

static double flog(double x) { return log(fmax(x, LOSS_PROB_FLOOR)); }

static double kl_d(const double* a, const double* b, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += a[i] > 0.0 ? a[i] * (flog(a[i]) - flog(b[i])) : 0.0;
    return s;
}

static double jsd_d(const double* z, int V, const int* ids, const double* lp, double tail, int K, double beta) {
    Bk b;
    bk(z, V, ids, lp, tail, K, &b);
    double M[64];
    for (int i = 0; i <= K; i++) M[i] = beta * b.P[i] + (1.0 - beta) * b.Q[i];
    return beta * kl_d(b.P, M, K + 1) + (1.0 - beta) * kl_d(b.Q, M, K + 1);
}

// ----------------------------------------------------------------------------
// a one-row objective run: row r of a batch whose logits buffer holds the given rows

typedef struct {
    int V, K;
    float* d_logits; // backend (rows, V)
    float* d_dz;
    DistillBatch b;
} OneRow;

static void one_row_init(OneRow* o, const float* logits, int rows, int V, int K) {
    memset(o, 0, sizeof(*o));
    o->V = V;
    o->K = K;
    o->d_logits = be->alloc(be, sizeof(float) * (size_t)rows * V);
    o->d_dz = be->alloc(be, sizeof(float) * (size_t)rows * V);
    be->upload(be, o->d_logits, logits, sizeof(float) * (size_t)rows * V);
    o->b.pos = malloc(sizeof(int));
    o->b.target = malloc(sizeof(int));
    o->b.ids = malloc(sizeof(int) * (size_t)K);
    o->b.lp = malloc(sizeof(float) * (size_t)K);
    o->b.tail = malloc(sizeof(float));
    o->b.old_lp = malloc(sizeof(float));
    o->b.exact = malloc(sizeof(float));
    o->b.exact[0] = NAN; // the sampled estimator's bucket rule
    o->b.B = 1;
    o->b.T = rows;
    o->b.K = K;
    o->b.n_rows = 1;
    o->b.weight = 1.0f;
}

static void one_row_free(OneRow* o) {
    be->free(be, o->d_logits);
    be->free(be, o->d_dz);
    free(o->b.pos), free(o->b.target), free(o->b.ids), free(o->b.lp), free(o->b.tail), free(o->b.old_lp);
    free(o->b.exact);
}

// loss of row r under `loss`; dz (V) host gets its gradient
static double one_row_run(OneRow* o, DistillLoss loss, double beta, int r, const int* ids, const float* lp, float tail,
                          int y, float old_lp, float* dz) {
    DistillObjective* obj = distill_objective_create(be, loss, beta, o->V);
    o->b.pos[0] = r;
    o->b.target[0] = y;
    memcpy(o->b.ids, ids, sizeof(int) * (size_t)o->K);
    memcpy(o->b.lp, lp, sizeof(float) * (size_t)o->K);
    o->b.tail[0] = tail;
    o->b.old_lp[0] = old_lp;
    be->memset0(be, o->d_dz, sizeof(float) * (size_t)o->b.T * o->V);
    DistillStats st = {0};
    distill_objective_run(obj, o->d_logits, &o->b, NULL, o->d_dz, &st);
    be->download(be, dz, o->d_dz + (size_t)r * o->V, sizeof(float) * (size_t)o->V);
    distill_objective_free(obj);
    return st.loss;
}

// ----------------------------------------------------------------------------
// PyTorch reference values

static json_t* load_reference(void) {
    json_error_t e;
    json_t* root = json_load_file(INGRAIN_TEST_DATA "/data/distill/losses.json", 0, &e);
    if (!root) fail_msg("losses.json: %s (line %d); regenerate with tools/distill_reference.py", e.text, e.line);
    return root;
}

static void read_floats(json_t* a, float* out, int n) {
    assert_int_equal((int)json_array_size(a), n);
    for (int i = 0; i < n; i++) out[i] = (float)json_number_value(json_array_get(a, (size_t)i));
}

static void check_grad(const float* dz, json_t* ref, int V, const char* what, int row) {
    double scale = 1.0, err = 0.0;
    for (int v = 0; v < V; v++) scale = fmax(scale, fabs(json_number_value(json_array_get(ref, (size_t)v))));
    for (int v = 0; v < V; v++) err = fmax(err, fabs(dz[v] - json_number_value(json_array_get(ref, (size_t)v))));
    if (err > 2e-5 * scale) fail_msg("%s row %d: gradient off by %g (scale %g)", what, row, err, scale);
}

static void check_value(double c, double ref, const char* what, int row) {
    if (fabs(c - ref) > 2e-5 * fmax(1.0, fabs(ref))) fail_msg("%s row %d: %.9g, PyTorch %.9g", what, row, c, ref);
}

static void test_pytorch_reference(void** state) {
    (void)state;
    json_t* root = load_reference();
    const int V = (int)json_integer_value(json_object_get(root, "V"));
    const int K = (int)json_integer_value(json_object_get(root, "K"));
    json_t* rows = json_object_get(root, "rows");
    const int N = (int)json_array_size(rows);
    float* logits = malloc(sizeof(float) * (size_t)N * V);
    for (int r = 0; r < N; r++) read_floats(json_object_get(json_array_get(rows, (size_t)r), "z"), logits + r * V, V);
    OneRow o;
    one_row_init(&o, logits, N, V, K);
    float dz[64], lp[16];
    int ids[16];
    for (int r = 0; r < N; r++) {
        json_t* row = json_array_get(rows, (size_t)r);
        read_floats(json_object_get(row, "lp"), lp, K);
        for (int i = 0; i < K; i++)
            ids[i] = (int)json_integer_value(json_array_get(json_object_get(row, "ids"), (size_t)i));
        const float tail = (float)json_number_value(json_object_get(row, "tail"));
        const int y = (int)json_integer_value(json_object_get(row, "y"));
        const float old_lp = (float)json_number_value(json_object_get(row, "old_lp"));
        const struct {
            const char* name;
            DistillLoss loss;
            double beta;
        } variants[] = {{"forward_kl", DISTILL_LOSS_FORWARD_KL, 0},
                        {"reverse_kl", DISTILL_LOSS_REVERSE_KL, 0},
                        {"sft", DISTILL_LOSS_SFT, 0},
                        {"sampled", DISTILL_LOSS_REVERSE_KL_SAMPLED, 0},
                        {"jsd_0.1", DISTILL_LOSS_JSD, 0.1},
                        {"jsd_0.5", DISTILL_LOSS_JSD, 0.5},
                        {"jsd_0.9", DISTILL_LOSS_JSD, 0.9}};
        for (size_t k = 0; k < sizeof(variants) / sizeof(variants[0]); k++) {
            json_t* ref = json_object_get(row, variants[k].name);
            assert_non_null(ref);
            double l = one_row_run(&o, variants[k].loss, variants[k].beta, r, ids, lp, tail, y, old_lp, dz);
            check_value(l, json_number_value(json_object_get(ref, "loss")), variants[k].name, r);
            check_grad(dz, json_object_get(ref, "grad"), V, variants[k].name, r);
        }
        DistillRowStats st;
        distill_row_stats(logits + r * V, V, ids, lp, tail, K, &st);
        check_value(st.entropy, json_number_value(json_object_get(row, "entropy")), "entropy", r);
        check_value(st.agree, (double)json_integer_value(json_object_get(row, "agree")), "agree", r);
        check_value(st.kl_forward, json_number_value(json_object_get(json_object_get(row, "forward_kl"), "loss")),
                    "stats kl_forward", r);
        check_value(st.kl_reverse, json_number_value(json_object_get(json_object_get(row, "reverse_kl"), "loss")),
                    "stats kl_reverse", r);
    }
    one_row_free(&o);
    free(logits);
    json_decref(root);
}

// ----------------------------------------------------------------------------
// direct computations on small random vectors

enum { SV = 13, SK = 4 };

static void random_row(Rng* r, float* z, int* ids, float* lp, float* tail, int V, int K) {
    for (int v = 0; v < V; v++) z[v] = (float)(2.0 * rng_normal(r));
    int used[64] = {0};
    double mass = 0.0;
    for (int i = 0; i < K; i++) {
        do ids[i] = (int)rng_below(r, (uint64_t)V);
        while (used[ids[i]]);
        used[ids[i]] = 1;
        lp[i] = (float)(-0.3 - 0.7 * i - rng_uniform(r));
        mass += exp(lp[i]);
    }
    *tail = K < V ? (float)fmax(0.0, 1.0 - mass) : 0.0f;
}

static void to_double(const float* f, double* d, int n) {
    for (int i = 0; i < n; i++) d[i] = f[i];
}

static void test_jsd_direct_and_fd(void** state) {
    (void)state;
    Rng r;
    rng_seed(&r, 11);
    const double betas[] = {0.1, 0.5, 0.9};
    for (int trial = 0; trial < 6; trial++) {
        const int K = trial == 5 ? SV : SK; // the last trial: every id in the top-k, no tail
        float z[SV], lp[SV], tail, dz[SV];
        int ids[SV];
        random_row(&r, z, ids, lp, &tail, SV, K);
        double zd[SV], lpd[SV];
        to_double(z, zd, SV);
        to_double(lp, lpd, K);
        OneRow o;
        one_row_init(&o, z, 1, SV, K);
        for (int bi = 0; bi < 3; bi++) {
            const double beta = betas[bi];
            float lp_s[SV], tail_s;
            double v = loss_row_jsd_topk(z, SV, ids, lp, tail, K, beta, lp_s, &tail_s);
            double ref = jsd_d(zd, SV, ids, lpd, tail, K, beta);
            assert_true(fabs(v - ref) <= 1e-6 * fmax(1.0, ref));
            one_row_run(&o, DISTILL_LOSS_JSD, beta, 0, ids, lp, tail, 0, 0.0f, dz);
            double err = 0.0, scale = 1.0, fd[SV];
            for (int k = 0; k < SV; k++) {
                double zp[SV], zm[SV];
                memcpy(zp, zd, sizeof(zd));
                memcpy(zm, zd, sizeof(zd));
                zp[k] += 1e-4;
                zm[k] -= 1e-4;
                fd[k] = (jsd_d(zp, SV, ids, lpd, tail, K, beta) - jsd_d(zm, SV, ids, lpd, tail, K, beta)) / 2e-4;
                scale = fmax(scale, fabs(fd[k]));
            }
            for (int k = 0; k < SV; k++) err = fmax(err, fabs(dz[k] - fd[k]));
            if (err > 1e-4 * scale) fail_msg("jsd beta %g trial %d: gradient off by %g", beta, trial, err);
        }
        one_row_free(&o);
    }
}

// beta = 0 and 1 are exactly forward and reverse KL (TRL's limits)
static void test_jsd_limits(void** state) {
    (void)state;
    Rng r;
    rng_seed(&r, 12);
    float z[SV], lp[SK], tail, a[SV], b[SV];
    int ids[SK];
    random_row(&r, z, ids, lp, &tail, SV, SK);
    OneRow o;
    one_row_init(&o, z, 1, SV, SK);
    const DistillLoss same[2] = {DISTILL_LOSS_FORWARD_KL, DISTILL_LOSS_REVERSE_KL};
    for (int end = 0; end < 2; end++) {
        double lj = one_row_run(&o, DISTILL_LOSS_JSD, end, 0, ids, lp, tail, 0, 0.0f, a);
        double lk = one_row_run(&o, same[end], 0.0, 0, ids, lp, tail, 0, 0.0f, b);
        assert_true(lj == lk);
        assert_memory_equal(a, b, sizeof(a));
    }
    one_row_free(&o);
}

// E_{y ~ q}[log q_y - log p_y] over the whole vocabulary is the bucketed reverse KL, exactly:
// the tail rule spreads the teacher's tail like the student's
static void test_sampled_lp(void** state) {
    (void)state;
    Rng r;
    rng_seed(&r, 13);
    for (int trial = 0; trial < 5; trial++) {
        float z[SV], lp[SK], tail;
        int ids[SK];
        random_row(&r, z, ids, lp, &tail, SV, SK);
        double zd[SV], lpd[SK], lse = loss_row_logsumexp(z, SV), e = 0.0;
        to_double(z, zd, SV);
        to_double(lp, lpd, SK);
        Bk b;
        bk(zd, SV, ids, lpd, tail, SK, &b);
        for (int y = 0; y < SV; y++) {
            double lpy = loss_row_sampled_lp(z, SV, y, ids, lp, tail, SK),
                   direct = log(b.P[SK]) + zd[y] - lse - log(b.Q[SK]);
            for (int i = 0; i < SK; i++) direct = ids[i] == y ? log(b.P[i]) : direct;
            assert_true(fabs(lpy - direct) <= 1e-5 * fmax(1.0, fabs(direct)));
            e += exp(zd[y] - lse) * (zd[y] - lse - lpy);
        }
        double rev = kl_d(b.Q, b.P, SK + 1);
        assert_true(fabs(e - rev) <= 1e-5 * fmax(1.0, rev));
    }
}

static void test_row_stats(void** state) {
    (void)state;
    Rng r;
    rng_seed(&r, 14);
    float z[SV], lp[SK], tail;
    int ids[SK];
    random_row(&r, z, ids, lp, &tail, SV, SK);
    double zd[SV], m, s = 0.0, h = 0.0;
    to_double(z, zd, SV);
    m = zd[0];
    int arg = 0;
    for (int v = 0; v < SV; v++) m = fmax(m, zd[v]), arg = zd[v] > zd[arg] ? v : arg;
    for (int v = 0; v < SV; v++) s += exp(zd[v] - m);
    for (int v = 0; v < SV; v++) h -= exp(zd[v] - m) / s * (zd[v] - m - log(s));
    DistillRowStats st;
    for (int i = 0; i < SK; i++) ids[i] = (arg + i) % SV; // the teacher's top-1 (lp[0] is the largest) is the argmax
    distill_row_stats(z, SV, ids, lp, tail, SK, &st);
    assert_true(fabs(st.entropy - h) <= 1e-6);
    assert_true(st.agree == 1.0);
    ids[0] = (arg + SK) % SV;
    distill_row_stats(z, SV, ids, lp, tail, SK, &st);
    assert_true(st.agree == 0.0);
    distill_row_stats(z, SV, NULL, NULL, 0.0f, 0, &st); // no top-k: no divergences, no agreement
    assert_true(isnan(st.kl_forward) && isnan(st.agree) && fabs(st.entropy - h) <= 1e-6);
}

// ----------------------------------------------------------------------------
// batch rows and the objective over a padded batch

#define BK 3

static Trajectory* make_seq(Rng* r, int task, int n_ctx, int n_agent, int agent_first, int V) {
    Trajectory* t = traj_create(BK);
    t->task_id = task;
    int32_t ids[BK];
    float lp[BK];
    if (agent_first) {
        for (int k = 0; k < BK; k++) ids[k] = k, lp[k] = -1.0f - (float)k;
        traj_push_agent(t, 1, -0.5f, ids, lp, 0.2f); // an agent token at position 0: no row
    }
    for (int i = 0; i < n_ctx; i++) {
        int32_t tok = (int32_t)rng_below(r, (uint64_t)V);
        traj_push_context(t, &tok, 1, TRAJ_SEG_USER);
    }
    for (int i = 0; i < n_agent; i++) {
        for (int k = 0; k < BK; k++)
            ids[k] = (int32_t)((i + 3 * k + task) % V), lp[k] = -0.5f - (float)k - 0.01f * (float)i;
        traj_push_agent(t, (int32_t)rng_below(r, (uint64_t)V), -1.0f - 0.1f * (float)i, ids, lp, 0.1f);
    }
    return t;
}

static void test_batch_rows(void** state) {
    (void)state;
    Rng r;
    rng_seed(&r, 15);
    Trajectory* s[2] = {make_seq(&r, 0, 3, 4, 1, 20), make_seq(&r, 1, 2, 2, 0, 20)};
    DistillBatch b = {0};
    distill_batch_fill(&b, s, 2, 8, 0.25f);
    assert_int_equal(b.B, 2);
    assert_int_equal(b.T, 8);
    assert_int_equal(b.K, BK);
    assert_int_equal(b.lengths[0], 8);
    assert_int_equal(b.lengths[1], 4);
    assert_int_equal(b.n_rows, 4 + 2); // the first sequence's agent token at position 0 has no row
    for (int i = 0; i < 4; i++) assert_int_equal(b.tokens[8 + i], s[1]->tokens[i]);
    for (int i = 4; i < 8; i++) assert_int_equal(b.tokens[8 + i], 0);
    for (int row = 0; row < b.n_rows; row++) {
        const int seq = b.pos[row] / 8, t = b.pos[row] % 8, a = seq == 0 ? row + 1 : row - 4; // agent row of the record
        assert_int_equal(b.target[row], s[seq]->tokens[t + 1]);
        assert_true(s[seq]->agent_mask[t + 1]);
        assert_memory_equal(b.ids + row * BK, s[seq]->topk_ids + a * BK, sizeof(int) * BK);
        assert_memory_equal(b.lp + row * BK, s[seq]->topk_lp + a * BK, sizeof(float) * BK);
        assert_true(b.old_lp[row] == s[seq]->logprob[t + 1]);
    }
    distill_batch_free(&b);
    traj_free(s[0]);
    traj_free(s[1]);
}

// the objective over a padded batch equals the row kernels at the rows' positions, with weights
static void test_objective_batch(void** state) {
    (void)state;
    enum { V = 20, B = 2, T = 9 };
    Rng r;
    rng_seed(&r, 16);
    Trajectory* s[B] = {make_seq(&r, 0, 4, 5, 0, V), make_seq(&r, 1, 3, 3, 1, V)};
    DistillBatch b = {0};
    const float w = 0.125f;
    distill_batch_fill(&b, s, B, T, w);
    float* logits = malloc(sizeof(float) * B * T * V);
    for (int i = 0; i < B * T * V; i++) logits[i] = (float)rng_normal(&r);
    float* d_logits = be->alloc(be, sizeof(float) * B * T * V);
    float* d_dz = be->alloc(be, sizeof(float) * B * T * V);
    be->upload(be, d_logits, logits, sizeof(float) * B * T * V);
    float* dz = malloc(sizeof(float) * B * T * V);
    float* ref = malloc(sizeof(float) * B * T * V);
    const DistillLoss losses[3] = {DISTILL_LOSS_FORWARD_KL, DISTILL_LOSS_SFT, DISTILL_LOSS_REVERSE_KL};
    for (int li = 0; li < 3; li++) {
        DistillObjective* o = distill_objective_create(be, losses[li], 0.5, V);
        be->memset0(be, d_dz, sizeof(float) * B * T * V);
        DistillStats st = {0};
        distill_objective_run(o, d_logits, &b, NULL, d_dz, &st);
        be->download(be, dz, d_dz, sizeof(float) * B * T * V);
        memset(ref, 0, sizeof(float) * B * T * V);
        double loss = 0.0;
        for (int row = 0; row < b.n_rows; row++) {
            const int p = b.pos[row];
            const float* z = logits + p * V;
            float* g = ref + p * V;
            if (losses[li] == DISTILL_LOSS_SFT)
                loss += w * loss_row_cross_entropy(z, V, b.target[row], w, g);
            else
                loss += w * loss_row_kl_topk(z, V, b.ids + row * BK, b.lp + row * BK, b.tail[row], BK, li == 2, w, g);
        }
        assert_true(fabs(st.loss - loss) <= 1e-6 * fmax(1.0, loss));
        for (int i = 0; i < B * T * V; i++) assert_true(fabs(dz[i] - ref[i]) <= 1e-7);
        distill_objective_free(o);
    }
    free(dz), free(ref), free(logits);
    be->free(be, d_logits);
    be->free(be, d_dz);
    distill_batch_free(&b);
    traj_free(s[0]);
    traj_free(s[1]);
}

// ----------------------------------------------------------------------------
// the plan

static DistillSeqMeta* make_meta(int n, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    DistillSeqMeta* m = calloc((size_t)n, sizeof(DistillSeqMeta));
    for (int i = 0; i < n; i++) {
        m[i] = (DistillSeqMeta){.task = i / 3,
                                .sample = i % 3,
                                .seed = 100 + i,
                                .hash = rng_next(&r),
                                .tokens = 10 + (int64_t)rng_below(&r, 90),
                                .owner = i % 4,
                                .local = i / 4};
        m[i].loss_tokens = i == 5 ? 0 : m[i].tokens / 2; // one sequence without a loss token
    }
    return m;
}

static void check_plan(const DistillSeqMeta* m, int n, const DistillPlanParams* pp, const DistillPlan* p) {
    assert_int_equal(p->n_used, n - 1);
    int* seen = calloc((size_t)n, sizeof(int));
    for (int s = 0; s < p->n_steps; s++) {
        int64_t tokens = 0, loss = 0;
        int count = 0;
        for (int j = p->step_micro[s]; j < p->step_micro[s + 1]; j++) {
            const int B = p->micro_seq[j + 1] - p->micro_seq[j];
            assert_true(B >= 1 && B <= pp->max_batch);
            assert_true((int64_t)B * p->micro_T[j] <= pp->micro_batch_tokens || B == 1);
            for (int q = p->micro_seq[j]; q < p->micro_seq[j + 1]; q++) {
                const int g = p->seqs[q];
                assert_true(m[g].tokens <= p->micro_T[j]);
                if (q > p->micro_seq[j]) assert_true(m[g].tokens <= m[p->seqs[q - 1]].tokens); // longest first
                assert_true(m[g].loss_tokens > 0);
                seen[g]++;
                tokens += m[g].tokens;
                loss += m[g].loss_tokens;
                count++;
            }
        }
        assert_int_equal(tokens, p->step_tokens[s]);
        assert_int_equal(loss, p->step_loss_tokens[s]);
        assert_true(tokens <= pp->batch_tokens || count == 1);
    }
    for (int g = 0; g < n; g++) assert_int_equal(seen[g], m[g].loss_tokens > 0 ? pp->epochs : 0);
    free(seen);
}

static int plans_equal(const DistillPlan* a, const DistillPlan* b, const DistillSeqMeta* ma, const DistillSeqMeta* mb) {
    if (a->n_steps != b->n_steps || a->n_micro != b->n_micro) return 0;
    for (int j = 0; j <= a->n_micro; j++) {
        if (a->micro_seq[j] != b->micro_seq[j]) return 0;
    }
    for (int q = 0; q < a->micro_seq[a->n_micro]; q++) {
        if (ma[a->seqs[q]].hash != mb[b->seqs[q]].hash) return 0;
    }
    return 1;
}

static void test_plan(void** state) {
    (void)state;
    const int n = 40;
    DistillPlanParams pp = {.epochs = 3, .micro_batch_tokens = 200, .max_batch = 4, .batch_tokens = 600};
    DistillSeqMeta* m = make_meta(n, 1);
    distill_meta_sort(m, n);
    DistillPlan p, q;
    distill_plan_build(m, n, &pp, 99, 2, &p);
    check_plan(m, n, &pp, &p);
    assert_true(p.n_steps >= 3 * 4);
    // the same data held by other owners and listed in another order: the same plan
    DistillSeqMeta* m2 = make_meta(n, 1);
    for (int i = 0; i < n; i++) m2[i].owner = (i * 7) % 3, m2[i].local = n - i;
    for (int i = n - 1; i > 0; i--) {
        DistillSeqMeta tmp = m2[i];
        m2[i] = m2[(i * 13) % (i + 1)];
        m2[(i * 13) % (i + 1)] = tmp;
    }
    distill_meta_sort(m2, n);
    distill_plan_build(m2, n, &pp, 99, 2, &q);
    assert_true(plans_equal(&p, &q, m, m2));
    distill_plan_free(&q);
    // another iteration or seed: another order
    distill_plan_build(m, n, &pp, 99, 3, &q);
    check_plan(m, n, &pp, &q);
    assert_false(plans_equal(&p, &q, m, m));
    distill_plan_free(&q);
    // a sequence longer than the micro-batch budget runs alone
    m[0].tokens = 500;
    distill_plan_build(m, n, &pp, 99, 2, &q);
    check_plan(m, n, &pp, &q);
    distill_plan_free(&q);
    distill_plan_free(&p);
    free(m);
    free(m2);
}

// ----------------------------------------------------------------------------
// fixed point

static void test_fixed_point(void** state) {
    (void)state;
    assert_int_equal(distill_fp_exponent(1, 8), 53);
    assert_int_equal(distill_fp_exponent(16, 8), 49);
    assert_int_equal(distill_fp_exponent(17, 8), 48);
    enum { n = 1000, M = 7 };
    Rng r;
    rng_seed(&r, 17);
    float* g = malloc(sizeof(float) * n * M);
    for (int i = 0; i < n * M; i++) g[i] = (float)(rng_normal(&r) * pow(10.0, -(double)rng_below(&r, 12)));
    const int k = distill_fp_exponent(M, 8);
    Backend* be = backend_cpu_create(2);
    const double lim = distill_fp_limit(M);
    // any order of the micro-batches, any grouping: identical integers
    int64_t* a = calloc(n, sizeof(int64_t));
    int64_t* b = calloc(n, sizeof(int64_t));
    int64_t* part = calloc(n, sizeof(int64_t));
    double mx;
    for (int j = 0; j < M; j++) assert_int_equal(be->fp_accumulate(be, a, g + j * n, n, k, lim, &mx), 0);
    for (int j = M - 1; j >= 3; j--) assert_int_equal(be->fp_accumulate(be, part, g + j * n, n, k, lim, &mx), 0);
    for (int j = 0; j < 3; j++) assert_int_equal(be->fp_accumulate(be, b, g + j * n, n, k, lim, &mx), 0);
    for (int i = 0; i < n; i++) b[i] += part[i];
    assert_memory_equal(a, b, sizeof(int64_t) * n);
    // and the float result is the exact sum to within M * 2^-k
    float* out = malloc(sizeof(float) * n);
    be->fp_to_float(be, out, a, n, k);
    for (int i = 0; i < n; i++) {
        double exact = 0.0;
        for (int j = 0; j < M; j++) exact += g[j * n + i];
        assert_true(fabs(out[i] - exact) <= M * ldexp(1.0, -k) + 6e-8 * fabs(exact));
    }
    // out of range, or not finite: reported, not added
    memset(a, 0, sizeof(int64_t) * n);
    g[3] = 1024.0f;
    assert_int_equal(be->fp_accumulate(be, a, g, n, k, lim, &mx), 1);
    assert_true(mx == 1024.0 && a[3] == 0);
    assert_int_equal(be->fp_accumulate(be, a, g, n, distill_fp_exponent(M, ilogb(mx) + 1), lim, &mx), 0);
    g[5] = NAN;
    assert_int_equal(be->fp_accumulate(be, a, g, n, 0, lim, &mx), 1);
    assert_true(isnan(mx));
    // block sums of squares: each block in increasing order, the last one short
    double sums[3];
    be->sum_squares_blocks(be, sums, g + 10, 700, 300);
    for (int blk = 0; blk < 3; blk++) {
        double s = 0.0;
        for (int i = 300 * blk; i < 300 * blk + 300 && i < 700; i++) s += (double)g[10 + i] * (double)g[10 + i];
        assert_true(memcmp(&s, &sums[blk], sizeof s) == 0);
    }
    backend_destroy(be);
    free(g), free(a), free(b), free(part), free(out);
}

// ----------------------------------------------------------------------------
// gradient check through a small transformer: the directional derivative of the loss the
// objective reports equals the gradient model_backward accumulates, along a random direction
// that moves each weight relative to its size (the loss is sharply curved along absolute steps)

static double model_loss(Model* m, DistillObjective* o, const DistillBatch* b, int V) {
    model_forward(m, b->tokens, b->lengths, b->B, b->T, NULL);
    float* dz = model_dlogits(m);
    be->memset0(be, dz, sizeof(float) * (size_t)b->B * b->T * V);
    DistillStats st = {0};
    distill_objective_run(o, model_logits(m), b, NULL, dz, &st);
    return st.loss;
}

static void test_gradient_check(void** state) {
    (void)state;
    ModelConfig c = {.arch = "builtin",
                     .vocab_size = 24,
                     .dim = 16,
                     .n_layers = 2,
                     .n_heads = 2,
                     .n_kv_heads = 1,
                     .head_dim = 8,
                     .hidden_dim = 32,
                     .max_seq_len = 32,
                     .rope_theta = 10000.0f,
                     .norm_eps = 1e-5f,
                     .tied_embeddings = 1};
    Model* m = model_create(&c, be, 2, 12);
    model_init_random(m, 3);
    const size_t n = model_num_params(m);
    float* theta = malloc(sizeof(float) * n);
    float* dir = malloc(sizeof(float) * n);
    float* grad = malloc(sizeof(float) * n);
    float* moved = malloc(sizeof(float) * n);
    model_params_download(m, theta);
    for (size_t i = 0; i < n; i++) theta[i] *= 3.0f; // sharper logits than at init
    Rng r;
    rng_seed(&r, 18);
    for (size_t i = 0; i < n; i++) dir[i] = (float)rng_normal(&r) * theta[i]; // relative to each weight
    Trajectory* s[2] = {make_seq(&r, 0, 3, 8, 0, 24), make_seq(&r, 1, 2, 5, 0, 24)};
    DistillBatch b = {0};
    distill_batch_fill(&b, s, 2, 11, 1.0f / 13.0f);
    const DistillLoss losses[4] = {DISTILL_LOSS_FORWARD_KL, DISTILL_LOSS_SFT, DISTILL_LOSS_REVERSE_KL,
                                   DISTILL_LOSS_JSD};
    for (int li = 0; li < 4; li++) {
        DistillObjective* o = distill_objective_create(be, losses[li], 0.3, 24);
        model_params_upload(m, theta);
        model_zero_grad(m);
        model_loss(m, o, &b, 24);
        model_backward(m, model_dlogits(m));
        model_grads_download(m, grad);
        double gd = 0.0;
        for (size_t i = 0; i < n; i++) gd += (double)grad[i] * dir[i];
        const double eps = 1e-3;
        double l[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            for (size_t i = 0; i < n; i++) moved[i] = theta[i] + (float)((sgn ? -eps : eps) * dir[i]);
            model_params_upload(m, moved);
            l[sgn] = model_loss(m, o, &b, 24);
        }
        const double fd = (l[0] - l[1]) / (2.0 * eps);
        if (fabs(fd - gd) > 1e-2 * fabs(gd)) fail_msg("loss %d: directional derivative %g, gradient %g", li, fd, gd);
        distill_objective_free(o);
    }
    distill_batch_free(&b);
    traj_free(s[0]);
    traj_free(s[1]);
    free(theta), free(dir), free(grad), free(moved);
    model_free(m);
}

// ----------------------------------------------------------------------------
// config

static void test_config(void** state) {
    (void)state;
    Config c;
    ConfigError e;
    config_defaults(&c);
    char err[1024];
    assert_int_equal(distill_check_config(&c, err, sizeof(err)), 0);
    // recompute is available; with sft it has nothing to recompute
    assert_int_equal(config_load_string(&c, "distill:\n  teacher: recompute\n", "t.yaml", &e), 0);
    assert_int_equal(distill_check_config(&c, err, sizeof(err)), 0);
    DistillOptions o;
    distill_options_from_config(&o, &c);
    assert_true(o.teacher_recompute && o.teacher_max_len == c.rollout.max_context);
    config_defaults(&c);
    assert_int_equal(config_load_string(&c, "distill:\n  teacher: recompute\n  loss: sft\n", "s.yaml", &e), 0);
    assert_int_equal(distill_check_config(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "s.yaml:2: distill.teacher: 'recompute' with distill.loss 'sft' (s.yaml:3)"));
    // the sampled-token estimator: on-policy only (the config loader refuses it off-policy too;
    // a programmatic config meets this check)
    config_defaults(&c);
    assert_int_equal(
        config_load_string(&c, "distill:\n  regime: on_policy\n  loss: reverse_kl_sampled\n", "r.yaml", &e), 0);
    assert_int_equal(distill_check_config(&c, err, sizeof(err)), 0);
    distill_options_from_config(&o, &c);
    assert_int_equal(o.loss, DISTILL_LOSS_REVERSE_KL_SAMPLED);
    assert_false(o.teacher_recompute);
    c.distill.regime = REGIME_OFF_POLICY;
    assert_int_equal(distill_check_config(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "r.yaml:3: distill.loss: 'reverse_kl_sampled' is on-policy only"));
    assert_non_null(strstr(err, "distill.regime is 'off_policy' (r.yaml:2)"));
    assert_int_equal(config_validate(&c, &e), -1);
    assert_non_null(strstr(e.msg, "on_policy takes reverse_kl, reverse_kl_sampled or jsd"));
    config_defaults(&c);
    assert_int_equal(config_load_string(&c,
                                        "distill:\n  regime: on_policy\n  loss: jsd\n  jsd_beta: 0.25\n  lr: 2e-5\n"
                                        "  micro_batch_tokens: 2048\n",
                                        "u.yaml", &e),
                     0);
    distill_options_from_config(&o, &c);
    assert_int_equal(o.loss, DISTILL_LOSS_JSD);
    assert_true(o.jsd_beta == 0.25 && o.adamw.lr == 2e-5f && o.micro_batch_tokens == 2048);
    assert_int_equal(o.max_batch, 2048 / c.model.max_seq_len);
    assert_int_equal(o.reduce, DISTILL_REDUCE_FIXED);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pytorch_reference),
        cmocka_unit_test(test_jsd_direct_and_fd),
        cmocka_unit_test(test_jsd_limits),
        cmocka_unit_test(test_sampled_lp),
        cmocka_unit_test(test_row_stats),
        cmocka_unit_test(test_batch_rows),
        cmocka_unit_test(test_objective_batch),
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_fixed_point),
        cmocka_unit_test(test_gradient_check),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
