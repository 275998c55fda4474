// The agent loop on a mock environment with a tiny model trained in the group setup
// (test_agent_util.h): behaviour per reply kind (tool call, plain answer, malformed call), the
// flags (premature, truncated by max turns and by the context cap), token-in/token-out (the
// record equals a fresh chat render of the same messages and what the decoder held at every
// turn), global and step-wise injection (where the experience is, what is recorded), and the
// recorded log-probs against a full forward pass (tolerance 1e-4 absolute, float32 throughout).
#include "test_agent_util.h"

#include <math.h>

// contexts seen by the decoder before each turn, per episode
typedef struct {
    int n[NTASKS][8];
    int* ids[NTASKS][8];
} Taps;

static void tap(void* ctx, int episode, int turn, const int* ids, int n) {
    Taps* t = ctx;
    if (episode >= NTASKS || turn >= 8) return;
    t->n[episode][turn] = n;
    t->ids[episode][turn] = malloc(sizeof(int) * (size_t)n);
    memcpy(t->ids[episode][turn], ids, sizeof(int) * (size_t)n);
}

static void taps_free(Taps* t) {
    for (int e = 0; e < NTASKS; e++)
        for (int k = 0; k < 8; k++) free(t->ids[e][k]);
    memset(t, 0, sizeof(*t));
}

// ----------------------------------------------------------------------------
// record helpers

// end (exclusive) of step s's agent tokens
static int step_end(const Trajectory* t, int s) {
    int i = t->step_start[s];
    while (i < t->n_tokens && t->agent_mask[i]) i++;
    return i;
}

// start of step s's generation prompt (= end of the message before it)
static int prompt_start(const Trajectory* t, int s) {
    int i = t->step_start[s];
    while (i > 0 && t->segment[i - 1] == SEG_ASSISTANT && !t->agent_mask[i - 1]) i--;
    return i;
}

static char* decode_range(const int32_t* ids, int from, int to) {
    return tokenizer_decode_alloc(F.tok, ids + from, to - from, NULL);
}

// the reply text of step s (without its end token)
static char* step_reply(const Trajectory* t, int s) {
    int e = step_end(t, s);
    if (e > t->step_start[s] && t->tokens[e - 1] == BYTE_TOKEN_IM_END) e--;
    return decode_range(t->tokens, t->step_start[s], e);
}

// The record rebuilt independently: a fresh render of system, task, and per step the
// generation prompt, the step's sampled ids and the observation the loop must have added (the
// parser's error, or the next observation the mock environment logged).
static void check_rerender(const Trajectory* t, const MockEnv* env, const char* sys, const char* exp_text,
                           int cut_last) {
    ChatRender r;
    char err[512];
    assert_int_equal(chat_init(&r, F.tok, CHAT_CHATML, err, sizeof(err)), 0);
    MockMsg head[2] = {{CHAT_SYSTEM, sys, NULL, NULL, exp_text}, {CHAT_USER, env->log[0], NULL, NULL, NULL}};
    render_msgs(&r, head, 2);
    int next_log = 1;
    for (int s = 0; s < t->n_steps; s++) {
        assert_int_equal(chat_append_generation_prompt(&r, err, sizeof(err)), 0);
        int e = step_end(t, s);
        assert_int_equal(
            chat_append_generated(&r, t->tokens + t->step_start[s], e - t->step_start[s], err, sizeof(err)), 0);
        if (cut_last && s == t->n_steps - 1) break;
        char* reply = step_reply(t, s);
        char *name, *args, perr[400];
        int rc = chat_parse_tool_call(reply, &name, &args, perr, sizeof(perr));
        char obs[512];
        if (rc < 0)
            snprintf(obs, sizeof(obs), "Error: %s", perr);
        else
            snprintf(obs, sizeof(obs), "%s", env->log[next_log++]);
        MockMsg m = {CHAT_TOOL, obs, NULL, NULL, NULL};
        render_msgs(&r, &m, 1);
        if (rc > 0) free(name), free(args);
        free(reply);
    }
    assert_int_equal(next_log, env->nlog);
    assert_int_equal(r.n, t->n_tokens);
    assert_memory_equal(r.ids, t->tokens, sizeof(int) * (size_t)r.n);
    assert_memory_equal(r.seg, t->segment, (size_t)r.n);
    assert_memory_equal(r.agent, t->agent_mask, (size_t)r.n);
    chat_free(&r);
}

