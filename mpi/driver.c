// The iteration driver (see driver.h): K iterations of
//   rollout (rollout ranks) -> aggregate (aggregator root) -> internalize (trainers)
//   -> sync (weights to every rank) -> evaluate (rollout ranks) -> checkpoint (all ranks)
// with resume from the newest complete checkpoint and a graceful stop on SIGTERM/SIGUSR1.
//
// Determinism across rank counts: every episode's randomness comes from
// (run.seed, iteration, split, task, sample, teacher) and a task's G samples are always decoded
// as one batch; trajectories are put in (task, sample) order before aggregation; the trainer's
// result does not depend on how the data is split over trainers (distill/trainer.h); every
// evaluation count is an integer sum. So np = 1, 2, 4 give the same metrics.
#include "mpi/driver.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/check.h"
#include "common/log.h"
#include "distill/bootstrap.h"
#include "distill/extract.h"
#include "distill/shards.h"
#include "model/hf.h"
#include "mpi/driver_impl.h"
#include "mpi/inspect.h"
#include "mpi/signals.h"
#include "mpi/state.h"
#include "mpi/wire.h"

// ----------------------------------------------------------------------------
// helpers

static double now(void) { return MPI_Wtime(); }

void driver_agree_or_abort(const Driver* d, int failed, const char* what) {
    int any = 0;
    mpiCheck(MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, d->l->world));
    if (any) {
        if (failed) log_error("%s failed: %s", what, d->err);
        ingrain_abort(INGRAIN_EXIT_FAILURE);
    }
}

