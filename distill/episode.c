// Episode text for the extractors (see episode.h).
#include "distill/episode.h"

#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "distill/text.h"
#include "model/chat.h"

#define EPISODE_TOOL_CAP 128
#define EPISODE_ARGS_CAP 4096

void episode_init(EpisodeText* e, int32_t task_id, int32_t sample, int success, const char* task) {
    memset(e, 0, sizeof(*e));
    e->task_id = task_id;
    e->sample = sample;
    e->success = success;
    e->task = strdupCheck(task ? task : "");
    e->answer = strdupCheck("");
}

void episode_add_step(EpisodeText* e, const char* observation, int obs_is_task, const char* action, const char* tool,
                      const char* args) {
    e->steps = reallocCheck(e->steps, sizeof(StepText) * (size_t)(e->n_steps + 1));
    StepText* s = &e->steps[e->n_steps++];
    s->observation = strdupCheck(observation ? observation : "");
    s->obs_is_task = obs_is_task;
    s->action = strdupCheck(action ? action : "");
    s->tool = strdupCheck(tool ? tool : "");
    s->args = strdupCheck(args ? args : "");
    if (strcmp(s->tool, "answer") == 0) {
        free(e->answer);
        e->answer = strdupCheck(s->args);
    }
}

void episode_free(EpisodeText* e) {
    for (int i = 0; i < e->n_steps; i++) {
        free(e->steps[i].observation);
        free(e->steps[i].action);
        free(e->steps[i].tool);
        free(e->steps[i].args);
    }
    free(e->steps);
    free(e->task);
    free(e->answer);
    memset(e, 0, sizeof(*e));
}

// ----------------------------------------------------------------------------
// from a trajectory record

static char* decode_range(const Trajectory* t, int32_t from, int32_t to, DecodeFn decode, void* ctx) {
    if (to <= from) return strdupCheck("");
    char small[256];
    size_t n = decode(ctx, t->tokens + from, to - from, small, sizeof(small));
    char* out = mallocCheck(n + 1);
    if (n < sizeof(small)) {
        memcpy(out, small, n + 1);
    } else {
        decode(ctx, t->tokens + from, to - from, out, n + 1);
    }
    return out;
}

// the last contiguous block of user/tool tokens before index end: [*from, *to), its segment
static int last_observation(const Trajectory* t, int32_t end, int32_t* from, int32_t* to) {
    int32_t i = end - 1;
    while (i >= 0 && t->segment[i] != TRAJ_SEG_USER && t->segment[i] != TRAJ_SEG_TOOL) {
        if (t->agent_mask[i]) break; // the previous turn's own tokens: no observation in between
        i--;
    }
    if (i < 0 || t->agent_mask[i]) {
        *from = *to = end;
        return -1;
    }
    int seg = t->segment[i];
    *to = i + 1;
    while (i >= 0 && t->segment[i] == seg) i--;
    *from = i + 1;
    return seg;
}

void episode_from_trajectory(EpisodeText* e, const Trajectory* t, int success, const char* task, DecodeFn decode,
                             void* decode_ctx, ParseActionFn parse, void* parse_ctx, const char* answer_tool) {
    char* first_user = NULL;
    if (!task) {
        int32_t i = 0;
        while (i < t->n_tokens && t->segment[i] != TRAJ_SEG_USER) i++;
        int32_t j = i;
        while (j < t->n_tokens && t->segment[j] == TRAJ_SEG_USER) j++;
        first_user = chat_message_content(decode_range(t, i, j, decode, decode_ctx));
    }
    episode_init(e, t->task_id, t->sample, success, task ? task : first_user);
    free(first_user);
    e->iteration = t->iteration;
    e->flags = t->flags;
    e->reward = t->final_reward;
    char* tool = mallocCheck(EPISODE_TOOL_CAP);
    char* args = mallocCheck(EPISODE_ARGS_CAP);
    const char* ans = answer_tool ? answer_tool : "answer";
    for (int32_t s = 0; s < t->n_steps; s++) {
        int32_t start = t->step_start[s], end = start;
        int32_t limit = s + 1 < t->n_steps ? t->step_start[s + 1] : t->n_tokens;
        while (end < limit && t->segment[end] == TRAJ_SEG_ASSISTANT) end++;
        int32_t ofrom, oto;
        int seg = last_observation(t, start, &ofrom, &oto);
        // the message as the environment wrote it: a condition in the chat format's markup would
        // be about the format (its header is cut off where step-wise items sit in the message)
        char* obs = chat_message_content(decode_range(t, ofrom, oto, decode, decode_ctx));
        char* action = decode_range(t, start, end, decode, decode_ctx);
        tool[0] = args[0] = '\0';
        if (!parse || parse(parse_ctx, action, tool, EPISODE_TOOL_CAP, args, EPISODE_ARGS_CAP) != 0) {
            tool[0] = args[0] = '\0';
        }
        tool[EPISODE_TOOL_CAP - 1] = args[EPISODE_ARGS_CAP - 1] = '\0';
        episode_add_step(e, obs, seg == TRAJ_SEG_USER, action, tool, args);
        if (strcmp(tool, ans) == 0) {
            free(e->answer);
            e->answer = strdupCheck(args);
        }
        free(obs);
        free(action);
    }
    free(tool);
    free(args);
}

// ----------------------------------------------------------------------------
// order

// -1, 0, 1 like strcmp, for episodes i and j
static int cmp_episode(const EpisodeText* eps, int i, int j) {
    const EpisodeText *x = &eps[i], *y = &eps[j];
    if (x->task_id != y->task_id) return x->task_id < y->task_id ? -1 : 1;
    if (x->sample != y->sample) return x->sample < y->sample ? -1 : 1;
    return (i > j) - (i < j);
}

void episode_order(const EpisodeText* eps, int n, int* order) {
    for (int i = 0; i < n; i++) order[i] = i;
    // insertion sort: stable, no global context for qsort; an iteration has at most a few
    // thousand episodes, usually already in order
    for (int i = 1; i < n; i++) {
        int v = order[i], j = i - 1;
        while (j >= 0 && cmp_episode(eps, order[j], v) > 0) order[j + 1] = order[j], j--;
        order[j + 1] = v;
    }
}
