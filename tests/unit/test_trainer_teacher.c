// Unit tests of distill.teacher: recompute and of the exact teacher log-probs of the sampled-token
// estimator:
//   - the objective against the teacher's full distribution: forward and reverse KL over the
//     vocabulary and the sampled estimator against direct double-precision computations, the
//     full-vocabulary JSD against a double computation and central differences, the metrics;
//   - the frozen teacher (distill/teacher.h): its rows for records whose teacher contexts splice
//     experience in (once for all steps, as global injection; per step, as step-wise) equal the
//     log-softmax of one model_forward over each context built by hand, and the losses fed by
//     them equal loss_kl_full / loss_kl_sampled fed by those forward rows; the teacher keeps its
//     weights until refreshed;
//   - a record's exact teacher log-prob (teacher_lp) replaces the bucket rule of the estimator.
//
// Tolerances (float32 computation, references in float64 or from another float32 path):
//   loss values vs double      |c - ref| <= 2e-5 * max(1, |ref|); gradients 2e-5 * max(1, max |ref|)
//   JSD vs central differences (step 1e-4)  1e-4 * max(1, max |fd|)
//   decoder rows vs model_forward rows      1e-4 absolute (measured ~1e-6: float rounding of
//                                           incremental vs whole-sequence attention)
//   losses fed by either rows               1e-5 relative, gradients 1e-5 absolute
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
#include "distill/shards.h"
#include "distill/teacher.h"
#include "distill/trainer.h"
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
// double-precision definitions

static void log_softmax_d(const float* z, int V, double* out) {
    double m = z[0], s = 0.0;
    for (int v = 1; v < V; v++) m = fmax(m, z[v]);
    for (int v = 0; v < V; v++) s += exp(z[v] - m);
    for (int v = 0; v < V; v++) out[v] = z[v] - m - log(s);
}

// forward KL(p || q) (reverse = 0) or KL(q || p) over the vocabulary
static double kl_full_d(const float* z, const float* lp, int V, int reverse) {
    double lq[64], kl = 0.0;
    log_softmax_d(z, V, lq);
    for (int v = 0; v < V; v++)
        kl += reverse ? exp(lq[v]) * (lq[v] - lp[v]) : exp((double)lp[v]) * ((double)lp[v] - lq[v]);
    return kl;
}

static double jsd_full_d(const double* z, const float* lp, int V, double beta) {
    double m = z[0], s = 0.0, jsd = 0.0;
    for (int v = 1; v < V; v++) m = fmax(m, z[v]);
    for (int v = 0; v < V; v++) s += exp(z[v] - m);
    for (int v = 0; v < V; v++) {
        const double q = exp(z[v] - m) / s, p = exp((double)lp[v]), M = beta * p + (1.0 - beta) * q;
        jsd += beta * p * log(p / M) + (1.0 - beta) * q * log(q / M);
    }
    return jsd;
}

// ----------------------------------------------------------------------------
// one row through the objective with a full teacher row

enum { FV = 17 };

typedef struct {
    float* d_logits;
    float* d_teacher;
    float* d_dz;
    DistillBatch b;
} FullRow;

static void full_row_init(FullRow* f, const float* z) {
    memset(f, 0, sizeof(*f));
    f->d_logits = be->alloc(be, sizeof(float) * FV);
    f->d_teacher = be->alloc(be, sizeof(float) * FV);
    f->d_dz = be->alloc(be, sizeof(float) * FV);
    be->upload(be, f->d_logits, z, sizeof(float) * FV);
    f->b = (DistillBatch){.B = 1, .T = 1, .K = 0, .n_rows = 1, .weight = 1.0f};
    f->b.pos = calloc(1, sizeof(int));
    f->b.target = calloc(1, sizeof(int));
    f->b.tail = calloc(1, sizeof(float));
    f->b.old_lp = calloc(1, sizeof(float));
    f->b.exact = calloc(1, sizeof(float));
    f->b.exact[0] = NAN;
}

