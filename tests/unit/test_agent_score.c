// Teacher scoring (agent_score_teacher) and determinism of the agent loop, with the mock
// environment and the tiny trained model of test_agent_util.h.
//
// Scoring checks, float32 throughout, tolerance 1e-4 absolute on log-probs and tail mass:
//   - a record rescored in its own context reproduces what was recorded while sampling (student
//     without experience; teacher with global, step-wise BM25 and step-wise LLM selection);
//   - a student record scored with experience equals an independent computation: the teacher's
//     context rebuilt with model/chat.h and one model_forward over it;
//   - bad records give errors that say what is wrong.
// Teacher contexts (agent_teacher_view, for distill.teacher: recompute):
//   - a teacher record's contexts are, token for token, what its decoder slot held before each
//     turn (global: its own experience; step-wise BM25 and LLM selection: its recorded items);
//   - a student record's contexts are those agent_score_teacher scores in: its teacher log-probs
//     equal one model_forward over each recorded context (1e-4), global and step-wise;
//   - an item missing from the list and a context past the decoder give clear errors.
// Determinism: same seeds give bit-identical records (wire bytes), other iterations other
// samples, and an episode's record does not depend on the other tasks in its batch (its tokens,
// items and flags exactly; its recorded floats to 1e-4, the rounding of batched matmuls).
#include "test_agent_util.h"

#include <math.h>

#define TOL 1e-4

static Trajectory* copy(const Trajectory* t) {
    TrajBuf b = {0};
    traj_encode(t, &b);
    size_t pos = 0;
    char err[256];
    Trajectory* c = traj_decode(b.data, b.len, &pos, err, sizeof(err));
    if (!c) fail_msg("decode: %s", err);
    traj_buf_free(&b);
    return c;
}

static int same_bytes(const Trajectory* a, const Trajectory* b) {
    TrajBuf x = {0}, y = {0};
    traj_encode(a, &x);
    traj_encode(b, &y);
    int same = x.len == y.len && memcmp(x.data, y.data, x.len) == 0;
    traj_buf_free(&x);
    traj_buf_free(&y);
    return same;
}

// everything but the floats bit for bit, the floats (log-probs, top-k, tail) within TOL: the
// decoder promises a slot's tokens whatever the batch, not the last bit of its logits (matmuls
// over more rows round differently)
static void check_same_but_rounding(const Trajectory* a, const Trajectory* b) {
    assert_int_equal(a->n_tokens, b->n_tokens);
    assert_int_equal(a->n_agent, b->n_agent);
    assert_int_equal(a->n_steps, b->n_steps);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->seed, b->seed);
    assert_true(a->final_reward == b->final_reward);
    assert_memory_equal(a->tokens, b->tokens, sizeof(int32_t) * (size_t)a->n_tokens);
    assert_memory_equal(a->segment, b->segment, (size_t)a->n_tokens);
    assert_memory_equal(a->agent_mask, b->agent_mask, (size_t)a->n_tokens);
    assert_memory_equal(a->step_start, b->step_start, sizeof(int32_t) * (size_t)a->n_steps);
    assert_memory_equal(a->item_offset, b->item_offset, sizeof(int32_t) * (size_t)(a->n_steps + 1));
    assert_memory_equal(a->items, b->items, sizeof(int32_t) * (size_t)a->item_offset[a->n_steps]);
    float worst = 0.0f;
    for (int i = 0; i < a->n_tokens; i++) worst = fmaxf(worst, fabsf(a->logprob[i] - b->logprob[i]));
    for (int r = 0; r < a->n_agent; r++) {
        worst = fmaxf(worst, fabsf(a->tail_mass[r] - b->tail_mass[r]));
        for (int k = 0; k < a->topk; k++)
            worst = fmaxf(worst, fabsf(a->topk_lp[r * a->topk + k] - b->topk_lp[r * b->topk + k]));
    }
    if (worst > TOL) fail_msg("recorded floats differ by %g", worst);
}

