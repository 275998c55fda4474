// Distillation shards: the trainers' data of one iteration, built by the aggregators from the
// judged trajectories for the configured regime and balanced over the T trainer ranks.
//   off-policy: successful teacher trajectories (TRAJ_FLAG_TEACHER, final_reward >= threshold) in the
//               student's view (every experience segment removed) with their teacher top-k rows
//   on-policy:  the student's own trajectories (no TRAJ_FLAG_TEACHER), to be scored by the teacher
// Held-out (evaluation) episodes never enter a shard. Each sequence is itself a Trajectory record
// (the student view keeps segments, agent mask, logprobs, top-k rows, steps and items), so a shard
// travels over MPI in the trajectory batch wire format (traj_encode_batch).
//
// Balance: sequences sorted by token count (largest first, ties by input index) go one by one to
// the rank with the fewest tokens so far (ties: the lowest rank). Deterministic, and the heaviest
// and lightest ranks differ by at most the longest sequence.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "rollout/trajectory.h"

typedef struct {
    int n;
    Trajectory** seqs;  // (n) owned, in assignment order
    int64_t tokens;     // sum of n_tokens
    int64_t agent_tokens;
} Shard;

typedef struct {
    int n_ranks;
    Shard* shards;      // (n_ranks)
    int n_input, n_kept; // trajectories looked at, sequences made
} ShardSet;

// the student's view of t as a new record: experience tokens dropped, everything else aligned
// (agent rows keep their teacher top-k and log-probs; steps keep their items and rewards; the
// teacher's contexts are copied as they are, since they index the history)
Trajectory* shards_student_record(const Trajectory* t);
// regime: Regime (io/config.h)
void shards_build(Trajectory* const* trajs, int n, int regime, double reward_threshold, int n_ranks, ShardSet* out);
void shards_free(ShardSet* s);

// wire: the trajectory batch format
void shard_encode(const Shard* s, TrajBuf* out);
// 0 on success (the shard owns the records), -1 with err naming the record and field
int shard_decode(const uint8_t* data, size_t len, Shard* out, char* err, size_t errlen);
void shard_free(Shard* s);
