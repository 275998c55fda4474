// Judging trajectories: success from the environment's reward (the default), or an LLM verdict for
// external environments that return no reward. The LLM judge renders configs/prompts/judge.txt
// with {{task}} and {{answer}} and parses the reply strictly:
//
//   the reply must hold at least one line that reads, after trimming whitespace,
//       VERDICT: correct        or        VERDICT: incorrect
//   ("VERDICT" and the value in any letter case, one optional '.' at the end, nothing else on the
//   line). Several verdict lines must agree. A line that starts with "VERDICT" but does not match,
//   conflicting verdicts, or no verdict at all is an error naming the line; the caller counts such
//   an episode as a failure and logs the error.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "distill/prompt.h"
#include "rollout/trajectory.h"

#define JUDGE_TEMPLATE "judge.txt"
#define JUDGE_REPLY_CAP 2048

// 1 when the episode's final reward reaches threshold
int judge_env(const Trajectory* t, double threshold);
void judge_env_batch(Trajectory* const* trajs, int n, double threshold, uint8_t* success);

// 0 with *correct set (1 correct, 0 incorrect), or -1 with err naming the problem and its line
int judge_parse_verdict(const char* reply, int* correct, char* err, size_t errlen);
// render the template, generate, parse; 0 with *correct, or -1 with err (template, generation or
// verdict problem)
int judge_llm(GenerateFn gen, void* ctx, const char* tmpl, const char* task, const char* answer, int* correct,
              char* err, size_t errlen);
