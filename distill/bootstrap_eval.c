// Evaluation of a bootstrapped model with the real agent loop (rollout/agent.h), greedy, on the
// held-out tasks of the run's world: success without experience (the student), with the
// environment's rule texts in context, and with the pool that iteration 0 would build: the
// contrastive miner run on the model's own student rollouts of the first training batch
// (rollout.tasks_per_iter tasks x rollout.group_size samples at rollout.temperature).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "distill/bootstrap.h"
#include "distill/episode.h"
#include "distill/extract.h"
#include "distill/pool.h"
#include "model/chat.h"
#include "model/timer.h"
#include "rollout/agent.h"
#include "rollout/inject.h"

// ----------------------------------------------------------------------------
// adapters for episode_from_trajectory

static size_t decode_fn(void* ctx, const int32_t* ids, int n, char* out, size_t cap) {
    return tokenizer_decode((const Tokenizer*)ctx, ids, n, out, cap);
}

static int parse_fn(void* ctx, const char* text, char* tool, size_t tool_cap, char* args, size_t args_cap) {
    (void)ctx;
    char *name, *a, err[256];
    if (chat_parse_tool_call(text, &name, &a, err, sizeof(err)) != 1) return -1;
    snprintf(tool, tool_cap, "%s", name);
    snprintf(args, args_cap, "%s", a);
    free(name);
    free(a);
    return 0;
}

// ----------------------------------------------------------------------------
// one batch of episodes

typedef struct {
    int episodes, successes, turns, parsed;
    int bite_n[BOOTSTRAP_EVAL_RULES + 1], bite_ok[BOOTSTRAP_EVAL_RULES + 1]; // as BootstrapEval's
} RunStats;

// episodes of tasks[0..n) x group size, through the agent; their records in out (NULL: freed)
static int run_batch(Agent* a, int G, Env** envs, const AgentTask* tasks, int n, const ExpList* exp, const Tokenizer* tok,
                     double threshold, RunStats* st, Trajectory** keep, char* err, size_t errlen) {
    const int ne = n * G;
    Trajectory** out = callocCheck((size_t)ne, sizeof(Trajectory*));
    if (agent_run(a, envs, tasks, n, 0, exp, out, err, errlen) != 0) {
        free(out);
        return -1;
    }
    memset(st, 0, sizeof(*st));
    for (int i = 0; i < ne; i++) {
        const Trajectory* t = out[i];
        st->episodes++;
        st->successes += t->final_reward >= threshold;
        const uint32_t bites = env_task_rules(envs[i], tasks[i / G].split, tasks[i / G].task);
        for (int r = 0; r <= BOOTSTRAP_EVAL_RULES; r++) {
            if (r < BOOTSTRAP_EVAL_RULES ? !(bites >> r & 1u) : bites != 0) continue;
            st->bite_n[r]++;
            st->bite_ok[r] += t->final_reward >= threshold;
        }
        for (int s = 0; s < t->n_steps; s++) {
            int from = t->step_start[s], to = from;
            while (to < t->n_tokens && t->agent_mask[to]) to++;
            char* text = tokenizer_decode_alloc(tok, t->tokens + from, to - from, NULL);
            char tool[64], args[1024];
            st->turns++;
            st->parsed += parse_fn(NULL, text, tool, sizeof(tool), args, sizeof(args)) == 0;
            free(text);
        }
        log_debug("bootstrap: evaluation task %d (rules it bites 0x%x): reward %.1f in %d turns", tasks[i / G].task,
                  bites, t->final_reward, t->n_steps);
        if (i < 4 && log_level() == LOG_DEBUG) { // a few whole episodes, to see what the model does
            char* all = tokenizer_decode_alloc(tok, t->tokens, t->n_tokens, NULL);
            log_debug("bootstrap: evaluation episode %d (reward %.1f):\n%s", i, t->final_reward, all);
            free(all);
        }
        if (keep) keep[i] = out[i];
        else traj_free(out[i]);
    }
    free(out);
    return 0;
}

static Agent* eval_agent(Model* m, const Tokenizer* tok, const Config* c, int G, int max_episodes, float temperature,
                         char* err, size_t errlen) {
    AgentOptions o;
    agent_options_from_config(c, &o);
    o.group_size = G;
    o.max_episodes = max_episodes;
    o.sampling.temperature = temperature;
    o.sampling.record_topk = 0;
    char msg[512];
    Agent* a = agent_create(m, tok, &o, msg, sizeof(msg));
    if (!a) snprintf(err, errlen, "bootstrap: evaluation: %s", msg);
    return a;
}

// ----------------------------------------------------------------------------
// teacher-forced windows

