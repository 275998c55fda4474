// The distillation trainer (see trainer.h): config, lifetime, validation of the shards, the
// global plan, the per-epoch exchange of sequences between trainers, and the optimizer step.
#include "distill/trainer.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/check.h"
#include "common/log.h"
#include "distill/plan.h"
#include "distill/trainer_impl.h"
#include "model/fixed_point.h"
#include "model/loss.h"

#define EXCHANGE_TAG 7100
#define EXCHANGE_CHUNK (1u << 30) // bytes per message of the sequence exchange
#define ERR_LEN 1024

// per micro-batch metric sums, exchanged as doubles
enum { STAT_LOSS, STAT_KL_FWD, STAT_KL_REV, STAT_AGREE, STAT_ENTROPY, STAT_COUNT };

// ----------------------------------------------------------------------------
// config

int distill_check_config(const Config* c, char* err, size_t errlen) {
    char where[CONFIG_PATH + 32], other[CONFIG_PATH + 32];
    if (c->distill.loss == LOSS_REVERSE_KL_SAMPLED && c->distill.regime != REGIME_ON_POLICY) {
        snprintf(err, errlen,
                 "%s: distill.loss: 'reverse_kl_sampled' is on-policy only (the estimator averages over the student's "
                 "own samples), but distill.regime is '%s' (%s); use distill.regime: on_policy, or forward_kl/sft",
                 config_origin(c, "distill.loss", where, sizeof(where)),
                 config_enum_name("distill.regime", c->distill.regime),
                 config_origin(c, "distill.regime", other, sizeof(other)));
        return -1;
    }
    if (c->distill.loss == LOSS_SFT && c->distill.teacher == TEACHER_RECOMPUTE) {
        snprintf(err, errlen,
                 "%s: distill.teacher: 'recompute' with distill.loss 'sft' (%s): SFT trains on the sampled tokens and "
                 "uses no teacher distribution; use distill.teacher: recorded, or distill.loss: forward_kl",
                 config_origin(c, "distill.teacher", where, sizeof(where)),
                 config_origin(c, "distill.loss", other, sizeof(other)));
        return -1;
    }
    return 0;
}

void distill_options_from_config(DistillOptions* o, const Config* c) {
    memset(o, 0, sizeof(*o));
    switch (c->distill.loss) {
    case LOSS_SFT:
        o->loss = DISTILL_LOSS_SFT;
        break;
    case LOSS_REVERSE_KL:
        o->loss = DISTILL_LOSS_REVERSE_KL;
        break;
    case LOSS_JSD:
        o->loss = DISTILL_LOSS_JSD;
        break;
    case LOSS_REVERSE_KL_SAMPLED:
        o->loss = DISTILL_LOSS_REVERSE_KL_SAMPLED;
        break;
    default:
        o->loss = DISTILL_LOSS_FORWARD_KL;
        break;
    }
    o->jsd_beta = c->distill.jsd_beta;
    o->epochs = c->distill.epochs;
    o->micro_batch_tokens = c->distill.micro_batch_tokens;
    o->batch_tokens = c->distill.batch_tokens;
    o->max_seq = c->model.max_seq_len;
    o->max_batch = o->micro_batch_tokens / o->max_seq > 1 ? o->micro_batch_tokens / o->max_seq : 1;
    o->adamw = adamw_default_config();
    o->adamw.lr = (float)c->distill.lr;
    o->adamw.min_lr_ratio = (float)c->distill.min_lr_ratio;
    o->adamw.warmup_steps = c->distill.warmup_steps;
    o->adamw.beta1 = (float)c->distill.beta1;
    o->adamw.beta2 = (float)c->distill.beta2;
    o->adamw.eps = (float)c->distill.eps;
    o->adamw.weight_decay = (float)c->distill.weight_decay;
    o->adamw.grad_clip = (float)c->distill.grad_clip;
    o->seed = (uint64_t)c->run.seed;
    o->reduce = DISTILL_REDUCE_FIXED;
    o->bucket_bytes = (size_t)16 << 20;
    o->nccl = c->distill.nccl;
    o->check_sync = c->run.log_level == LOG_DEBUG;
    o->teacher_recompute = c->distill.teacher == TEACHER_RECOMPUTE;
    o->teacher_max_len = c->rollout.max_context > o->max_seq ? c->rollout.max_context : o->max_seq;
}

// ----------------------------------------------------------------------------
// lifetime