static void full_row_free(FullRow* f) {
    be->free(be, f->d_logits), be->free(be, f->d_teacher), be->free(be, f->d_dz);
    free(f->b.pos), free(f->b.target), free(f->b.tail), free(f->b.old_lp), free(f->b.exact);
}

static double full_row_run(FullRow* f, DistillLoss loss, double beta, const float* lp, int y, float old_lp, float* dz,
                           DistillStats* st) {
    DistillObjective* o = distill_objective_create(be, loss, beta, FV);
    be->upload(be, f->d_teacher, lp, sizeof(float) * FV);
    be->memset0(be, f->d_dz, sizeof(float) * FV);
    f->b.target[0] = y;
    f->b.old_lp[0] = old_lp;
    memset(st, 0, sizeof(*st));
    distill_objective_run(o, f->d_logits, &f->b, f->d_teacher, f->d_dz, st);
    be->download(be, dz, f->d_dz, sizeof(float) * FV);
    distill_objective_free(o);
    return st->loss;
}

static void random_full(Rng* r, float* z, float* lp) {
    float t[FV];
    double l[FV];
    for (int v = 0; v < FV; v++) z[v] = (float)(2.0 * rng_normal(r)), t[v] = (float)(2.5 * rng_normal(r));
    log_softmax_d(t, FV, l);
    for (int v = 0; v < FV; v++) lp[v] = (float)l[v];
}

static void test_full_rows(void** state) {
    (void)state;
    Rng r;
    rng_seed(&r, 21);
    for (int trial = 0; trial < 5; trial++) {
        float z[FV], lp[FV], dz[FV];
        random_full(&r, z, lp);
        double lq[FV], zd[FV];
        log_softmax_d(z, FV, lq);
        for (int v = 0; v < FV; v++) zd[v] = z[v];
        FullRow f;
        full_row_init(&f, z);
        DistillStats st;
        // forward KL: dz = q - p; reverse: dz = q (lq - lp - KL)
        for (int rev = 0; rev < 2; rev++) {
            const double want = kl_full_d(z, lp, FV, rev);
            double l = full_row_run(&f, rev ? DISTILL_LOSS_REVERSE_KL : DISTILL_LOSS_FORWARD_KL, 0.0, lp, 0, 0.0f, dz,
                                    &st);
            assert_true(fabs(l - want) <= 2e-5 * fmax(1.0, want));
            for (int v = 0; v < FV; v++) {
                const double q = exp(lq[v]), g = rev ? q * (lq[v] - lp[v] - want) : q - exp((double)lp[v]);
                if (fabs(dz[v] - g) > 2e-5) fail_msg("trial %d reverse %d: dz[%d] %g, want %g", trial, rev, v, dz[v], g);
            }
            // the metrics are the full-vocabulary KLs both ways, whichever loss
            assert_true(fabs(st.kl_forward - kl_full_d(z, lp, FV, 0)) <= 2e-5);
            assert_true(fabs(st.kl_reverse - kl_full_d(z, lp, FV, 1)) <= 2e-5);
        }
        // JSD against a double computation and central differences
        const double betas[3] = {0.1, 0.5, 0.9};
        for (int bi = 0; bi < 3; bi++) {
            const double want = jsd_full_d(zd, lp, FV, betas[bi]);
            double l = full_row_run(&f, DISTILL_LOSS_JSD, betas[bi], lp, 0, 0.0f, dz, &st);
            assert_true(fabs(l - want) <= 2e-5 * fmax(1.0, want));
            double err = 0.0, scale = 1.0;
            for (int k = 0; k < FV; k++) {
                double zp[FV], zm[FV];
                memcpy(zp, zd, sizeof(zd));
                memcpy(zm, zd, sizeof(zd));
                zp[k] += 1e-4, zm[k] -= 1e-4;
                const double fd = (jsd_full_d(zp, lp, FV, betas[bi]) - jsd_full_d(zm, lp, FV, betas[bi])) / 2e-4;
                scale = fmax(scale, fabs(fd));
                err = fmax(err, fabs(dz[k] - fd));
            }
            if (err > 1e-4 * scale) fail_msg("jsd beta %g trial %d: gradient off by %g", betas[bi], trial, err);
        }
        // the sampled estimator takes log p(y) from the row: c = rho (lq_y - lp_y), dz = c (onehot - q)
        const int y = (int)rng_below(&r, FV);
        const float old = (float)(lq[y] - 0.3);
        double l = full_row_run(&f, DISTILL_LOSS_REVERSE_KL_SAMPLED, 0.0, lp, y, old, dz, &st);
        const double c = exp(lq[y] - old) * (lq[y] - lp[y]);
        assert_true(fabs(l - c) <= 2e-5 * fmax(1.0, fabs(c)));
        for (int v = 0; v < FV; v++) assert_true(fabs(dz[v] - c * ((v == y) - exp(lq[v]))) <= 2e-5 * fmax(1.0, fabs(c)));
        // agreement: argmax of both
        int az = 0, at = 0;
        for (int v = 0; v < FV; v++) az = z[v] > z[az] ? v : az, at = lp[v] > lp[at] ? v : at;
        assert_true(st.agree == (az == at ? 1.0 : 0.0));
        DistillRowStats rs;
        for (int v = 0; v < FV; v++) lp[v] = (float)lq[v]; // the teacher is the student: KL 0, agreement 1
        distill_row_stats_full(z, lp, FV, &rs);
        assert_true(fabs(rs.kl_forward) <= 1e-6 && fabs(rs.kl_reverse) <= 1e-6 && rs.agree == 1.0);
        full_row_free(&f);
    }
}

