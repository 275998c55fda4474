// MPI test of the data-parallel distillation trainer, run at np = 1, 2 and 4 by ctest:
//   - two iterations of off-policy training on the shards of `np` trainers give bit-identical
//     weights, step metrics and AdamW moments to one trainer (rank 0, MPI_COMM_SELF) trained on
//     the same global data in one shard (the fixed-point reduction's promise)
//   - the ZeRO-1 moments written as hyperslabs by np trainers read back on one trainer, and the
//     moments written by one trainer read back on np trainers (another trainer count)
//   - on-policy losses (sampled-token reverse KL, JSD) are bit-identical to one trainer too
//   - distill.teacher: recompute (the frozen teacher's full distribution with the experience
//     spliced back into its context): two iterations of forward KL and one of JSD, bit-identical
//     weights and metrics to one trainer
//   - a step whose gradients exceed the fixed-point range is recomputed at a wider one, still
//     bit-identical to one trainer
//   - float reduction keeps the trainers in sync (its weights differ from fixed-point only by
//     rounding; the difference is printed)
//   - the weight broadcast gives every rank the root's weights; the sync check names a rank
//     whose weights differ; a bad token on one trainer fails distill_train on every trainer
//     with the same message
//   - a trainer whose shard holds nothing to learn from (step-wise items fire at no step of its
//     episodes) trains with the others instead of failing the top-k size check
// Built on the emulated GPU (tests/emu, TEST_TRAINER_CUDA), each rank trains on a GPU of its own in
// the bf16 mode and every trainer asks for NCCL (nccl_emu over MPI): the same checks then cover the
// NCCL paths, the trainers' sums and parameter gathers and the weight broadcast, on several ranks.
// usage: test_trainer_dp DIR (checkpoint scratch directory)
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "distill/shards.h"
#include "distill/trainer.h"
#include "io/ckpt.h"
#include "io/config.h"
#include "model/devcomm.h"
#include "model/model.h"
#include "model/rng.h"
#include "mpitest.h"

#define N_SEQS 18
#define TOPK 4
#define MAX_SEQ 64

#ifdef TEST_TRAINER_CUDA
#define ON_GPU 1
#else
#define ON_GPU 0
#endif

static int rank, world;

// the same global data on every rank: teacher trajectories of 16..56 tokens, two of them failed
static Trajectory** make_data(int V) {
    Rng r;
    rng_seed(&r, 77);
    Trajectory** list = malloc(sizeof(Trajectory*) * N_SEQS);
    for (int s = 0; s < N_SEQS; s++) {
        Trajectory* t = traj_create(TOPK);
        t->task_id = s / 2;
        t->sample = s % 2;
        t->seed = 500 + (uint64_t)s;
        t->flags = TRAJ_FLAG_TEACHER;
        t->final_reward = s == 3 || s == 10 ? 0.0f : 1.0f; // rejected by the threshold 1
        const int len = 16 + (int)rng_below(&r, 41), ctx = 4 + (int)rng_below(&r, 6);
        for (int i = 0; i < ctx; i++) {
            int32_t tok = (int32_t)rng_below(&r, (uint64_t)V);
            traj_push_context(t, &tok, 1, i < 2 ? TRAJ_SEG_SYSTEM : TRAJ_SEG_EXPERIENCE);
        }
        traj_begin_step(t, NULL, 0);
        for (int i = ctx; i < len; i++) {
            if (i % 9 == 0) { // a tool observation now and then
                int32_t tok = (int32_t)rng_below(&r, (uint64_t)V);
                traj_push_context(t, &tok, 1, TRAJ_SEG_TOOL);
                continue;
            }
            int32_t ids[TOPK];
            float lp[TOPK];
            double mass = 0.0;
            for (int k = 0; k < TOPK; k++) {
                int fresh;
                do {
                    ids[k] = (int32_t)rng_below(&r, (uint64_t)V);
                    fresh = 1;
                    for (int j = 0; j < k; j++) fresh &= ids[j] != ids[k];
                } while (!fresh);
                lp[k] = (float)(-0.4 - 0.8 * k - 0.5 * rng_uniform(&r));
                mass += exp(lp[k]);
            }
            traj_push_agent(t, ids[rng_below(&r, TOPK)], lp[0], ids, lp, (float)fmax(0.0, 1.0 - mass));
        }
        list[s] = t;
    }
    return list;
}