// the record's log-probs and top-k against model_forward over its whole token sequence (the
// student sees exactly the stored history, so the two must agree)
static void check_logprobs_forward(const Trajectory* t) {
    const int T = t->n_tokens, V = BYTE_VOCAB_SIZE;
    float* logits = malloc(sizeof(float) * (size_t)T * V);
    int* ids = malloc(sizeof(int) * (size_t)T);
    memcpy(ids, t->tokens, sizeof(int) * (size_t)T);
    model_forward(F.m, ids, NULL, 1, T, logits);
    int row = 0;
    for (int i = 1; i < T; i++) {
        if (!t->agent_mask[i]) continue;
        const float* z = logits + (size_t)(i - 1) * V;
        double mx = z[0], sum = 0.0;
        for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
        for (int v = 0; v < V; v++) sum += exp(z[v] - mx);
        const double lse = mx + log(sum);
        assert_true(fabs(t->logprob[i] - (z[t->tokens[i]] - lse)) < 1e-4);
        for (int k = 0; k < TOPK; k++) {
            const int id = t->topk_ids[row * TOPK + k];
            assert_true(fabs(t->topk_lp[row * TOPK + k] - (z[id] - lse)) < 1e-4);
        }
        row++;
    }
    assert_int_equal(row, t->n_agent);
    free(logits);
    free(ids);
}

// AGENT_TEST_DUMP=1 prints a record's text and items (to see what the model did when a
// behaviour check fails)
static void dump(const char* what, const Trajectory* t) {
    if (!getenv("AGENT_TEST_DUMP")) return;
    char* s = decode_range(t->tokens, 0, t->n_tokens);
    fprintf(stderr, "---- %s: task %d, %d steps, flags %u, reward %g\n%s\nitems:", what, t->task_id, t->n_steps,
            t->flags, t->final_reward, s);
    for (int k = 0; k < t->item_offset[t->n_steps]; k++) fprintf(stderr, " %d", t->items[k]);
    fprintf(stderr, "\n");
    free(s);
}

static int count_id(const int* ids, int n, int id) {
    int c = 0;
    for (int i = 0; i < n; i++) c += ids[i] == id;
    return c;
}

// ----------------------------------------------------------------------------
// behaviour, flags and the record rebuilt from its messages

static void test_modes_student(void** state) {
    (void)state;
    AgentOptions o = options(INJECTION_STEPWISE);
    Agent* a = make_agent(&o);
    Taps taps = {0};
    agent_set_context_tap(a, tap, &taps);
    const int tasks[5] = {MODE_PING, MODE_ANSWER, MODE_PLAIN, MODE_BAD, MODE_TWO};
    Trajectory* out[5];
    run(a, tasks, 5, NULL, out);
    char* sys = agent_system_text(a, F.envs[0]);
    for (int i = 0; i < 5; i++) dump("student", out[i]);

    // ping: tool calls until max turns
    assert_int_equal(out[0]->n_steps, 3);
    assert_int_equal(out[0]->flags, TRAJ_FLAG_TRUNCATED);
    // answer: a call to answer before any other call
    assert_int_equal(out[1]->n_steps, 1);
    assert_int_equal(out[1]->flags, TRAJ_FLAG_PREMATURE);
    assert_true(out[1]->final_reward == 1.0f);
    // plain: a reply without a call goes to the answer tool
    assert_int_equal(out[2]->n_steps, 1);
    assert_int_equal(out[2]->flags, TRAJ_FLAG_PREMATURE);
    assert_true(out[2]->final_reward == 1.0f);
    assert_string_equal(((MockEnv*)F.envs[2])->log[1], "Correct.");
    // bad: malformed calls come back as error observations; the environment never sees them
    assert_int_equal(out[3]->n_steps, 3);
    assert_int_equal(out[3]->flags, TRAJ_FLAG_TRUNCATED);
    assert_int_equal(((MockEnv*)F.envs[3])->nlog, 1);
    char* last_obs = decode_range(out[3]->tokens, step_end(out[3], 2), out[3]->n_tokens);
    assert_non_null(strstr(last_obs, "Error: tool call: invalid JSON"));
    free(last_obs);
    // two: a call, then the answer: not premature
    assert_int_equal(out[4]->n_steps, 2);
    assert_int_equal(out[4]->flags, 0);
    assert_true(out[4]->final_reward == 1.0f);
    assert_true(out[4]->step_reward[0] == 0.0f && out[4]->step_reward[1] == 1.0f);

    for (int i = 0; i < 5; i++) {
        const Trajectory* t = out[i];
        assert_int_equal(t->task_id, tasks[i]);
        assert_int_equal(t->item_offset[t->n_steps], 0); // the student is shown nothing
        assert_int_equal(count_id(t->tokens, t->n_tokens, BYTE_TOKEN_EXP), 0);
        check_rerender(t, (MockEnv*)F.envs[i], sys, NULL, 0);
        check_logprobs_forward(t);
        // what the decoder held before each turn is the stored history up to the turn's first token
        for (int s = 0; s < t->n_steps; s++) {
            assert_int_equal(taps.n[i][s], t->step_start[s]);
            assert_memory_equal(taps.ids[i][s], t->tokens, sizeof(int) * (size_t)t->step_start[s]);
        }
        // and afterwards the stored history up to the last sampled token
        const int end = step_end(t, t->n_steps - 1);
        assert_int_equal(decoder_length(agent_decoder(a), i), end);
        assert_memory_equal(decoder_tokens(agent_decoder(a), i), t->tokens, sizeof(int) * (size_t)end);
    }
    // when the replies are the tokenizer's rendering of the call, the record is the plain chat
    // render of the conversation's messages
    MockMsg msgs[32];
    for (int mode = MODE_ANSWER; mode <= MODE_TWO; mode += MODE_TWO - MODE_ANSWER) {
        int n = mode_transcript(mode, sys, 0, msgs);
        ChatRender r;
        char err[256];
        assert_int_equal(chat_init(&r, F.tok, CHAT_CHATML, err, sizeof(err)), 0);
        render_msgs(&r, msgs, n);
        assert_int_equal(r.n, out[mode]->n_tokens);
        assert_memory_equal(r.ids, out[mode]->tokens, sizeof(int) * (size_t)r.n);
        assert_memory_equal(r.agent, out[mode]->agent_mask, (size_t)r.n);
        chat_free(&r);
    }
    for (int i = 0; i < 5; i++) traj_free(out[i]);
    free(sys);
    taps_free(&taps);
    agent_free(a);
}

