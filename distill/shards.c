// Distillation shards (see shards.h): selection by regime, the student view as a record, greedy
// token balancing, and the wire form.
#include "distill/shards.h"

#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "io/config.h"

Trajectory* shards_student_record(const Trajectory* t) {
    Trajectory* s = traj_create(t->topk);
    s->task_id = t->task_id;
    s->sample = t->sample;
    s->iteration = t->iteration;
    s->flags = t->flags;
    s->seed = t->seed;
    s->final_reward = t->final_reward;
    int32_t step = 0, row = 0, k = t->topk;
    const int32_t end = traj_student_end(t);
    for (int32_t i = 0; i <= end; i++) {
        // steps open before their first token (several may open at the same index)
        while (step < t->n_steps && (t->step_start[step] == i || i == end)) {
            const int32_t* items = t->items + t->item_offset[step];
            traj_begin_step(s, items, t->item_offset[step + 1] - t->item_offset[step]);
            traj_set_step_reward(s, t->step_reward[step]);
            step++;
        }
        if (i == end) break;
        if (t->agent_mask[i]) {
            traj_push_agent(s, t->tokens[i], t->logprob[i], k ? t->topk_ids + (size_t)row * k : NULL,
                            k ? t->topk_lp + (size_t)row * k : NULL, t->tail_mass[row]);
            row++;
        } else if (t->segment[i] != TRAJ_SEG_EXPERIENCE) {
            traj_push_context(s, &t->tokens[i], 1, t->segment[i]);
        }
    }
    traj_copy_teacher(s, t); // the teacher's log-probs and contexts index agent rows and the history
    return s;
}

// ----------------------------------------------------------------------------
// building

static int selected(const Trajectory* t, int regime, double threshold) {
    if (t->flags & TRAJ_FLAG_HELDOUT) return 0;
    if (regime == REGIME_ON_POLICY) return !(t->flags & TRAJ_FLAG_TEACHER);
    return (t->flags & TRAJ_FLAG_TEACHER) && (double)t->final_reward >= threshold;
}

static void shard_push(Shard* s, Trajectory* t) {
    s->seqs = reallocCheck(s->seqs, sizeof(Trajectory*) * (size_t)(s->n + 1));
    s->seqs[s->n++] = t;
    s->tokens += t->n_tokens;
    s->agent_tokens += t->n_agent;
}

void shards_build(Trajectory* const* trajs, int n, int regime, double reward_threshold, int n_ranks, ShardSet* out) {
    memset(out, 0, sizeof(*out));
    out->n_ranks = n_ranks;
    out->n_input = n;
    out->shards = callocCheck((size_t)n_ranks, sizeof(Shard));
    Trajectory** seqs = mallocCheck(sizeof(Trajectory*) * (size_t)(n ? n : 1));
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (selected(trajs[i], regime, reward_threshold)) seqs[m++] = shards_student_record(trajs[i]);
    }
    out->n_kept = m;
    // largest first, ties by input order (insertion sort: stable and deterministic)
    for (int i = 1; i < m; i++) {
        Trajectory* v = seqs[i];
        int j = i - 1;
        while (j >= 0 && seqs[j]->n_tokens < v->n_tokens) seqs[j + 1] = seqs[j], j--;
        seqs[j + 1] = v;
    }
    for (int i = 0; i < m; i++) {
        int light = 0;
        for (int r = 1; r < n_ranks; r++) {
            if (out->shards[r].tokens < out->shards[light].tokens) light = r;
        }
        shard_push(&out->shards[light], seqs[i]);
    }
    free(seqs);
}

void shard_free(Shard* s) {
    for (int i = 0; i < s->n; i++) traj_free(s->seqs[i]);
    free(s->seqs);
    memset(s, 0, sizeof(*s));
}

void shards_free(ShardSet* s) {
    for (int r = 0; r < s->n_ranks; r++) shard_free(&s->shards[r]);
    free(s->shards);
    memset(s, 0, sizeof(*s));
}

// ----------------------------------------------------------------------------
// wire

void shard_encode(const Shard* s, TrajBuf* out) { traj_encode_batch(s->seqs, s->n, out); }

int shard_decode(const uint8_t* data, size_t len, Shard* out, char* err, size_t errlen) {
    memset(out, 0, sizeof(*out));
    Trajectory** list;
    int n;
    if (traj_decode_batch(data, len, &list, &n, err, errlen) != 0) return -1;
    for (int i = 0; i < n; i++) shard_push(out, list[i]);
    free(list);
    return 0;
}
