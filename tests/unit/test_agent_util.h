// Helpers for the agent tests: a mock environment whose tasks ask for one behaviour each, and a
// tiny model trained in a few seconds on transcripts of those behaviours (rendered with
// model/chat.h directly, not through the agent), so that greedy decoding produces well-formed
// calls, plain-text answers, malformed calls and LLM-selector replies on cue.
//
// Mock tools: ping() -> "pong" ("pong, now answer" in mode two); answer(text) ends the episode,
// reward 1 for "42". Task k has mode k % MOCK_MODES and the statement "Mode <name>.".
// Trained behaviour (greedy), decided by the last message:
//   "Mode ping." / "pong"            -> ping call              (never ends: max turns)
//   "Mode answer."                   -> answer call with 42    (premature, reward 1)
//   "Mode plain."                    -> "42" without a call    (answered through the answer tool)
//   "Mode bad." / "Error: ..."       -> a malformed call       (error observation, max turns)
//   "Mode two." / "pong, now answer" -> ping, then answer 42   (2 turns, reward 1)
//   the LLM selector's request       -> "2, 3"
#pragma once
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "model/adamw.h"
#include "model/chat.h"
#include "model/model.h"
#include "model/ops.h"
#include "model/tokenizer.h"
#include "model/tokenizer_byte_vocab.h"
#include "rollout/agent.h"
#include "rollout/agent_impl.h"
#include "rollout/env_impl.h"
#include "rollout/inject.h"

enum { MODE_PING = 0, MODE_ANSWER, MODE_PLAIN, MODE_BAD, MODE_TWO, MOCK_MODES };
static const char* const mock_mode_names[MOCK_MODES] = {"ping", "answer", "plain", "bad", "two"};

#define MOCK_SYSTEM_PROMPT "Ping or answer."
#define MOCK_BAD_REPLY "<tool_call>\n{\"name\": \"ping\"\n</tool_call>"
#define MOCK_LLM_REPLY "2, 3"
#define MOCK_LOG 64

// ----------------------------------------------------------------------------
// the mock environment

static const EnvTool mock_tools[] = {
    {"ping", "Ping the server.", 0, {{0}}},
    {"answer", "Give the final answer.", 1, {{"text", "string", "the answer", 1}}},
};

typedef struct {
    Env base;
    int mode;
    int nlog;
    char* log[MOCK_LOG]; // observations returned, reset's statement first
} MockEnv;

static void mock_log(MockEnv* m, const char* obs) {
    if (m->nlog < MOCK_LOG) m->log[m->nlog++] = strdupCheck(obs);
}

static void mock_clear(MockEnv* m) {
    for (int i = 0; i < m->nlog; i++) free(m->log[i]);
    m->nlog = 0;
}

static int mock_reset(Env* env, EnvSplit split, int task, uint64_t seed, EnvResult* out, EnvError* err) {
    (void)split, (void)seed, (void)err;
    MockEnv* m = (MockEnv*)env;
    mock_clear(m);
    m->mode = task % MOCK_MODES;
    char s[64];
    snprintf(s, sizeof(s), "Mode %s.", mock_mode_names[m->mode]);
    env_result_text(out, s);
    mock_log(m, s);
    return 0;
}

static int mock_step(Env* env, const EnvAction* action, EnvResult* out, EnvError* err) {
    (void)err;
    MockEnv* m = (MockEnv*)env;
    json_t* args;
    int t = env_parse_action(env, action, &args, out);
    if (t == 0) {
        env_result_text(out, m->mode == MODE_TWO ? "pong, now answer" : "pong");
    } else if (t == 1) {
        const char* text = json_string_value(json_object_get(args, "text"));
        int ok = text && strcmp(text, "42") == 0;
        env_result_final(out, strdupCheck(ok ? "Correct." : "Wrong."), ok ? 1.0 : 0.0);
    }
    json_decref(args);
    mock_log(m, out->observation);
    return 0;
}