// ----------------------------------------------------------------------------
// records with teacher contexts, and their contexts built by hand

static const ModelConfig small_config = {.arch = "builtin",
                                         .vocab_size = 24,
                                         .dim = 16,
                                         .n_layers = 2,
                                         .n_heads = 2,
                                         .n_kv_heads = 1,
                                         .head_dim = 8,
                                         .hidden_dim = 32,
                                         .max_seq_len = 40,
                                         .rope_theta = 10000.0f,
                                         .norm_eps = 1e-5f,
                                         .tied_embeddings = 1};

enum { TV = 24, MAXCTX = 40, MAXSTEP = 4 };

typedef struct {
    Trajectory* t;
    int n_ctx[MAXSTEP];
    int ctx[MAXSTEP][MAXCTX]; // the teacher's full context of each step, by hand
} Rec;

static void push(Trajectory* t, Rng* r, int n, int seg) {
    for (int i = 0; i < n; i++) {
        int32_t tok = 1 + (int32_t)rng_below(r, TV - 1);
        traj_push_context(t, &tok, 1, seg);
    }
}

static void push_agent(Trajectory* t, Rng* r, int n) {
    for (int i = 0; i < n; i++) traj_push_agent(t, (int32_t)rng_below(r, TV), -1.0f - 0.1f * (float)i, NULL, NULL, 0.0f);
}

// the hand-built context: history [0, at) + ids + history [end, n)
static void splice(Rec* rec, int s, int at, int end, const int32_t* ids, int n) {
    const Trajectory* t = rec->t;
    int m = 0;
    for (int i = 0; i < at; i++) rec->ctx[s][m++] = t->tokens[i];
    for (int i = 0; i < n; i++) rec->ctx[s][m++] = ids[i];
    for (int i = end; i < t->n_tokens; i++) rec->ctx[s][m++] = t->tokens[i];
    rec->n_ctx[s] = m;
}