DistillTrainer* distill_trainer_create(Model* m, const DistillOptions* o, MPI_Comm comm) {
    if (o->epochs < 1 || o->micro_batch_tokens < 1 || o->batch_tokens < 1 || o->max_batch < 1 || o->max_seq < 1 ||
        o->bucket_bytes < sizeof(int64_t) || o->jsd_beta < 0.0 || o->jsd_beta > 1.0 || o->teacher_max_len < 0) {
        fatal("distill_trainer_create: invalid options (epochs %d, micro_batch_tokens %d, batch_tokens %ld, max_batch "
              "%d, max_seq %d, bucket_bytes %zu, jsd_beta %g, teacher_max_len %d)",
              o->epochs, o->micro_batch_tokens, o->batch_tokens, o->max_batch, o->max_seq, o->bucket_bytes,
              o->jsd_beta, o->teacher_max_len);
    }
    DistillTrainer* t = callocCheck(1, sizeof(DistillTrainer));
    t->model = m;
    t->be = model_backend(m);
    t->opt = *o;
    t->comm = comm;
    mpiCheck(MPI_Comm_rank(comm, &t->rank));
    mpiCheck(MPI_Comm_size(comm, &t->size));
    t->n = model_num_params(m);
    memcpy(t->table, model_param_info(m), sizeof(t->table));
    part_init(&t->part, t->n, t->rank, t->size);
    const size_t slice = (size_t)t->part.cnt[t->rank] ? (size_t)t->part.cnt[t->rank] : 1;
    t->m = t->be->alloc(t->be, sizeof(float) * slice);
    t->v = t->be->alloc(t->be, sizeof(float) * slice);
    t->params = mallocCheck(sizeof(float) * (size_t)t->n);
    t->nccl = o->nccl ? distill_nccl_open(t->be, comm, "the trainers' gradients and parameters") : NULL;
    if (t->nccl || t->size == 1) { // the sums stay on the backend
        if (o->reduce == DISTILL_REDUCE_FIXED) t->acc = t->be->alloc(t->be, sizeof(int64_t) * (size_t)t->n);
    }
    if (!t->nccl && (t->size > 1 || o->reduce == DISTILL_REDUCE_FLOAT)) {
        t->grad = mallocCheck(sizeof(float) * (size_t)t->n);
        t->grad_slice = mallocCheck(sizeof(float) * slice);
        if (o->reduce == DISTILL_REDUCE_FIXED) {
            t->acc_host = mallocCheck(sizeof(int64_t) * (size_t)t->n);
            t->acc_slice = mallocCheck(sizeof(int64_t) * slice);
        }
    }
    t->obj = distill_objective_create(t->be, o->loss, o->jsd_beta, model_config(m)->vocab_size);
    if (o->teacher_recompute) {
        t->teacher = distill_teacher_create(m, o->teacher_max_len ? o->teacher_max_len : o->max_seq);
        t->d_teacher = t->be->alloc(t->be, sizeof(float) * (size_t)o->max_batch * (size_t)o->max_seq *
                                               (size_t)model_config(m)->vocab_size);
    }
    return t;
}

void distill_trainer_free(DistillTrainer* t) {
    if (!t) return;
    t->be->free(t->be, t->m);
    t->be->free(t->be, t->v);
    if (t->acc) t->be->free(t->be, t->acc);
    devcomm_free(t->nccl);
    free(t->acc_host);
    free(t->acc_slice);
    free(t->grad);
    free(t->grad_slice);
    free(t->params);
    distill_objective_free(t->obj);
    distill_batch_free(&t->batch);
    if (t->teacher) t->be->free(t->be, t->d_teacher);
    distill_teacher_free(t->teacher);
    part_free(&t->part);
    free(t);
}

const DistillOptions* distill_trainer_options(const DistillTrainer* t) { return &t->opt; }

void distill_report_free(DistillReport* r) {
    free(r->steps);
    memset(r, 0, sizeof(*r));
}

int distill_trainer_uses_nccl(const DistillTrainer* t) { return t->nccl != NULL; }

