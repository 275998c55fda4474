// The agent loop (see agent.h and docs/AGENT.md): episodes of a batch advance turn by turn in
// lockstep, every turn one batched prefill (decoder_assign: each slot keeps the prefix it shares
// with its new context) and one batched generation, then per episode the reply is parsed and the
// tool call goes to its environment.
#include "rollout/agent.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "model/timer.h"
#include "rollout/agent_impl.h"

static const char* const default_system_prompt =
    "You are an agent that completes the task with tools. To call a tool, write\n"
    "<tool_call>\n{\"name\": \"TOOL\", \"arguments\": {...}}\n</tool_call>\n"
    "One call per reply; its result comes back in the next message. A reply without a tool call is your final "
    "answer.\nTools:\n{tools}";

double agent_now(void) { return timer_now(); }

// ----------------------------------------------------------------------------
// options and lifetime

void agent_options_from_config(const Config* c, AgentOptions* o) {
    memset(o, 0, sizeof(*o));
    o->format = CHAT_CHATML;
    o->injection = c->experience.injection;
    o->selector = c->experience.selector;
    o->select.min = c->experience.select_min;
    o->select.max = c->experience.select_max;
    o->select.cut = INJECT_CUT_DEFAULT;
    o->select.triggers = c->experience.select_triggers;
    o->max_turns = c->env.max_turns;
    o->max_context = c->rollout.max_context;
    o->max_new_tokens = c->rollout.max_new_tokens;
    o->sampling.temperature = (float)c->rollout.temperature;
    o->sampling.top_p = (float)c->rollout.top_p;
    o->sampling.top_k = c->rollout.top_k;
    o->sampling.record_topk = c->rollout.teacher_topk;
    o->group_size = c->rollout.group_size;
    o->max_episodes = c->rollout.group_size;
    o->seed = (uint64_t)c->run.seed;
}