#define WINDOWS_PER_KIND 400 // windows scored per set and kind at most
#define FRESH_SEED 0x5EED    // the fresh windows' seed offset: worlds the bootstrap never saw

// supervised tokens of d up to the end of the call's tool name (the quote after `"name": "X`):
// the decision part of the turn; all of them (*n_sup) when the text has no such name
static int decision_tokens(const Demo* d, const Tokenizer* tok, int* n_sup_out) {
    int n_sup = 0;
    for (int t = 0; t < d->n; t++) n_sup += d->target[t] != 0;
    *n_sup_out = n_sup;
    int* sup = mallocCheck(sizeof(int) * (size_t)(n_sup + 1));
    for (int t = 0, k = 0; t < d->n; t++)
        if (d->target[t]) sup[k++] = d->ids[t];
    int want = n_sup;
    char* all = tokenizer_decode_alloc(tok, sup, n_sup, NULL);
    const char* key = strstr(all, "\"name\": \"");
    const char* end = key ? strchr(key + 9, '"') : NULL;
    if (end) { // the fewest tokens whose text reaches past the closing quote
        const size_t need = (size_t)(end - all) + 1;
        for (int k = 1; k <= n_sup; k++) {
            char* pre = tokenizer_decode_alloc(tok, sup, k, NULL);
            const size_t len = strlen(pre);
            free(pre);
            if (len >= need) {
                want = k;
                break;
            }
        }
    }
    free(all);
    free(sup);
    return want;
}

// the number of leading supervised tokens of d where the model's argmax is the target
static int window_correct_prefix(Model* m, const Demo* d, float* logits, int V) {
    model_forward(m, d->ids, &d->n, 1, d->n, logits);
    int k = 0;
    for (int t = 1; t < d->n; t++) {
        if (!d->target[t]) continue;
        const float* row = logits + (size_t)(t - 1) * (size_t)V;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (row[v] > row[best]) best = v;
        if (best != d->ids[t]) break;
        k++;
    }
    return k;
}

static int windows_accuracy(Model* m, Agent* a, const Tokenizer* tok, const Config* c, BootstrapEval* ev, char* err,
                            size_t errlen) {
    const char* env_name = config_enum_name("env.name", c->env.name);
    Bank bank;
    if (bank_build_config(&bank, c, err, errlen) != 0) return -1;
    const ModelConfig* mc = model_config(m);
    const int V = mc->vocab_size, T = c->rollout.max_context < mc->max_seq_len ? c->rollout.max_context : mc->max_seq_len;
    float* logits = mallocCheck(sizeof(float) * (size_t)T * (size_t)V);
    int rc = 0;
    for (int set = 0; set < 2 && rc == 0; set++) {
        DemoParams p = demo_params_from_config(c);
        if (set == 1) { // fewer episodes: only WINDOWS_PER_KIND windows of each kind are scored
            p.seed += FRESH_SEED;
            p.episodes = p.episodes < 300 ? p.episodes : 300;
        }
        DemoSet seqs, win;
        if ((rc = demos_build(&seqs, &win, env_name, &bank, a, &p, err, errlen)) != 0) break;
        for (int i = 0; i < win.n; i++) {
            const Demo* d = &win.d[i];
            const int kind = d->n_followed > 0 ? 0 : d->has_exp ? 1 : 2;
            if (d->n > T || ev->win_n[set][kind] >= WINDOWS_PER_KIND) continue;
            int n_sup;
            const int decision = decision_tokens(d, tok, &n_sup);
            const int ok = window_correct_prefix(m, d, logits, V);
            ev->win_n[set][kind]++;
            ev->win_exact[set][kind] += ok == n_sup;
            ev->win_tool[set][kind] += ok >= decision;
            for (int r = 0; kind == 0 && r < ev->n_rules; r++) {
                if (!(d->shown >> r & 1u)) continue;
                ev->rule_n[set][r]++;
                ev->rule_tool[set][r] += ok >= decision;
                ev->rule_exact[set][r] += ok == n_sup;
            }
        }
        demos_free(&seqs);
        demos_free(&win);
    }
    free(logits);
    bank_free(&bank);
    return rc;
}

// ----------------------------------------------------------------------------
// the evaluation