int distill_trainer_check_sync(DistillTrainer* t, char* err, size_t errlen) {
    uint64_t h = distill_weights_hash(t->model);
    uint64_t* all = mallocCheck(sizeof(uint64_t) * (size_t)t->size);
    mpiCheck(MPI_Allgather(&h, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, t->comm));
    int bad = 0;
    size_t len = 0;
    for (int r = 1; r < t->size; r++) {
        if (all[r] == all[0]) continue;
        if (!bad) len = (size_t)snprintf(err, errlen, "trainer weights differ from trainer 0's on trainer(s)");
        bad = 1;
        if (len < errlen) len += (size_t)snprintf(err + len, errlen - len, " %d", r);
    }
    free(all);
    return bad ? -1 : 0;
}

// ----------------------------------------------------------------------------
// the data: validation and metadata

// The same verdict on every trainer: the message of the lowest failing rank, or 0 if none failed.
static int agree_error(DistillTrainer* t, int failed, const char* msg, char* err, size_t errlen) {
    int first = failed ? t->rank : t->size;
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, t->comm));
    if (first == t->size) return 0;
    char buf[ERR_LEN] = "";
    if (t->rank == first) snprintf(buf, sizeof(buf), "%s", msg);
    mpiCheck(MPI_Bcast(buf, ERR_LEN, MPI_CHAR, first, t->comm));
    snprintf(err, errlen, "%s", buf);
    return -1;
}

static int64_t loss_tokens(const Trajectory* s) {
    int64_t n = 0;
    for (int i = 1; i < s->n_tokens; i++) n += s->agent_mask[i] != 0;
    return n;
}

// teacher_recompute: the record says what its teacher saw, and the frozen teacher can hold it
static void check_teacher_contexts(DistillTrainer* t, const Trajectory* s, const char* who, char* msg, size_t n,
                                   int* rc) {
    const int V = model_config(t->model)->vocab_size;
    if (!(s->flags & TRAJ_FLAG_TEACHER_VIEW)) {
        snprintf(msg, n,
                 "%s: no teacher contexts (distill.teacher: recompute needs agent_teacher_view on every record at "
                 "rollout)",
                 who);
        *rc = -1;
        return;
    }
    for (int i = 0; i < s->n_tokens; i++) {
        if (s->segment[i] == TRAJ_SEG_EXPERIENCE) {
            snprintf(msg, n, "%s: token %d is experience: the trainers take student views (shards_student_record)",
                     who, i);
            *rc = -1;
            return;
        }
    }
    const int n_ids = s->n_tctx ? s->tctx_offset[s->n_tctx] : 0;
    for (int i = 0; i < n_ids; i++) {
        if (s->tctx_ids[i] < 0 || s->tctx_ids[i] >= V) {
            snprintf(msg, n, "%s: teacher context id %d is outside the vocabulary [0, %d)", who, s->tctx_ids[i], V);
            *rc = -1;
            return;
        }
    }
    const int need = distill_teacher_need(s), cap = distill_teacher_max_len(t->teacher);
    if (need > cap) {
        snprintf(msg, n, "%s: its teacher context needs %d tokens, the frozen teacher holds %d (rollout.max_context)",
                 who, need, cap);
        *rc = -1;
    }
}

