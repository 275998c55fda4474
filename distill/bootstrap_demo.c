// The bootstrap's demonstrations (see bootstrap.h): scripted episodes rendered as the agent loop
// renders its contexts (rollout/agent.c: the system text, the task, tool calls as ChatML
// <tool_call> blocks, observations as tool messages), with experience injected where the agent
// injects it (rollout/inject.h). Every episode has a pool of bank items; the policy knows the
// rules the items shown convey, and each other rule with probability expert_rate.
//
//   student   no experience; one sequence, every turn supervised
//   global    the pool in the system prompt; one sequence, every turn supervised
//   stepwise  before every turn the BM25 selector picks items from the pool (as the agent does);
//             one sequence per turn whose action the shown items changed, and one for a random
//             turn they did not change: the stored history up to that turn, the items at the
//             start of a copy of its last message, the turn supervised; earlier turns, which ran
//             with items of their own that the sequence no longer shows, are supervised only where
//             the items did not change the action
//
// Episodes with experience are mostly played on tasks a rule bites, with an item for each biting
// rule in the pool, and the windows of the turns the items changed come DEMO_FOLLOW_REPEAT times:
// without both, few turns show an item changing the action (docs/BOOTSTRAP.md). With
// bootstrap.contrast, each window whose turn the items changed also comes without them, ending in
// the call the policy makes unshown, and the pool holds an item whose condition holds where each
// biting rule decides the expert's action.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "distill/bootstrap.h"
#include "distill/text.h"
#include "model/chat.h"
#include "model/rng.h"
#include "rollout/agent_impl.h"
#include "rollout/inject.h"

#define DEMO_MIN_POOL 1
#define DEMO_FOCUS 0.85 // experience episodes drawn from the tasks a rule bites
#define DEMO_FOLLOW_REPEAT 3 // copies of each window whose action the shown items changed

// ----------------------------------------------------------------------------
// parameters

DemoParams demo_params_from_config(const Config* c) {
    DemoParams p = {0};
    p.episodes = c->bootstrap.episodes;
    p.worlds = c->bootstrap.worlds;
    p.expert_rate = c->bootstrap.expert_rate;
    p.share_global = c->bootstrap.share_global;
    p.share_stepwise = c->bootstrap.share_stepwise;
    p.select_min = c->experience.select_min;
    p.select_max = c->experience.select_max;
    p.select_triggers = c->experience.select_triggers;
    p.contrast = c->bootstrap.contrast;
    p.max_pool = c->bootstrap.max_pool;
    p.max_turns = c->env.max_turns;
    p.max_context = c->rollout.max_context;
    p.train_tasks = c->env.train_tasks;
    p.trap_rate = c->env.trap_rate;
    p.seed = (uint64_t)c->run.seed;
    return p;
}

// the world seed of world w: the run's own for w = 0
static uint64_t demo_world_seed(uint64_t seed, int w) { return w == 0 ? seed : seed ^ (0xD1B54A32D192ED03ull * (uint64_t)w); }

char* demo_render_experience(char* const* texts, const int* idx, int n, int global) {
    ExpList l = {.n = 0};
    exp_list_init(&l);
    for (int i = 0; i < n; i++) exp_list_add(&l, i + 1, texts[idx ? idx[i] : i]);
    char* s = global ? inject_render_global(&l) : inject_render_step(&l, NULL, n);
    exp_list_free(&l);
    return s;
}

// ----------------------------------------------------------------------------
// one scripted episode as messages

typedef struct {
    ChatRole role;
    char* text;      // user / tool: the message
    char tool[32];   // assistant: the call
    char* args;
    int changed;     // assistant: the items shown changed the action
    char tool0[32];  // assistant, changed: the call the policy makes without the items shown
    char* args0;
    char* exp;       // assistant (step-wise): the items shown before this turn, rendered; NULL: none
    uint32_t shown;  // assistant: rules the items shown at this turn convey
    int rule;        // assistant: the rule whose knowledge decided the action, or -1
} Msg;

typedef struct {
    int n, cap;
    Msg* m;
} Msgs;

static Msg* msgs_push(Msgs* ms, ChatRole role) {
    if (ms->n == ms->cap) {
        ms->cap = ms->cap ? 2 * ms->cap : 32;
        ms->m = reallocCheck(ms->m, sizeof(Msg) * (size_t)ms->cap);
    }
    Msg* m = &ms->m[ms->n++];
    memset(m, 0, sizeof(*m));
    m->role = role;
    return m;
}

