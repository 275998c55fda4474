// The principle bank of the bootstrap (see bootstrap.h): the items its demonstrations may inject.
// At run time the pool holds what the contrastive miner finds in the model's own rollouts, so the
// bank runs that miner on scripted episodes shaped like an iteration's rollouts (16 tasks x 5
// samples, each episode's policy knowing each rule with some probability) and keeps its rules
// rendered as the extractor renders them, in each of its strategy forms. A mined rule "conveys"
// the environment rules whose knowledge makes the scripted policy take the mined action on the
// steps where the mined condition holds; rules that convey none (proper names, coincidences)
// become distractors, with the other environments' rule texts.
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "distill/bootstrap.h"
#include "distill/extract.h"
#include "distill/pool.h"
#include "distill/text.h"
#include "model/rng.h"
#include "rollout/bm25.h"
#include "rollout/inject.h"

#define BANK_TASKS 16       // tasks per mining batch (quickstart's rollout.tasks_per_iter)
#define BANK_SAMPLES 5      // samples per task (rollout.group_size)
#define BANK_WORLD_TASKS 64 // train tasks of a mining world
#define BANK_MAX_STEPS 16
#define BANK_MAX_RULES 8
#define BANK_MIN_STEPS 2    // steps a mined rule must explain to convey an environment rule

static const char* const builtin_envs[] = {"wikisearch", "textcraft", "retail", NULL};

// ----------------------------------------------------------------------------
// the bank

static int bank_find(const Bank* b, const char* text) {
    for (int i = 0; i < b->n; i++)
        if (strcmp(b->items[i].text, text) == 0) return i;
    return -1;
}

// adds an item unless its text is there already or breaks the pool's text rules
static void bank_add(Bank* b, const char* text, uint32_t rules, int source, const Rule* mined) {
    if (bank_find(b, text) >= 0) return;
    Pool* p = pool_create(pool_default_params());
    char *name, *body, err[256];
    int ok = pool_split_text(text, &name, &body, err, sizeof(err)) == 0;
    if (ok) {
        ok = pool_check_text(p, ITEM_PRINCIPLE, name, body, err, sizeof(err)) == 0;
        free(name);
        free(body);
    }
    pool_free(p);
    if (!ok) return;
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 32;
        b->items = reallocCheck(b->items, sizeof(BankItem) * (size_t)b->cap);
    }
    const int names_line = mined && mined->choice;
    b->items[b->n++] = (BankItem){.text = strdupCheck(text),
                                  .rules = rules,
                                  .source = source,
                                  .phrase = mined ? strdupCheck(mined->phrase) : NULL,
                                  .from_task = mined && mined->source == RULE_FROM_TASK,
                                  .tool = names_line ? strdupCheck(mined->tool) : NULL,
                                  .choice = names_line ? strdupCheck(mined->choice) : NULL};
}

void bank_free(Bank* b) {
    for (int i = 0; i < b->n; i++) {
        free(b->items[i].text);
        free(b->items[i].phrase);
        free(b->items[i].tool);
        free(b->items[i].choice);
    }
    free(b->items);
    memset(b, 0, sizeof(*b));
}

char* bank_rule_item(const EnvRule* r) {
    char* name = strdupCheck(r->id);
    for (char* c = name; *c; c++)
        if (*c == '_') *c = ' ';
    if (name[0] >= 'a' && name[0] <= 'z') name[0] = (char)(name[0] - 32);
    char* item = text_printf("%s: %s", name, r->principle);
    free(name);
    return item;
}

// ----------------------------------------------------------------------------
// scripted episodes as the extractors read them

// per step: the tool the policy takes knowing nothing (choice[0]) and knowing only rule r
// (choice[1 + r]), as indices into env->tools, and the line of the last tool result each takes
// (contrastive_choice; "" none)
typedef struct {
    int8_t choice[1 + BANK_MAX_RULES];
    char line[1 + BANK_MAX_RULES][CHOICE_MAX];
} StepChoices;

typedef struct {
    int n_eps;
    EpisodeText* eps;    // (n_eps)
    StepChoices** steps; // (n_eps) per episode, (n_steps)
} Batch;

static int tool_index(const Env* env, const char* tool) {
    for (int i = 0; i < env->ntools; i++)
        if (strcmp(env->tools[i].name, tool) == 0) return i;
    return -1;
}

// the arguments as the agent's tool-call parser returns them (compact JSON)
static char* compact_args(const char* args_json) {
    json_t* j = json_loads(args_json, 0, NULL);
    char* d = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    char* out = strdupCheck(d ? d : "{}");
    free(d);
    return out;
}

// the policy's tool knowing `known`, and the line of obs (the last tool result, or NULL) it takes
static int policy_tool(Env* env, uint32_t known, const char* obs, char line[CHOICE_MAX], EnvError* err) {
    EnvPolicyAction a;
    line[0] = '\0';
    if (env_policy(env, known, &a, err) != 0) return -1;
    if (obs) {
        char* args = compact_args(a.args_json);
        char* c = contrastive_choice(obs, args);
        if (c) snprintf(line, CHOICE_MAX, "%s", c);
        free(c);
        free(args);
    }
    return tool_index(env, a.tool);
}