// 0, or -1 with msg naming the first sequence of the shard that cannot be trained on
static int check_local(DistillTrainer* t, const Shard* sh, char* msg, size_t n) {
    const int V = model_config(t->model)->vocab_size;
    int* stamp = callocCheck((size_t)V, sizeof(int)); // stamp[id] = row + 1 of the last row holding id
    int rc = 0, row_stamp = 0;
    for (int q = 0; q < sh->n && rc == 0; q++) {
        const Trajectory* s = sh->seqs[q];
        char who[160];
        snprintf(who, sizeof(who), "trainer %d, sequence %d (task %d, sample %d)", t->rank, q, s->task_id, s->sample);
#define BAD(...) (snprintf(msg, n, __VA_ARGS__), rc = -1)
        if (s->n_tokens > t->opt.max_seq) {
            BAD("%s: %d tokens, more than the trainer's max_seq %d (model.max_seq_len)", who, s->n_tokens,
                t->opt.max_seq);
            break;
        }
        for (int i = 0; i < s->n_tokens && rc == 0; i++) {
            if (s->tokens[i] < 0 || s->tokens[i] >= V)
                BAD("%s: token %d is id %d, outside the vocabulary [0, %d)", who, i, s->tokens[i], V);
        }
        if (rc || loss_tokens(s) == 0) continue;
        if (t->teacher) {
            check_teacher_contexts(t, s, who, msg, n, &rc);
            continue; // the frozen teacher replaces the recorded top-k rows
        }
        if (s->topk == 0 && t->opt.loss != DISTILL_LOSS_SFT) {
            BAD("%s: no teacher top-k recorded (topk = 0), which every loss but sft needs", who);
        } else if (s->topk > LOSS_TOPK_MAX) {
            BAD("%s: teacher top-k %d exceeds %d", who, s->topk, LOSS_TOPK_MAX);
        }
        for (int r = 0; r < s->n_agent && rc == 0; r++) {
            const int32_t* ids = s->topk_ids + (size_t)r * s->topk;
            const float* lp = s->topk_lp + (size_t)r * s->topk;
            row_stamp++;
            for (int i = 0; i < s->topk && rc == 0; i++) {
                if (ids[i] < 0 || ids[i] >= V)
                    BAD("%s: agent row %d: teacher top-k id %d outside [0, %d)", who, r, ids[i], V);
                else if (stamp[ids[i]] == row_stamp)
                    BAD("%s: agent row %d: teacher top-k id %d appears twice", who, r, ids[i]);
                else if (isnan(lp[i]) || lp[i] > 0.0f)
                    BAD("%s: agent row %d: teacher log-prob %g is not <= 0", who, r, lp[i]);
                else
                    stamp[ids[i]] = row_stamp;
            }
            if (rc == 0 && s->topk && !(s->tail_mass[r] >= 0.0f && s->tail_mass[r] <= 1.0f)) {
                BAD("%s: agent row %d: tail mass %g outside [0, 1]", who, r, s->tail_mass[r]);
            }
        }
#undef BAD
    }
    free(stamp);
    return rc;
}

// every trainer's metadata, in the canonical order (plan.h)
static DistillSeqMeta* gather_meta(DistillTrainer* t, const Shard* sh, int* n_out) {
    DistillSeqMeta* mine = callocCheck((size_t)(sh->n ? sh->n : 1), sizeof(DistillSeqMeta));
    for (int q = 0; q < sh->n; q++) {
        const Trajectory* s = sh->seqs[q];
        uint64_t h = XXH3_64bits(s->tokens, sizeof(int32_t) * (size_t)s->n_tokens);
        mine[q] = (DistillSeqMeta){.task = s->task_id,
                                   .sample = s->sample,
                                   .seed = (int64_t)s->seed,
                                   .iteration = s->iteration,
                                   .hash = XXH3_64bits_withSeed(s->agent_mask, (size_t)s->n_tokens, h),
                                   .tokens = s->n_tokens,
                                   .loss_tokens = loss_tokens(s),
                                   .owner = t->rank,
                                   .local = q};
    }
    int* counts = mallocCheck(sizeof(int) * (size_t)t->size);
    int* displs = mallocCheck(sizeof(int) * (size_t)t->size);
    int bytes = sh->n * (int)sizeof(DistillSeqMeta), total = 0;
    mpiCheck(MPI_Allgather(&bytes, 1, MPI_INT, counts, 1, MPI_INT, t->comm));
    for (int r = 0; r < t->size; r++) displs[r] = total, total += counts[r];
    DistillSeqMeta* all = mallocCheck((size_t)(total ? total : 1));
    mpiCheck(MPI_Allgatherv(mine, bytes, MPI_BYTE, all, counts, displs, MPI_BYTE, t->comm));
    free(counts);
    free(displs);
    free(mine);
    *n_out = total / (int)sizeof(DistillSeqMeta);
    distill_meta_sort(all, *n_out);
    return all;
}

// ----------------------------------------------------------------------------
// the exchange: before each epoch every trainer receives the sequences of its micro-batches

typedef struct {
    Trajectory** seq;   // (n_meta) the record of each global sequence this trainer runs, else NULL
    Trajectory** owned; // decoded copies from other trainers, freed after the epoch
    int n_owned;
} EpochData;

