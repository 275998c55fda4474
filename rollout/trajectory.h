// The trajectory record: what a rollout worker produces for one episode and what aggregators and
// trainers consume. Token-in/token-out: the ids are the sampled ids, never re-tokenized. A compact,
// versioned little-endian wire format carries records across MPI and into the trajectory store;
// decoding checks every length and value and names the field and byte offset of any problem.
// Version 2 added the teacher's sampled-token log-probs and the teacher's contexts; version 1
// records still decode (without them).
#pragma once
#include <stddef.h>
#include <stdint.h>

#define TRAJ_WIRE_VERSION 2
#define TRAJ_WIRE_VERSION_MIN 1 // the oldest version traj_decode reads
#define TRAJ_MAX_TOKENS (1 << 24)
#define TRAJ_MAX_TOPK 1024
#define TRAJ_MAX_STEPS (1 << 16)
#define TRAJ_MAX_ITEMS (1 << 20)
#define TRAJ_MAX_TCTX_IDS (1 << 26) // replacement ids of all teacher contexts of a record

// segment tags per token (same values as ChatSegment in model/chat.h)
enum { TRAJ_SEG_SYSTEM = 0, TRAJ_SEG_EXPERIENCE, TRAJ_SEG_USER, TRAJ_SEG_TOOL, TRAJ_SEG_ASSISTANT, TRAJ_SEG_COUNT };

// flags of an episode
enum {
    TRAJ_FLAG_TEACHER = 1,   // sampled with experience in context (else the student, without)
    TRAJ_FLAG_PREMATURE = 2, // answered without any tool call
    TRAJ_FLAG_TRUNCATED = 4, // cut off by max turns or the context cap
    TRAJ_FLAG_HELDOUT = 8,   // an evaluation episode on the held-out split
    TRAJ_FLAG_TEACHER_VIEW = 16, // the teacher's contexts are recorded (agent_teacher_view), even none
};

typedef struct {
    // identity
    int32_t task_id;
    int32_t sample;    // index within the task's group (0..G-1)
    int32_t iteration;
    uint32_t flags;    // TRAJ_FLAG_*
    uint64_t seed;     // the episode's sampling and environment seed
    float final_reward;

    // tokens: the stored history (step-wise experience is never part of it; global experience is,
    // tagged TRAJ_SEG_EXPERIENCE)
    int32_t n_tokens;
    int32_t* tokens;     // (n_tokens)
    uint8_t* segment;    // (n_tokens) TRAJ_SEG_*
    uint8_t* agent_mask; // (n_tokens) 1 for tokens the agent sampled
    float* logprob;      // (n_tokens) the sampler's logprob of each agent token, 0 elsewhere

    // teacher top-k for every agent token, in token order (row r = the r-th agent token)
    int32_t n_agent;     // number of agent tokens (= sum of agent_mask)
    int32_t topk;        // k (0: not recorded)
    int32_t* topk_ids;   // (n_agent, topk)
    float* topk_lp;      // (n_agent, topk) teacher log-probs, descending
    float* tail_mass;    // (n_agent) probability mass outside the top-k, in [0, 1]

    // assistant turns (steps)
    int32_t n_steps;
    int32_t* step_start;  // (n_steps) index of the first agent token of each turn
    float* step_reward;   // (n_steps)
    int32_t* item_offset; // (n_steps + 1) CSR offsets into items: step s showed items[item_offset[s]..[s+1])
    int32_t* items;       // (item_offset[n_steps]) pool item ids injected before each step

    // the teacher's log-prob of each sampled agent token (on-policy scoring, agent_score_teacher),
    // exact also where the id is outside the top-k; NULL when not recorded
    float* teacher_lp; // (n_agent) or NULL

    // The teacher's contexts (agent_teacher_view, for distill.teacher: recompute), as splices of
    // the history: the record's tokens without experience segments, indexed after dropping them.
    // Entry e covers the agent tokens of steps tctx_step[e] .. tctx_step[e+1] - 1 (the last entry:
    // to the last step). Their teacher saw the history with [tctx_at[e], tctx_end[e]) replaced by
    // tctx_ids[tctx_offset[e] .. tctx_offset[e+1]); the splice lies before the first agent token of
    // step tctx_step[e]. Steps before the first entry (or all steps, without entries) saw the history.
    int32_t n_tctx;
    int32_t* tctx_step;   // (n_tctx) strictly ascending step indices
    int32_t* tctx_at;     // (n_tctx)
    int32_t* tctx_end;    // (n_tctx)
    int32_t* tctx_offset; // (n_tctx + 1) CSR offsets into tctx_ids (NULL while n_tctx is 0)
    int32_t* tctx_ids;
} Trajectory;