// a barrier that sleeps while it waits: the other ranks idle through rank 0's bootstrap (minutes)
// without polling on the cores its threads train on, as MPI's blocking calls would
static void wait_quietly(MPI_Comm comm) {
    MPI_Request r;
    mpiCheck(MPI_Ibarrier(comm, &r));
    for (int done = 0;;) {
        mpiCheck(MPI_Test(&r, &done, MPI_STATUS_IGNORE));
        if (done) return;
        const struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

// this rank's index among the ranks on its node (each takes a GPU of the node in turn)
static int node_rank(MPI_Comm world) {
    MPI_Comm node;
    mpiCheck(MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
    int rank = 0;
    mpiCheck(MPI_Comm_rank(node, &rank));
    mpiCheck(MPI_Comm_free(&node));
    return rank;
}

// OpenMP threads per rank: the node's cores shared by the ranks on it
static int threads_per_rank(const Config* c, MPI_Comm world) {
    if (c->model.threads > 0) return c->model.threads;
    MPI_Comm node;
    mpiCheck(MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
    int local = 1;
    mpiCheck(MPI_Comm_size(node, &local));
    mpiCheck(MPI_Comm_free(&node));
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int t = (int)(cores / local);
    return t < 1 ? 1 : t;
}

// ----------------------------------------------------------------------------
// setup: model, tokenizer, environments, agents, pool, trainer

// the bootstrapped base model of a built-in config into d->boot_dir: built (or found in the cache)
// on rank 0 while the others wait
static void prepare_bootstrap(Driver* d) {
    const Config* c = d->c;
    int failed = 0;
    if (driver_is_root(d)) {
        log_info("bootstrap: preparing the base model (cached in %s)", c->bootstrap.cache_dir);
        double t = now();
        failed = bootstrap_ensure(c, d->boot_dir, sizeof(d->boot_dir), d->err, sizeof(d->err)) != 0;
        if (!failed) log_info("bootstrap: base model ready in %.1f s: %s", now() - t, d->boot_dir);
    }
    wait_quietly(d->l->world);
    driver_agree_or_abort(d, failed, "bootstrapping the base model");
    mpiCheck(MPI_Bcast(d->boot_dir, sizeof(d->boot_dir), MPI_CHAR, 0, d->l->world));
}

static void load_model(Driver* d) {
    const Config* c = d->c;
    DistillOptions dopt;
    distill_options_from_config(&dopt, c);
    ModelConfig mc;
    int failed = 0;
    if (c->model.path[0]) {
        char tok_path[CONFIG_PATH + 32];
        snprintf(tok_path, sizeof(tok_path), "%s/tokenizer.json", c->model.path);
        failed = hf_load_config(c->model.path, &mc, d->err, sizeof(d->err)) != 0 ||
                 !(d->tok = tokenizer_load_hf(tok_path, d->err, sizeof(d->err)));
        d->format = strstr(mc.arch, "Llama") ? CHAT_LLAMA3 : CHAT_CHATML;
    } else if (model_builtin_config(c->model.name, &mc) != 0) {
        snprintf(d->err, sizeof(d->err), "model.name '%s' is not a built-in model (tiny, small, gpt2-124m)",
                 c->model.name);
        failed = 1;
    } else {
        // a learned tokenizer (and so the vocabulary) comes with the bootstrapped model, which is
        // then needed before a checkpoint can be read; the byte tokenizer needs it only for the
        // weights of a fresh run (initial_weights)
        if (c->bootstrap.vocab_size > 0) prepare_bootstrap(d);
        failed = !(d->tok = bootstrap_tokenizer(c, d->boot_dir, &mc.vocab_size, d->err, sizeof(d->err)));
        d->format = CHAT_CHATML;
    }
    driver_agree_or_abort(d, failed, "loading the model");
    if (mc.max_seq_len > c->model.max_seq_len) mc.max_seq_len = c->model.max_seq_len;
    const int local = node_rank(d->l->world);
    d->be = model_backend_create(c, threads_per_rank(c, d->l->world), local, d->err, sizeof(d->err));
    driver_agree_or_abort(d, !d->be, "starting the compute backend");
    char desc[512];
    backend_describe(d->be, c->model.dtype == DTYPE_BF16, local, desc, sizeof(desc));
    log_info("backend: %s", desc);
    d->model = model_create(&mc, d->be, dopt.max_batch, dopt.max_seq);
}

// weights of a fresh run: the HF model, or the bootstrapped built-in
static void initial_weights(Driver* d) {
    const Config* c = d->c;
    int failed = 0;
    if (c->model.path[0]) {
        size_t n = model_num_params(d->model);
        float* host = mallocCheck(sizeof(float) * n);
        failed = hf_load_weights(c->model.path, model_config(d->model), host, n, d->err, sizeof(d->err)) != 0;
        if (!failed) model_params_upload(d->model, host);
        free(host);
        driver_agree_or_abort(d, failed, "loading the weights");
        return;
    }
    if (!d->boot_dir[0]) prepare_bootstrap(d);
    failed = bootstrap_load(d->model, d->boot_dir, d->err, sizeof(d->err)) != 0;
    driver_agree_or_abort(d, failed, "loading the bootstrapped model");
}

static void setup_roles(Driver* d) {
    const Config* c = d->c;
    int failed = 0;
    EnvError eerr;
    if (d->l->roles & ROLE_ROLLOUT) {
        AgentOptions ao;
        agent_options_from_config(c, &ao);
        ao.format = d->format;
        d->agent = agent_create(d->model, d->tok, &ao, d->err, sizeof(d->err));
        ao.group_size = ao.max_episodes = 1;
        ao.sampling.temperature = (float)c->eval.temperature;
        d->eval_agent = d->agent ? agent_create(d->model, d->tok, &ao, d->err, sizeof(d->err)) : NULL;
        failed = !d->agent || !d->eval_agent;
        d->envs = callocCheck((size_t)c->rollout.group_size, sizeof(Env*));
        for (int i = 0; i < c->rollout.group_size && !failed; i++) {
            d->envs[i] = env_create_from_config(c, &eerr);
            if (!d->envs[i]) snprintf(d->err, sizeof(d->err), "%s", eerr.msg), failed = 1;
        }
    }
    if (!failed && d->l->world_rank == d->agg_root) {
        PoolParams pp = pool_default_params();
        pp.max_size = c->experience.max_pool_size;
        pp.max_item_words = c->experience.max_item_words;
        pp.prune_threshold = c->experience.prune_threshold;
        d->pool = pool_create(pp);
        if (c->experience.seed_pool[0]) {
            failed = pool_load_seed(d->pool, c->experience.seed_pool, d->err, sizeof(d->err)) != 0;
        }
        int writes = c->experience.extractor == EXTRACTOR_LLM && c->experience.granularity == GRANULARITY_PRINCIPLE;
        if (!failed && (writes || c->experience.judge == JUDGE_LLM)) {
            failed = writer_init(&d->writer, d->model, d->tok, d->format, model_config(d->model)->max_seq_len,
                                 c->rollout.max_new_tokens * 4, (float)c->rollout.temperature, d->err,
                                 sizeof(d->err)) != 0;
        }
        if (!failed && c->experience.judge == JUDGE_LLM) {
            failed = !(d->judge_tmpl = prompt_load(prompt_default_dir(), "judge.txt", d->err, sizeof(d->err)));
        }
    }
    if (!failed && (d->l->roles & ROLE_TRAINER)) failed = distill_check_config(c, d->err, sizeof(d->err)) != 0;
    driver_agree_or_abort(d, failed, "setting up the rank's roles");
    // after the agreement: creating the trainer is collective over the trainers (the NCCL decision)
    if (d->l->roles & ROLE_TRAINER) {
        DistillOptions o;
        distill_options_from_config(&o, c);
        d->trainer = distill_trainer_create(d->model, &o, d->l->trainer);
    }
    if (c->distill.nccl) d->nccl = distill_nccl_open(model_backend(d->model), d->l->world, "the weight broadcasts");
}

// ----------------------------------------------------------------------------
// the pool as every rank sees it

static void share_pool(Driver* d) {
    uint8_t* data = NULL;
    size_t len = 0;
    if (d->l->world_rank == d->agg_root) {
        free(d->pool_json);
        d->pool_json = pool_to_json(d->pool);
        data = (uint8_t*)d->pool_json;
        len = strlen(d->pool_json);
    }
    wire_bcast(d->l->world, d->agg_root, &data, &len);
    Pool* view = d->pool;
    if (d->l->world_rank != d->agg_root) {
        view = pool_from_json((const char*)data, len, pool_default_params(), d->err, sizeof(d->err));
        if (!view) fatal("the pool broadcast by rank %d does not parse: %s", d->agg_root, d->err);
        free(data);
    }
    PoolListing listing;
    pool_listing(view, &listing);
    exp_list_free(&d->exp);
    exp_list_init(&d->exp);
    for (int i = 0; i < listing.n; i++) exp_list_add(&d->exp, listing.ids[i], listing.texts[i]);
    pool_listing_free(&listing);
    if (view != d->pool) pool_free(view);
}

// ----------------------------------------------------------------------------
// rollout

// tasks of iteration k: a seeded shuffle of the training split, tasks_per_iter of them
static int* iteration_tasks(const Driver* d, int k, int* n) {
    const Config* c = d->c;
    int total = c->env.train_tasks;
    *n = c->rollout.tasks_per_iter < total ? c->rollout.tasks_per_iter : total;
    int* order = mallocCheck(sizeof(int) * (size_t)total);
    for (int i = 0; i < total; i++) order[i] = i;
    Rng r;
    rng_seed_stream(&r, (uint64_t)c->run.seed, 0x7a5c5000u + (uint64_t)k);
    for (int i = total - 1; i > 0; i--) {
        int j = (int)rng_below(&r, (uint64_t)i + 1);
        int t = order[i];
        order[i] = order[j], order[j] = t;
    }
    return order;
}

static int cmp_traj(const void* a, const void* b) {
    const Trajectory* x = *(Trajectory* const*)a;
    const Trajectory* y = *(Trajectory* const*)b;
    if (x->task_id != y->task_id) return x->task_id < y->task_id ? -1 : 1;
    return (x->sample > y->sample) - (x->sample < y->sample);
}

// What the trainers need from the teacher beyond a sampled record: its contexts for the frozen
// teacher (distill.teacher: recompute); or on-policy its top-k scores with the experience in
// context and, for the sampled-token estimator, its log-prob of every sampled token.
static int teacher_signal(Driver* d, Trajectory* t) {
    const Config* c = d->c;
    if (c->distill.teacher == TEACHER_RECOMPUTE)
        return agent_teacher_view(d->agent, t, &d->exp, d->err, sizeof(d->err));
    if (c->distill.regime != REGIME_ON_POLICY) return 0;
    float* lp = c->distill.loss == LOSS_REVERSE_KL_SAMPLED ? mallocCheck(sizeof(float) * (size_t)(t->n_agent + 1))
                                                           : NULL;
    int rc = agent_score_teacher(d->agent, t, &d->exp, lp, d->err, sizeof(d->err));
    if (rc == 0 && lp) traj_set_teacher_lp(t, lp);
    free(lp);
    return rc;
}

// this rank's share of the iteration's rollouts (task i goes to rollout rank i % R)
static void rollout_phase(Driver* d, int k, const int* tasks, int n_tasks, TrajBuf* out, long* gen_tokens) {
    const Config* c = d->c;
    int G = c->rollout.group_size, R = d->l->n_rollout, me = d->l->rollout_rank;
    int on_policy = c->distill.regime == REGIME_ON_POLICY;
    Trajectory** mine = NULL;
    int n_mine = 0, failed = 0;
    if (d->agent) {
        agent_stats_reset(d->agent);
        mine = callocCheck((size_t)(n_tasks / R + 1) * (size_t)G, sizeof(Trajectory*));
        for (int i = me; i < n_tasks && !failed; i += R) {
            AgentTask task = {ENV_SPLIT_TRAIN, tasks[i]};
            // off-policy samples the teacher (experience in context); on-policy the student
            failed = agent_run(d->agent, d->envs, &task, 1, k, on_policy ? NULL : &d->exp, mine + n_mine, d->err,
                               sizeof(d->err)) != 0;
            for (int s = 0; s < G && !failed; s++) failed = teacher_signal(d, mine[n_mine + s]) != 0;
            if (!failed) n_mine += G;
        }
        *gen_tokens = agent_stats(d->agent)->gen_tokens;
    }
    driver_agree_or_abort(d, failed, "a rollout");
    traj_encode_batch(mine, n_mine, out);
    for (int i = 0; i < n_mine; i++) traj_free(mine[i]);
    free(mine);
}

// ----------------------------------------------------------------------------
// aggregation (aggregator root)

typedef struct {
    Trajectory** trajs;
    int n;
    ExtractReport report;
    double rollout_success;
} Aggregated;

static size_t decode_ids(void* ctx, const int32_t* ids, int n, char* out, size_t cap) {
    return tokenizer_decode((const Tokenizer*)ctx, ids, n, out, cap);
}

static int parse_action(void* ctx, const char* text, char* tool, size_t tool_cap, char* args, size_t args_cap) {
    (void)ctx;
    char *name = NULL, *json = NULL, err[256];
    int rc = chat_parse_tool_call(text, &name, &json, err, sizeof(err));
    if (rc == 1) {
        snprintf(tool, tool_cap, "%s", name);
        snprintf(args, args_cap, "%s", json);
    }
    free(name);
    free(json);
    return rc == 1 ? 0 : -1;
}

// decode the gathered batches, in (task, sample) order
static void collect(Driver* d, const uint8_t* data, const size_t* lens, Aggregated* a) {
    a->trajs = NULL;
    a->n = 0;
    size_t off = 0;
    for (int r = 0; r < d->l->world_size; r++) {
        Trajectory** part;
        int n;
        if (traj_decode_batch(data + off, lens[r], &part, &n, d->err, sizeof(d->err)) != 0) {
            fatal("trajectories from rank %d: %s", r, d->err);
        }
        a->trajs = reallocCheck(a->trajs, sizeof(Trajectory*) * (size_t)(a->n + n + 1));
        memcpy(a->trajs + a->n, part, sizeof(Trajectory*) * (size_t)n);
        a->n += n;
        free(part);
        off += lens[r];
    }
    qsort(a->trajs, (size_t)a->n, sizeof(Trajectory*), cmp_traj);
}

// judge the episodes, update the pool from them, and split them into the trainers' shards (none
// when shards is NULL: an iteration with nothing to distill)
static void aggregate_phase(Driver* d, int k, Aggregated* a, ShardSet* shards) {
    const Config* c = d->c;
    uint8_t* success = mallocCheck((size_t)(a->n ? a->n : 1));
    judge_env_batch(a->trajs, a->n, SUCCESS_REWARD, success);
    EpisodeText* eps = callocCheck((size_t)(a->n ? a->n : 1), sizeof(EpisodeText));
    if (d->writer.dec) writer_reseed(&d->writer, (uint64_t)c->run.seed, k);
    int wins = 0;
    for (int i = 0; i < a->n; i++) {
        episode_from_trajectory(&eps[i], a->trajs[i], success[i], NULL, decode_ids, d->tok, parse_action, NULL, NULL);
        int correct = success[i];
        // environments without a reward: the model judges the final answer
        if (d->judge_tmpl && judge_llm(writer_generate, &d->writer, d->judge_tmpl, eps[i].task, eps[i].answer,
                                       &correct, d->err, sizeof(d->err)) != 0) {
            log_warn("LLM judge on task %d sample %d: %s (counted as failed)", a->trajs[i]->task_id,
                     a->trajs[i]->sample, d->err);
            correct = 0;
        }
        success[i] = (uint8_t)correct;
        eps[i].success = correct;
        wins += correct;
    }
    a->rollout_success = a->n ? (double)wins / a->n : 0.0;
    ExperienceMode mode = {c->experience.granularity, c->experience.extractor};
    ExtractParams prm = extract_params_from_config(c);
    if (d->writer.dec) prm.gen = writer_generate, prm.gen_ctx = &d->writer;
    memset(&a->report, 0, sizeof(a->report));
    if (experience_update(d->pool, mode, k, a->trajs, success, a->n, eps, a->n, &prm, &a->report, d->err,
                          sizeof(d->err)) != 0) {
        fatal("experience update of iteration %d: %s", k, d->err);
    }
    for (int i = 0; i < a->n; i++) episode_free(&eps[i]);
    free(eps);
    free(success);
    if (shards) shards_build(a->trajs, a->n, c->distill.regime, c->distill.reward_threshold, d->l->n_trainer, shards);
}

// the shards to the trainers (trainer t is world rank t); every other rank gets an empty part
static void send_shards(Driver* d, const ShardSet* shards, Shard* local) {
    int W = d->l->world_size;
    uint8_t** parts = NULL;
    size_t* lens = NULL;
    TrajBuf* bufs = NULL;
    if (d->l->world_rank == d->agg_root) {
        parts = callocCheck((size_t)W, sizeof(uint8_t*));
        lens = callocCheck((size_t)W, sizeof(size_t));
        bufs = callocCheck((size_t)W, sizeof(TrajBuf));
        for (int r = 0; r < W; r++) {
            int t = ranks_roles_of(d->l, r) & ROLE_TRAINER ? (d->l->colocated ? r : r - d->l->first_trainer) : -1;
            if (t >= 0) shard_encode(&shards->shards[t], &bufs[r]);
            else traj_encode_batch(NULL, 0, &bufs[r]);
            parts[r] = bufs[r].data;
            lens[r] = bufs[r].len;
        }
    }
    uint8_t* mine;
    size_t len;
    wire_scatter(d->l->world, d->agg_root, parts, lens, &mine, &len);
    if (shard_decode(mine, len, local, d->err, sizeof(d->err)) != 0) {
        fatal("the shard from rank %d does not decode: %s", d->agg_root, d->err);
    }
    free(mine);
    for (int r = 0; bufs && r < W; r++) traj_buf_free(&bufs[r]);
    free(bufs);
    free(parts);
    free(lens);
}

// 1 when the teacher is the student itself: no experience to show (the pool as the rollouts see
// it is empty) and a KL loss, which is then zero with a zero gradient. AdamW would turn the
// rounding noise of that gradient into full-size steps (measured: the quickstart's student fell
// from 0.500 to 0.375), so such an iteration skips the internalization. SFT on the successful
// samples still learns something.
static int nothing_to_distill(const Driver* d) { return d->exp.n == 0 && d->c->distill.loss != LOSS_SFT; }

// ----------------------------------------------------------------------------
// checkpoints and resume

static void write_checkpoint(Driver* d, int completed, Trajectory* const* trajs, int n_trajs) {
    CkptState s = {.iteration = completed,
                   .cfg = d->c,
                   .layout = d->l,
                   .model = d->model,
                   .trainer = d->trainer,
                   .pool_json = d->pool_json,
                   .data_writer = d->agg_root,
                   .metrics = d->metrics ? metrics_text(d->metrics) : NULL,
                   .trajectories = trajs,
                   .n_trajectories = n_trajs};
    state_write(&s);
}

// 1 if the job resumed from a checkpoint
static int try_resume(Driver* d) {
    char path[CONFIG_PATH + 64] = "";
    int found = 0, it = 0;
    if (d->c->run.resume == RESUME_AUTO && driver_is_root(d)) {
        char dir[CONFIG_PATH + 16];
        snprintf(dir, sizeof(dir), "%s/ckpt", d->c->run.dir);
        found = ckpt_find_latest(dir, path, sizeof(path), &it) == 0;
    }
    mpiCheck(MPI_Bcast(&found, 1, MPI_INT, 0, d->l->world));
    if (!found) return 0;
    mpiCheck(MPI_Bcast(path, sizeof(path), MPI_CHAR, 0, d->l->world));
    CkptLoaded ld;
    int failed = state_read(path, d->model, d->trainer, &ld, d->err, sizeof(d->err)) != 0;
    driver_agree_or_abort(d, failed, "resuming");
    if (d->l->world_rank == d->agg_root) {
        pool_free(d->pool);
        d->pool = pool_from_json(ld.pool_json, strlen(ld.pool_json), pool_default_params(), d->err, sizeof(d->err));
        failed = !d->pool;
    }
    driver_agree_or_abort(d, failed, "restoring the pool");
    if (driver_is_root(d)) {
        char mpath[CONFIG_PATH + 32];
        snprintf(mpath, sizeof(mpath), "%s/metrics.jsonl", d->c->run.dir);
        d->metrics = metrics_open(mpath, ld.metrics);
        log_info("resumed from %s: %d iteration%s done", path, ld.iteration, ld.iteration == 1 ? "" : "s");
    }
    d->start_iter = ld.iteration;
    state_loaded_free(&ld);
    return 1;
}

// ----------------------------------------------------------------------------
// metrics and progress

static void log_steps(Driver* d, int k, const DistillReport* rep) {
    for (int i = 0; d->metrics && i < rep->n_steps; i++) {
        const DistillStepMetrics* s = &rep->steps[i];
        json_t* o = json_object();
        json_object_set_new(o, "type", json_string("step"));
        json_object_set_new(o, "iteration", json_integer(k));
        json_object_set_new(o, "epoch", json_integer(s->epoch));
        json_object_set_new(o, "step", json_integer(s->step));
        json_object_set_new(o, "loss", json_real(s->loss));
        json_object_set_new(o, "kl_forward", json_real(s->kl_forward));
        json_object_set_new(o, "kl_reverse", json_real(s->kl_reverse));
        json_object_set_new(o, "top1_agree", json_real(s->top1_agree));
        json_object_set_new(o, "entropy", json_real(s->entropy));
        json_object_set_new(o, "grad_norm", json_real(s->grad_norm));
        json_object_set_new(o, "lr", json_real(s->lr));
        json_object_set_new(o, "tokens", json_integer(s->tokens));
        json_object_set_new(o, "tokens_per_s", json_real(s->tokens_per_s)); // a timing: compare_metrics skips it
        metrics_append(d->metrics, o);
        json_decref(o);
    }
}

static double mean_loss(const DistillReport* rep) {
    double sum = 0;
    for (int i = 0; i < rep->n_steps; i++) sum += rep->steps[i].loss;
    return rep->n_steps ? sum / rep->n_steps : 0.0;
}

// ----------------------------------------------------------------------------
// the job

static void phase(const Driver* d, int k, const char* what) {
    if (driver_is_root(d)) log_info("[iter %d/%d] %s", k + 1, d->c->run.iterations, what);
}

// 1 when a stop was requested (every rank agrees)
static int stop_requested(const Driver* d) { return signals_agree(d->l->world) != 0; }

int driver_run(const Config* c, const RankLayout* l) {
    Driver drv = {.c = c, .l = l};
    Driver* d = &drv;
    d->agg_root = l->colocated ? 0 : l->first_aggregator;
    d->t0 = now();
    signals_install();
    exp_list_init(&d->exp);
    if (driver_is_root(d)) {
        mkdirsCheck(c->run.dir);
        char path[CONFIG_PATH + 32];
        snprintf(path, sizeof(path), "%s/config.yaml", c->run.dir);
        FILE* f = fopenCheck(path, "w");
        ConfigError cerr;
        if (config_write_yaml(c, f, &cerr) != 0) fatal("%s: %s", path, cerr.msg);
        fcloseCheck(f);
    }
    load_model(d);
    setup_roles(d);
    if (!try_resume(d)) {
        initial_weights(d);
        if (driver_is_root(d)) {
            char mpath[CONFIG_PATH + 32];
            snprintf(mpath, sizeof(mpath), "%s/metrics.jsonl", c->run.dir);
            d->metrics = metrics_open(mpath, NULL);
        }
    }
    share_pool(d);
    // where iteration 0 distils nothing its student is the base model
    if (d->start_iter == 0 && c->eval.base && c->eval.tasks > 0 && !nothing_to_distill(d)) driver_evaluate_base(d);
    int rc = INGRAIN_EXIT_OK;
    const double t_loop = now(); // the ETA counts iterations only, not the setup or the bootstrap
    for (int k = d->start_iter; k < c->run.iterations; k++) {
        double t_iter = now();
        // stop points before any state changes: the last checkpoint is this iteration's start
        if (stop_requested(d)) {
            rc = INGRAIN_EXIT_REQUEUE;
            break;
        }
        int n_tasks;
        int* tasks = iteration_tasks(d, k, &n_tasks);
        phase(d, k, "rollout");
        const int no_teacher = nothing_to_distill(d);
        if (driver_is_root(d) && d->exp.n == 0)
            log_info("[iter %d/%d] the pool is empty: the teacher is the student itself, so this iteration %s (the "
                     "pool the aggregation mines is used from the next iteration on)",
                     k + 1, c->run.iterations,
                     no_teacher ? "has nothing to distill and skips the internalization"
                                : "fine-tunes on the successful samples");
        TrajBuf local = {0};
        long gen = 0, gen_all = 0;
        double t_roll = now();
        rollout_phase(d, k, tasks, n_tasks, &local, &gen);
        mpiCheck(MPI_Reduce(&gen, &gen_all, 1, MPI_LONG, MPI_SUM, 0, l->world));
        if (driver_is_root(d)) {
            double dt = now() - t_roll;
            log_info("[iter %d/%d] rollout: %d tasks x %d samples, %ld tokens generated in %.1f s (%.0f tok/s)", k + 1,
                     c->run.iterations, n_tasks, c->rollout.group_size, gen_all, dt, gen_all / (dt > 0 ? dt : 1));
        }
        uint8_t* all;
        size_t all_len, *lens;
        wire_gather(l->world, d->agg_root, local.data, local.len, &all, &all_len, &lens);
        traj_buf_free(&local);
        if (stop_requested(d)) {
            free(all), free(lens), free(tasks);
            rc = INGRAIN_EXIT_REQUEUE;
            break;
        }

        phase(d, k, "aggregate");
        Aggregated agg = {0};
        ShardSet shards = {0};
        int32_t first_new = 0; // ids the aggregation gives to the items it adds start here
        const int owner = l->world_rank == d->agg_root;
        if (owner) {
            first_new = d->pool->next_id;
            collect(d, all, lens, &agg);
            aggregate_phase(d, k, &agg, no_teacher ? NULL : &shards);
        }
        free(all), free(lens);
        Shard shard = {0};
        if (!no_teacher) send_shards(d, &shards, &shard);
        if (owner) shards_free(&shards);
        int rejected = 0;
        if (c->experience.validate_tasks > 0) {
            mpiCheck(MPI_Bcast(&first_new, 1, MPI_INT32_T, d->agg_root, l->world));
            share_pool(d);
            phase(d, k, "validate");
            rejected = driver_validate(d, k, first_new, tasks, n_tasks);
        }
        free(tasks);
        if (owner && pool_write_iteration(d->pool, k, c->run.dir, d->err, sizeof(d->err)) != 0) fatal("%s", d->err);
        int64_t pool_stats[7] = {0};
        if (owner) {
            pool_stats[0] = pool_size(d->pool), pool_stats[1] = agg.report.added, pool_stats[2] = agg.report.updated;
            pool_stats[3] = agg.report.deleted, pool_stats[4] = agg.n;
            pool_stats[5] = (int64_t)llround(agg.rollout_success * 1e6);
            pool_stats[6] = rejected;
        }
        mpiCheck(MPI_Bcast(pool_stats, 7, MPI_INT64_T, d->agg_root, l->world));
        // from here on the iteration runs to its end, then the job stops if asked

        phase(d, k, "internalize");
        DistillReport rep = {0};
        int failed = 0;
        if (d->trainer && !no_teacher) failed = distill_train(d->trainer, &shard, k, &rep, d->err, sizeof(d->err)) != 0;
        driver_agree_or_abort(d, failed, "distillation");
        shard_free(&shard);
        distill_broadcast_weights(d->model, 0, l->world, 16u << 20, d->nccl);
        share_pool(d);

        Eval ev = {0};
        int last = k == c->run.iterations - 1;
        if (c->eval.tasks > 0 && (k % c->eval.every == 0 || last)) {
            phase(d, k, "evaluate");
            driver_evaluate(d, k, &ev);
        }
        if (driver_is_root(d)) {
            log_steps(d, k, &rep);
            json_t* o = json_object();
            json_object_set_new(o, "type", json_string("iteration"));
            json_object_set_new(o, "iteration", json_integer(k));
            driver_set_eval_fields(o, &ev);
            json_object_set_new(o, "rollout_episodes", json_integer(pool_stats[4]));
            json_object_set_new(o, "rollout_success", json_real((double)pool_stats[5] / 1e6));
            json_object_set_new(o, "pool_size", json_integer(pool_stats[0]));
            json_object_set_new(o, "pool_added", json_integer(pool_stats[1]));
            json_object_set_new(o, "pool_updated", json_integer(pool_stats[2]));
            json_object_set_new(o, "pool_deleted", json_integer(pool_stats[3]));
            json_object_set_new(o, "pool_rejected", json_integer(pool_stats[6]));
            json_object_set_new(o, "train_sequences", json_integer(rep.sequences));
            json_object_set_new(o, "train_steps", json_integer(rep.n_steps));
            json_object_set_new(o, "train_loss", json_real(mean_loss(&rep)));
            json_object_set_new(o, "seconds", json_real(now() - t_iter));
            metrics_append(d->metrics, o);
            metrics_sync(d->metrics);
            json_decref(o);
            double done = k + 1 - d->start_iter, elapsed = now() - t_loop;
            char evals[160], rejected_note[48] = "";
            driver_eval_summary(&ev, evals, sizeof(evals));
            if (pool_stats[6] > 0)
                snprintf(rejected_note, sizeof(rejected_note), ", %lld rejected", (long long)pool_stats[6]);
            log_info("iter %d/%d | %s | turns %.1f | premature %.2f | pool %lld (+%lld ~%lld -%lld%s) | loss %.4f | "
                     "%.0f s | ETA %.0f s",
                     k + 1, c->run.iterations, evals, driver_ratio(ev.student.turns, ev.student.episodes),
                     driver_ratio(ev.student.premature, ev.student.episodes), (long long)pool_stats[0],
                     (long long)pool_stats[1], (long long)pool_stats[2], (long long)pool_stats[3], rejected_note,
                     mean_loss(&rep), now() - t_iter, elapsed / done * (c->run.iterations - k - 1));
        }
        distill_report_free(&rep);
        if (last || (k + 1) % c->checkpoint.every == 0 || signals_agree(l->world)) {
            write_checkpoint(d, k + 1, agg.trajs, agg.n);
        }
        for (int i = 0; i < agg.n; i++) traj_free(agg.trajs[i]);
        free(agg.trajs);
        if (!last && stop_requested(d)) {
            rc = INGRAIN_EXIT_REQUEUE;
            break;
        }
    }
    if (rc == INGRAIN_EXIT_REQUEUE && driver_is_root(d)) {
        log_info("stop requested (signal %d): the newest checkpoint holds every finished iteration; exiting with %d "
                 "(requeue, then run with --resume)", signals_pending(), INGRAIN_EXIT_REQUEUE);
    }
    if (rc == INGRAIN_EXIT_OK && driver_is_root(d)) {
        char done[CONFIG_PATH + 16];
        snprintf(done, sizeof(done), "%s/DONE", c->run.dir);
        fcloseCheck(fopenCheck(done, "w"));
        log_info("done: %d iterations in %.0f s; metrics in %s/metrics.jsonl", c->run.iterations, now() - d->t0,
                 c->run.dir);
        inspect_metrics_table(metrics_text(d->metrics), stdout);
        fflush(stdout);
    }
    metrics_close(d->metrics);
    free(d->pool_json);
    exp_list_free(&d->exp);
    pool_free(d->pool);
    writer_free(&d->writer);
    free(d->judge_tmpl);
    distill_trainer_free(d->trainer);
    devcomm_free(d->nccl);
    agent_free(d->agent);
    agent_free(d->eval_agent);
    for (int i = 0; d->envs && i < c->rollout.group_size; i++) env_destroy(d->envs[i]);
    free(d->envs);
    model_free(d->model);
    tokenizer_free(d->tok);
    backend_destroy(d->be);
    return rc;
}