static DistillOptions options(DistillReduce reduce) {
    DistillOptions o = {.loss = DISTILL_LOSS_FORWARD_KL,
                        .epochs = ON_GPU ? 1 : 2, // the emulated GPU takes a minute per epoch here
                        .micro_batch_tokens = 128,
                        .batch_tokens = ON_GPU ? 200 : 300, // so still several steps
                        .max_batch = 4,
                        .max_seq = MAX_SEQ,
                        .adamw = adamw_default_config(),
                        .seed = 5,
                        .reduce = reduce,
                        .bucket_bytes = 1 << 20, // several buckets per collective
                        .check_sync = 1,
                        .nccl = ON_GPU};
    o.adamw.lr = 1e-3f;
    o.adamw.warmup_steps = 2;
    o.adamw.weight_decay = 0.01f;
    return o;
}

typedef struct {
    Model* m;
    DistillTrainer* t;
    DistillReport rep[2];
} Run;

// `iterations` iterations on `shard` over comm
static void train(Run* run, Backend* be, const ModelConfig* c, const Shard* shard, const DistillOptions* o,
                  int iterations, MPI_Comm comm) {
    memset(run, 0, sizeof(*run));
    run->m = model_create(c, be, 4, MAX_SEQ);
    model_init_random(run->m, 9);
    run->t = distill_trainer_create(run->m, o, comm);
    for (int it = 0; it < iterations; it++) {
        char err[1024];
        int rc = distill_train(run->t, shard, it, &run->rep[it], err, sizeof(err));
        CHECK(rc == 0, "distill_train iteration %d: %s", it, err);
    }
}

static void run_free(Run* run) {
    for (int it = 0; it < 2; it++) distill_report_free(&run->rep[it]);
    distill_trainer_free(run->t);
    model_free(run->m);
}

static int metrics_equal(const DistillStepMetrics* a, const DistillStepMetrics* b) {
    return a->loss == b->loss && a->kl_forward == b->kl_forward && a->kl_reverse == b->kl_reverse &&
           a->top1_agree == b->top1_agree && a->entropy == b->entropy && a->grad_norm == b->grad_norm &&
           a->lr == b->lr && a->tokens == b->tokens && a->loss_tokens == b->loss_tokens &&
           a->micro_batches == b->micro_batches && a->fp_exponent == b->fp_exponent && a->global_step == b->global_step;
}

// ----------------------------------------------------------------------------