static void exchange(DistillTrainer* t, const Shard* local, const DistillSeqMeta* meta, int n_meta,
                     const DistillPlan* p, int epoch, EpochData* d) {
    const int P = t->size;
    int* runs_on = mallocCheck(sizeof(int) * (size_t)(n_meta ? n_meta : 1));
    for (int g = 0; g < n_meta; g++) runs_on[g] = -1;
    for (int s = 0; s < p->n_steps; s++) {
        if (p->step_epoch[s] != epoch) continue;
        for (int j = p->step_micro[s]; j < p->step_micro[s + 1]; j++) {
            for (int q = p->micro_seq[j]; q < p->micro_seq[j + 1]; q++)
                runs_on[p->seqs[q]] = (j - p->step_micro[s]) % P;
        }
    }
    TrajBuf* out = callocCheck((size_t)P, sizeof(TrajBuf));
    d->seq = callocCheck((size_t)(n_meta ? n_meta : 1), sizeof(Trajectory*));
    for (int g = 0; g < n_meta; g++) {
        if (meta[g].owner != t->rank || runs_on[g] < 0) continue;
        Trajectory* s = local->seqs[meta[g].local];
        if (runs_on[g] == t->rank)
            d->seq[g] = s;
        else
            traj_encode(s, &out[runs_on[g]]);
    }
    uint64_t* send_bytes = callocCheck((size_t)P, sizeof(uint64_t));
    uint64_t* recv_bytes = callocCheck((size_t)P, sizeof(uint64_t));
    for (int r = 0; r < P; r++) send_bytes[r] = out[r].len;
    mpiCheck(MPI_Alltoall(send_bytes, 1, MPI_UINT64_T, recv_bytes, 1, MPI_UINT64_T, t->comm));
    uint8_t** in = callocCheck((size_t)P, sizeof(uint8_t*));
    int n_req = 0, cap_req = 16;
    MPI_Request* req = mallocCheck(sizeof(MPI_Request) * (size_t)cap_req);
    for (int r = 0; r < P; r++) {
        in[r] = mallocCheck((size_t)(recv_bytes[r] ? recv_bytes[r] : 1));
        for (int pass = 0; pass < 2; pass++) { // receives, then sends
            const uint64_t total = pass ? send_bytes[r] : recv_bytes[r];
            for (uint64_t off = 0, c = 0; off < total; off += EXCHANGE_CHUNK, c++) {
                const int len = (int)(total - off < EXCHANGE_CHUNK ? total - off : EXCHANGE_CHUNK);
                if (n_req == cap_req) cap_req *= 2, req = reallocCheck(req, sizeof(MPI_Request) * (size_t)cap_req);
                if (pass)
                    mpiCheck(
                        MPI_Isend(out[r].data + off, len, MPI_BYTE, r, EXCHANGE_TAG + (int)c, t->comm, &req[n_req++]));
                else
                    mpiCheck(MPI_Irecv(in[r] + off, len, MPI_BYTE, r, EXCHANGE_TAG + (int)c, t->comm, &req[n_req++]));
            }
        }
    }
    mpiCheck(MPI_Waitall(n_req, req, MPI_STATUSES_IGNORE));
    // decode in the order the owners encoded: ascending global index
    d->owned = mallocCheck(sizeof(Trajectory*) * (size_t)(n_meta ? n_meta : 1));
    d->n_owned = 0;
    size_t* pos = callocCheck((size_t)P, sizeof(size_t));
    for (int g = 0; g < n_meta; g++) {
        const int o = meta[g].owner;
        if (runs_on[g] != t->rank || o == t->rank) continue;
        char err[256];
        Trajectory* s = traj_decode(in[o], (size_t)recv_bytes[o], &pos[o], err, sizeof(err));
        if (!s) fatal("distill exchange: record from trainer %d does not decode: %s", o, err);
        if (s->task_id != meta[g].task || s->sample != meta[g].sample || s->n_tokens != meta[g].tokens) {
            fatal("distill exchange: trainer %d sent task %d sample %d (%d tokens) where task %lld sample %lld was due",
                  o, s->task_id, s->sample, s->n_tokens, (long long)meta[g].task, (long long)meta[g].sample);
        }
        d->seq[g] = d->owned[d->n_owned++] = s;
    }
    for (int r = 0; r < P; r++) traj_buf_free(&out[r]), free(in[r]);
    free(pos);
    free(req);
    free(in);
    free(out);
    free(send_bytes);
    free(recv_bytes);
    free(runs_on);
}

static void epoch_free(EpochData* d) {
    for (int i = 0; i < d->n_owned; i++) traj_free(d->owned[i]);
    free(d->owned);
    free(d->seq);
    memset(d, 0, sizeof(*d));
}

// ----------------------------------------------------------------------------
// one optimizer step