// row r of `got` against top-k log-probs `lp`/`ids` and tail: values within TOL, ids equal
// unless two log-probs tie within TOL
static void check_row(const Trajectory* got, int r, const int32_t* ids, const float* lp, float tail) {
    const int K = got->topk;
    for (int k = 0; k < K; k++) {
        const float g = got->topk_lp[r * K + k];
        if (fabsf(g - lp[k]) > TOL) fail_msg("row %d, k %d: log-prob %.7f, want %.7f", r, k, g, lp[k]);
        if (got->topk_ids[r * K + k] != ids[k]) {
            int tie = (k > 0 && fabsf(lp[k] - lp[k - 1]) < TOL) || (k + 1 < K && fabsf(lp[k] - lp[k + 1]) < TOL);
            if (!tie) fail_msg("row %d, k %d: id %d, want %d", r, k, got->topk_ids[r * K + k], ids[k]);
        }
    }
    if (fabsf(got->tail_mass[r] - tail) > TOL) fail_msg("row %d: tail %.7f, want %.7f", r, got->tail_mass[r], tail);
}

// rescoring t in the context it was sampled in reproduces its rows and its sampled log-probs
static void check_rescore(Agent* a, const Trajectory* t, const ExpList* exp) {
    Trajectory* c = copy(t);
    float* lp = malloc(sizeof(float) * (size_t)(t->n_agent + 1));
    char err[512];
    if (agent_score_teacher(a, c, exp, lp, err, sizeof(err)) != 0) fail_msg("score: %s", err);
    const int K = t->topk;
    int r = 0;
    for (int i = 0; i < t->n_tokens; i++) {
        if (!t->agent_mask[i]) continue;
        check_row(c, r, t->topk_ids + r * K, t->topk_lp + r * K, t->tail_mass[r]);
        if (fabsf(lp[r] - t->logprob[i]) > TOL)
            fail_msg("row %d: teacher lp %.7f, sampled %.7f", r, lp[r], t->logprob[i]);
        r++;
    }
    assert_int_equal(r, t->n_agent);
    free(lp);
    traj_free(c);
}

static AgentOptions sampled(int injection) {
    AgentOptions o = options(injection);
    o.sampling.temperature = 1.0f;
    o.group_size = 2;
    return o;
}

// ----------------------------------------------------------------------------
// consistency with what was recorded while sampling

static void test_rescore_own_context(void** state) {
    (void)state;
    const int tasks[3] = {MODE_TWO, MODE_PING, MODE_BAD};
    Trajectory* out[6];
    for (int mode = 0; mode < 4; mode++) {
        AgentOptions o = sampled(mode == 1 ? INJECTION_GLOBAL : INJECTION_STEPWISE);
        if (mode == 3) o.selector = SELECTOR_LLM;
        Agent* a = make_agent(&o);
        const ExpList* exp = mode == 0 ? NULL : &F.pool; // student, global, BM25, LLM
        run(a, tasks, 3, exp, out);
        for (int i = 0; i < 6; i++) {
            assert_true(out[i]->n_agent > 0);
            check_rescore(a, out[i], exp);
            traj_free(out[i]);
        }
        if (mode == 3) assert_int_equal(agent_stats(a)->llm_fallbacks, 0);
        agent_free(a);
    }
}

// ----------------------------------------------------------------------------
// a student record scored with experience, against an independent computation

// log-softmax top-k of logits z (V) into ids/lp, tail mass and the log-prob of `id`
static float ref_topk(const float* z, int V, int K, int id, int32_t* ids, float* lp, float* tail) {
    double mx = z[0], sum = 0.0;
    for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
    for (int v = 0; v < V; v++) sum += exp(z[v] - mx);
    const double lse = mx + log(sum);
    double mass = 0.0;
    for (int k = 0; k < K; k++) {
        int best = -1;
        for (int v = 0; v < V; v++) {
            int used = 0;
            for (int j = 0; j < k; j++) used |= ids[j] == v;
            if (!used && (best < 0 || z[v] > z[best])) best = v;
        }
        ids[k] = best;
        lp[k] = (float)(z[best] - lse);
        mass += exp(z[best] - lse);
    }
    *tail = (float)(mass >= 1.0 ? 0.0 : 1.0 - mass);
    return (float)(z[id] - lse);
}