static void test_context_cap(void** state) {
    (void)state;
    AgentOptions o = options(INJECTION_STEPWISE);
    Agent* a = make_agent(&o);
    const int task = MODE_PING;
    Trajectory* t;
    run(a, &task, 1, NULL, &t);
    const int prompt = t->step_start[0], reply = step_end(t, 0) - prompt, history = prompt_start(t, 0);
    traj_free(t);
    agent_free(a);

    // room for one reply and the next prompt, not for a second reply: cut off at the second turn
    o.max_context = prompt + reply + 40;
    a = make_agent(&o);
    Taps taps = {0};
    agent_set_context_tap(a, tap, &taps);
    run(a, &task, 1, NULL, &t);
    assert_int_equal(t->flags, TRAJ_FLAG_TRUNCATED);
    assert_int_equal(t->n_steps, 2);
    assert_true(step_end(t, 1) - t->step_start[1] < reply);
    assert_int_equal(step_end(t, 1), o.max_context);  // the reply filled the context to the cap
    assert_int_equal(t->n_tokens, o.max_context + 1); // plus the end token the model never wrote
    assert_true(taps.n[0][1] < o.max_context);
    assert_true(traj_student_end(t) <= o.max_context); // what a trainer of max_seq = the cap takes
    char* sys = agent_system_text(a, F.envs[0]);
    check_rerender(t, (MockEnv*)F.envs[0], sys, NULL, 1);
    traj_free(t);
    taps_free(&taps);
    agent_free(a);

    // room for one reply, not for the tool result and the next prompt: the record holds the
    // result the episode stopped at, beyond the cap; the student's view ends with the reply
    o.max_context = prompt + reply + 4;
    a = make_agent(&o);
    run(a, &task, 1, NULL, &t);
    assert_int_equal(t->flags, TRAJ_FLAG_TRUNCATED);
    assert_int_equal(t->n_steps, 1);
    assert_true(t->n_tokens > o.max_context);
    assert_int_equal(traj_student_end(t), step_end(t, 0));
    assert_true(traj_student_end(t) <= o.max_context);
    traj_free(t);
    agent_free(a);

    // a prompt longer than the cap: no turn at all
    o.max_context = prompt - 1;
    a = make_agent(&o);
    run(a, &task, 1, NULL, &t);
    assert_int_equal(t->flags, TRAJ_FLAG_TRUNCATED);
    assert_int_equal(t->n_steps, 0);
    assert_int_equal(t->n_tokens, history); // system and task, without the generation prompt
    check_rerender(t, (MockEnv*)F.envs[0], sys, NULL, 0);
    free(sys);
    traj_free(t);
    agent_free(a);
}