int bootstrap_evaluate(Model* m, const Tokenizer* tok, const Config* c, int tasks, BootstrapEval* ev, char* err,
                       size_t errlen) {
    memset(ev, 0, sizeof(*ev));
    const double t0 = timer_now();
    const int nb = c->rollout.tasks_per_iter, G = c->rollout.group_size;
    const int n_envs = tasks > nb * G ? tasks : nb * G;
    const double thr = c->distill.reward_threshold;
    EnvOptions eo = env_options_from_config(c);
    if (eo.heldout_tasks < tasks) eo.heldout_tasks = tasks;
    eo.command = NULL; // built-in environments only, as the bootstrap
    Env** envs = callocCheck((size_t)n_envs, sizeof(Env*));
    int rc = 0;
    for (int i = 0; i < n_envs && rc == 0; i++) {
        EnvError e = {{0}};
        envs[i] = env_create(&eo, &e);
        if (!envs[i]) rc = -1, snprintf(err, errlen, "bootstrap: evaluation: %s", e.msg);
    }
    AgentTask* held = mallocCheck(sizeof(AgentTask) * (size_t)(tasks + 1));
    for (int i = 0; i < tasks; i++) held[i] = (AgentTask){ENV_SPLIT_HELDOUT, i};
    Agent* greedy = rc == 0 ? eval_agent(m, tok, c, 1, tasks, 0.0f, err, errlen) : NULL;
    rc = greedy ? rc : -1;
    ev->tasks = tasks;
    RunStats st;
    long turns = 0, parsed = 0;
    ExpList rules;
    exp_list_init(&rules);
    // the student
    if (rc == 0 && (rc = run_batch(greedy, 1, envs, held, tasks, NULL, tok, thr, &st, NULL, err, errlen)) == 0) {
        ev->student = (double)st.successes / tasks;
        memcpy(ev->bite_n, st.bite_n, sizeof(ev->bite_n));
        memcpy(ev->bite_ok[0], st.bite_ok, sizeof(ev->bite_ok[0]));
        ev->turns_student = (double)st.turns / tasks;
        turns += st.turns, parsed += st.parsed;
    }
    // the teacher with the environment's rule texts
    for (int r = 0; rc == 0 && r < envs[0]->nrules; r++) {
        char* item = bank_rule_item(&envs[0]->rules[r]);
        exp_list_add(&rules, r + 1, item);
        free(item);
    }
    if (rc == 0 && (rc = run_batch(greedy, 1, envs, held, tasks, &rules, tok, thr, &st, NULL, err, errlen)) == 0) {
        ev->teacher_rules = (double)st.successes / tasks;
        memcpy(ev->bite_ok[1], st.bite_ok, sizeof(ev->bite_ok[1]));
        turns += st.turns, parsed += st.parsed;
    }
    // iteration 0: student rollouts of the first batch, the miner, the teacher with its pool
    Agent* sampler = rc == 0 ? eval_agent(m, tok, c, G, nb * G, (float)c->rollout.temperature, err, errlen) : NULL;
    rc = rc == 0 && !sampler ? -1 : rc;
    Trajectory** trajs = callocCheck((size_t)(nb * G), sizeof(Trajectory*));
    AgentTask* train = mallocCheck(sizeof(AgentTask) * (size_t)(nb + 1));
    for (int i = 0; i < nb; i++) train[i] = (AgentTask){ENV_SPLIT_TRAIN, i % c->env.train_tasks};
    Pool* pool = pool_create(pool_default_params());
    if (rc == 0 && (rc = run_batch(sampler, G, envs, train, nb, NULL, tok, thr, &st, trajs, err, errlen)) == 0) {
        ev->rollout_success = (double)st.successes / (nb * G);
        EpisodeText* eps = callocCheck((size_t)(nb * G), sizeof(EpisodeText));
        for (int i = 0; i < nb * G; i++)
            episode_from_trajectory(&eps[i], trajs[i], trajs[i]->final_reward >= thr, NULL, decode_fn, (void*)tok,
                                    parse_fn, NULL, "answer");
        ExtractParams prm = extract_params_from_config(c);
        extract_contrastive(pool, eps, nb * G, 0, &prm);
        for (int i = 0; i < nb * G; i++) episode_free(&eps[i]);
        free(eps);
    }
    PoolListing pl = {0};
    pool_listing(pool, &pl);
    ExpList mined;
    exp_list_init(&mined);
    for (int i = 0; i < pl.n; i++) exp_list_add(&mined, pl.ids[i], pl.texts[i]);
    ev->n_mined = pl.n < BOOTSTRAP_EVAL_ITEMS ? pl.n : BOOTSTRAP_EVAL_ITEMS;
    for (int i = 0; i < ev->n_mined; i++) snprintf(ev->mined[i], sizeof(ev->mined[i]), "%s", pl.texts[i]);
    if (rc == 0 && pl.n > 0 && (rc = run_batch(greedy, 1, envs, held, tasks, &mined, tok, thr, &st, NULL, err, errlen)) == 0) {
        ev->teacher_mined = (double)st.successes / tasks;
        memcpy(ev->bite_ok[2], st.bite_ok, sizeof(ev->bite_ok[2]));
        turns += st.turns, parsed += st.parsed;
    } else if (rc == 0) {
        ev->teacher_mined = ev->student; // an empty pool injects nothing
        memcpy(ev->bite_ok[2], ev->bite_ok[0], sizeof(ev->bite_ok[2]));
    }
    ev->n_rules = envs[0]->nrules < BOOTSTRAP_EVAL_RULES ? envs[0]->nrules : BOOTSTRAP_EVAL_RULES;
    for (int r = 0; r < ev->n_rules; r++) snprintf(ev->rule_ids[r], sizeof(ev->rule_ids[r]), "%s", envs[0]->rules[r].id);
    if (rc == 0) rc = windows_accuracy(m, greedy, tok, c, ev, err, errlen);
    ev->parse_rate = turns ? (double)parsed / (double)turns : 0.0;
    ev->seconds = timer_now() - t0;

    for (int i = 0; i < nb * G; i++)
        if (trajs[i]) traj_free(trajs[i]);
    free(trajs);
    free(train);
    pool_listing_free(&pl);
    pool_free(pool);
    exp_list_free(&mined);
    exp_list_free(&rules);
    agent_free(sampler);
    agent_free(greedy);
    free(held);
    for (int i = 0; i < n_envs; i++)
        if (envs[i]) env_destroy(envs[i]);
    free(envs);
    return rc;
}