// forward, objective and backward of this trainer's micro-batches of step s; fixed mode adds each
// micro-batch gradient at exponent k to t->acc on the backend (one trainer, or NCCL) or, downloaded, to
// t->acc_host (several). Returns 1 if a gradient left the range of k.
static int step_gradients(DistillTrainer* t, const DistillPlan* p, int s, const EpochData* d, int k, double* stats,
                          double* max_abs) {
    Model* m = t->model;
    Backend* be = t->be;
    const int first = p->step_micro[s], M = p->step_micro[s + 1] - first;
    const int fixed = t->opt.reduce == DISTILL_REDUCE_FIXED;
    const float weight = 1.0f / (float)p->step_loss_tokens[s];
    int bad = 0;
    *max_abs = 0.0;
    if (fixed && t->acc)
        be->memset0(be, t->acc, sizeof(int64_t) * (size_t)t->n);
    else if (fixed)
        memset(t->acc_host, 0, sizeof(int64_t) * (size_t)t->n);
    else
        model_zero_grad(m);
    memset(stats, 0, sizeof(double) * (size_t)M * STAT_COUNT);
    Trajectory** list = mallocCheck(sizeof(Trajectory*) * (size_t)t->opt.max_batch);
    for (int jj = t->rank; jj < M; jj += t->size) {
        const int j = first + jj, B = p->micro_seq[j + 1] - p->micro_seq[j], T = p->micro_T[j];
        for (int b = 0; b < B; b++) list[b] = d->seq[p->seqs[p->micro_seq[j] + b]];
        distill_batch_fill(&t->batch, list, B, T, weight);
        if (t->teacher) distill_teacher_rows(t->teacher, list, B, T, t->d_teacher);
        if (fixed) model_zero_grad(m);
        model_forward(m, t->batch.tokens, t->batch.lengths, B, T, NULL);
        float* dz = model_dlogits(m);
        DistillStats st = {0};
        distill_objective_run(t->obj, model_logits(m), &t->batch, t->teacher ? t->d_teacher : NULL, dz, &st);
        model_backward(m, dz);
        if (fixed) {
            double mx;
            if (t->acc) {
                bad |= be->fp_accumulate(be, t->acc, model_grads(m), (size_t)t->n, k, distill_fp_limit(M), &mx);
            } else {
                model_grads_download(m, t->grad);
                bad |= fixed_accumulate(t->acc_host, t->grad, (size_t)t->n, k, distill_fp_limit(M), &mx, 0);
            }
            *max_abs = isnan(mx) || isnan(*max_abs) ? NAN : fmax(*max_abs, mx);
        }
        double* out = stats + (size_t)jj * STAT_COUNT;
        out[STAT_LOSS] = st.loss;
        out[STAT_KL_FWD] = st.kl_forward;
        out[STAT_KL_REV] = st.kl_reverse;
        out[STAT_AGREE] = st.agree;
        out[STAT_ENTROPY] = st.entropy;
    }
    free(list);
    return bad;
}