// global-like: the experience inserted after the system message, for every step
static void make_global(Rng* r, Rec* rec) {
    Trajectory* t = rec->t = traj_create(0);
    push(t, r, 3, TRAJ_SEG_SYSTEM);
    push(t, r, 2, TRAJ_SEG_USER);
    traj_begin_step(t, NULL, 0);
    push_agent(t, r, 4);
    push(t, r, 2, TRAJ_SEG_TOOL);
    traj_begin_step(t, NULL, 0);
    push_agent(t, r, 3);
    const int32_t exp[5] = {20, 21, 22, 23, 19};
    traj_add_teacher_context(t, 0, 3, 3, exp, 5);
    t->flags |= TRAJ_FLAG_TEACHER_VIEW;
    for (int s = 0; s < 2; s++) splice(rec, s, 3, 3, exp, 5);
}

// step-wise-like: each step's last observation replaced by itself with items appended; the last
// step saw none (an empty entry after a non-empty one)
static void make_stepwise(Rng* r, Rec* rec) {
    Trajectory* t = rec->t = traj_create(0);
    push(t, r, 2, TRAJ_SEG_SYSTEM);
    push(t, r, 3, TRAJ_SEG_USER); // [2, 5)
    traj_begin_step(t, NULL, 0);
    push_agent(t, r, 3);
    push(t, r, 2, TRAJ_SEG_TOOL); // [8, 10)
    traj_begin_step(t, NULL, 0);
    push_agent(t, r, 4);
    push(t, r, 1, TRAJ_SEG_TOOL); // [14, 15)
    traj_begin_step(t, NULL, 0);
    push_agent(t, r, 2);
    int32_t a[5] = {t->tokens[2], t->tokens[3], t->tokens[4], 20, 21};
    int32_t b[3] = {t->tokens[8], t->tokens[9], 22};
    traj_add_teacher_context(t, 0, 2, 5, a, 5);
    traj_add_teacher_context(t, 1, 8, 10, b, 3);
    traj_add_teacher_context(t, 2, 0, 0, NULL, 0);
    t->flags |= TRAJ_FLAG_TEACHER_VIEW;
    splice(rec, 0, 2, 5, a, 5);
    splice(rec, 1, 8, 10, b, 3);
    splice(rec, 2, 0, 0, NULL, 0);
}

// the teacher's rows by model_forward over each step's hand-built context: (B, T, V) at the
// records' loss positions
static void forward_rows(Model* m, Rec* recs, int B, int T, float* out) {
    float* logits = malloc(sizeof(float) * MAXCTX * TV);
    double row[TV];
    for (int b = 0; b < B; b++) {
        const Trajectory* t = recs[b].t;
        for (int s = 0; s < t->n_steps; s++) {
            const int n = recs[b].n_ctx[s], shift = n - t->n_tokens;
            model_forward(m, recs[b].ctx[s], NULL, 1, n, logits);
            const int end = s + 1 < t->n_steps ? t->step_start[s + 1] : t->n_tokens;
            for (int i = t->step_start[s]; i < end; i++) {
                if (!t->agent_mask[i] || i == 0) continue;
                log_softmax_d(logits + (size_t)(i + shift - 1) * TV, TV, row); // the splice lies before the step
                for (int v = 0; v < TV; v++) out[((size_t)b * T + i - 1) * TV + v] = (float)row[v];
            }
        }
    }
    free(logits);
}

