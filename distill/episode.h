// The text of a judged episode, as the extractors read it. Extractors work on text (observation
// words, tool names, arguments), while trajectories carry token ids; the driver fills these
// structs from the records with its tokenizer and the agent's tool-call parser, through
// episode_from_trajectory, or builds them directly (tests, external tools) with episode_init and
// episode_add_step.
//
// Step s of a trajectory is the assistant turn opened by traj_begin_step; its
//   observation = the decoded last contiguous block of user or tool tokens before step_start[s]
//                 (obs_is_task = 1 when that block is a user message, i.e. the task)
//   action      = the decoded tokens from step_start[s] to the end of that assistant turn
//   tool, args  = the call parsed from the action ("" and "" when the parser finds none)
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "rollout/trajectory.h"

typedef struct {
    char* observation;
    int obs_is_task;
    char* action;
    char* tool;
    char* args;
} StepText;

typedef struct {
    int32_t task_id, sample, iteration;
    uint32_t flags;    // TRAJ_FLAG_*
    float reward;      // final reward
    int success;       // judged (judge.h)
    char* task;        // the task text
    char* answer;      // the final answer ("" when the episode gave none)
    int n_steps;
    StepText* steps;   // (n_steps)
} EpisodeText;

// like tokenizer_decode: writes at most cap-1 bytes and a NUL, returns the full decoded length
typedef size_t (*DecodeFn)(void* ctx, const int32_t* ids, int n, char* out, size_t cap);
// the agent's tool-call parser: 0 with the tool name and the argument text when text holds a call
typedef int (*ParseActionFn)(void* ctx, const char* text, char* tool, size_t tool_cap, char* args, size_t args_cap);

// ----------------------------------------------------------------------------

void episode_init(EpisodeText* e, int32_t task_id, int32_t sample, int success, const char* task);
// append a step (copies every string); the answer follows the last step whose tool is "answer"
void episode_add_step(EpisodeText* e, const char* observation, int obs_is_task, const char* action, const char* tool,
                      const char* args);
void episode_free(EpisodeText* e);
// from a record: task NULL takes the first user block's text; answer_tool (NULL: "answer") names
// the tool whose arguments are the final answer
void episode_from_trajectory(EpisodeText* e, const Trajectory* t, int success, const char* task, DecodeFn decode,
                             void* decode_ctx, ParseActionFn parse, void* parse_ctx, const char* answer_tool);
// order[0..n): episode indices sorted by (task id, sample, index), the order every extractor reads
void episode_order(const EpisodeText* eps, int n, int* order);