static void test_determinism(Backend* be, const ModelConfig* c, Trajectory** data, const char* dir) {
    ShardSet set;
    shards_build(data, N_SEQS, REGIME_OFF_POLICY, 1.0, world, &set);
    Run dp;
    const DistillOptions fixed = options(DISTILL_REDUCE_FIXED);
    DistillOptions asks_nccl = fixed; // on CPU backends every trainer declines NCCL alike: host staging
    asks_nccl.nccl = 1;
    train(&dp, be, c, &set.shards[rank], &asks_nccl, 2, MPI_COMM_WORLD);
    CHECK(distill_trainer_uses_nccl(dp.t) == ON_GPU, "the trainers %s NCCL", ON_GPU ? "do not use" : "use");
    const size_t n = model_num_params(dp.m);
    float* w = malloc(sizeof(float) * n);
    model_params_download(dp.m, w);
    uint64_t off, cnt, total;
    distill_trainer_slice(dp.t, &off, &cnt, &total);
    CHECK(total == n, "slice of %llu parameters, model has %zu", (unsigned long long)total, n);
    CHECK(dp.rep[0].n_steps > 2 && dp.rep[0].steps[0].micro_batches > 1, "want several steps of several micro-batches");

    // the moments of np trainers, as hyperslabs of one checkpoint
    char path[1024], sub[1024];
    snprintf(sub, sizeof(sub), "%s/np%d", dir, world);
    CkptFile* f = ckpt_create(sub, 0, MPI_COMM_WORLD);
    distill_state_write(dp.t, f, "optimizer/m", "optimizer/v", n);
    char* written = ckpt_commit(f);
    snprintf(path, sizeof(path), "%s", written);
    free(written);

    if (rank == 0) {
        ShardSet one;
        shards_build(data, N_SEQS, REGIME_OFF_POLICY, 1.0, 1, &one);
        Run ref;
        train(&ref, be, c, &one.shards[0], &fixed, 2, MPI_COMM_SELF);
        float* wr = malloc(sizeof(float) * n);
        model_params_download(ref.m, wr);
        size_t diff = 0;
        for (size_t i = 0; i < n; i++) diff += memcmp(&w[i], &wr[i], sizeof(float)) != 0;
        CHECK(diff == 0, "np=%d: %zu of %zu weights differ from one trainer's", world, diff, n);
        for (int it = 0; it < 2; it++) {
            CHECK(dp.rep[it].n_steps == ref.rep[it].n_steps, "iteration %d: %d steps vs %d", it, dp.rep[it].n_steps,
                  ref.rep[it].n_steps);
            for (int s = 0; s < dp.rep[it].n_steps && s < ref.rep[it].n_steps; s++) {
                CHECK(metrics_equal(&dp.rep[it].steps[s], &ref.rep[it].steps[s]),
                      "iteration %d step %d: metrics differ (loss %.17g vs %.17g, |g| %.17g vs %.17g)", it, s,
                      dp.rep[it].steps[s].loss, ref.rep[it].steps[s].loss, dp.rep[it].steps[s].grad_norm,
                      ref.rep[it].steps[s].grad_norm);
            }
        }
        for (int it = 0; it < 2; it++) {
            for (int s = 0; s < ref.rep[it].n_steps; s++)
                CHECK(!ref.rep[it].steps[s].recomputed, "step %d recomputed", s);
        }
        const DistillStepMetrics* first = &ref.rep[0].steps[0];
        const DistillStepMetrics* last = &ref.rep[1].steps[ref.rep[1].n_steps - 1];
        CHECK(isfinite(first->loss) && first->loss > 0 && fabs(first->kl_forward - first->loss) <= 1e-5 * first->loss,
              "first step: loss %g, kl_forward %g (the same quantity)", first->loss, first->kl_forward);
        CHECK(last->loss < first->loss, "loss did not fall: %g -> %g", first->loss, last->loss);
        CHECK(first->entropy > 0 && first->top1_agree >= 0 && first->top1_agree <= 1 && first->lr > 0,
              "metrics out of range");

        // the moments written by np trainers, read on one: the single trainer's moments
        float* m1 = malloc(sizeof(float) * n);
        float* v1 = malloc(sizeof(float) * n);
        float* m2 = malloc(sizeof(float) * n);
        float* v2 = malloc(sizeof(float) * n);
        long steps, steps2;
        distill_trainer_state_get(ref.t, m1, v1, &steps);
        char err[1024];
        CkptFile* in = ckpt_open(path, err, sizeof(err));
        CHECK(in != NULL, "%s", err);
        if (in) {
            CHECK(ckpt_get_array(in, "optimizer/m", CKPT_F32, n, m2, err, sizeof(err)) == 0, "%s", err);
            CHECK(ckpt_get_array(in, "optimizer/v", CKPT_F32, n, v2, err, sizeof(err)) == 0, "%s", err);
            CHECK(memcmp(m1, m2, sizeof(float) * n) == 0 && memcmp(v1, v2, sizeof(float) * n) == 0,
                  "np=%d moments differ from one trainer's", world);
            CHECK(distill_state_read(ref.t, in, "optimizer/m", "optimizer/v", steps, err, sizeof(err)) == 0, "%s", err);
            distill_trainer_state_get(ref.t, m2, v2, &steps2);
            CHECK(memcmp(m1, m2, sizeof(float) * n) == 0 && steps2 == steps, "state read back on one trainer differs");
            CHECK(distill_state_read(ref.t, in, "optimizer/m", "missing/v", steps, err, sizeof(err)) == -1 &&
                      strstr(err, "missing/v") != NULL,
                  "a missing dataset must be named: %s", err);
            ckpt_close(in);
        }
        CHECK(distill_trainer_steps_done(ref.t) == distill_trainer_steps_done(dp.t), "step counts differ");
        // one trainer's moments, for the np trainers to read below
        snprintf(sub, sizeof(sub), "%s/one_from_np%d", dir, world);
        CkptFile* g = ckpt_create(sub, 0, MPI_COMM_SELF);
        distill_state_write(ref.t, g, "optimizer/m", "optimizer/v", n);
        free(ckpt_commit(g));
        free(m1), free(v1), free(m2), free(v2), free(wr);
        run_free(&ref);
        shards_free(&one);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    // np trainers read the single trainer's moments: their own slices, exactly
    snprintf(path, sizeof(path), "%s/one_from_np%d/iter_0000.h5", dir, world);
    char err[1024];
    CkptFile* in = ckpt_open(path, err, sizeof(err));
    CHECK(in != NULL, "%s", err);
    if (in) {
        float* m1 = malloc(sizeof(float) * (cnt ? cnt : 1));
        float* v1 = malloc(sizeof(float) * (cnt ? cnt : 1));
        float* m2 = malloc(sizeof(float) * (cnt ? cnt : 1));
        float* v2 = malloc(sizeof(float) * (cnt ? cnt : 1));
        long s1, s2;
        distill_trainer_state_get(dp.t, m1, v1, &s1);
        CHECK(distill_state_read(dp.t, in, "optimizer/m", "optimizer/v", s1, err, sizeof(err)) == 0, "%s", err);
        distill_trainer_state_get(dp.t, m2, v2, &s2);
        CHECK(memcmp(m1, m2, sizeof(float) * cnt) == 0 && memcmp(v1, v2, sizeof(float) * cnt) == 0,
              "slice [%llu, +%llu) read from one trainer's checkpoint differs", (unsigned long long)off,
              (unsigned long long)cnt);
        free(m1), free(v1), free(m2), free(v2);
        ckpt_close(in);
    }

    // float reduction: in sync on every trainer, close to the fixed-point weights
    Run fl;
    const DistillOptions flt = options(DISTILL_REDUCE_FLOAT);
    train(&fl, be, c, &set.shards[rank], &flt, 2, MPI_COMM_WORLD);
    CHECK(distill_trainer_check_sync(fl.t, err, sizeof(err)) == 0, "float mode out of sync: %s", err);
    float* wf = malloc(sizeof(float) * n);
    model_params_download(fl.m, wf);
    double d = 0.0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)wf[i] - w[i]));
    if (rank == 0)
        printf("np=%d: float vs fixed-point reduction, max |weight difference| after 2 iterations: %.3g\n", world, d);
    CHECK(d < 1e-2, "float and fixed-point weights differ by %g", d);
    free(wf);
    run_free(&fl);
    free(w);
    run_free(&dp);
    shards_free(&set);
}