static void msgs_free(Msgs* ms) {
    for (int i = 0; i < ms->n; i++) {
        free(ms->m[i].text);
        free(ms->m[i].args);
        free(ms->m[i].args0);
        free(ms->m[i].exp);
    }
    free(ms->m);
    memset(ms, 0, sizeof(*ms));
}

static void append_or_die(ChatRender* r, const ChatMessage* m) {
    char err[256];
    if (chat_append(r, m, err, sizeof(err)) != 0) fatal("bootstrap: rendering a demonstration: %s", err);
}

// appends message m to r (no experience); an assistant turn as played, or with the call the
// policy makes without the items shown (counterfactual)
static void render_msg(ChatRender* r, const Msg* m, int counterfactual) {
    if (m->role == CHAT_ASSISTANT) {
        const ChatToolCall call = {counterfactual ? m->tool0 : m->tool, counterfactual ? m->args0 : m->args};
        const ChatMessage cm = {.role = CHAT_ASSISTANT, .tool_calls = &call, .n_tool_calls = 1};
        append_or_die(r, &cm);
    } else {
        const ChatPart p = {m->text, chat_role_segment(m->role)};
        const ChatMessage cm = {.role = m->role, .parts = &p, .n_parts = 1};
        append_or_die(r, &cm);
    }
}

typedef struct {
    Env* env;
    Agent* agent;
    const char* system;         // the agent's system text for env
    char* const* pool;          // (n_pool) item texts
    const BankItem* const* items; // (n_pool) the bank items behind them
    int n_pool;
    ExpSelector* sel;           // step-wise: BM25 over the pool; NULL otherwise
    uint32_t hidden;            // rules known without being shown
    int global;                 // the whole pool is shown at every turn
    int max_turns;
} EpisodeSpec;

static int policy_or_fail(Env* env, uint32_t known, EnvPolicyAction* a, char* err, size_t errlen) {
    EnvError e = {{0}};
    if (env_policy(env, known, a, &e) == 0) return 0;
    snprintf(err, errlen, "bootstrap: %s", e.msg);
    return -1;
}

// Drops from idx[0..*k) the items that name a result (experience.mine_choices) where the policy,
// knowing what the item conveys, would not take that result: a choice rule conveys pick_kind as a
// whole, and shown where the kind needed is another one ("visit on the result marked "company""
// where the person is needed) it would go with a turn that does otherwise.
static int directed_only(const EpisodeSpec* s, const Msg* last, int* idx, int* k, char* err, size_t errlen) {
    int kept = 0;
    for (int i = 0; i < *k; i++) {
        const BankItem* it = s->items[idx[i]];
        if (it->choice && bank_item_applies(it, last->text, last->role == CHAT_USER)) {
            EnvPolicyAction a;
            if (policy_or_fail(s->env, s->hidden | it->rules, &a, err, errlen) != 0) return -1;
            if (!bank_item_directs(it, last->text, a.tool, a.args_json)) continue;
        }
        idx[kept++] = idx[i];
    }
    *k = kept;
    return 0;
}