static void mock_destroy(Env* env) {
    mock_clear((MockEnv*)env);
    env_base_free(env);
    free(env);
}

static const EnvVtbl mock_vt = {mock_reset, mock_step, NULL, NULL, mock_destroy};

static Env* mock_create(int ntasks) {
    MockEnv* m = calloc(1, sizeof(MockEnv));
    env_base_init(&m->base, &mock_vt, "mock", mock_tools, 2, NULL, 0);
    env_base_builtin_tasks(&m->base, ntasks, 1);
    return &m->base;
}

// ----------------------------------------------------------------------------
// the test pool: short items, none naming a mode's cue words

static void mock_pool(ExpList* l) {
    exp_list_init(l);
    exp_list_add(l, 11, "Check: When in doubt, verify.");
    exp_list_add(l, 12, "Ping: When unsure, ping it.");
    exp_list_add(l, 13, "Plain: When sure, say so.");
    exp_list_add(l, 14, "Brief: When long, cut it.");
    exp_list_add(l, 15, "Read: When it answers, read.");
}

// ----------------------------------------------------------------------------
// transcripts

typedef struct {
    ChatRole role;
    const char* text; // content (assistant: the reply text when there is no call)
    const char* call; // assistant: tool name of a well-formed call, or NULL
    const char* args;
    const char* exp; // experience text appended as a SEG_EXPERIENCE part, or NULL
} MockMsg;

static void render_msgs(ChatRender* r, const MockMsg* msgs, int n) {
    char err[256];
    for (int i = 0; i < n; i++) {
        // experience after the system text, before any other message's text (as the agent renders it)
        const ChatPart text = {msgs[i].text, chat_role_segment(msgs[i].role)}, exp = {msgs[i].exp, SEG_EXPERIENCE};
        const int after = msgs[i].role == CHAT_SYSTEM || !msgs[i].exp;
        ChatPart parts[2] = {after ? text : exp, after ? exp : text};
        ChatToolCall call = {msgs[i].call, msgs[i].args};
        ChatMessage m = {msgs[i].role, parts, msgs[i].exp ? 2 : 1, msgs[i].call ? &call : NULL, msgs[i].call ? 1 : 0};
        if (chat_append(r, &m, err, sizeof(err)) != 0) fail_msg("render: %s", err);
    }
}

// the messages of mode `mode`'s expert transcript (at most `turns` assistant turns)
static int mode_transcript(int mode, const char* sys, int turns, MockMsg* out) {
    static char bad_obs[256];
    char* name;
    char* args;
    if (chat_parse_tool_call(MOCK_BAD_REPLY, &name, &args, bad_obs + 7, sizeof(bad_obs) - 7) != -1)
        fail_msg("MOCK_BAD_REPLY parses");
    memcpy(bad_obs, "Error: ", 7);
    static char statement[MOCK_MODES][32];
    snprintf(statement[mode], sizeof(statement[mode]), "Mode %s.", mock_mode_names[mode]);
    int n = 0;
    out[n++] = (MockMsg){CHAT_SYSTEM, sys, NULL, NULL, NULL};
    out[n++] = (MockMsg){CHAT_USER, statement[mode], NULL, NULL, NULL};
    const MockMsg ping = {CHAT_ASSISTANT, "", "ping", "{}", NULL};
    const MockMsg answer = {CHAT_ASSISTANT, "", "answer", "{\"text\": \"42\"}", NULL};
    const MockMsg correct = {CHAT_TOOL, "Correct.", NULL, NULL, NULL};
    switch (mode) {
    case MODE_PING:
    case MODE_BAD:
        for (int t = 0; t < turns; t++) {
            out[n++] = mode == MODE_PING ? ping : (MockMsg){CHAT_ASSISTANT, MOCK_BAD_REPLY, NULL, NULL, NULL};
            out[n++] = (MockMsg){CHAT_TOOL, mode == MODE_PING ? "pong" : bad_obs, NULL, NULL, NULL};
        }
        break;
    case MODE_ANSWER:
        out[n++] = answer;
        out[n++] = correct;
        break;
    case MODE_PLAIN:
        out[n++] = (MockMsg){CHAT_ASSISTANT, "42", NULL, NULL, NULL};
        out[n++] = correct;
        break;
    default:
        out[n++] = ping;
        out[n++] = (MockMsg){CHAT_TOOL, "pong, now answer", NULL, NULL, NULL};
        out[n++] = answer;
        out[n++] = correct;
    }
    return n;
}