// The recompute path: with an assumed range far below the gradients, every step overflows it,
// measures the largest gradient, and runs again at the exponent that fits: still bit-identical
// to one trainer.
static void test_recompute(Backend* be, const ModelConfig* c, Trajectory** data) {
    ShardSet set;
    shards_build(data, N_SEQS, REGIME_OFF_POLICY, 1.0, world, &set);
    DistillOptions o = options(DISTILL_REDUCE_FIXED);
    o.epochs = 1;
    o.fp_max_exp = -30;
    Run dp;
    train(&dp, be, c, &set.shards[rank], &o, 1, MPI_COMM_WORLD);
    const size_t n = model_num_params(dp.m);
    float* w = malloc(sizeof(float) * n);
    model_params_download(dp.m, w);
    for (int s = 0; s < dp.rep[0].n_steps; s++) {
        CHECK(dp.rep[0].steps[s].recomputed && dp.rep[0].steps[s].fp_exponent < distill_fp_exponent(1, -30),
              "step %d: recomputed %d at 2^%d", s, dp.rep[0].steps[s].recomputed, dp.rep[0].steps[s].fp_exponent);
    }
    if (rank == 0) {
        ShardSet one;
        shards_build(data, N_SEQS, REGIME_OFF_POLICY, 1.0, 1, &one);
        Run ref;
        train(&ref, be, c, &one.shards[0], &o, 1, MPI_COMM_SELF);
        float* wr = malloc(sizeof(float) * n);
        model_params_download(ref.m, wr);
        CHECK(memcmp(w, wr, sizeof(float) * n) == 0, "np=%d: recomputed steps give other weights than one trainer's",
              world);
        for (int s = 0; s < dp.rep[0].n_steps && s < ref.rep[0].n_steps; s++) {
            CHECK(metrics_equal(&dp.rep[0].steps[s], &ref.rep[0].steps[s]), "step %d: metrics differ", s);
        }
        free(wr);
        run_free(&ref);
        shards_free(&one);
    }
    free(w);
    run_free(&dp);
    shards_free(&set);
}