static void test_recompute_matches_forward(void** state) {
    (void)state;
    Model* m = model_create(&small_config, be, 2, MAXCTX);
    model_init_random(m, 5);
    Rng r;
    rng_seed(&r, 22);
    Rec recs[2] = {{0}};
    make_global(&r, &recs[0]);
    make_stepwise(&r, &recs[1]);
    Trajectory* seqs[2] = {recs[0].t, recs[1].t};
    const int B = 2, T = 24, N = B * T;
    assert_true(recs[0].t->n_tokens <= T && recs[1].t->n_tokens <= T);
    assert_int_equal(distill_teacher_need(recs[0].t), recs[0].n_ctx[1] - 1);

    DistillTeacher* teacher = distill_teacher_create(m, MAXCTX);
    float* staging = malloc(sizeof(float) * model_num_params(m));
    distill_teacher_refresh(teacher, m, staging);
    float* d_rows = be->alloc(be, sizeof(float) * N * TV);
    float* rows = calloc((size_t)N * TV, sizeof(float));
    float* ref = calloc((size_t)N * TV, sizeof(float));
    distill_teacher_rows(teacher, seqs, B, T, d_rows);
    be->download(be, rows, d_rows, sizeof(float) * N * TV);
    forward_rows(m, recs, B, T, ref);
    DistillBatch batch = {0};
    distill_batch_fill(&batch, seqs, B, T, 1.0f / 16.0f);
    assert_int_equal(batch.n_rows, 7 + 9);
    double worst = 0.0;
    for (int k = 0; k < batch.n_rows; k++) {
        for (int v = 0; v < TV; v++) {
            const size_t at = (size_t)batch.pos[k] * TV + v;
            worst = fmax(worst, fabs(rows[at] - ref[at]));
        }
    }
    if (worst > 1e-4) fail_msg("decoder rows differ from model_forward rows by %g", worst);
    printf("recompute: teacher rows vs model_forward over the hand-built contexts: max |diff| %.3g\n", worst);
    // the experience in context matters: the same rows without it differ
    double moved = 0.0;
    float* plain = malloc(sizeof(float) * MAXCTX * TV);
    model_forward(m, recs[0].t->tokens, NULL, 1, recs[0].t->n_tokens, plain);
    const int p0 = batch.pos[0];
    double lrow[TV];
    log_softmax_d(plain + (size_t)p0 * TV, TV, lrow);
    for (int v = 0; v < TV; v++) moved = fmax(moved, fabs(lrow[v] - ref[(size_t)p0 * TV + v]));
    assert_true(moved > 1e-3);

    // the losses fed by the teacher's rows equal the blocks fed by the forward rows
    float* logits = malloc(sizeof(float) * N * TV);
    for (int i = 0; i < N * TV; i++) logits[i] = (float)rng_normal(&r);
    float* d_logits = be->alloc(be, sizeof(float) * N * TV);
    float* d_ref = be->alloc(be, sizeof(float) * N * TV);
    float* d_dz = be->alloc(be, sizeof(float) * N * TV);
    float *dz = malloc(sizeof(float) * N * TV), *dz_ref = malloc(sizeof(float) * N * TV);
    float* w = calloc((size_t)N, sizeof(float));
    int* tgt = malloc(sizeof(int) * N);
    float *tlp = calloc((size_t)N, sizeof(float)), *old = calloc((size_t)N, sizeof(float));
    for (int p = 0; p < N; p++) tgt[p] = -1;
    for (int k = 0; k < batch.n_rows; k++) {
        const int p = batch.pos[k];
        w[p] = batch.weight, tgt[p] = batch.target[k], old[p] = batch.old_lp[k];
        tlp[p] = ref[(size_t)p * TV + tgt[p]];
    }
    float* d_w = be->alloc(be, sizeof(float) * N);
    int* d_tgt = be->alloc(be, sizeof(int) * N);
    float* d_tlp = be->alloc(be, sizeof(float) * N);
    float* d_old = be->alloc(be, sizeof(float) * N);
    be->upload(be, d_logits, logits, sizeof(float) * N * TV);
    be->upload(be, d_w, w, sizeof(float) * N);
    be->upload(be, d_tgt, tgt, sizeof(int) * N);
    be->upload(be, d_tlp, tlp, sizeof(float) * N);
    be->upload(be, d_old, old, sizeof(float) * N);
    const DistillLoss losses[3] = {DISTILL_LOSS_FORWARD_KL, DISTILL_LOSS_REVERSE_KL, DISTILL_LOSS_REVERSE_KL_SAMPLED};
    for (int li = 0; li < 3; li++) {
        DistillObjective* o = distill_objective_create(be, losses[li], 0.5, TV);
        be->memset0(be, d_dz, sizeof(float) * N * TV);
        DistillStats st = {0};
        distill_objective_run(o, d_logits, &batch, d_rows, d_dz, &st);
        be->download(be, dz, d_dz, sizeof(float) * N * TV);
        be->upload(be, d_ref, ref, sizeof(float) * N * TV);
        be->memset0(be, d_dz, sizeof(float) * N * TV);
        const double want = li < 2 ? loss_kl_full(be, d_logits, d_ref, d_w, N, TV, li, NULL, d_dz, LOSS_DZ_ADD)
                                   : loss_kl_sampled(be, d_logits, d_tgt, d_tlp, d_old, d_w, N, TV, NULL, d_dz,
                                                     LOSS_DZ_ADD);
        be->download(be, dz_ref, d_dz, sizeof(float) * N * TV);
        if (fabs(st.loss - want) > 1e-5 * fmax(1.0, fabs(want)))
            fail_msg("loss %d: recompute %.9g, direct %.9g", li, st.loss, want);
        double g = 0.0;
        for (int i = 0; i < N * TV; i++) g = fmax(g, fabs(dz[i] - dz_ref[i]));
        if (g > 1e-5) fail_msg("loss %d: gradients differ by %g", li, g);
        printf("recompute loss %d: %.7f (direct %.7f), max |dz diff| %.2g\n", li, st.loss, want, g);
        distill_objective_free(o);
    }

    // frozen: new student weights leave the teacher's rows alone until the next refresh
    float* before = malloc(sizeof(float) * N * TV);
    memcpy(before, rows, sizeof(float) * N * TV);
    model_init_random(m, 6);
    distill_teacher_rows(teacher, seqs, B, T, d_rows);
    be->download(be, rows, d_rows, sizeof(float) * N * TV);
    for (int k = 0; k < batch.n_rows; k++)
        assert_memory_equal(rows + (size_t)batch.pos[k] * TV, before + (size_t)batch.pos[k] * TV, sizeof(float) * TV);
    distill_teacher_refresh(teacher, m, staging);
    distill_teacher_rows(teacher, seqs, B, T, d_rows);
    be->download(be, rows, d_rows, sizeof(float) * N * TV);
    forward_rows(m, recs, B, T, ref);
    worst = 0.0;
    for (int k = 0; k < batch.n_rows; k++) {
        for (int v = 0; v < TV; v++) worst = fmax(worst, fabs(rows[(size_t)batch.pos[k] * TV + v] - ref[(size_t)batch.pos[k] * TV + v]));
    }
    assert_true(worst <= 1e-4);

    free(before), free(plain), free(logits), free(dz), free(dz_ref), free(w), free(tgt), free(tlp), free(old);
    free(rows), free(ref), free(staging);
    be->free(be, d_rows), be->free(be, d_logits), be->free(be, d_ref), be->free(be, d_dz);
    be->free(be, d_w), be->free(be, d_tgt), be->free(be, d_tlp), be->free(be, d_old);
    distill_batch_free(&batch);
    distill_teacher_free(teacher);
    traj_free(recs[0].t), traj_free(recs[1].t);
    model_free(m);
}