// Plays task `task` with the scripted policy: the stored history in ms (system text excluded).
static int play(const EpisodeSpec* s, int task, Msgs* ms, char* err, size_t errlen) {
    EnvResult res = {0};
    EnvError e = {{0}};
    if (env_reset(s->env, ENV_SPLIT_TRAIN, task, 0, &res, &e) != 0) return snprintf(err, errlen, "bootstrap: %s", e.msg), -1;
    char msg[256];
    ChatRender hist; // the stored history, for the step-wise query
    if (chat_init(&hist, s->agent->tok, CHAT_CHATML, msg, sizeof(msg)) != 0) fatal("bootstrap: %s", msg);
    const ChatPart sp = {s->system, SEG_SYSTEM};
    const ChatMessage sm = {.role = CHAT_SYSTEM, .parts = &sp, .n_parts = 1};
    append_or_die(&hist, &sm);
    Msg* u = msgs_push(ms, CHAT_USER);
    u->text = strdupCheck(res.observation);
    render_msg(&hist, u, 0);
    env_result_free(&res);
    int* idx = mallocCheck(sizeof(int) * (size_t)(s->n_pool + 1));
    int rc = 0;
    for (int turn = 0; turn < s->max_turns && rc == 0; turn++) {
        // the items shown now, and the rules of those whose condition holds for the last message
        int k = 0;
        char* exp = NULL;
        const Msg* last = &ms->m[ms->n - 1];
        if (s->sel) {
            k = agent_select_bm25(s->agent, s->sel, hist.ids, hist.seg, hist.n, idx);
            if (directed_only(s, last, idx, &k, err, errlen) != 0) {
                rc = -1;
                break;
            }
            exp = k > 0 ? demo_render_experience(s->pool, idx, k, 0) : NULL; // as the agent: none shown, none rendered
        } else if (s->global) {
            for (k = 0; k < s->n_pool; k++) idx[k] = k;
        }
        uint32_t shown = 0;
        for (int i = 0; i < k; i++)
            if (bank_item_applies(s->items[idx[i]], last->text, last->role == CHAT_USER)) shown |= s->items[idx[i]]->rules;
        EnvPolicyAction a, a0;
        if (policy_or_fail(s->env, s->hidden | shown, &a, err, errlen) != 0 ||
            policy_or_fail(s->env, s->hidden, &a0, err, errlen) != 0) {
            free(exp);
            rc = -1;
            break;
        }
        Msg* m = msgs_push(ms, CHAT_ASSISTANT);
        snprintf(m->tool, sizeof(m->tool), "%s", a.tool);
        m->args = strdupCheck(a.args_json);
        m->changed = strcmp(a.tool, a0.tool) != 0 || strcmp(a.args_json, a0.args_json) != 0;
        if (m->changed) {
            snprintf(m->tool0, sizeof(m->tool0), "%s", a0.tool);
            m->args0 = strdupCheck(a0.args_json);
        }
        m->exp = exp;
        m->shown = shown;
        m->rule = a.rule;
        render_msg(&hist, m, 0);
        const EnvAction act = {a.tool, a.args_json};
        if (env_step(s->env, &act, &res, &e) != 0) {
            snprintf(err, errlen, "bootstrap: %s", e.msg);
            rc = -1;
            break;
        }
        int done = res.done;
        if (!done) {
            Msg* t = msgs_push(ms, CHAT_TOOL);
            t->text = strdupCheck(res.observation);
            render_msg(&hist, t, 0);
        }
        env_result_free(&res);
        if (done) break;
    }
    free(idx);
    chat_free(&hist);
    return rc;
}

// ----------------------------------------------------------------------------
// sequences

static Demo* demo_push(DemoSet* set) {
    if (set->n == set->cap) {
        set->cap = set->cap ? 2 * set->cap : 256;
        set->d = reallocCheck(set->d, sizeof(Demo) * (size_t)set->cap);
    }
    Demo* d = &set->d[set->n++];
    memset(d, 0, sizeof(*d));
    return d;
}

// Renders the system message (with global experience text gexp; none for a window) and the
// messages ms[0] (the task) and ms[from..upto] (from <= 1: all of them); step-wise experience from
// ms[exp_at].exp goes on a copy of the message before ms[exp_at] (exp_at < 0: none).
typedef struct {
    const char* system; // NULL: a window, without the system message
    const char* gexp;
    const Msgs* ms;
    int from, upto, exp_at;
    int counterfactual; // the last turn as the policy plays it without the items shown
    int mode; // supervision: DEMO_STUDENT / DEMO_GLOBAL all turns; DEMO_STEPWISE as described on top;
              // a window only its last turn
} SeqSpec;

static void render_seq(const SeqSpec* q, const Tokenizer* tok, int max_context, Demo* d) {
    char msg[256];
    ChatRender r;
    if (chat_init(&r, tok, CHAT_CHATML, msg, sizeof(msg)) != 0) fatal("bootstrap: %s", msg);
    if (q->system) {
        ChatPart sp[2];
        const ChatMessage sm = {.role = CHAT_SYSTEM, .parts = sp,
                                .n_parts = inject_message_parts(q->system, SEG_SYSTEM, q->gexp, sp)};
        append_or_die(&r, &sm);
    }
    int cap = 2 * r.n + 256;
    uint8_t* target = callocCheck((size_t)cap, 1);
    for (int i = 0; i <= q->upto; i++) {
        if (i > 0 && i < q->from) continue;
        const Msg* m = &q->ms->m[i];
        int n0 = r.n;
        if (i + 1 == q->exp_at) { // the last message before the turn, with the turn's items
            ChatPart parts[2];
            const ChatMessage cm = {.role = m->role, .parts = parts,
                                    .n_parts = inject_message_parts(m->text, chat_role_segment(m->role),
                                                                    q->ms->m[q->exp_at].exp, parts)};
            append_or_die(&r, &cm);
        } else {
            render_msg(&r, m, q->counterfactual && i == q->upto);
        }
        int sup = m->role == CHAT_ASSISTANT &&
                  (q->system ? q->mode != DEMO_STEPWISE || i == q->exp_at || !m->changed : i == q->upto);
        if (r.n > cap) {
            cap = 2 * r.n;
            target = reallocCheck(target, (size_t)cap);
        }
        for (int t = n0; t < r.n; t++) target[t] = (uint8_t)(sup && r.agent[t]);
        if (m->role == CHAT_ASSISTANT) {
            d->n_turns++;
            d->n_followed += sup && m->changed && !q->counterfactual;
            d->shown |= (q->mode == DEMO_GLOBAL || i == q->exp_at) ? m->shown : 0;
        }
    }
    d->n = r.n < max_context ? r.n : max_context;
    d->ids = mallocCheck(sizeof(int) * (size_t)d->n);
    d->seg = mallocCheck((size_t)d->n);
    d->target = mallocCheck((size_t)d->n);
    memcpy(d->ids, r.ids, sizeof(int) * (size_t)d->n);
    memcpy(d->seg, r.seg, (size_t)d->n);
    memcpy(d->target, target, (size_t)d->n);
    free(target);
    chat_free(&r);
}