static void run_step(DistillTrainer* t, const DistillPlan* p, int s, const EpochData* d, int iteration,
                     DistillStepMetrics* out) {
    Model* m = t->model;
    const double t0 = MPI_Wtime();
    const int M = p->step_micro[s + 1] - p->step_micro[s];
    const int fixed = t->opt.reduce == DISTILL_REDUCE_FIXED;
    double* stats = mallocCheck(sizeof(double) * (size_t)M * STAT_COUNT);
    int max_exp = t->opt.fp_max_exp ? t->opt.fp_max_exp : DISTILL_FP_ASSUMED_EXP, k = 0, recomputed = 0;
    double wait_s = 0.0;
    for (;;) {
        k = fixed ? distill_fp_exponent(M, max_exp) : 0;
        double mx, flags[2];
        flags[0] = step_gradients(t, p, s, d, k, stats, &mx);
        // every trainer learns whether any gradient left the range, and the largest magnitude; the
        // time spent here is the wait for the slowest trainer (float mode syncs here too, so that
        // comm_seconds measures transfers alone in both modes)
        flags[1] = isnan(mx) ? INFINITY : mx;
        const double tw = MPI_Wtime();
        mpiCheck(MPI_Allreduce(MPI_IN_PLACE, flags, 2, MPI_DOUBLE, MPI_MAX, t->comm));
        wait_s += MPI_Wtime() - tw;
        if (flags[0] == 0.0) break;
        if (!isfinite(flags[1])) {
            fatal("distill: iteration %d, step %d: the gradient is not finite (the loss diverged; lower distill.lr)",
                  iteration, s);
        }
        if (recomputed)
            fatal("distill: iteration %d, step %d: fixed-point range still exceeded after rescaling", iteration, s);
        max_exp = ilogb(flags[1]) + 1;
        recomputed = 1;
        log_debug("distill: step %d: gradient max %g exceeds the assumed range; recomputing at 2^%d", s, flags[1],
                  distill_fp_exponent(M, max_exp));
    }

    // reduce-scatter the gradient to the slice owners, into place in the model's gradient buffer
    // (one trainer, or NCCL, in fixed mode: the sums are all on the backends, and no byte reaches
    // a host; NCCL sums the int64 slices exactly, so the bits stay those of any trainer count)
    Backend* be = t->be;
    const uint64_t off = t->part.off[t->rank], cnt = t->part.cnt[t->rank];
    float* grads = model_grads(m);
    double tc = MPI_Wtime();
    if (fixed && t->acc) {
        if (t->nccl) devcomm_reduce_slices(t->nccl, t->acc, DEVCOMM_I64, t->part.off, t->part.cnt);
        be->fp_to_float(be, grads + off, t->acc + off, (size_t)cnt, k);
    } else if (t->nccl) {
        devcomm_reduce_slices(t->nccl, grads, DEVCOMM_F32, t->part.off, t->part.cnt);
    } else if (fixed) {
        part_reduce_scatter(&t->part, t->acc_host, t->acc_slice, MPI_INT64_T, sizeof(int64_t), t->opt.bucket_bytes,
                            t->comm);
        fixed_to_float(t->grad_slice, t->acc_slice, (size_t)cnt, k, 0);
        be->upload(be, grads + off, t->grad_slice, sizeof(float) * (size_t)cnt);
    } else {
        model_grads_download(m, t->grad);
        part_reduce_scatter(&t->part, t->grad, t->grad_slice, MPI_FLOAT, sizeof(float), t->opt.bucket_bytes, t->comm);
        be->upload(be, grads + off, t->grad_slice, sizeof(float) * (size_t)cnt);
    }
    const double norm = sqrt(part_norm2(&t->part, be, grads + off, t->comm));
    double comm_s = MPI_Wtime() - tc;
    if (!isfinite(norm))
        fatal("distill: iteration %d, step %d: gradient norm %g (the loss diverged)", iteration, s, norm);

    // update the slice, all-gather the parameters
    AdamWConfig cfg = t->opt.adamw;
    cfg.total_steps = p->n_steps;
    const float lr = adamw_lr(&cfg, s), scale = adamw_clip_scale(&cfg, norm);
    zero_step(t, lr, scale);
    if (t->size > 1 && t->nccl) {
        tc = MPI_Wtime();
        devcomm_gather_slices(t->nccl, model_params(m), DEVCOMM_F32, t->part.off, t->part.cnt);
        be->synchronize(be); // for comm_seconds
        comm_s += MPI_Wtime() - tc;
    } else if (t->size > 1) {
        be->download(be, t->params + off, model_params(m) + off, sizeof(float) * (size_t)cnt);
        tc = MPI_Wtime();
        part_allgather(&t->part, t->params, MPI_FLOAT, sizeof(float), t->opt.bucket_bytes, t->comm);
        comm_s += MPI_Wtime() - tc;
        model_params_upload(m, t->params);
    }

    // metrics: one contributor per micro-batch slot, summed in micro-batch order
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, stats, M * STAT_COUNT, MPI_DOUBLE, MPI_SUM, t->comm));
    double sum[STAT_COUNT] = {0};
    for (int j = 0; j < M; j++) {
        for (int i = 0; i < STAT_COUNT; i++) sum[i] += stats[(size_t)j * STAT_COUNT + i];
    }
    free(stats);
    if (t->opt.check_sync) {
        char msg[ERR_LEN];
        if (distill_trainer_check_sync(t, msg, sizeof(msg)) != 0) fatal("distill: after step %d: %s", s, msg);
    }
    const double N = (double)p->step_loss_tokens[s];
    *out = (DistillStepMetrics){.iteration = iteration,
                                .epoch = p->step_epoch[s],
                                .step = s,
                                .global_step = t->steps_done,
                                .loss = sum[STAT_LOSS],
                                .kl_forward = sum[STAT_KL_FWD] / N,
                                .kl_reverse = sum[STAT_KL_REV] / N,
                                .top1_agree = sum[STAT_AGREE] / N,
                                .entropy = sum[STAT_ENTROPY] / N,
                                .grad_norm = norm,
                                .lr = lr,
                                .tokens = p->step_tokens[s],
                                .loss_tokens = p->step_loss_tokens[s],
                                .micro_batches = M,
                                .fp_exponent = k,
                                .recomputed = recomputed,
                                .seconds = MPI_Wtime() - t0,
                                .comm_seconds = comm_s,
                                .wait_seconds = wait_s};
    out->tokens_per_s = (double)out->tokens / out->seconds;
}