// ----------------------------------------------------------------------------
// the exact teacher log-prob of a record replaces the bucket rule

static void test_exact_sampled_lp(void** state) {
    (void)state;
    enum { V = 11, K = 2 };
    Trajectory* t = traj_create(K);
    int32_t ctx = 3, ids[K] = {1, 2};
    float lp[K] = {-0.5f, -1.5f};
    traj_push_context(t, &ctx, 1, TRAJ_SEG_USER);
    traj_push_agent(t, 7, -2.0f, ids, lp, 0.2f); // 7 is outside the top-k
    traj_push_agent(t, 1, -0.7f, ids, lp, 0.2f);
    const float exact[2] = {-3.25f, -0.25f};
    Rng r;
    rng_seed(&r, 23);
    float z[2 * V];
    for (int i = 0; i < 2 * V; i++) z[i] = (float)rng_normal(&r);
    float* d_z = be->alloc(be, sizeof(z));
    float* d_dz = be->alloc(be, sizeof(z));
    be->upload(be, d_z, z, sizeof(z));
    double loss[2];
    for (int with = 0; with < 2; with++) {
        if (with) traj_set_teacher_lp(t, exact);
        DistillBatch b = {0};
        distill_batch_fill(&b, &t, 1, 3, 1.0f);
        assert_int_equal(b.n_rows, 2);
        assert_true(with ? b.exact[0] == exact[0] && b.exact[1] == exact[1] : isnan(b.exact[0]) && isnan(b.exact[1]));
        DistillObjective* o = distill_objective_create(be, DISTILL_LOSS_REVERSE_KL_SAMPLED, 0.0, V);
        be->memset0(be, d_dz, sizeof(z));
        DistillStats st = {0};
        distill_objective_run(o, d_z, &b, NULL, d_dz, &st);
        loss[with] = st.loss;
        double want = 0.0;
        for (int k = 0; k < 2; k++) {
            const float lt = with ? exact[k] : loss_row_sampled_lp(z + k * V, V, b.target[k], ids, lp, 0.2f, K);
            want += loss_row_kl_sampled(z + k * V, V, b.target[k], lt, &b.old_lp[k], 1.0f, NULL);
        }
        assert_true(fabs(st.loss - want) <= 1e-6 * fmax(1.0, fabs(want)));
        distill_objective_free(o);
        distill_batch_free(&b);
    }
    assert_true(fabs(loss[0] - loss[1]) > 1e-3); // the exact log-probs are not the bucket rule's
    be->free(be, d_z), be->free(be, d_dz);
    traj_free(t);
}

