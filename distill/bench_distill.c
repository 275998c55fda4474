// `ingrain bench distill` (see bench_distill.h). Every rank is a trainer. For each built-in
// config it trains the same synthetic off-policy data (random tokens, random teacher top-k rows)
// from the same initial weights twice, with fixed-point and with float gradient reduction, and
// times a plain bucketed float MPI_Allreduce of a gradient-sized vector as the baseline of what
// data-parallel communication costs. With --recompute E a third run trains with the frozen teacher
// of distill.teacher: recompute (E experience tokens spliced into every teacher context, the full
// distribution recomputed per micro-batch) to show its cost beside recorded top-k targets. The
// first optimizer step of each run is a warm-up and is not timed. The last line per config is
// machine-readable (key=value). With --profile one more fixed-point run has every backend op
// synchronised and timed (model/bench_profile.h), and what is left of its wall time is the host's.
#include "distill/bench_distill.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/check.h"
#include "common/log.h"
#include "distill/shards.h"
#include "distill/trainer.h"
#include "io/config.h"
#include "model/backend_select.h"
#include "model/bench_profile.h"
#include "model/loss.h"
#include "model/model.h"
#include "model/rng.h"

static const char* usage =
    "usage: [mpirun -np N] ingrain bench distill [--config NAME]... [--seqs S] [--len T] [--steps K]\n"
    "                                            [--micro M] [--topk K] [--threads N] [--recompute E]\n"
    "                                            [--device cpu|cuda] [--bf16] [--profile] [--no-nccl]\n"
    "\n"
    "Distillation trainer tokens/s and the share of step time in gradient reduce-scatter +\n"
    "parameter all-gather, fixed-point (reproducible on any trainer count) beside float reduction,\n"
    "and a bucketed float MPI_Allreduce of the gradient as the baseline. Every rank is a trainer.\n"
    "  --config NAME  built-in model config, repeatable (default: tiny and small)\n"
    "  --seqs S       sequences of the synthetic iteration (default 32)\n"
    "  --len T        tokens per sequence, 3/4 of them agent tokens (default 128)\n"
    "  --steps K      optimizer steps: batch_tokens = S * T / K (default 5, the first is a warm-up)\n"
    "  --micro M      micro_batch_tokens (default 512)\n"
    "  --topk K       teacher top-k per agent token (default 8)\n"
    "  --threads N    OpenMP threads per rank; 0 = the node's cores / the ranks on it (default 0)\n"
    "  --recompute E  also train with distill.teacher: recompute, E experience tokens in each\n"
    "                 teacher context (default 0: no such run)\n"
    "  --device NAME  cpu (default) or cuda: each rank on GPU local_rank % GPUs\n"
    "  --bf16         with --device cuda: bf16 matmuls\n"
    "  --no-nccl      with --device cuda: stage the collectives through host memory with MPI (default:\n"
    "                 NCCL among the GPUs when every rank has its own, as distill.nccl: true)\n"
    "  --profile      one more fixed-point run with every op synchronised and timed: ms per step by op,\n"
    "                 and the rest of the step (the host's work: objective rows, staging)\n";

typedef struct {
    const char* configs[8];
    int n_configs, seqs, len, steps, micro, topk, threads, recompute, bf16, profile, no_nccl;
    DeviceKind device;
} BenchArgs;