// forward over ctx[0..n) + the turn's agent tokens; checks rows [row, row + na) of got
static void check_turn_forward(const Trajectory* got, const float* tlp, const int* ctx, int n, const int32_t* agent,
                               int na, int row) {
    const int V = BYTE_VOCAB_SIZE, K = got->topk, T = n + na;
    int* ids = malloc(sizeof(int) * (size_t)T);
    memcpy(ids, ctx, sizeof(int) * (size_t)n);
    memcpy(ids + n, agent, sizeof(int) * (size_t)na);
    float* logits = malloc(sizeof(float) * (size_t)T * V);
    model_forward(F.m, ids, NULL, 1, T, logits);
    int32_t rid[TOPK];
    float rlp[TOPK], tail;
    for (int j = 0; j < na; j++) {
        float want = ref_topk(logits + (size_t)(n + j - 1) * V, V, K, agent[j], rid, rlp, &tail);
        check_row(got, row + j, rid, rlp, tail);
        if (fabsf(tlp[row + j] - want) > TOL)
            fail_msg("row %d: teacher lp %.7f, want %.7f", row + j, tlp[row + j], want);
    }
    free(ids);
    free(logits);
}

static int step_end(const Trajectory* t, int s) {
    int i = t->step_start[s];
    while (i < t->n_tokens && t->agent_mask[i]) i++;
    return i;
}

static void test_score_student_global(void** state) {
    (void)state;
    AgentOptions o = sampled(INJECTION_GLOBAL);
    Agent* a = make_agent(&o);
    const int tasks[2] = {MODE_TWO, MODE_PING};
    Trajectory* out[4];
    run(a, tasks, 2, NULL, out);
    char* sys = agent_system_text(a, F.envs[0]);
    char* text = inject_render_global(&F.pool);
    for (int i = 0; i < 4; i++) {
        const Trajectory* s = out[i];
        Trajectory* t = copy(s);
        float* tlp = malloc(sizeof(float) * (size_t)t->n_agent);
        char err[512];
        assert_int_equal(agent_score_teacher(a, t, &F.pool, tlp, err, sizeof(err)), 0);
        // the teacher's context: the system message with the pool, then the student's tokens
        ChatRender r;
        assert_int_equal(chat_init(&r, F.tok, CHAT_CHATML, err, sizeof(err)), 0);
        MockMsg m = {CHAT_SYSTEM, sys, NULL, NULL, text};
        render_msgs(&r, &m, 1);
        int sys_end = 0;
        while (s->segment[sys_end] == SEG_SYSTEM) sys_end++;
        const int shift = r.n - sys_end;
        int* ctx = malloc(sizeof(int) * (size_t)(s->n_tokens + shift));
        memcpy(ctx, r.ids, sizeof(int) * (size_t)r.n);
        memcpy(ctx + r.n, s->tokens + sys_end, sizeof(int) * (size_t)(s->n_tokens - sys_end));
        int row = 0, changed = 0;
        for (int st = 0; st < s->n_steps; st++) {
            const int from = s->step_start[st], na = step_end(s, st) - from;
            check_turn_forward(t, tlp, ctx, from + shift, s->tokens + from, na, row);
            for (int j = 0; j < na * TOPK; j++) changed |= t->topk_lp[row * TOPK + j] != s->topk_lp[row * TOPK + j];
            row += na;
        }
        assert_true(changed); // the pool in context moved the teacher's distribution
        chat_free(&r);
        free(ctx);
        free(tlp);
        traj_free(t);
        traj_free(out[i]);
    }
    free(text);
    free(sys);
    agent_free(a);
}