// ----------------------------------------------------------------------------
// one iteration

int distill_train(DistillTrainer* t, const Shard* local, int iteration, DistillReport* report, char* err,
                  size_t errlen) {
    DistillReport rep = {0};
    char msg[ERR_LEN] = "";
    if (agree_error(t, check_local(t, local, msg, sizeof(msg)) != 0, msg, err, errlen) != 0) return -1;
    // one top-k size over all sequences with a loss
    int k[2] = {INT_MAX, INT_MAX}; // min, -max: both reduced by MPI_MIN (a rank with none keeps INT_MAX)
    for (int q = 0; q < local->n; q++) {
        if (loss_tokens(local->seqs[q]) == 0) continue;
        k[0] = local->seqs[q]->topk < k[0] ? local->seqs[q]->topk : k[0];
        k[1] = -local->seqs[q]->topk < k[1] ? -local->seqs[q]->topk : k[1];
    }
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, k, 2, MPI_INT, MPI_MIN, t->comm));
    if (k[0] != INT_MAX && k[0] != -k[1]) {
        snprintf(
            err, errlen,
            "the sequences carry teacher top-k of different sizes (%d and %d): one rollout.teacher_topk per iteration",
            k[0], -k[1]);
        return -1;
    }
    if (distill_trainer_check_sync(t, msg, sizeof(msg)) != 0) {
        snprintf(err, errlen, "at the start of iteration %d: %s (broadcast the weights first)", iteration, msg);
        return -1;
    }
    if (t->teacher) distill_teacher_refresh(t->teacher, t->model, t->params); // theta_k, frozen for the iteration
    int n_meta;
    DistillSeqMeta* meta = gather_meta(t, local, &n_meta);
    DistillPlanParams pp = {.epochs = t->opt.epochs,
                            .micro_batch_tokens = t->opt.micro_batch_tokens,
                            .max_batch = t->opt.max_batch,
                            .batch_tokens = t->opt.batch_tokens};
    DistillPlan plan;
    distill_plan_build(meta, n_meta, &pp, t->opt.seed, iteration, &plan);
    if (plan.n_steps == 0)
        log_warn("distill: iteration %d has no sequence with a loss token: nothing to train", iteration);
    rep.steps = callocCheck((size_t)(plan.n_steps ? plan.n_steps : 1), sizeof(DistillStepMetrics));
    rep.sequences = plan.n_used;
    const double t0 = MPI_Wtime();
    for (int e = 0; e < t->opt.epochs && plan.n_steps; e++) {
        EpochData d;
        exchange(t, local, meta, n_meta, &plan, e, &d);
        for (int s = 0; s < plan.n_steps; s++) {
            if (plan.step_epoch[s] != e) continue;
            DistillStepMetrics* sm = &rep.steps[rep.n_steps++];
            run_step(t, &plan, s, &d, iteration, sm);
            rep.tokens += sm->tokens;
            rep.comm_seconds += sm->comm_seconds;
            rep.wait_seconds += sm->wait_seconds;
            log_debug("distill: iteration %d epoch %d step %d: loss %.6f kl_fwd %.6f kl_rev %.6f agree %.4f entropy "
                      "%.4f |g| %.4g lr %.3g %.0f tok/s",
                      iteration, e, s, sm->loss, sm->kl_forward, sm->kl_reverse, sm->top1_agree, sm->entropy,
                      sm->grad_norm, sm->lr, sm->tokens_per_s);
            if (t->opt.on_step) t->opt.on_step(t->opt.on_step_ctx, sm);
        }
        epoch_free(&d);
    }
    rep.seconds = MPI_Wtime() - t0;
    distill_plan_free(&plan);
    free(meta);
    if (report)
        *report = rep;
    else
        distill_report_free(&rep);
    return 0;
}