// On-policy losses (the student's own trajectories): reverse KL by the sampled-token estimator
// and generalised JSD, one epoch each, bit-identical to one trainer.
static void test_on_policy(Backend* be, const ModelConfig* c, Trajectory** data) {
    for (int s = 0; s < N_SEQS; s++) data[s]->flags &= ~(uint32_t)TRAJ_FLAG_TEACHER;
    ShardSet set, one;
    shards_build(data, N_SEQS, REGIME_ON_POLICY, 0.0, world, &set);
    shards_build(data, N_SEQS, REGIME_ON_POLICY, 0.0, 1, &one);
    const DistillLoss losses[2] = {DISTILL_LOSS_REVERSE_KL_SAMPLED, DISTILL_LOSS_JSD};
    for (int li = 0; li < 2; li++) {
        DistillOptions o = options(DISTILL_REDUCE_FIXED);
        o.loss = losses[li];
        o.jsd_beta = 0.3;
        o.epochs = 1;
        Run dp;
        train(&dp, be, c, &set.shards[rank], &o, 1, MPI_COMM_WORLD);
        CHECK(dp.rep[0].n_steps > 1 && isfinite(dp.rep[0].steps[0].loss), "loss %d: %d steps", li, dp.rep[0].n_steps);
        if (rank == 0) {
            Run ref;
            train(&ref, be, c, &one.shards[0], &o, 1, MPI_COMM_SELF);
            const size_t n = model_num_params(dp.m);
            float* a = malloc(sizeof(float) * n);
            float* b = malloc(sizeof(float) * n);
            model_params_download(dp.m, a);
            model_params_download(ref.m, b);
            CHECK(memcmp(a, b, sizeof(float) * n) == 0, "np=%d loss %d: weights differ from one trainer's", world, li);
            for (int s = 0; s < dp.rep[0].n_steps && s < ref.rep[0].n_steps; s++) {
                CHECK(metrics_equal(&dp.rep[0].steps[s], &ref.rep[0].steps[s]), "loss %d step %d: metrics differ", li,
                      s);
            }
            free(a);
            free(b);
            run_free(&ref);
        }
        run_free(&dp);
    }
    shards_free(&set);
    shards_free(&one);
    for (int s = 0; s < N_SEQS; s++) data[s]->flags |= TRAJ_FLAG_TEACHER;
}