static void test_score_student_stepwise(void** state) {
    (void)state;
    AgentOptions o = sampled(INJECTION_STEPWISE);
    Agent* a = make_agent(&o);
    const int tasks[2] = {MODE_TWO, MODE_BAD};
    Trajectory* out[4];
    run(a, tasks, 2, NULL, out);
    ExpSelector* sel = selector_create(&F.pool, &o.select);
    for (int i = 0; i < 4; i++) {
        const Trajectory* s = out[i];
        Trajectory* t = copy(s);
        float* tlp = malloc(sizeof(float) * (size_t)t->n_agent);
        char err[512];
        assert_int_equal(agent_score_teacher(a, t, &F.pool, tlp, err, sizeof(err)), 0);
        int row = 0;
        for (int st = 0; st < s->n_steps; st++) {
            // the teacher's context of this turn: history before the last message, that message
            // again with the BM25 items appended, the generation prompt
            const int from = s->step_start[st], na = step_end(s, st) - from;
            int g = from;
            while (s->segment[g - 1] == SEG_ASSISTANT && !s->agent_mask[g - 1]) g--;
            int m0 = g;
            while (s->segment[m0 - 1] == s->segment[g - 1]) m0--;
            char* q = agent_history_query(a, s->tokens, s->segment, g);
            int idx[3];
            int ni = selector_pick(sel, q, NULL, NULL, idx);
            free(q);
            char* text = inject_render_step(&F.pool, idx, ni);
            char* content = tokenizer_decode_alloc(F.tok, s->tokens + m0, g - m0, NULL);
            // the content between the markup: a user message ends with <|im_end|>, a tool
            // message with "\n</tool_response><|im_end|>"
            const int tool = s->segment[m0] == SEG_TOOL;
            char* body = strstr(content, tool ? "<tool_response>\n" : "user\n") + (tool ? 16 : 5);
            body[strlen(body) - (tool ? 27 : 10)] = '\0';
            ChatRender r;
            assert_int_equal(chat_init(&r, F.tok, CHAT_CHATML, err, sizeof(err)), 0);
            MockMsg pre = {CHAT_SYSTEM, "-", NULL, NULL, NULL};
            render_msgs(&r, &pre, 1);
            const int n0 = r.n;
            MockMsg m = {tool ? CHAT_TOOL : CHAT_USER, body, NULL, NULL, text};
            render_msgs(&r, &m, 1);
            int* ctx = malloc(sizeof(int) * (size_t)(m0 + (r.n - n0) + (from - g)));
            memcpy(ctx, s->tokens, sizeof(int) * (size_t)m0);
            memcpy(ctx + m0, r.ids + n0, sizeof(int) * (size_t)(r.n - n0));
            memcpy(ctx + m0 + (r.n - n0), s->tokens + g, sizeof(int) * (size_t)(from - g));
            check_turn_forward(t, tlp, ctx, m0 + (r.n - n0) + (from - g), s->tokens + from, na, row);
            row += na;
            chat_free(&r);
            free(ctx);
            free(content);
            free(text);
        }
        free(tlp);
        traj_free(t);
        traj_free(out[i]);
    }
    selector_free(sel);
    agent_free(a);
}

// ----------------------------------------------------------------------------
// the teacher's contexts

typedef struct {
    int n[NTASKS][8];
    int* ids[NTASKS][8];
} Taps;

static void tap(void* ctx, int episode, int turn, const int* ids, int n) {
    Taps* t = ctx;
    if (episode >= NTASKS || turn >= 8) return;
    free(t->ids[episode][turn]);
    t->n[episode][turn] = n;
    t->ids[episode][turn] = malloc(sizeof(int) * (size_t)n);
    memcpy(t->ids[episode][turn], ids, sizeof(int) * (size_t)n);
}

// history index of record index i (experience segments dropped)
static int history_index(const Trajectory* t, int i) {
    int h = 0;
    for (int k = 0; k < i; k++) h += t->segment[k] != SEG_EXPERIENCE;
    return h;
}

static void view(Agent* a, Trajectory* t, const ExpList* exp) {
    char err[512];
    if (agent_teacher_view(a, t, exp, err, sizeof(err)) != 0) fail_msg("teacher view: %s", err);
    assert_true(t->flags & TRAJ_FLAG_TEACHER_VIEW);
    // it survives the wire
    Trajectory* c = copy(t);
    assert_int_equal(c->n_tctx, t->n_tctx);
    if (t->n_tctx) assert_memory_equal(c->tctx_ids, t->tctx_ids, sizeof(int32_t) * (size_t)t->tctx_offset[t->n_tctx]);
    traj_free(c);
}