// ----------------------------------------------------------------------------
// the model

typedef struct {
    int n;
    int* ids;
    uint8_t* agent;
} Example;

static void add_example(Example* ex, int* nex, const ChatRender* r) {
    Example* e = &ex[(*nex)++];
    e->n = r->n;
    e->ids = malloc(sizeof(int) * (size_t)r->n);
    e->agent = malloc((size_t)r->n);
    memcpy(e->ids, r->ids, sizeof(int) * (size_t)r->n);
    memcpy(e->agent, r->agent, (size_t)r->n);
}

static ModelConfig mock_model_config(void) {
    ModelConfig c;
    if (model_builtin_config("tiny", &c) != 0) fail_msg("no tiny config");
    c.dim = 48;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 12;
    c.hidden_dim = 96;
    c.max_seq_len = 1024;
    return c;
}

// Trains m (created with max_batch >= 8 and max_seq >= 512) on the mode transcripts: whole
// transcripts with and without global experience, and step-wise contexts (the last message
// with experience, then the reply), plus LLM-selector requests answered MOCK_LLM_REPLY.
// Returns the final mean loss per agent token.
static float mock_train(Model* m, const Tokenizer* tok, const char* sys, int steps, float lr) {
    ExpList pool;
    mock_pool(&pool);
    // step-wise variants: the picks the tests' BM25 and LLM selections make on this pool
    const int picks[3][2] = {{0, 1}, {1, 0}, {1, 2}};
    char* global = inject_render_global(&pool);
    char* step[3];
    for (int v = 0; v < 3; v++) step[v] = inject_render_step(&pool, picks[v], 2);
    SelectParams sp = {2, 3, 0.5, 0};
    ExpSelector* sel = selector_create(&pool, &sp);
    char* request = selector_llm_request(sel);
    selector_free(sel);

    Example ex[256];
    int nex = 0;
    MockMsg msgs[32], ctx[34];
    ChatRender r;
    char err[256];
    if (chat_init(&r, tok, CHAT_CHATML, err, sizeof(err)) != 0) fail_msg("%s", err);
    for (int mode = 0; mode < MOCK_MODES; mode++) {
        int n = mode_transcript(mode, sys, 3, msgs);
        for (int g = 0; g < 2; g++) { // whole transcripts, without and with global experience
            chat_reset(&r);
            msgs[0].exp = g ? global : NULL;
            render_msgs(&r, msgs, n);
            add_example(ex, &nex, &r);
        }
        msgs[0].exp = NULL;
        for (int k = 2; k < n; k++) { // step-wise: message k-1 with experience, then reply k
            if (msgs[k].role != CHAT_ASSISTANT) continue;
            for (int v = 0; v < 3; v++) {
                memcpy(ctx, msgs, sizeof(MockMsg) * (size_t)(k + 1));
                ctx[k - 1].exp = step[v];
                chat_reset(&r);
                render_msgs(&r, ctx, k + 1);
                add_example(ex, &nex, &r);
            }
            // the LLM selector's request after message k-1, answered with item numbers
            memcpy(ctx, msgs, sizeof(MockMsg) * (size_t)k);
            ctx[k] = (MockMsg){CHAT_USER, request, NULL, NULL, NULL};
            ctx[k + 1] = (MockMsg){CHAT_ASSISTANT, MOCK_LLM_REPLY, NULL, NULL, NULL};
            chat_reset(&r);
            render_msgs(&r, ctx, k + 2);
            add_example(ex, &nex, &r);
        }
    }
    chat_free(&r);

    if (getenv("MOCK_TRAIN_LOG"))
        for (int i = 0; i < nex; i++) fprintf(stderr, "example %d: %d tokens\n", i, ex[i].n);
    const int B = 8;
    int Tmax = 0;
    for (int i = 0; i < nex; i++) Tmax = ex[i].n > Tmax ? ex[i].n : Tmax;
    AdamWConfig oc = adamw_default_config();
    oc.lr = lr;
    oc.warmup_steps = 10;
    oc.total_steps = steps;
    oc.weight_decay = 0.0f;
    AdamW* opt = adamw_create(model_backend(m), &oc, model_param_info(m), model_num_params(m));
    int* tokens = calloc((size_t)B * Tmax, sizeof(int));
    int* targets = calloc((size_t)B * Tmax, sizeof(int));
    float* w = calloc((size_t)B * Tmax, sizeof(float));
    int lengths[8];
    float loss = 0.0f;
    for (int s = 0; s < steps; s++) {
        int T = 0; // padded to the longest example of the batch
        for (int b = 0; b < B; b++) T = ex[(s * B + b) % nex].n > T ? ex[(s * B + b) % nex].n : T;
        float wsum = 0.0f;
        for (int b = 0; b < B; b++) {
            const Example* e = &ex[(s * B + b) % nex];
            lengths[b] = e->n;
            for (int t = 0; t < T; t++) {
                const int i = b * T + t;
                tokens[i] = t < e->n ? e->ids[t] : 0;
                targets[i] = t + 1 < e->n ? e->ids[t + 1] : -1;
                w[i] = t + 1 < e->n && e->agent[t + 1] ? 1.0f : 0.0f;
                wsum += w[i];
            }
        }
        for (int i = 0; i < B * T; i++) w[i] /= wsum;
        float gn;
        loss = model_train_step_ce(m, opt, tokens, targets, w, lengths, B, T, &gn);
        if (getenv("MOCK_TRAIN_LOG") && s % 20 == 0) fprintf(stderr, "step %d T %d loss %.4f\n", s, T, loss);
    }
    adamw_free(opt);
    free(tokens);
    free(targets);
    free(w);
    for (int i = 0; i < nex; i++) free(ex[i].ids), free(ex[i].agent);
    free(global);
    for (int v = 0; v < 3; v++) free(step[v]);
    free(request);
    exp_list_free(&pool);
    return loss;
}