// distill.teacher: recompute. Each record's teacher context puts its experience tokens back after
// the system message (what agent_teacher_view records for a global teacher record); the student
// views lose them. The frozen teacher is refreshed at each iteration's start on every trainer.
static void test_teacher_recompute(Backend* be, const ModelConfig* c, Trajectory** data) {
    for (int s = 0; s < N_SEQS; s++) {
        Trajectory* t = data[s];
        int32_t exp[16];
        int n = 0;
        for (int i = 0; i < t->n_tokens; i++) {
            if (t->segment[i] == TRAJ_SEG_EXPERIENCE) exp[n++] = t->tokens[i];
        }
        traj_add_teacher_context(t, 0, 2, 2, exp, n);
        t->flags |= TRAJ_FLAG_TEACHER_VIEW;
    }
    ShardSet set, one;
    shards_build(data, N_SEQS, REGIME_OFF_POLICY, 1.0, world, &set);
    shards_build(data, N_SEQS, REGIME_OFF_POLICY, 1.0, 1, &one);
    const DistillLoss losses[2] = {DISTILL_LOSS_FORWARD_KL, DISTILL_LOSS_JSD};
    for (int li = 0; li < 2; li++) {
        DistillOptions o = options(DISTILL_REDUCE_FIXED);
        o.loss = losses[li];
        o.jsd_beta = 0.3;
        o.epochs = 1;
        o.teacher_recompute = 1;
        o.teacher_max_len = MAX_SEQ + 16;
        const int iterations = li == 0 ? 2 : 1;
        Run dp;
        train(&dp, be, c, &set.shards[rank], &o, iterations, MPI_COMM_WORLD);
        CHECK(dp.rep[0].n_steps > 1 && isfinite(dp.rep[0].steps[0].loss) && dp.rep[0].steps[0].loss > 0,
              "recompute loss %d: %d steps, loss %g", li, dp.rep[0].n_steps, dp.rep[0].steps[0].loss);
        if (rank == 0) {
            Run ref;
            train(&ref, be, c, &one.shards[0], &o, iterations, MPI_COMM_SELF);
            const size_t n = model_num_params(dp.m);
            float* a = malloc(sizeof(float) * n);
            float* b = malloc(sizeof(float) * n);
            model_params_download(dp.m, a);
            model_params_download(ref.m, b);
            CHECK(memcmp(a, b, sizeof(float) * n) == 0, "np=%d recompute loss %d: weights differ from one trainer's",
                  world, li);
            for (int it = 0; it < iterations; it++) {
                for (int s = 0; s < dp.rep[it].n_steps && s < ref.rep[it].n_steps; s++) {
                    CHECK(metrics_equal(&dp.rep[it].steps[s], &ref.rep[it].steps[s]),
                          "recompute loss %d iteration %d step %d: metrics differ", li, it, s);
                }
            }
            const DistillStepMetrics* f = &ref.rep[0].steps[0];
            printf("np=%d recompute loss %d: first step loss %.5f, kl_forward %.5f, kl_reverse %.5f, agree %.3f\n",
                   world, li, f->loss, f->kl_forward, f->kl_reverse, f->top1_agree);
            free(a);
            free(b);
            run_free(&ref);
        }
        run_free(&dp);
    }
    shards_free(&set);
    shards_free(&one);
}

static void test_broadcast_and_sync_check(Backend* be, const ModelConfig* c) {
    Model* m = model_create(c, be, 1, 8);
    model_init_random(m, 100 + (uint64_t)rank); // different weights everywhere
    const int root = world - 1;
    uint64_t h = distill_weights_hash(m), root_h = h;
    MPI_Bcast(&root_h, 1, MPI_UINT64_T, root, MPI_COMM_WORLD);
    DevComm* nccl = ON_GPU ? distill_nccl_open(be, MPI_COMM_WORLD, "the test's weight broadcast") : NULL;
    CHECK((nccl != NULL) == ON_GPU, "NCCL %s", ON_GPU ? "did not open" : "opened on the CPU");
    distill_broadcast_weights(m, root, MPI_COMM_WORLD, 1 << 20, nccl);
    devcomm_free(nccl);
    h = distill_weights_hash(m);
    CHECK(h == root_h, "weights after the broadcast differ from root %d's", root);

    DistillOptions o = options(DISTILL_REDUCE_FIXED);
    o.max_seq = 8;
    o.max_batch = 1;
    DistillTrainer* t = distill_trainer_create(m, &o, MPI_COMM_WORLD);
    char err[1024] = "";
    CHECK(distill_trainer_check_sync(t, err, sizeof(err)) == 0, "in sync after the broadcast: %s", err);
    if (world > 1) {
        if (rank == world - 1) { // one element of the final norm changes on the last rank
            float* norm = malloc(sizeof(float) * (size_t)c->dim);
            model_tensor_download(m, PARAM_FINAL_NORM, 0, norm);
            norm[0] += 0.5f;
            model_tensor_upload(m, PARAM_FINAL_NORM, 0, norm);
            free(norm);
        }
        char expect[32];
        snprintf(expect, sizeof(expect), " %d", world - 1);
        CHECK(distill_trainer_check_sync(t, err, sizeof(err)) == -1 && strstr(err, expect) != NULL,
              "the sync check must name trainer %d: '%s'", world - 1, err);
    }
    distill_trainer_free(t);
    model_free(m);
}