// ----------------------------------------------------------------------------
// injection

// [from, to) of the first <experience> ... </experience> span in ids, or -1
static int exp_span(const int* ids, int n, int* to) {
    *to = -1;
    for (int i = 0; i < n; i++) {
        if (ids[i] != BYTE_TOKEN_EXP) continue;
        int j = i;
        while (j < n && ids[j] != BYTE_TOKEN_EXP_END) j++;
        *to = j + 1;
        return i;
    }
    return -1;
}

static void test_global(void** state) {
    (void)state;
    AgentOptions o = options(INJECTION_GLOBAL);
    Agent* a = make_agent(&o);
    const int tasks[2] = {MODE_TWO, MODE_PING};
    Trajectory *teacher[2], *student[2];
    run(a, tasks, 2, NULL, student);
    run(a, tasks, 2, &F.pool, teacher);
    for (int i = 0; i < 2; i++) dump("student", student[i]), dump("global teacher", teacher[i]);
    char* sys = agent_system_text(a, F.envs[0]);
    char* text = inject_render_global(&F.pool);
    for (int i = 0; i < 2; i++) {
        Trajectory* t = teacher[i];
        assert_true(t->flags & TRAJ_FLAG_TEACHER);
        assert_false(student[i]->flags & TRAJ_FLAG_TEACHER);
        // the pool sits inside the system message, tagged and wrapped, once
        int to, from = exp_span(t->tokens, t->n_tokens, &to);
        assert_true(from > 0);
        assert_int_equal(count_id(t->tokens, t->n_tokens, BYTE_TOKEN_EXP), 1);
        for (int k = 0; k < t->n_tokens; k++) assert_int_equal(t->segment[k] == SEG_EXPERIENCE, k >= from && k < to);
        assert_int_equal(t->segment[from - 1], SEG_SYSTEM);
        assert_int_equal(t->segment[to], SEG_SYSTEM); // the system message's end token follows
        assert_int_equal(t->tokens[to], BYTE_TOKEN_IM_END);
        char* shown = decode_range(t->tokens, from + 1, to - 1);
        assert_string_equal(shown, text);
        free(shown);
        // every step records the whole list
        for (int s = 0; s < t->n_steps; s++) {
            assert_int_equal(t->item_offset[s + 1] - t->item_offset[s], F.pool.n);
            assert_memory_equal(t->items + t->item_offset[s], F.pool.ids, sizeof(int32_t) * (size_t)F.pool.n);
        }
        check_rerender(t, (MockEnv*)F.envs[i], sys, text, 0);
        // the student view drops the pool: its prompt is the student's prompt, token for token
        StudentView v;
        traj_student_view(t, &v);
        assert_int_equal(v.n_tokens, traj_student_end(t) - (to - from));
        assert_int_equal(count_id(v.tokens, v.n_tokens, BYTE_TOKEN_EXP), 0);
        const int prompt = student[i]->step_start[0];
        assert_memory_equal(v.tokens, student[i]->tokens, sizeof(int32_t) * (size_t)prompt);
        assert_int_equal(v.src_index[prompt], t->step_start[0]);
        student_view_free(&v);
        traj_free(t);
        traj_free(student[i]);
    }
    free(text);
    free(sys);
    agent_free(a);
}