#define TOPK 4
#define NTASKS 10

// ----------------------------------------------------------------------------
// the fixture: model, tokenizer, one mock environment per episode, the pool

typedef struct {
    Backend* be;
    Model* m;
    Tokenizer* tok;
    Env* envs[NTASKS];
    ExpList pool;
} Fix;

static Fix F;

static AgentOptions options(int injection) {
    AgentOptions o = {0};
    o.format = CHAT_CHATML;
    o.injection = injection;
    o.selector = SELECTOR_BM25;
    o.select = (SelectParams){2, 3, 0.5, 0};
    o.max_turns = 3;
    o.max_context = 1024;
    o.max_new_tokens = 64;
    o.sampling = (SamplingParams){.temperature = 0.0f, .top_p = 1.0f, .top_k = 0, .record_topk = TOPK};
    o.group_size = 1;
    o.max_episodes = NTASKS;
    o.seed = 5;
    o.system_prompt = MOCK_SYSTEM_PROMPT;
    return o;
}

static Agent* make_agent(const AgentOptions* o) {
    char err[512];
    Agent* a = agent_create(F.m, F.tok, o, err, sizeof(err));
    if (!a) fail_msg("agent_create: %s", err);
    return a;
}

// runs G episodes of each of tasks[0..n) at `iteration`
static void run_iter(Agent* a, const int* tasks, int n, int iteration, const ExpList* exp, Trajectory** out) {
    AgentTask at[NTASKS];
    for (int i = 0; i < n; i++) at[i] = (AgentTask){ENV_SPLIT_TRAIN, tasks[i]};
    char err[1024];
    if (agent_run(a, F.envs, at, n, iteration, exp, out, err, sizeof(err)) != 0) fail_msg("agent_run: %s", err);
}