static int parse_int(const char* opt, const char* s, int lo, int* out) {
    char* end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > 100000000) {
        fprintf(stderr, "ingrain bench distill: %s expects an integer >= %d, got '%s'\n", opt, lo, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char** argv, BenchArgs* a) {
    *a = (BenchArgs){.seqs = 32, .len = 128, .steps = 5, .micro = 512, .topk = 8};
    for (int i = 0; i < argc; i++) {
        const char* v = i + 1 < argc ? argv[i + 1] : NULL;
        int* target = NULL;
        int lo = 1;
        if (strcmp(argv[i], "--config") == 0 && v) {
            ModelConfig c;
            if (model_builtin_config(v, &c) != 0) {
                fprintf(stderr, "ingrain bench distill: unknown built-in config '%s'\n", v);
                return -1;
            }
            if (a->n_configs == 8) return fprintf(stderr, "ingrain bench distill: at most 8 --config\n"), -1;
            a->configs[a->n_configs++] = v;
            i++;
            continue;
        }
        if (strcmp(argv[i], "--device") == 0 && v) {
            if (backend_device_parse(v, &a->device) != 0) {
                fprintf(stderr, "ingrain bench distill: --device expects cpu or cuda, got '%s'\n", v);
                return -1;
            }
            i++;
            continue;
        }
        if (strcmp(argv[i], "--bf16") == 0) {
            a->bf16 = 1;
            continue;
        }
        if (strcmp(argv[i], "--profile") == 0) {
            a->profile = 1;
            continue;
        }
        if (strcmp(argv[i], "--no-nccl") == 0) {
            a->no_nccl = 1;
            continue;
        }
        if (strcmp(argv[i], "--seqs") == 0)
            target = &a->seqs;
        else if (strcmp(argv[i], "--len") == 0)
            target = &a->len, lo = 8;
        else if (strcmp(argv[i], "--steps") == 0)
            target = &a->steps, lo = 2;
        else if (strcmp(argv[i], "--micro") == 0)
            target = &a->micro;
        else if (strcmp(argv[i], "--topk") == 0)
            target = &a->topk;
        else if (strcmp(argv[i], "--threads") == 0)
            target = &a->threads, lo = 0;
        else if (strcmp(argv[i], "--recompute") == 0)
            target = &a->recompute, lo = 0;
        if (!target || !v) {
            fprintf(stderr, "ingrain bench distill: unknown option or missing value '%s'\n\n%s", argv[i], usage);
            return -1;
        }
        if (parse_int(argv[i], v, lo, target) != 0) return -1;
        i++;
    }
    if (a->n_configs == 0) a->configs[a->n_configs++] = "tiny", a->configs[a->n_configs++] = "small";
    for (int i = 0; i < a->n_configs; i++) {
        ModelConfig c;
        model_builtin_config(a->configs[i], &c);
        if (a->topk >= c.vocab_size || a->topk > LOSS_TOPK_MAX) {
            fprintf(stderr, "ingrain bench distill: --topk %d must be below the vocabulary (%d) of '%s'\n", a->topk,
                    c.vocab_size, a->configs[i]);
            return -1;
        }
    }
    return 0;
}

// ----------------------------------------------------------------------------
// synthetic data: the same on every rank

static Trajectory** make_data(const BenchArgs* a, int V, Rng* r) {
    Trajectory** list = mallocCheck(sizeof(Trajectory*) * (size_t)a->seqs);
    int32_t* ids = mallocCheck(sizeof(int32_t) * (size_t)a->topk);
    float* lp = mallocCheck(sizeof(float) * (size_t)a->topk);
    const int context = a->len / 4;
    for (int s = 0; s < a->seqs; s++) {
        Trajectory* t = traj_create(a->topk);
        t->task_id = s;
        t->flags = TRAJ_FLAG_TEACHER;
        t->final_reward = 1.0f;
        for (int i = 0; i < context; i++) {
            int32_t tok = (int32_t)rng_below(r, (uint64_t)V);
            traj_push_context(t, &tok, 1, TRAJ_SEG_USER);
        }
        traj_begin_step(t, NULL, 0);
        if (a->recompute) { // the teacher saw E experience tokens after the first context token
            int32_t* exp = mallocCheck(sizeof(int32_t) * (size_t)a->recompute);
            for (int i = 0; i < a->recompute; i++) exp[i] = (int32_t)rng_below(r, (uint64_t)V);
            traj_add_teacher_context(t, 0, 1, 1, exp, a->recompute);
            t->flags |= TRAJ_FLAG_TEACHER_VIEW;
            free(exp);
        }
        for (int i = context; i < a->len; i++) {
            for (int k = 0; k < a->topk; k++) {
                int fresh;
                do { // distinct ids
                    ids[k] = (int32_t)rng_below(r, (uint64_t)V);
                    fresh = 1;
                    for (int j = 0; j < k; j++) fresh &= ids[j] != ids[k];
                } while (!fresh);
                lp[k] = -0.5f - (float)k;
            }
            double mass = 0.0;
            for (int k = 0; k < a->topk; k++) mass += exp((double)lp[k]);
            traj_push_agent(t, ids[0], lp[0], ids, lp, (float)fmax(0.0, 1.0 - mass));
        }
        list[s] = t;
    }
    free(ids);
    free(lp);
    return list;
}

// ----------------------------------------------------------------------------
// one run

typedef struct {
    double tokens_per_s, step_s, comm_s, wait_s, share;
    float* params; // final weights (host)
} RunResult;

static void run(const BenchArgs* a, const ModelConfig* c, Backend* be, const Shard* shard, DistillReduce mode,
                int recompute, int profile, RunResult* out) {
    Model* m = model_create(c, be, a->micro / a->len > 1 ? a->micro / a->len : 1, a->len);
    model_init_random(m, 42);
    DistillOptions o = {.loss = DISTILL_LOSS_FORWARD_KL,
                        .epochs = 1,
                        .micro_batch_tokens = a->micro,
                        .batch_tokens = (long)a->seqs * a->len / a->steps,
                        .max_batch = a->micro / a->len > 1 ? a->micro / a->len : 1,
                        .max_seq = a->len,
                        .adamw = adamw_default_config(),
                        .seed = 7,
                        .reduce = mode,
                        .bucket_bytes = (size_t)16 << 20,
                        .nccl = !a->no_nccl,
                        .teacher_recompute = recompute,
                        .teacher_max_len = a->len + a->recompute};
    o.adamw.lr = 1e-4f;
    DistillTrainer* t = distill_trainer_create(m, &o, MPI_COMM_WORLD);
    DistillReport rep;
    char err[1024];
    if (profile) bench_profile_install(be);
    const double t0 = MPI_Wtime();
    if (distill_train(t, shard, 0, &rep, err, sizeof(err)) != 0) fatal("bench distill: %s", err);
    const double wall = MPI_Wtime() - t0;
    if (profile) {
        bench_profile_uninstall(be);
        int rank;
        mpiCheck(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
        if (rank == 0) {
            const double in_ops = bench_profile_seconds();
            printf("profile of one more fixed-point run, rank 0, %d steps: %.1f ms per step of wall time, of which "
                   "%.1f ms outside the backend's ops (host work and MPI)\n",
                   rep.n_steps, 1e3 * wall / rep.n_steps, 1e3 * (wall - in_ops) / rep.n_steps);
            bench_profile_print(stdout, rep.n_steps);
        }
    }
    double tokens = 0.0, secs = 0.0, comm = 0.0, wait = 0.0;
    for (int s = 1; s < rep.n_steps; s++) { // step 0 warms up
        tokens += (double)rep.steps[s].tokens;
        secs += rep.steps[s].seconds;
        comm += rep.steps[s].comm_seconds;
        wait += rep.steps[s].wait_seconds;
    }
    const int timed = rep.n_steps > 1 ? rep.n_steps - 1 : 1;
    *out = (RunResult){.tokens_per_s = tokens / secs,
                       .step_s = secs / timed,
                       .comm_s = comm / timed,
                       .wait_s = wait / timed,
                       .share = comm / secs,
                       .params = mallocCheck(sizeof(float) * model_num_params(m))};
    model_params_download(m, out->params);
    distill_report_free(&rep);
    distill_trainer_free(t);
    model_free(m);
}

// the baseline: a plain bucketed float MPI_Allreduce of n floats; seconds per call (median of 5)
static double allreduce_baseline(size_t n, size_t bucket_bytes) {
    float* g = callocCheck(n, sizeof(float));
    const size_t B = bucket_bytes / sizeof(float);
    double best[5];
    for (int rep = 0; rep < 5; rep++) {
        mpiCheck(MPI_Barrier(MPI_COMM_WORLD));
        double t0 = MPI_Wtime();
        for (size_t lo = 0; lo < n; lo += B) {
            int cnt = (int)(n - lo < B ? n - lo : B);
            mpiCheck(MPI_Allreduce(MPI_IN_PLACE, g + lo, cnt, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
        }
        best[rep] = MPI_Wtime() - t0;
    }
    free(g);
    for (int i = 1; i < 5; i++) { // insertion sort, then the median
        double v = best[i];
        int j = i - 1;
        while (j >= 0 && best[j] > v) best[j + 1] = best[j], j--;
        best[j + 1] = v;
    }
    mpiCheck(MPI_Bcast(&best[2], 1, MPI_DOUBLE, 0, MPI_COMM_WORLD));
    return best[2];
}

// ----------------------------------------------------------------------------

int bench_distill(int argc, char** argv) {
    int rank, world, local_ranks;
    mpiCheck(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    mpiCheck(MPI_Comm_size(MPI_COMM_WORLD, &world));
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            if (rank == 0) fputs(usage, stdout);
            return 0;
        }
    }
    BenchArgs a;
    if (parse_args(argc, argv, &a) != 0) return INGRAIN_EXIT_USAGE;
    MPI_Comm node;
    mpiCheck(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node));
    mpiCheck(MPI_Comm_size(node, &local_ranks));
    mpiCheck(MPI_Comm_free(&node));
    Backend* probe = backend_cpu_create(0);
    int threads = a.threads ? a.threads : (probe->threads / local_ranks > 1 ? probe->threads / local_ranks : 1);
    backend_destroy(probe);
    int local_rank;
    mpiCheck(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node));
    mpiCheck(MPI_Comm_rank(node, &local_rank));
    mpiCheck(MPI_Comm_free(&node));
    char err[512], desc[256];
    Backend* be = backend_open(a.device, a.bf16, threads, local_rank, err, sizeof err);
    if (!be) fatal("ingrain bench distill: %s", err);
    backend_describe(be, a.bf16, local_rank, desc, sizeof desc);
    if (rank == 0) {
        printf("ingrain bench distill: np=%d trainers on %s, forward_kl on top-%d, %d seqs x %d tokens, "
               "%d steps (first untimed), micro_batch_tokens %d\n"
               "comm = gradient reduce-scatter + parameter all-gather; wait = for the slowest trainer; share = comm / "
               "step\n",
               world, desc, a.topk, a.seqs, a.len, a.steps, a.micro);
        if (a.recompute)
            printf("recompute = fixed-point reduction, forward KL on the full distribution of a frozen teacher "
                   "recomputed per micro-batch with %d experience tokens in context\n",
                   a.recompute);
        printf("%-7s %8s  %-9s %10s %9s %9s %9s %7s\n", "config", "params", "reduction", "tokens/s", "step ms",
               "comm ms", "wait ms", "share");
    }
    for (int ci = 0; ci < a.n_configs; ci++) {
        ModelConfig c;
        model_builtin_config(a.configs[ci], &c);
        Rng r;
        rng_seed(&r, 2024);
        Trajectory** data = make_data(&a, c.vocab_size, &r);
        ShardSet set;
        shards_build(data, a.seqs, REGIME_OFF_POLICY, 0.0, world, &set);
        RunResult res[3];
        const char* names[3] = {"fixed", "float", "recompute"};
        const int runs = a.recompute ? 3 : 2;
        for (int mode = 0; mode < runs; mode++) {
            run(&a, &c, be, &set.shards[rank], mode == 2 ? DISTILL_REDUCE_FIXED : (DistillReduce)mode, mode == 2,
                0, &res[mode]);
        }
        ModelConfig copy = c;
        ParamInfo table[PARAM_COUNT];
        const size_t n = model_param_table(&copy, table);
        const double base = allreduce_baseline(n, (size_t)16 << 20);
        double diff = 0.0, scale = 0.0;
        for (size_t i = 0; i < n; i++) {
            diff = fmax(diff, fabs((double)res[0].params[i] - (double)res[1].params[i]));
            scale = fmax(scale, fabs((double)res[0].params[i]));
        }
        if (rank == 0) {
            for (int mode = 0; mode < runs; mode++) {
                printf("%-7s %7.2fM  %-9s %10.0f %9.1f %9.2f %9.2f %6.1f%%\n", a.configs[ci], (double)n / 1e6,
                       names[mode], res[mode].tokens_per_s, 1e3 * res[mode].step_s, 1e3 * res[mode].comm_s,
                       1e3 * res[mode].wait_s, 100.0 * res[mode].share);
            }
            printf("%-7s baseline: float MPI_Allreduce of the %zu-float gradient in 16 MiB buckets: %.2f ms per step; "
                   "fixed vs float weights: max |diff| %.3g (max |w| %.3g)\n",
                   a.configs[ci], n, 1e3 * base, diff, scale);
            // the fixed-point weights' hash: the same for any trainer count (at equal threads per rank)
            // and either collective path
            printf("bench_distill config=%s np=%d threads=%d fixed_tok_s=%.1f float_tok_s=%.1f fixed_comm_share=%.4f "
                   "float_comm_share=%.4f fixed_comm_ms=%.3f float_comm_ms=%.3f allreduce_ms=%.3f "
                   "fixed_weights_xxh64=%016llx\n",
                   a.configs[ci], world, threads, res[0].tokens_per_s, res[1].tokens_per_s, res[0].share, res[1].share,
                   1e3 * res[0].comm_s, 1e3 * res[1].comm_s, 1e3 * base,
                   (unsigned long long)XXH64(res[0].params, sizeof(float) * n, 0));
            if (a.recompute)
                printf("bench_distill config=%s np=%d recompute_exp=%d recompute_tok_s=%.1f recorded_tok_s=%.1f "
                       "recompute_cost=%.2fx\n",
                       a.configs[ci], world, a.recompute, res[2].tokens_per_s, res[0].tokens_per_s,
                       res[0].tokens_per_s / res[2].tokens_per_s);
            fflush(stdout);
        }
        if (a.profile) {
            RunResult prof;
            run(&a, &c, be, &set.shards[rank], DISTILL_REDUCE_FIXED, 0, 1, &prof);
            free(prof.params);
        }
        for (int mode = 0; mode < runs; mode++) free(res[mode].params);
        shards_free(&set);
        for (int s = 0; s < a.seqs; s++) traj_free(data[s]);
        free(data);
    }
    backend_destroy(be);
    return 0;
}