// a token outside the vocabulary on the last trainer: every trainer returns the same error
static void test_bad_data(Backend* be, const ModelConfig* c, Trajectory** data) {
    ShardSet set;
    shards_build(data, N_SEQS, REGIME_OFF_POLICY, 1.0, world, &set);
    Shard* mine = &set.shards[rank];
    if (rank == world - 1 && mine->n > 0) mine->seqs[0]->tokens[1] = c->vocab_size;
    Model* m = model_create(c, be, 4, MAX_SEQ);
    model_init_random(m, 9);
    DistillOptions o = options(DISTILL_REDUCE_FIXED);
    DistillTrainer* t = distill_trainer_create(m, &o, MPI_COMM_WORLD);
    uint64_t before = distill_weights_hash(m);
    char err[1024] = "";
    int rc = distill_train(t, mine, 0, NULL, err, sizeof(err));
    char expect[64];
    snprintf(expect, sizeof(expect), "trainer %d, sequence 0", world - 1);
    CHECK(rc == -1 && strstr(err, "outside the vocabulary") && strstr(err, expect), "rc %d, error '%s'", rc, err);
    // the same message everywhere
    char first[1024];
    memcpy(first, err, sizeof(first));
    MPI_Bcast(first, sizeof(first), MPI_CHAR, 0, MPI_COMM_WORLD);
    CHECK(strcmp(first, err) == 0, "trainers disagree on the error: '%s' vs '%s'", err, first);
    CHECK(distill_weights_hash(m) == before, "weights changed by a failed call");
    distill_trainer_free(t);
    model_free(m);
    shards_free(&set);
}

static void test_empty_shard(Backend* be, const ModelConfig* c, Trajectory** data) {
    ShardSet set;
    shards_build(data, N_SEQS, REGIME_OFF_POLICY, 1.0, world, &set);
    const Shard empty = {0};
    const Shard* mine = rank == world - 1 ? &empty : &set.shards[rank];
    Model* m = model_create(c, be, 4, MAX_SEQ);
    model_init_random(m, 9);
    DistillOptions o = options(DISTILL_REDUCE_FIXED);
    DistillTrainer* t = distill_trainer_create(m, &o, MPI_COMM_WORLD);
    char err[1024] = "";
    DistillReport rep = {0};
    int rc = distill_train(t, mine, 0, &rep, err, sizeof(err));
    CHECK(rc == 0, "an empty shard on trainer %d: %s", world - 1, err);
    distill_report_free(&rep);
    distill_trainer_free(t);
    model_free(m);
    shards_free(&set);
}

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    log_set_rank(rank, world);
    if (argc != 2) {
        if (rank == 0) fprintf(stderr, "usage: test_trainer_dp DIR\n");
        MPI_Finalize();
        return 2;
    }
#ifdef TEST_TRAINER_CUDA
    char err[256];
    Backend* be = backend_cuda_create(0, 1, err, sizeof err);
    if (!be) fatal("test_trainer_dp: %s", err);
#else
    Backend* be = backend_cpu_create(1); // the same threads on every trainer: bit-identical kernels
#endif
    ModelConfig c;
    model_builtin_config("tiny", &c);
    Trajectory** data = make_data(c.vocab_size);
    test_determinism(be, &c, data, argv[1]);
    test_recompute(be, &c, data);
    if (!ON_GPU) { // the objectives on the GPU are test_ops_gpu's; here they would only add minutes
        test_on_policy(be, &c, data);
        test_teacher_recompute(be, &c, data);
    }
    test_broadcast_and_sync_check(be, &c);
    test_bad_data(be, &c, data);
    test_empty_shard(be, &c, data);
    for (int s = 0; s < N_SEQS; s++) traj_free(data[s]);
    free(data);
    backend_destroy(be);
    int rc = mpitest_finish("test_trainer_dp");
    MPI_Finalize();
    return rc;
}