// renders one sequence into the set; a sequence cut by the context cap before any target is dropped
static void emit(DemoSet* set, const SeqSpec* q, const Tokenizer* tok, int max_context, int mode, int task, int world) {
    Demo* d = demo_push(set);
    render_seq(q, tok, max_context, d);
    d->mode = mode, d->task = task, d->world = world, d->window = q->system == NULL;
    d->has_exp = q->gexp != NULL || (q->exp_at >= 0 && q->ms->m[q->exp_at].exp != NULL);
    int targets = 0;
    for (int t = 0; t < d->n; t++) targets += d->target[t];
    if (targets > 0) return;
    free(d->ids), free(d->seg), free(d->target);
    set->n--;
}

// ----------------------------------------------------------------------------
// the set

void demos_free(DemoSet* set) {
    for (int i = 0; i < set->n; i++) {
        free(set->d[i].ids);
        free(set->d[i].seg);
        free(set->d[i].target);
    }
    free(set->d);
    memset(set, 0, sizeof(*set));
}

static int picked(const int* pick, int n, int i) {
    for (int j = 0; j < n; j++)
        if (pick[j] == i) return 1;
    return 0;
}

// 1 when one of the bank items pick[0..n) conveys rule r and its condition holds for (obs, is_task)
// (obs NULL: anywhere)
static int pool_conveys(const Bank* bank, const int* pick, int n, int r, const char* obs, int is_task) {
    for (int j = 0; j < n; j++) {
        const BankItem* it = &bank->items[pick[j]];
        if ((it->rules >> r & 1u) && (!obs || bank_item_applies(it, obs, is_task))) return 1;
    }
    return 0;
}

// a bank item conveying rule r, at random among those whose condition holds for (obs, is_task),
// not yet in pick[0..n); -1 if none
static int draw_item(const Bank* bank, int r, const char* obs, int is_task, const int* pick, int n, Rng* rng) {
    int count = 0, chosen = -1;
    for (int i = 0; i < bank->n; i++) {
        const BankItem* it = &bank->items[i];
        if (!(it->rules >> r & 1u) || !bank_item_applies(it, obs, is_task)) continue;
        if (!picked(pick, n, i) && rng_below(rng, (uint64_t)++count) == 0) chosen = i; // reservoir sampling
    }
    return chosen;
}

