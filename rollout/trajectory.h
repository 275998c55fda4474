// The trajectory record: what a rollout worker produces for one episode and what aggregators and
// trainers consume. Token-in/token-out: the ids are the sampled ids, never re-tokenized. A compact,
// versioned little-endian wire format carries records across MPI and into the trajectory store;
// decoding checks every length and value and names the field and byte offset of any problem.
#pragma once
#include <stddef.h>
#include <stdint.h>

#define TRAJ_WIRE_VERSION 1
#define TRAJ_MAX_TOKENS (1 << 24)
#define TRAJ_MAX_TOPK 1024
#define TRAJ_MAX_STEPS (1 << 16)
#define TRAJ_MAX_ITEMS (1 << 20)

// segment tags per token (same values as ChatSegment in model/chat.h)
enum { TRAJ_SEG_SYSTEM = 0, TRAJ_SEG_EXPERIENCE, TRAJ_SEG_USER, TRAJ_SEG_TOOL, TRAJ_SEG_ASSISTANT, TRAJ_SEG_COUNT };

// flags of an episode
enum {
    TRAJ_FLAG_TEACHER = 1,   // sampled with experience in context (else the student, without)
    TRAJ_FLAG_PREMATURE = 2, // answered without any tool call
    TRAJ_FLAG_TRUNCATED = 4, // cut off by max turns or the context cap
    TRAJ_FLAG_HELDOUT = 8,   // an evaluation episode on the held-out split
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
// the student's view: the same history with every experience segment removed, aligned to the
// teacher's records so the distillation targets line up token for token

typedef struct {
    int32_t n_tokens;
    int32_t* tokens;     // (n_tokens)
    uint8_t* agent_mask; // (n_tokens)
    int32_t* src_index;  // (n_tokens) index of each token in the teacher's trajectory
    int32_t* topk_row;   // (n_tokens) row of the teacher top-k for agent tokens, -1 elsewhere
} StudentView;

void traj_student_view(const Trajectory* t, StudentView* out);
void student_view_free(StudentView* v);