static void test_teacher_view_own_context(void** state) {
    (void)state;
    const int tasks[3] = {MODE_TWO, MODE_PING, MODE_BAD};
    for (int mode = 0; mode < 3; mode++) { // global, step-wise BM25, step-wise LLM
        AgentOptions o = sampled(mode == 0 ? INJECTION_GLOBAL : INJECTION_STEPWISE);
        o.group_size = 1;
        if (mode == 2) o.selector = SELECTOR_LLM;
        Agent* a = make_agent(&o);
        Taps taps = {0};
        agent_set_context_tap(a, tap, &taps);
        Trajectory* out[3];
        run(a, tasks, 3, &F.pool, out);
        agent_set_context_tap(a, NULL, NULL);
        int spliced = 0;
        for (int i = 0; i < 3; i++) {
            Trajectory* t = out[i];
            view(a, t, &F.pool);
            spliced += t->n_tctx;
            if (mode == 0) assert_int_equal(t->n_tctx, 1); // one context for every turn
            for (int s = 0; s < t->n_steps; s++) {
                int n, end, shift;
                int32_t* c = traj_teacher_context(t, s, &n, &end, &shift);
                const int upto = history_index(t, t->step_start[s]) + shift; // the turn's first agent token
                if (upto != taps.n[i][s]) fail_msg("mode %d episode %d turn %d: context of %d ids, the slot held %d",
                                                   mode, i, s, upto, taps.n[i][s]);
                assert_memory_equal(c, taps.ids[i][s], sizeof(int) * (size_t)upto);
                free(c);
            }
            traj_free(t);
        }
        assert_true(spliced > 0);
        for (int e = 0; e < NTASKS; e++)
            for (int k = 0; k < 8; k++) free(taps.ids[e][k]);
        agent_free(a);
    }
}

static void test_teacher_view_student(void** state) {
    (void)state;
    const int tasks[2] = {MODE_TWO, MODE_BAD};
    for (int mode = 0; mode < 2; mode++) {
        AgentOptions o = sampled(mode == 0 ? INJECTION_GLOBAL : INJECTION_STEPWISE);
        Agent* a = make_agent(&o);
        Trajectory* out[4];
        run(a, tasks, 2, NULL, out);
        for (int i = 0; i < 4; i++) {
            Trajectory* t = out[i];
            Trajectory* scored = copy(t);
            float* tlp = malloc(sizeof(float) * (size_t)t->n_agent);
            char err[512];
            assert_int_equal(agent_score_teacher(a, scored, &F.pool, tlp, err, sizeof(err)), 0);
            view(a, t, &F.pool);
            assert_true(t->n_tctx > 0);
            int row = 0;
            for (int s = 0; s < t->n_steps; s++) {
                int n, end, shift;
                int32_t* c = traj_teacher_context(t, s, &n, &end, &shift);
                const int from = t->step_start[s], na = step_end(t, s) - from, T = from + shift + na;
                float* logits = malloc(sizeof(float) * (size_t)T * BYTE_VOCAB_SIZE);
                model_forward(F.m, c, NULL, 1, T, logits);
                for (int j = 0; j < na; j++) {
                    const float* z = logits + (size_t)(from + shift + j - 1) * BYTE_VOCAB_SIZE;
                    double mx = z[0], sum = 0.0;
                    for (int v = 1; v < BYTE_VOCAB_SIZE; v++) mx = z[v] > mx ? z[v] : mx;
                    for (int v = 0; v < BYTE_VOCAB_SIZE; v++) sum += exp(z[v] - mx);
                    const double lp = z[t->tokens[from + j]] - mx - log(sum);
                    if (fabs(lp - tlp[row + j]) > TOL)
                        fail_msg("mode %d episode %d row %d: forward over the view %.7f, scoring %.7f", mode, i,
                                 row + j, lp, tlp[row + j]);
                }
                row += na;
                free(logits);
                free(c);
            }
            free(tlp);
            traj_free(scored);
            traj_free(t);
        }
        agent_free(a);
    }
}

// an agent on a copy of the fixture's model whose max_seq_len and context are only len tokens:
// the teacher's room (the larger of the two) is then len
static Agent* short_agent(AgentOptions* o, int len, Model** m_out) {
    ModelConfig c = *model_config(F.m);
    c.max_seq_len = len;
    Model* m = model_create(&c, F.be, 8, len);
    const size_t n = model_num_params(F.m);
    float* w = malloc(n * sizeof(float));
    model_params_download(F.m, w);
    model_params_upload(m, w);
    free(w);
    o->max_context = len;
    char err[256];
    Agent* a = agent_create(m, F.tok, o, err, sizeof(err));
    assert_non_null(a);
    *m_out = m;
    return a;
}