// draws an episode's pool: for each turn of `expert` (the task played knowing every rule, with
// bootstrap.contrast; else NULL) whose action a rule the task bites (`need`) decides, an item
// conveying it whose condition holds at the message before, unless one already does (so that
// triggered items show up where the rule bites: a mayor's city page as well as a citizen's page);
// an item for each biting rule (with `expert`: each still without one); then up to 1..3 items that convey rules, then
// distractors, up to max_pool, shuffled
static int draw_pool(const Bank* bank, int max_pool, uint32_t need, const Msgs* expert, Rng* rng, int* pick) {
    int n_rel = 0, n_dis = 0;
    for (int i = 0; i < bank->n; i++) {
        n_rel += bank->items[i].rules != 0;
        n_dis += bank->items[i].rules == 0;
    }
    int n = 0;
    for (int t = 1; expert && t < expert->n && n < max_pool; t++) {
        const Msg *m = &expert->m[t], *before = &expert->m[t - 1];
        if (m->role != CHAT_ASSISTANT || m->rule < 0 || !(need >> m->rule & 1u)) continue;
        const int is_task = before->role == CHAT_USER;
        if (pool_conveys(bank, pick, n, m->rule, before->text, is_task)) continue;
        const int i = draw_item(bank, m->rule, before->text, is_task, pick, n, rng);
        if (i >= 0) pick[n++] = i;
    }
    for (int r = 0; r < 32 && n < max_pool; r++) {
        if (!(need >> r & 1u)) continue;
        int count = 0;
        for (int i = 0; i < bank->n; i++) count += bank->items[i].rules >> r & 1u;
        if (count == 0 || (expert && pool_conveys(bank, pick, n, r, NULL, 0))) continue;
        int k = (int)rng_below(rng, (uint64_t)count), i = 0;
        for (;; i++)
            if ((bank->items[i].rules >> r & 1u) && k-- == 0) break;
        if (!picked(pick, n, i)) pick[n++] = i;
    }
    int want_rel = 1 + (int)rng_below(rng, 3), want = DEMO_MIN_POOL + (int)rng_below(rng, (uint64_t)max_pool);
    if (want_rel < n) want_rel = n;
    if (want_rel > n_rel) want_rel = n_rel;
    if (want < want_rel) want = want_rel;
    if (want > want_rel + n_dis) want = want_rel + n_dis;
    while (n < want) { // rejection sampling over a bank of tens of items
        int i = (int)rng_below(rng, (uint64_t)bank->n);
        int rel = bank->items[i].rules != 0;
        if ((rel && n_rel == 0) || (n < want_rel) != rel) continue;
        if (!picked(pick, n, i)) pick[n++] = i;
    }
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(rng, (uint64_t)(i + 1)), t = pick[i];
        pick[i] = pick[j];
        pick[j] = t;
    }
    return n;
}