// ----------------------------------------------------------------------------
// building

// an empty trajectory with room to grow
Trajectory* traj_create(int32_t topk);
void traj_free(Trajectory* t);
// append tokens of one segment; agent tokens carry their logprob and teacher top-k row
// (ids/lp of length topk and the tail mass; NULL ids when topk is 0)
void traj_push_context(Trajectory* t, const int32_t* ids, int n, int segment);
void traj_push_agent(Trajectory* t, int32_t id, float logprob, const int32_t* topk_ids, const float* topk_lp,
                     float tail_mass);
// open a new assistant turn (before its first agent token) with the items injected for it
void traj_begin_step(Trajectory* t, const int32_t* items, int n_items);
void traj_set_step_reward(Trajectory* t, float reward);
// the teacher's log-prob of every agent token (n_agent floats, copied)
void traj_set_teacher_lp(Trajectory* t, const float* lp);
// append a teacher context entry (see the struct): steps from `step` on saw the history with
// [at, end) replaced by ids[0..n)
void traj_add_teacher_context(Trajectory* t, int32_t step, int32_t at, int32_t end, const int32_t* ids, int n);
// copy src's teacher log-probs and contexts into dst, a record of the same history and agent rows
// (the student view of src: shards_student_record)
void traj_copy_teacher(Trajectory* dst, const Trajectory* src);

// ----------------------------------------------------------------------------
// the teacher's contexts

// the entry covering step s (-1: none, the teacher saw the history)
int traj_teacher_entry(const Trajectory* t, int step);
// The teacher's context for the agent tokens of step s: the history with the step's splice
// applied, to its end (malloc'd, *n ids). A history token at index i >= *end sits at i + *shift
// in it; tokens before the splice keep their index (*end = 0 and *shift = 0 without a splice).
int32_t* traj_teacher_context(const Trajectory* t, int step, int* n, int* end, int* shift);

// ----------------------------------------------------------------------------
// wire format (little-endian on every host)

typedef struct {
    uint8_t* data;
    size_t len, cap;
} TrajBuf;

void traj_encode(const Trajectory* t, TrajBuf* out); // appends
// decode one record from data[*pos..len); advances *pos. NULL with err naming field and offset.
Trajectory* traj_decode(const uint8_t* data, size_t len, size_t* pos, char* err, size_t errlen);
// a batch: u32 count, then the records
void traj_encode_batch(Trajectory* const* list, int n, TrajBuf* out);
// 0 and *list (malloc'd array of n records) on success, -1 with err otherwise (nothing leaks)
int traj_decode_batch(const uint8_t* data, size_t len, Trajectory*** list, int* n, char* err, size_t errlen);
void traj_buf_free(TrajBuf* b);

// ----------------------------------------------------------------------------
// the student's view: the same history with every experience segment removed, up to the last
// agent token, aligned to the teacher's records so the distillation targets line up token for token

typedef struct {
    int32_t n_tokens;
    int32_t* tokens;     // (n_tokens)
    uint8_t* agent_mask; // (n_tokens)
    int32_t* src_index;  // (n_tokens) index of each token in the teacher's trajectory
    int32_t* topk_row;   // (n_tokens) row of the teacher top-k for agent tokens, -1 elsewhere
} StudentView;

// tokens up to the last agent token (all of them where there is none): what follows it, the
// observation a context-capped episode stopped at, carries no loss and may not fit the context
int32_t traj_student_end(const Trajectory* t);
void traj_student_view(const Trajectory* t, StudentView* out);
void student_view_free(StudentView* v);