// one episode of task `task` with the policy knowing `known`, and each step's line choices where
// `choices` (only choice rules read them); -1 with err when the env fails
static int run_scripted(Env* env, int task, uint32_t known, int sample, int choices, EpisodeText* e,
                        StepChoices** steps, EnvError* err) {
    EnvResult res = {0};
    if (env_reset(env, ENV_SPLIT_TRAIN, task, 0, &res, err) != 0) return -1;
    episode_init(e, task, sample, 0, res.observation);
    char* obs = strdupCheck(res.observation);
    env_result_free(&res);
    *steps = mallocCheck(sizeof(StepChoices) * BANK_MAX_STEPS);
    int is_task = 1, rc = 0;
    for (int s = 0; s < BANK_MAX_STEPS && rc == 0; s++) {
        StepChoices* c = &(*steps)[s];
        memset(c, -1, sizeof(*c));
        const char* lines = choices && !is_task ? obs : NULL; // the result a call takes: choice rules only
        for (int r = -1; r < env->nrules && r < BANK_MAX_RULES; r++)
            c->choice[1 + r] = (int8_t)policy_tool(env, r < 0 ? 0 : 1u << r, lines, c->line[1 + r], err);
        EnvPolicyAction a;
        if (env_policy(env, known, &a, err) != 0) {
            rc = -1;
            break;
        }
        char* args = compact_args(a.args_json);
        episode_add_step(e, obs, is_task, "", a.tool, args);
        free(args);
        EnvAction act = {a.tool, a.args_json};
        if (env_step(env, &act, &res, err) != 0) {
            rc = -1;
            break;
        }
        free(obs);
        obs = strdupCheck(res.observation);
        is_task = 0;
        int done = res.done;
        e->success = res.reward >= 1.0;
        env_result_free(&res);
        if (done) break;
    }
    free(obs);
    return rc;
}

static void batch_free(Batch* b) {
    for (int i = 0; i < b->n_eps; i++) {
        episode_free(&b->eps[i]);
        free(b->steps[i]);
    }
    free(b->eps);
    free(b->steps);
}

// ----------------------------------------------------------------------------
// what a mined rule conveys

int bank_item_applies(const BankItem* it, const char* obs, int obs_is_task) {
    if (!it->phrase) return 1;
    return exp_trigger_holds(it->from_task ? TRIGGER_TASK : TRIGGER_RESULT, it->phrase, obs_is_task ? obs : NULL,
                             obs_is_task ? NULL : obs);
}

// whether variant v of a step's choices is the rule's action (its tool, and its line if it names one)
static int takes(const StepChoices* c, int v, int tool, const Rule* r) {
    return c->choice[v] == tool && (!r->choice || strcmp(c->line[v], r->choice) == 0);
}

int bank_item_directs(const BankItem* it, const char* obs, const char* tool, const char* args_json) {
    if (!it->choice) return 1;
    if (strcmp(tool, it->tool) != 0) return 0;
    char* line = contrastive_choice(obs, args_json);
    const int same = line && strcmp(line, it->choice) == 0;
    free(line);
    return same;
}

// the environment rules that make the policy take the rule's action where its condition holds and
// the novice would not: those explaining at least BANK_MIN_STEPS steps and half as many as the best
static uint32_t conveyed_rules(const Env* env, const Batch* b, const Rule* r, int max_terms) {
    int tool = tool_index(env, r->tool);
    if (tool < 0) return 0;
    int count[BANK_MAX_RULES] = {0};
    for (int i = 0; i < b->n_eps; i++) {
        const EpisodeText* e = &b->eps[i];
        for (int s = 0; s < e->n_steps; s++) {
            const StepText* st = &e->steps[s];
            if ((r->source == RULE_FROM_TASK) != (st->obs_is_task != 0)) continue;
            const StepChoices* c = &b->steps[i][s];
            if (takes(c, 0, tool, r) || !bm25_phrase_in(st->observation, r->phrase, max_terms)) continue;
            for (int k = 0; k < env->nrules && k < BANK_MAX_RULES; k++) count[k] += takes(c, 1 + k, tool, r);
        }
    }
    int best = 0;
    for (int k = 0; k < env->nrules && k < BANK_MAX_RULES; k++)
        if (count[k] > best) best = count[k];
    uint32_t mask = 0;
    for (int k = 0; k < env->nrules && k < BANK_MAX_RULES; k++)
        if (best >= BANK_MIN_STEPS && 2 * count[k] >= best) mask |= 1u << k;
    return mask;
}