int demos_build(DemoSet* set, DemoSet* windows, const char* env_name, const Bank* bank, Agent* agent,
                const DemoParams* p, char* err, size_t errlen) {
    memset(set, 0, sizeof(*set));
    if (windows) memset(windows, 0, sizeof(*windows));
    const Tokenizer* tok = agent->tok;
    int worlds = p->worlds > 0 ? p->worlds : 1;
    if (worlds > p->episodes) worlds = p->episodes > 0 ? p->episodes : 1; // a world per episode at most
    Env** envs = callocCheck((size_t)worlds, sizeof(Env*));
    char** system = callocCheck((size_t)worlds, sizeof(char*));
    int rc = 0;
    for (int w = 0; w < worlds && rc == 0; w++) {
        EnvOptions o = {.name = env_name, .seed = demo_world_seed(p->seed, w), .train_tasks = p->train_tasks,
                        .heldout_tasks = 1, .trap_rate = p->trap_rate};
        EnvError e = {{0}};
        envs[w] = env_create(&o, &e);
        if (!envs[w]) rc = -1, snprintf(err, errlen, "bootstrap: %s", e.msg);
        else system[w] = agent_system_text(agent, envs[w]);
    }
    Rng rng;
    rng_seed_stream(&rng, p->seed, 0xDE40);
    int* pick = mallocCheck(sizeof(int) * (size_t)(p->max_pool + 1));
    char** texts = mallocCheck(sizeof(char*) * (size_t)(p->max_pool + 1));
    const BankItem** items = mallocCheck(sizeof(BankItem*) * (size_t)(p->max_pool + 1));
    for (int ep = 0; ep < p->episodes && rc == 0; ep++) {
        const int w = ep % worlds;
        Env* env = envs[w];
        const int n_tasks = env_num_tasks(env, ENV_SPLIT_TRAIN);
        int task = (int)rng_below(&rng, (uint64_t)n_tasks);
        double u = rng_uniform(&rng);
        const int mode = u < p->share_global ? DEMO_GLOBAL : u < p->share_global + p->share_stepwise ? DEMO_STEPWISE
                                                                                                      : DEMO_STUDENT;
        // experience episodes mostly on tasks a rule bites, so that the items change actions
        if (mode != DEMO_STUDENT && rng_uniform(&rng) < DEMO_FOCUS)
            for (int tries = 0; tries < 64 && env_task_rules(env, ENV_SPLIT_TRAIN, task) == 0; tries++)
                task = (int)rng_below(&rng, (uint64_t)n_tasks);
        EpisodeSpec s = {.env = env, .agent = agent, .system = system[w], .max_turns = p->max_turns};
        for (int r = 0; r < env->nrules; r++)
            if (rng_uniform(&rng) < p->expert_rate) s.hidden |= 1u << r;
        ExpList list;
        exp_list_init(&list);
        if (mode != DEMO_STUDENT) {
            Msgs expert = {0};
            if (p->contrast) {
                EpisodeSpec es = {.env = env, .agent = agent, .system = system[w], .hidden = ENV_RULES_ALL,
                                  .max_turns = p->max_turns};
                rc = play(&es, task, &expert, err, errlen);
            }
            s.n_pool = draw_pool(bank, p->max_pool, env_task_rules(env, ENV_SPLIT_TRAIN, task),
                                 p->contrast ? &expert : NULL, &rng, pick);
            msgs_free(&expert);
            for (int i = 0; i < s.n_pool; i++) {
                items[i] = &bank->items[pick[i]];
                texts[i] = items[i]->text;
                exp_list_add(&list, i + 1, texts[i]);
            }
            s.pool = texts;
            s.items = items;
            s.global = mode == DEMO_GLOBAL;
        }
        SelectParams sp = {p->select_min, p->select_max, INJECT_CUT_DEFAULT, p->select_triggers};
        if (mode == DEMO_STEPWISE) s.sel = selector_create(&list, &sp);
        Msgs ms = {0};
        if (rc == 0) rc = play(&s, task, &ms, err, errlen);
        if (rc == 0) {
            char* gexp = mode == DEMO_GLOBAL ? demo_render_experience(texts, NULL, s.n_pool, 1) : NULL;
            SeqSpec q = {.system = system[w], .gexp = gexp, .ms = &ms, .from = 0, .upto = ms.n - 1, .exp_at = -1,
                         .mode = mode};
            if (mode != DEMO_STEPWISE) {
                emit(set, &q, tok, p->max_context, mode, task, w);
            } else {
                int n_changed = 0, n_turns = 0;
                for (int i = 0; i < ms.n; i++) {
                    n_changed += ms.m[i].role == CHAT_ASSISTANT && ms.m[i].changed;
                    n_turns += ms.m[i].role == CHAT_ASSISTANT;
                }
                // and one random turn that the items did not change: they must not change it
                int pick_turn = -1;
                if (n_turns > n_changed) {
                    int k = (int)rng_below(&rng, (uint64_t)(n_turns - n_changed));
                    for (int i = 0, turn = 0; i < ms.n && pick_turn < 0; i++) {
                        if (ms.m[i].role != CHAT_ASSISTANT) continue;
                        if (!ms.m[i].changed && k-- == 0) pick_turn = turn;
                        turn++;
                    }
                }
                for (int i = 0, turn = 0; i < ms.n; i++) {
                    if (ms.m[i].role != CHAT_ASSISTANT) continue;
                    if (ms.m[i].changed || turn == pick_turn) {
                        q.upto = q.exp_at = i;
                        emit(set, &q, tok, p->max_context, mode, task, w);
                    }
                    turn++;
                }
            }
            free(gexp);
            // windows: the task, the previous call and its result, and one turn: without experience
            // for every turn the items did not change, and with bootstrap.contrast also for those
            // they changed, with the call the policy makes unshown (windows of only the unchanged
            // turns over-represent the rules known anyway); for step-wise turns also with the items
            // they were shown (the agent shows items before every turn)
            for (int i = 0; windows && i < ms.n; i++) {
                const Msg* m = &ms.m[i];
                if (m->role != CHAT_ASSISTANT) continue;
                SeqSpec wq = {.system = NULL, .ms = &ms, .from = i - 2, .upto = i, .exp_at = -1,
                              .counterfactual = m->changed, .mode = mode};
                if (p->contrast || !m->changed) emit(windows, &wq, tok, p->max_context, mode, task, w);
                wq.counterfactual = 0;
                wq.exp_at = i;
                for (int k = 0; m->exp && k < (m->changed ? DEMO_FOLLOW_REPEAT : 1); k++)
                    emit(windows, &wq, tok, p->max_context, mode, task, w);
            }
        }
        msgs_free(&ms);
        selector_free(s.sel);
        exp_list_free(&list);
    }
    free(pick);
    free(texts);
    free(items);
    for (int w = 0; w < worlds; w++) {
        if (envs[w]) env_destroy(envs[w]);
        free(system[w]);
    }
    free(envs);
    free(system);
    if (rc != 0) {
        demos_free(set);
        if (windows) demos_free(windows);
    }
    return rc;
}