__attribute__((format(printf, 3, 4))) static int fail(char* err, size_t errlen, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

Agent* agent_create(Model* m, const Tokenizer* tok, const AgentOptions* o, char* err, size_t errlen) {
    const int V = model_config(m)->vocab_size;
    char msg[256];
    if (sampling_params_check(&o->sampling, V, msg, sizeof(msg)) != 0) {
        fail(err, errlen, "agent: sampling: %s", msg);
        return NULL;
    }
    if (tokenizer_vocab_size(tok) > V) {
        fail(err, errlen, "agent: the tokenizer has %d ids but the model only %d", tokenizer_vocab_size(tok), V);
        return NULL;
    }
    if (o->group_size < 1 || o->max_episodes < o->group_size || o->max_turns < 1 || o->max_new_tokens < 1 ||
        o->max_context < 16 || o->select.min < 0 || o->select.max < o->select.min) {
        fail(err, errlen,
             "agent: invalid options (group_size %d, max_episodes %d, max_turns %d, max_new_tokens %d, "
             "max_context %d, select %d..%d)",
             o->group_size, o->max_episodes, o->max_turns, o->max_new_tokens, o->max_context, o->select.min,
             o->select.max);
        return NULL;
    }
    Agent* a = callocCheck(1, sizeof(Agent));
    if (chat_init(&a->scratch, tok, o->format, msg, sizeof(msg)) != 0) {
        fail(err, errlen, "agent: %s", msg);
        free(a);
        return NULL;
    }
    a->o = *o;
    a->m = m;
    a->tok = tok;
    a->V = V;
    const int slots = o->max_episodes * (o->selector == SELECTOR_LLM ? 2 : 1);
    a->dec = decoder_create(m, slots, o->max_context);
    a->limit = callocCheck((size_t)slots, sizeof(int));
    a->stop_ids[a->n_stop++] = chat_end_id(&a->scratch);
    int eos = tokenizer_eos_id(tok);
    if (eos >= 0 && eos != a->stop_ids[0]) a->stop_ids[a->n_stop++] = eos;
    return a;
}

void agent_free(Agent* a) {
    if (!a) return;
    decoder_free(a->dec);
    if (a->score_dec) decoder_free(a->score_dec);
    chat_free(&a->scratch);
    free(a->limit);
    free(a);
}

Decoder* agent_decoder(Agent* a) { return a->dec; }
const AgentStats* agent_stats(const Agent* a) { return &a->st; }
void agent_stats_reset(Agent* a) { memset(&a->st, 0, sizeof(a->st)); }

void agent_set_context_tap(Agent* a, AgentContextFn fn, void* ctx) {
    a->tap = fn;
    a->tap_ctx = ctx;
}

char* agent_system_text(const Agent* a, const Env* env) {
    const char* tmpl = a->o.system_prompt ? a->o.system_prompt : default_system_prompt;
    char* tools = env_tools_text(env);
    const char* at = strstr(tmpl, "{tools}");
    size_t n = strlen(tmpl) + strlen(tools) + 1;
    char* s = mallocCheck(n);
    if (at)
        snprintf(s, n, "%.*s%s%s", (int)(at - tmpl), tmpl, tools, at + strlen("{tools}"));
    else
        snprintf(s, n, "%s", tmpl);
    free(tools);
    return s;
}

// splitmix64 finaliser
static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t agent_episode_seed(uint64_t run_seed, int iteration, EnvSplit split, int task, int sample, int teacher) {
    uint64_t h = mix64(run_seed);
    h = mix64(h ^ (uint64_t)(uint32_t)iteration);
    h = mix64(h ^ ((uint64_t)split << 1 | (uint64_t)(teacher != 0)));
    h = mix64(h ^ (uint64_t)(uint32_t)task);
    return mix64(h ^ (uint64_t)(uint32_t)sample);
}

// ----------------------------------------------------------------------------
// rendering single messages

void agent_render_message(Agent* a, ChatRole role, const ChatPart* parts, int np, int first, int gen_prompt,
                          TokenBuf* out) {
    char msg[256];
    ChatRender* r = &a->scratch;
    chat_reset(r);
    if (!first) { // a previous message, so this one gets the separator that follows a message
        const ChatPart p = {"-", SEG_SYSTEM};
        const ChatMessage prev = {.role = CHAT_SYSTEM, .parts = &p, .n_parts = 1};
        if (chat_append(r, &prev, msg, sizeof(msg)) != 0) fatal("agent: %s", msg);
    }
    int n0 = r->n;
    if (np >= 0) {
        const ChatMessage m = {.role = role, .parts = parts, .n_parts = np};
        if (chat_append(r, &m, msg, sizeof(msg)) != 0) fatal("agent: %s", msg);
    }
    if (gen_prompt && chat_append_generation_prompt(r, msg, sizeof(msg)) != 0) fatal("agent: %s", msg);
    for (int i = n0; i < r->n; i++) tokenbuf_push(out, r->ids[i]);
    chat_reset(r);
}

// ----------------------------------------------------------------------------
// episodes

typedef struct {
    Env* env;
    int slot, sample;
    ChatRender r; // the stored history
    Trajectory* t;
    int pushed; // tokens of r already in t
    int active;
    int turns;
    int calls_ok; // accepted tool calls other than the answer
    Rng rng;
    int last_start; // where the last user/tool message starts in r
    ChatRole last_role;
    char* last_text;
    // this turn
    TokenBuf ctx; // the context the reply is sampled from
    int* items;   // (select.max or the list size) list indices shown
    int n_items;
} Episode;

// copies the tokens appended to the stored history since the last call into the record; agent
// tokens take their sampling records from gen (NULL when none are expected)
static void push_new(Episode* e, const SampledToken* gen) {
    int g = 0;
    for (; e->pushed < e->r.n; e->pushed++) {
        const int i = e->pushed;
        if (e->r.agent[i]) {
            const SampledToken* s = &gen[g++];
            traj_push_agent(e->t, e->r.ids[i], s->logprob, s->topk_ids, s->topk_lp, s->tail_mass);
        } else {
            traj_push_context(e->t, &e->r.ids[i], 1, e->r.seg[i]);
        }
    }
}

static void append_message(Episode* e, ChatRole role, const ChatPart* parts, int np) {
    char msg[256];
    const ChatMessage m = {.role = role, .parts = parts, .n_parts = np};
    if (role != CHAT_SYSTEM) {
        e->last_start = e->r.n;
        e->last_role = role;
        free(e->last_text);
        e->last_text = strdupCheck(parts[0].text);
    }
    if (chat_append(&e->r, &m, msg, sizeof(msg)) != 0) fatal("agent: %s", msg);
    push_new(e, NULL);
}

static void append_observation(Episode* e, const char* text) {
    const ChatPart p = {text, SEG_TOOL};
    append_message(e, CHAT_TOOL, &p, 1);
}

static void finish(Agent* a, Episode* e, float reward, uint32_t flags) {
    e->active = 0;
    e->t->final_reward = reward;
    e->t->flags |= flags;
    a->st.episodes++;
}

// the answer tool's first argument, or NULL when the environment has no `answer` tool
static const char* answer_arg(const Env* env) {
    for (int i = 0; i < env->ntools; i++)
        if (strcmp(env->tools[i].name, "answer") == 0)
            return env->tools[i].nargs > 0 ? env->tools[i].args[0].name : "text";
    return NULL;
}

// length of the valid UTF-8 sequence at s (1-4), or 0 when the bytes there are not one
static int utf8_len(const unsigned char* s, size_t left) {
    int n = s[0] < 0x80 ? 1 : (s[0] >> 5) == 6 ? 2 : (s[0] >> 4) == 14 ? 3 : (s[0] >> 3) == 30 ? 4 : 0;
    if (n == 0 || (size_t)n > left) return 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return n;
}

// a reply without a tool call: {"<arg>": "<reply, trimmed, invalid UTF-8 bytes as '?'>"}
static char* answer_args(const char* arg, const char* reply) {
    const char* s = reply;
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    char* text = mallocCheck(n + 1);
    for (size_t i = 0; i < n;) {
        int k = utf8_len((const unsigned char*)s + i, n - i);
        if (k == 0) {
            text[i++] = '?';
        } else {
            memcpy(text + i, s + i, (size_t)k);
            i += (size_t)k;
        }
    }
    text[n] = '\0';
    json_t* o = json_object();
    json_t* v = json_string(text);
    json_object_set_new(o, arg, v ? v : json_string(""));
    char* out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    free(text);
    if (!out) fatal("agent: json_dumps failed (out of memory)");
    char* copy = strdupCheck(out);
    free(out);
    return copy;
}

// ----------------------------------------------------------------------------
// one turn's outcome for one episode; -1 when the environment itself failed

static int take_reply(Agent* a, Episode* e, const GenResult* g, const ExpList* exp, char* err, size_t errlen) {
    char msg[512];
    const int n = g->n;
    int* ids = mallocCheck(sizeof(int) * (size_t)(n + 1));
    for (int i = 0; i < n; i++) ids[i] = g->tokens[i].id;
    // the generation prompt (already in the context), the step, the reply as sampled
    if (chat_append_generation_prompt(&e->r, msg, sizeof(msg)) != 0) fatal("agent: %s", msg);
    push_new(e, NULL);
    int32_t* item_ids = mallocCheck(sizeof(int32_t) * (size_t)(e->n_items + 1));
    for (int i = 0; i < e->n_items; i++) item_ids[i] = exp->ids[e->items[i]];
    traj_begin_step(e->t, item_ids, e->n_items);
    free(item_ids);
    if (chat_append_generated(&e->r, ids, n, msg, sizeof(msg)) != 0) fatal("agent: %s", msg);
    push_new(e, g->tokens);
    e->turns++;
    a->st.turns++;
    a->st.gen_tokens += n;

    int stopped = n > 0 && (ids[n - 1] == a->stop_ids[0] || (a->n_stop > 1 && ids[n - 1] == a->stop_ids[1]));
    char* reply = tokenizer_decode_alloc(a->tok, ids, stopped ? n - 1 : n, NULL);
    free(ids);
    int rc = 0;
    if (!stopped && e->ctx.n + n >= a->o.max_context) { // cut off by the context cap
        finish(a, e, 0.0f, TRAJ_FLAG_TRUNCATED);
        free(reply);
        return 0;
    }
    char *name = NULL, *args = NULL;
    char perr[400];
    int parsed = chat_parse_tool_call(reply, &name, &args, perr, sizeof(perr));
    const char* ans = answer_arg(e->env);
    if (parsed < 0) { // malformed: the parser's message is the observation
        snprintf(msg, sizeof(msg), "Error: %s", perr);
        append_observation(e, msg);
    } else if (parsed == 0 && !ans) { // a final answer the environment cannot take
        finish(a, e, 0.0f, e->calls_ok == 0 ? TRAJ_FLAG_PREMATURE : 0);
    } else {
        if (parsed == 0) {
            name = strdupCheck("answer");
            args = answer_args(ans, reply);
        }
        const int is_answer = strcmp(name, "answer") == 0;
        EnvAction act = {name, args};
        EnvResult res = {0};
        EnvError eerr = {{0}};
        double t0 = agent_now();
        int src = env_step(e->env, &act, &res, &eerr);
        a->st.t_env += agent_now() - t0;
        if (src != 0) {
            snprintf(err, errlen, "agent: environment '%s' failed at turn %d of task %d sample %d: %s", e->env->name,
                     e->turns, e->t->task_id, e->sample, eerr.msg);
            rc = -1;
        } else {
            traj_set_step_reward(e->t, (float)res.reward);
            const int premature = is_answer && e->calls_ok == 0;
            if (!res.invalid && !is_answer) e->calls_ok++;
            append_observation(e, res.observation ? res.observation : "");
            if (res.done) finish(a, e, (float)res.reward, premature ? TRAJ_FLAG_PREMATURE : 0);
        }
        env_result_free(&res);
    }
    free(name);
    free(args);
    free(reply);
    return rc;
}

// ----------------------------------------------------------------------------
// the run

static int stop_at_limit(void* ctx, int slot, const SampledToken* tokens, int n) {
    (void)tokens;
    const Agent* a = ctx;
    return n >= a->limit[slot];
}

static void episodes_free(Episode* eps, int n, Trajectory** out, int keep) {
    for (int i = 0; i < n; i++) {
        chat_free(&eps[i].r);
        free(eps[i].last_text);
        free(eps[i].items);
        tokenbuf_free(&eps[i].ctx);
        if (keep)
            out[i] = eps[i].t;
        else
            traj_free(eps[i].t);
    }
    free(eps);
}

// starts episode i: reset, system message (with global experience), the task
static int episode_start(Agent* a, Episode* e, const AgentTask* task, int iteration, const ExpList* exp,
                         const char* exp_text, char* err, size_t errlen) {
    char msg[256];
    const int teacher = exp != NULL;
    uint64_t seed = agent_episode_seed(a->o.seed, iteration, task->split, task->task, e->sample, teacher);
    rng_seed(&e->rng, seed);
    if (chat_init(&e->r, a->tok, a->o.format, msg, sizeof(msg)) != 0) fatal("agent: %s", msg);
    e->t = traj_create(a->o.sampling.record_topk);
    e->t->task_id = task->task;
    e->t->sample = e->sample;
    e->t->iteration = iteration;
    e->t->seed = seed;
    e->t->flags = (teacher ? TRAJ_FLAG_TEACHER : 0) | (task->split == ENV_SPLIT_HELDOUT ? TRAJ_FLAG_HELDOUT : 0);
    e->items = mallocCheck(sizeof(int) * (size_t)((exp ? exp->n : 0) + a->o.select.max + 1));
    EnvResult res = {0};
    EnvError eerr = {{0}};
    double t0 = agent_now();
    int rc = env_reset(e->env, task->split, task->task, seed, &res, &eerr);
    a->st.t_env += agent_now() - t0;
    if (rc != 0) {
        env_result_free(&res);
        return fail(err, errlen, "agent: environment '%s' failed to reset task %d: %s", e->env->name, task->task,
                    eerr.msg);
    }
    char* sys = agent_system_text(a, e->env);
    ChatPart sp[2];
    append_message(e, CHAT_SYSTEM, sp, inject_message_parts(sys, SEG_SYSTEM, exp_text, sp));
    const ChatPart up = {res.observation ? res.observation : "", SEG_USER};
    append_message(e, CHAT_USER, &up, 1);
    free(sys);
    env_result_free(&res);
    e->active = 1;
    return 0;
}

// builds each active episode's context for this turn; ends those past max turns or the cap
static void build_contexts(Agent* a, Episode* eps, int ne, const ExpList* exp, const ExpSelector* sel, TokenBuf* gp) {
    const int stepwise = sel != NULL;
    int nsel = 0;
    int* sel_ep = mallocCheck(sizeof(int) * (size_t)(ne + 1));
    for (int i = 0; i < ne; i++) {
        Episode* e = &eps[i];
        if (!e->active) continue;
        if (e->turns >= a->o.max_turns) {
            finish(a, e, 0.0f, TRAJ_FLAG_TRUNCATED);
            continue;
        }
        e->n_items = 0;
        if (exp && !stepwise && a->o.injection == INJECTION_GLOBAL) {
            for (int k = 0; k < exp->n; k++) e->items[k] = k;
            e->n_items = exp->n;
        }
        if (stepwise) sel_ep[nsel++] = i;
    }
    if (nsel > 0) { // step-wise items for every active episode, in one batch
        int* slots = mallocCheck(sizeof(int) * (size_t)nsel);
        const int** ids = mallocCheck(sizeof(int*) * (size_t)nsel);
        const uint8_t** segs = mallocCheck(sizeof(uint8_t*) * (size_t)nsel);
        int* lens = mallocCheck(sizeof(int) * (size_t)nsel);
        int** idx = mallocCheck(sizeof(int*) * (size_t)nsel);
        int* nidx = mallocCheck(sizeof(int) * (size_t)nsel);
        for (int k = 0; k < nsel; k++) {
            Episode* e = &eps[sel_ep[k]];
            slots[k] = a->o.max_episodes + e->slot;
            ids[k] = e->r.ids;
            segs[k] = e->r.seg;
            lens[k] = e->r.n;
            idx[k] = e->items;
        }
        agent_select_items(a, sel, nsel, slots, ids, segs, lens, idx, nidx);
        for (int k = 0; k < nsel; k++) eps[sel_ep[k]].n_items = nidx[k];
        free(slots);
        free(ids);
        free(segs);
        free(lens);
        free(idx);
        free(nidx);
    }
    free(sel_ep);
    for (int i = 0; i < ne; i++) {
        Episode* e = &eps[i];
        if (!e->active) continue;
        e->ctx.n = 0;
        if (stepwise && e->n_items > 0) {
            // the last message's copy with the items, for this turn only
            for (int k = 0; k < e->last_start; k++) tokenbuf_push(&e->ctx, e->r.ids[k]);
            char* text = inject_render_step(exp, e->items, e->n_items);
            ChatPart parts[2];
            const int np = inject_message_parts(e->last_text, chat_role_segment(e->last_role), text, parts);
            agent_render_message(a, e->last_role, parts, np, 0, 0, &e->ctx);
            free(text);
        } else {
            for (int k = 0; k < e->r.n; k++) tokenbuf_push(&e->ctx, e->r.ids[k]);
        }
        for (int k = 0; k < gp->n; k++) tokenbuf_push(&e->ctx, gp->ids[k]);
        if (e->ctx.n >= a->o.max_context) {
            finish(a, e, 0.0f, TRAJ_FLAG_TRUNCATED);
            continue;
        }
        int room = a->o.max_context - e->ctx.n;
        a->limit[e->slot] = room < a->o.max_new_tokens ? room : a->o.max_new_tokens;
    }
}

// one batched prefill: at the first turn, episodes of a task share the prompt of the first one
static void prefill(Agent* a, Episode* eps, int ne, int G) {
    int* slots = mallocCheck(sizeof(int) * (size_t)ne);
    const int** toks = mallocCheck(sizeof(int*) * (size_t)ne);
    int* lens = mallocCheck(sizeof(int) * (size_t)ne);
    int* leader = mallocCheck(sizeof(int) * (size_t)ne);
    int nf = 0;
    for (int i = 0; i < ne; i++) {
        Episode* e = &eps[i];
        leader[i] = -1;
        if (!e->active) continue;
        if (e->turns == 0) {
            for (int j = i - i % G; j < i; j++) {
                const Episode* l = &eps[j];
                if (l->active && leader[j] < 0 && l->ctx.n == e->ctx.n &&
                    memcmp(l->ctx.ids, e->ctx.ids, sizeof(int) * (size_t)e->ctx.n) == 0) {
                    leader[i] = j;
                    break;
                }
            }
            if (leader[i] >= 0) continue;
        }
        slots[nf] = e->slot;
        toks[nf] = e->ctx.ids;
        lens[nf++] = e->ctx.n;
    }
    long want = 0;
    for (int f = 0; f < nf; f++) want += lens[f];
    const int reused = nf > 0 ? decoder_assign(a->dec, nf, slots, toks, lens) : 0;
    a->st.prefill_tokens += want - reused;
    a->st.reused_tokens += reused;
    for (int i = 0; i < ne; i++) {
        if (leader[i] < 0) continue;
        decoder_copy(a->dec, eps[i].slot, eps[leader[i]].slot);
        a->st.reused_tokens += eps[i].ctx.n;
    }
    free(slots);
    free(toks);
    free(lens);
    free(leader);
}

int agent_run(Agent* a, Env* const* envs, const AgentTask* tasks, int n_tasks, int iteration, const ExpList* exp,
              Trajectory** out, char* err, size_t errlen) {
    const double t_start = agent_now();
    const int G = a->o.group_size, ne = n_tasks * G;
    if (ne > a->o.max_episodes)
        return fail(err, errlen, "agent: %d tasks x %d samples exceed max_episodes %d", n_tasks, G, a->o.max_episodes);
    a->first_fallback[0] = '\0';
    const long fallbacks0 = a->st.llm_fallbacks;
    const int has_exp = exp && exp->n > 0;
    const int stepwise = has_exp && a->o.injection == INJECTION_STEPWISE;
    ExpSelector* sel = stepwise ? selector_create(exp, &a->o.select) : NULL;
    char* exp_text = has_exp && !stepwise ? inject_render_global(exp) : NULL;
    TokenBuf gp = {0};
    agent_render_message(a, CHAT_ASSISTANT, NULL, -1, 0, 1, &gp);

    // fresh caches: an episode's feeds are then chunked the same way whatever ran before, so its
    // floats (not only its tokens) are reproducible
    for (int s = 0; s < decoder_max_batch(a->dec); s++) decoder_reset(a->dec, s);
    Episode* eps = callocCheck((size_t)(ne > 0 ? ne : 1), sizeof(Episode));
    int rc = 0;
    for (int i = 0; i < ne && rc == 0; i++) {
        eps[i].env = envs[i];
        eps[i].slot = i;
        eps[i].sample = i % G;
        rc = episode_start(a, &eps[i], &tasks[i / G], iteration, exp, exp_text, err, errlen);
    }
    int* slots = mallocCheck(sizeof(int) * (size_t)(ne + 1));
    Rng** rngs = mallocCheck(sizeof(Rng*) * (size_t)(ne + 1));
    int* which = mallocCheck(sizeof(int) * (size_t)(ne + 1));
    GenResult* gen = callocCheck((size_t)(ne + 1), sizeof(GenResult));
    while (rc == 0) {
        build_contexts(a, eps, ne, has_exp ? exp : NULL, sel, &gp);
        int na = 0, max_new = 0;
        for (int i = 0; i < ne; i++) {
            if (!eps[i].active) continue;
            slots[na] = eps[i].slot;
            rngs[na] = &eps[i].rng;
            which[na++] = i;
            if (a->limit[eps[i].slot] > max_new) max_new = a->limit[eps[i].slot];
        }
        if (na == 0) break;
        double t0 = agent_now();
        prefill(a, eps, ne, G);
        a->st.t_prefill += agent_now() - t0;
        if (a->tap)
            for (int k = 0; k < na; k++) {
                const Episode* e = &eps[which[k]];
                a->tap(a->tap_ctx, which[k], e->turns, decoder_tokens(a->dec, e->slot),
                       decoder_length(a->dec, e->slot));
            }
        t0 = agent_now();
        decoder_generate(a->dec, na, slots, &a->o.sampling, rngs, max_new, a->stop_ids, a->n_stop, stop_at_limit, a,
                         gen);
        a->st.t_generate += agent_now() - t0;
        for (int k = 0; k < na; k++) {
            if (rc == 0) rc = take_reply(a, &eps[which[k]], &gen[k], exp, err, errlen);
            gen_result_free(&gen[k]);
        }
    }
    free(slots);
    free(rngs);
    free(which);
    free(gen);
    if (a->st.llm_fallbacks > fallbacks0)
        log_warn("agent: %ld LLM-selector replies did not parse or fit, BM25 picked instead (first: %s)",
                 a->st.llm_fallbacks - fallbacks0, a->first_fallback);
    episodes_free(eps, ne, out, rc == 0);
    if (rc != 0)
        for (int i = 0; i < ne; i++) out[i] = NULL;
    selector_free(sel);
    free(exp_text);
    tokenbuf_free(&gp);
    a->st.t_total += agent_now() - t_start;
    return rc;
}