// one row of the windows table: tool right / whole turn right, own worlds | other worlds
static void print_window_row(FILE* out, const char* label, const int n[2], const int tool[2], const int exact[2]) {
    double pct[2][2];
    for (int s = 0; s < 2; s++) {
        pct[s][0] = n[s] ? 100.0 * tool[s] / n[s] : 0.0;
        pct[s][1] = n[s] ? 100.0 * exact[s] / n[s] : 0.0;
    }
    fprintf(out, "    %-28s %5.1f%% / %5.1f%% of %3d | %5.1f%% / %5.1f%% of %3d\n", label, pct[0][0], pct[0][1], n[0],
            pct[1][0], pct[1][1], n[1]);
}

void bootstrap_eval_print(const BootstrapEval* ev, FILE* out) {
    fprintf(out, "bootstrap evaluation on %d held-out tasks (greedy, agent loop), %.1f s:\n", ev->tasks, ev->seconds);
    fprintf(out, "  student (no experience)            %5.1f%%  (%.1f turns per episode)\n", 100 * ev->student,
            ev->turns_student);
    fprintf(out, "  teacher, the rule texts            %5.1f%%\n", 100 * ev->teacher_rules);
    fprintf(out, "  teacher, pool mined at iteration 0 %5.1f%%  (student rollouts succeeded %.1f%%)\n",
            100 * ev->teacher_mined, 100 * ev->rollout_success);
    fprintf(out, "  tool calls that parse              %5.1f%%\n", 100 * ev->parse_rate);
    for (int i = 0; i < ev->n_mined; i++) fprintf(out, "  mined: %s\n", ev->mined[i]);
    fprintf(out, "  success by the rule a task bites: student / rule texts / mined pool\n");
    for (int r = 0; r <= ev->n_rules; r++) {
        const int k = r < ev->n_rules ? r : BOOTSTRAP_EVAL_RULES, n = ev->bite_n[k];
        if (n == 0) continue;
        fprintf(out, "    %-28s %5.1f%% / %5.1f%% / %5.1f%% of %d tasks\n", r < ev->n_rules ? ev->rule_ids[r] : "none",
                100.0 * ev->bite_ok[0][k] / n, 100.0 * ev->bite_ok[1][k] / n, 100.0 * ev->bite_ok[2][k] / n, n);
    }
    static const char* const kinds[3] = {"the items changed the turn", "items that did not", "no items"};
    fprintf(out, "  windows, teacher-forced argmax: the tool right / the whole turn right, own | other worlds\n");
    for (int k = 0; k < 3; k++) {
        const int n[2] = {ev->win_n[0][k], ev->win_n[1][k]}, tool[2] = {ev->win_tool[0][k], ev->win_tool[1][k]},
                  exact[2] = {ev->win_exact[0][k], ev->win_exact[1][k]};
        print_window_row(out, kinds[k], n, tool, exact);
        for (int r = 0; k == 0 && r < ev->n_rules; r++) {
            const int rn[2] = {ev->rule_n[0][r], ev->rule_n[1][r]}, rt[2] = {ev->rule_tool[0][r], ev->rule_tool[1][r]},
                      re[2] = {ev->rule_exact[0][r], ev->rule_exact[1][r]};
            char label[48];
            snprintf(label, sizeof(label), "  conveying %s", ev->rule_ids[r]);
            print_window_row(out, label, rn, rt, re);
        }
    }
}