// every strategy form the extractor may write for a rule (with the argument, with a value taken
// from the observation, "next"), as items
static void add_rule_forms(Bank* bank, const Rule* r, uint32_t rules) {
    Rule v = *r;
    for (int form = 0; form < 3; form++) {
        if (form == 0 && !r->args) continue;
        v.args = form == 0 ? r->args : NULL;
        v.args_from_obs = form == 1;
        char *name, *text, *key;
        contrastive_render(&v, &name, &text, &key);
        char* item = text_printf("%s: %s", name, text);
        bank_add(bank, item, rules, rules ? BANK_MINED : BANK_FOREIGN, r);
        free(item);
        free(name);
        free(text);
        free(key);
    }
}

// ----------------------------------------------------------------------------
// building

int bank_build(Bank* bank, const char* env_name, uint64_t seed, double trap_rate, int batches, int choices, char* err,
               size_t errlen) {
    memset(bank, 0, sizeof(*bank));
    EnvOptions o = {.name = env_name, .train_tasks = BANK_WORLD_TASKS, .heldout_tasks = 1, .trap_rate = trap_rate};
    EnvError eerr = {{0}};
    // the environment's own rule texts
    o.seed = seed;
    Env* env = env_create(&o, &eerr);
    if (!env) return snprintf(err, errlen, "bootstrap: %s", eerr.msg), -1;
    if (env->nrules == 0 || !env->vt->policy) {
        snprintf(err, errlen, "bootstrap: environment '%s' has no hidden rules and no scripted policy to learn from",
                 env->name);
        env_destroy(env);
        return -1;
    }
    for (int r = 0; r < env->nrules; r++) {
        char* item = bank_rule_item(&env->rules[r]);
        bank_add(bank, item, 1u << r, BANK_RULE, NULL);
        free(item);
    }
    env_destroy(env);

    // mined rules, from batches of scripted episodes in worlds of their own
    ExtractParams prm = extract_default_params();
    prm.choices = choices;
    static const double rates[] = {0.15, 0.25, 0.35, 0.5};
    Rng rng;
    rng_seed_stream(&rng, seed, 0xBA4C);
    for (int k = 0; k < batches; k++) {
        o.seed = seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(k + 1));
        env = env_create(&o, &eerr);
        if (!env) return snprintf(err, errlen, "bootstrap: %s", eerr.msg), bank_free(bank), -1;
        const double rate = rates[k % 4];
        Batch b = {.n_eps = BANK_TASKS * BANK_SAMPLES};
        b.eps = callocCheck((size_t)b.n_eps, sizeof(EpisodeText));
        b.steps = callocCheck((size_t)b.n_eps, sizeof(StepChoices*));
        int rc = 0;
        for (int t = 0; t < BANK_TASKS && rc == 0; t++) {
            int task = (int)rng_below(&rng, BANK_WORLD_TASKS);
            for (int g = 0; g < BANK_SAMPLES && rc == 0; g++) {
                uint32_t known = 0;
                for (int r = 0; r < env->nrules; r++)
                    if (rng_uniform(&rng) < rate) known |= 1u << r;
                int i = t * BANK_SAMPLES + g;
                rc = run_scripted(env, task, known, g, choices, &b.eps[i], &b.steps[i], &eerr);
                b.eps[i].task_id = t; // distinct ids per draw, so a task drawn twice counts as two
            }
        }
        if (rc == 0) {
            Rule* rules;
            int m = contrastive_mine(b.eps, b.n_eps, &prm, &rules);
            for (int i = 0; i < m && i < prm.max_rules; i++)
                add_rule_forms(bank, &rules[i], conveyed_rules(env, &b, &rules[i], prm.max_obs_terms));
            contrastive_rules_free(rules, m);
            free(rules);
        }
        batch_free(&b);
        env_destroy(env);
        if (rc != 0) return snprintf(err, errlen, "bootstrap: %s", eerr.msg), bank_free(bank), -1;
    }

    // the other environments' rules: advice that never applies here
    for (int i = 0; builtin_envs[i]; i++) {
        if (strcmp(builtin_envs[i], env_name) == 0) continue;
        EnvOptions fo = {.name = builtin_envs[i], .seed = seed, .train_tasks = 1, .heldout_tasks = 1};
        Env* fenv = env_create(&fo, &eerr);
        if (!fenv) return snprintf(err, errlen, "bootstrap: %s", eerr.msg), bank_free(bank), -1;
        for (int r = 0; r < fenv->nrules; r++) {
            char* item = bank_rule_item(&fenv->rules[r]);
            bank_add(bank, item, 0, BANK_FOREIGN, NULL);
            free(item);
        }
        env_destroy(fenv);
    }
    return 0;
}

int bank_build_config(Bank* b, const Config* c, char* err, size_t errlen) {
    return bank_build(b, config_enum_name("env.name", c->env.name), (uint64_t)c->run.seed, c->env.trap_rate,
                      c->bootstrap.mine_batches, c->experience.mine_choices, err, errlen);
}