static void run(Agent* a, const int* tasks, int n, const ExpList* exp, Trajectory** out) {
    run_iter(a, tasks, n, 0, exp, out);
}

// The trained weights are shared between the test programs through AGENT_TEST_MODEL (a file in
// the build tree written by the ctest fixture `test_agent_model`, i.e. `test_agent --train`):
// a program that finds a file of the right size loads it, otherwise it trains and writes it.
#ifndef AGENT_TEST_MODEL
#define AGENT_TEST_MODEL ""
#endif
#define MOCK_TRAIN_STEPS 250

static int weights_load(Model* m, const char* path) {
    FILE* f = path[0] ? fopen(path, "rb") : NULL;
    if (!f) return -1;
    uint64_t n = 0;
    char magic[4];
    int ok = fread(magic, 1, 4, f) == 4 && memcmp(magic, "IGTM", 4) == 0 && fread(&n, 8, 1, f) == 1 &&
             n == model_num_params(m);
    float* w = ok ? malloc(sizeof(float) * n) : NULL;
    ok = ok && fread(w, sizeof(float), n, f) == n;
    fclose(f);
    if (ok) model_params_upload(m, w);
    free(w);
    return ok ? 0 : -1;
}

static void weights_save(Model* m, const char* path) {
    if (!path[0]) return;
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    uint64_t n = model_num_params(m);
    float* w = malloc(sizeof(float) * n);
    model_params_download(m, w);
    FILE* f = fopen(tmp, "wb");
    if (!f) fail_msg("cannot write %s", tmp);
    fwrite("IGTM", 1, 4, f);
    fwrite(&n, 8, 1, f);
    fwrite(w, sizeof(float), n, f);
    fclose(f);
    free(w);
    if (rename(tmp, path) != 0) fail_msg("cannot rename %s", tmp);
}

// force_train: train even when the weights file exists (the fixture that writes it)
static int fixture_init(int force_train) {
    F.be = backend_cpu_create(1); // one thread: the shapes are tiny, and OpenMP barriers crawl on a busy machine
    ModelConfig c = mock_model_config();
    F.m = model_create(&c, F.be, 8, 1024);
    model_init_random(F.m, 3);
    F.tok = tokenizer_byte();
    for (int i = 0; i < NTASKS; i++) F.envs[i] = mock_create(NTASKS);
    mock_pool(&F.pool);
    if (!force_train && weights_load(F.m, AGENT_TEST_MODEL) == 0) return 0;
    AgentOptions o = options(INJECTION_STEPWISE);
    Agent* a = make_agent(&o);
    char* sys = agent_system_text(a, F.envs[0]);
    float loss = mock_train(F.m, F.tok, sys, MOCK_TRAIN_STEPS, 6e-3f);
    print_message("mock model trained: final loss %.4f per agent token\n", loss);
    free(sys);
    agent_free(a);
    weights_save(F.m, AGENT_TEST_MODEL);
    return 0;
}

static int fixture_setup(void** state) {
    (void)state;
    return fixture_init(0);
}

static int fixture_teardown(void** state) {
    (void)state;
    for (int i = 0; i < NTASKS; i++) env_destroy(F.envs[i]);
    exp_list_free(&F.pool);
    tokenizer_free(F.tok);
    model_free(F.m);
    backend_destroy(F.be);
    return 0;
}