static void test_teacher_view_errors(void** state) {
    (void)state;
    AgentOptions o = options(INJECTION_STEPWISE);
    Agent* a = make_agent(&o);
    const int task = MODE_TWO;
    Trajectory* t;
    run(a, &task, 1, &F.pool, &t);
    char err[512];
    // the record's items are looked up in the list it is given
    ExpList other;
    exp_list_init(&other);
    exp_list_add(&other, 99, "Other: not the pool.");
    assert_int_equal(agent_teacher_view(a, t, &other, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "step 0 showed pool item"));
    assert_non_null(strstr(err, "which the experience list lacks"));
    exp_list_free(&other);
    // a context longer than the teacher's room
    Model* sm;
    Agent* b = short_agent(&o, t->step_start[0] + 4, &sm);
    assert_int_equal(agent_teacher_view(b, t, &F.pool, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "more than the larger of rollout.max_context and model.max_seq_len"));
    agent_free(b);
    model_free(sm);
    traj_free(t);
    agent_free(a);
}

static void test_score_errors(void** state) {
    (void)state;
    AgentOptions o = options(INJECTION_GLOBAL);
    Agent* a = make_agent(&o);
    const int task = MODE_TWO;
    Trajectory* t;
    run(a, &task, 1, NULL, &t);
    char err[512];
    // a system message that is not what its text renders to (a special id inside the text)
    Trajectory* c = copy(t);
    c->tokens[5] = BYTE_TOKEN_TOOL_CALL;
    assert_int_equal(agent_score_teacher(a, c, &F.pool, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "the system message at token 0 does not render back to its"));
    traj_free(c);
    // top-k width
    o.sampling.record_topk = TOPK - 1;
    Agent* b = make_agent(&o);
    assert_int_equal(agent_score_teacher(b, t, &F.pool, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "the record keeps top-4 rows, the agent records top-3"));
    agent_free(b);
    // a teacher context longer than the teacher's room (the student's fits, the pool does not)
    o.sampling.record_topk = TOPK;
    Model* sm;
    b = short_agent(&o, t->n_tokens + 8, &sm);
    assert_int_equal(agent_score_teacher(b, t, &F.pool, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "more than the larger of rollout.max_context and model.max_seq_len"));
    agent_free(b);
    model_free(sm);
    traj_free(t);
    agent_free(a);
}

// ----------------------------------------------------------------------------
// determinism

static void test_determinism(void** state) {
    (void)state;
    AgentOptions o = sampled(INJECTION_STEPWISE);
    o.group_size = 3;
    Agent* a = make_agent(&o);
    const int tasks[3] = {MODE_PLAIN, MODE_TWO, MODE_ANSWER};
    Trajectory *x[9], *y[9], *z[9], *alone[3];
    run(a, tasks, 3, &F.pool, x);
    run(a, tasks, 3, &F.pool, y);
    run_iter(a, tasks, 3, 1, &F.pool, z);
    run(a, tasks + 1, 1, &F.pool, alone);
    for (int i = 0; i < 9; i++) {
        assert_true(same_bytes(x[i], y[i]));
        assert_int_not_equal(x[i]->seed, z[i]->seed);
        assert_int_equal(x[i]->seed, agent_episode_seed(o.seed, 0, ENV_SPLIT_TRAIN, tasks[i / 3], i % 3, 1));
        for (int j = 0; j < i; j++) assert_int_not_equal(x[i]->seed, x[j]->seed);
    }
    // task MODE_TWO's samples alone, in slots 0..2, equal those in the batch, in slots 3..5
    for (int i = 0; i < 3; i++) check_same_but_rounding(alone[i], x[3 + i]);
    assert_int_not_equal(agent_episode_seed(o.seed, 0, ENV_SPLIT_TRAIN, 1, 0, 1),
                         agent_episode_seed(o.seed, 0, ENV_SPLIT_TRAIN, 1, 0, 0));
    assert_int_not_equal(agent_episode_seed(o.seed, 0, ENV_SPLIT_TRAIN, 1, 0, 1),
                         agent_episode_seed(o.seed, 0, ENV_SPLIT_HELDOUT, 1, 0, 1));
    for (int i = 0; i < 9; i++) traj_free(x[i]), traj_free(y[i]), traj_free(z[i]);
    for (int i = 0; i < 3; i++) traj_free(alone[i]);
    agent_free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rescore_own_context),
        cmocka_unit_test(test_score_student_global),
        cmocka_unit_test(test_score_student_stepwise),
        cmocka_unit_test(test_score_errors),
        cmocka_unit_test(test_teacher_view_own_context),
        cmocka_unit_test(test_teacher_view_student),
        cmocka_unit_test(test_teacher_view_errors),
        cmocka_unit_test(test_determinism),
    };
    return cmocka_run_group_tests(tests, fixture_setup, fixture_teardown);
}