// the student view (shards) keeps the teacher's log-probs row for row and its contexts as they are
static void test_student_view_keeps_teacher(void** state) {
    (void)state;
    Trajectory* t = traj_create(0);
    const int32_t sys[2] = {1, 2}, exp[3] = {20, 21, 22}, user[2] = {3, 4}, repl[2] = {5, 6};
    traj_push_context(t, sys, 2, TRAJ_SEG_SYSTEM);
    traj_push_context(t, exp, 3, TRAJ_SEG_EXPERIENCE);
    traj_push_context(t, user, 2, TRAJ_SEG_USER);
    traj_begin_step(t, NULL, 0);
    for (int i = 0; i < 3; i++) traj_push_agent(t, 7 + i, -0.5f, NULL, NULL, 0.0f);
    const float lp[3] = {-0.1f, -0.2f, -0.3f};
    traj_set_teacher_lp(t, lp);
    traj_add_teacher_context(t, 0, 2, 2, repl, 2);
    t->flags = TRAJ_FLAG_TEACHER | TRAJ_FLAG_TEACHER_VIEW;
    Trajectory* s = shards_student_record(t);
    assert_int_equal(s->n_tokens, 7);
    assert_true(s->teacher_lp && memcmp(s->teacher_lp, lp, sizeof(lp)) == 0);
    assert_int_equal(s->n_tctx, 1);
    assert_true(s->tctx_at[0] == 2 && s->tctx_end[0] == 2 && s->tctx_ids[1] == 6);
    assert_true(s->flags & TRAJ_FLAG_TEACHER_VIEW);
    int n, end, shift;
    int32_t* c = traj_teacher_context(s, 0, &n, &end, &shift);
    const int32_t want[9] = {1, 2, 5, 6, 3, 4, 7, 8, 9};
    assert_int_equal(n, 9);
    assert_memory_equal(c, want, sizeof(want));
    free(c);
    traj_free(s);
    traj_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_rows),
        cmocka_unit_test(test_recompute_matches_forward),
        cmocka_unit_test(test_exact_sampled_lp),
        cmocka_unit_test(test_student_view_keeps_teacher),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