static void test_stepwise(void** state) {
    (void)state;
    AgentOptions o = options(INJECTION_STEPWISE);
    Agent* a = make_agent(&o);
    Taps taps = {0};
    agent_set_context_tap(a, tap, &taps);
    const int tasks[4] = {MODE_TWO, MODE_PING, MODE_BAD, MODE_ANSWER};
    Trajectory* out[4];
    run(a, tasks, 4, &F.pool, out);
    ExpSelector* sel = selector_create(&F.pool, &o.select);
    int multi = 0;
    for (int i = 0; i < 4; i++) {
        Trajectory* t = out[i];
        dump("step-wise teacher", t);
        // whatever the model does with the items in context, every turn is checked; at least one
        // episode must run several turns so that the roll-back between turns is exercised
        assert_true(t->n_steps >= 1);
        multi += t->n_steps >= 2;
        assert_true(t->flags & TRAJ_FLAG_TEACHER);
        // the stored history never holds step-wise experience
        assert_int_equal(count_id(t->tokens, t->n_tokens, BYTE_TOKEN_EXP), 0);
        for (int k = 0; k < t->n_tokens; k++) assert_int_not_equal(t->segment[k], SEG_EXPERIENCE);
        StudentView v;
        traj_student_view(t, &v);
        assert_int_equal(v.n_tokens, traj_student_end(t));
        student_view_free(&v);
        for (int s = 0; s < t->n_steps; s++) {
            const int* ctx = taps.ids[i][s];
            const int n = taps.n[i][s];
            const int* items = t->items + t->item_offset[s];
            const int ni = t->item_offset[s + 1] - t->item_offset[s];
            assert_true(ni >= 2 && ni <= 3);
            // the context of the turn held exactly the recorded items, once
            int to, from = exp_span(ctx, n, &to);
            assert_true(from > 0);
            assert_int_equal(count_id(ctx, n, BYTE_TOKEN_EXP), 1);
            int idx[3];
            for (int k = 0; k < ni; k++) {
                idx[k] = -1;
                for (int j = 0; j < F.pool.n; j++)
                    if (F.pool.ids[j] == items[k]) idx[k] = j;
                assert_true(idx[k] >= 0);
            }
            char* want = inject_render_step(&F.pool, idx, ni);
            char* shown = decode_range(ctx, from + 1, to - 1);
            assert_string_equal(shown, want);
            free(want);
            free(shown);
            // ... inside the last message before the turn; without it, the context is the history
            assert_int_equal(n - (to - from), t->step_start[s]);
            assert_memory_equal(ctx, t->tokens, sizeof(int) * (size_t)from);
            assert_memory_equal(ctx + to, t->tokens + from, sizeof(int) * (size_t)(n - to));
            assert_true(t->segment[from - 1] == SEG_USER || t->segment[from - 1] == SEG_TOOL);
            // the items are BM25's pick for the task and the recent history
            char* q = agent_history_query(a, t->tokens, t->segment, prompt_start(t, s));
            int pick[3];
            int np = selector_pick(sel, q, NULL, NULL, pick);
            assert_int_equal(np, ni);
            assert_memory_equal(pick, idx, sizeof(int) * (size_t)ni);
            free(q);
        }
        traj_free(t);
    }
    assert_true(multi >= 1);
    selector_free(sel);
    taps_free(&taps);
    agent_free(a);
}

static void test_llm_selector(void** state) {
    (void)state;
    AgentOptions o = options(INJECTION_STEPWISE);
    o.selector = SELECTOR_LLM;
    Agent* a = make_agent(&o);
    const int tasks[2] = {MODE_TWO, MODE_PING};
    Trajectory* out[2];
    run(a, tasks, 2, &F.pool, out);
    // the model answers "2, 3": items 2 and 3 of the numbered list, at every step
    const AgentStats* st = agent_stats(a);
    assert_int_equal(st->llm_fallbacks, 0);
    assert_int_equal(st->llm_selections, out[0]->n_steps + out[1]->n_steps);
    for (int i = 0; i < 2; i++) {
        for (int s = 0; s < out[i]->n_steps; s++) {
            assert_int_equal(out[i]->item_offset[s + 1] - out[i]->item_offset[s], 2);
            assert_int_equal(out[i]->items[out[i]->item_offset[s]], F.pool.ids[1]);
            assert_int_equal(out[i]->items[out[i]->item_offset[s] + 1], F.pool.ids[2]);
        }
        traj_free(out[i]);
    }
    agent_free(a);

    // a reply that breaks the request's bounds (2 items where 4 to 5 are asked): BM25 instead
    o.select = (SelectParams){4, 5, 0.5, 0};
    a = make_agent(&o);
    run(a, tasks, 1, &F.pool, out);
    st = agent_stats(a);
    assert_int_equal(st->llm_fallbacks, st->llm_selections);
    assert_true(st->llm_selections > 0);
    for (int s = 0; s < out[0]->n_steps; s++) assert_true(out[0]->item_offset[s + 1] - out[0]->item_offset[s] >= 4);
    traj_free(out[0]);
    agent_free(a);
}

int main(int argc, char** argv) {
    if (argc == 2 && strcmp(argv[1], "--train") == 0) { // the ctest fixture: train, write the weights
        fixture_init(1);
        return fixture_teardown(NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_modes_student), cmocka_unit_test(test_context_cap),  cmocka_unit_test(test_global),
        cmocka_unit_test(test_stepwise),      cmocka_unit_test(test_llm_selector),
    };
    return cmocka_run_group_tests(tests, fixture_setup, fixture_teardown);
}
