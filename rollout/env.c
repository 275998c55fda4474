// The environment registry (create by name or from the config), the public wrappers around the
// vtable, and the helpers every implementation shares (env_impl.h).
#include "rollout/env.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/check.h"
#include "rollout/env_impl.h"

// ----------------------------------------------------------------------------
// registry

static int set_err(EnvError* err, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static int set_err(EnvError* err, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}

Env* env_create(const EnvOptions* opt, EnvError* err) {
    err->msg[0] = '\0';
    if (opt->train_tasks < 0 || opt->heldout_tasks < 0) {
        set_err(err, "environment '%s': task counts must not be negative (train %d, held-out %d)", opt->name,
                opt->train_tasks, opt->heldout_tasks);
        return NULL;
    }
    const double trap_rate = opt->trap_rate > 0 ? opt->trap_rate : ENV_TRAP_RATE_DEFAULT;
    if (strcmp(opt->name, "wikisearch") == 0)
        return env_wikisearch_create(opt->seed, opt->train_tasks, opt->heldout_tasks, trap_rate, err);
    if (trap_rate != ENV_TRAP_RATE_DEFAULT) {
        set_err(err, "env.trap_rate is %g, but it applies to wikisearch only, not '%s' (leave it at %g)", trap_rate,
                opt->name, ENV_TRAP_RATE_DEFAULT);
        return NULL;
    }
    if (strcmp(opt->name, "textcraft") == 0)
        return env_textcraft_create(opt->seed, opt->train_tasks, opt->heldout_tasks, err);
    if (strcmp(opt->name, "retail") == 0)
        return env_retail_create(opt->seed, opt->train_tasks, opt->heldout_tasks, err);
    if (strcmp(opt->name, "external") == 0) {
        if (!opt->command || !opt->command[0]) {
            set_err(err, "environment 'external' needs a command line (env.command)");
            return NULL;
        }
        return env_external_create(opt->command, opt->timeout_s, opt->seed, opt->train_tasks, opt->heldout_tasks,
                                   err);
    }
    set_err(err, "unknown environment '%s'; expected one of: wikisearch, textcraft, retail, external", opt->name);
    return NULL;
}

EnvOptions env_options_from_config(const Config* c) {
    return (EnvOptions){
        .name = config_enum_name("env.name", c->env.name),
        .seed = (uint64_t)c->run.seed,
        .train_tasks = c->env.train_tasks,
        .heldout_tasks = c->env.heldout_tasks,
        .command = c->env.command,
        .timeout_s = c->env.timeout_s,
        .trap_rate = c->env.trap_rate,
    };
}

Env* env_create_from_config(const Config* c, EnvError* err) {
    const EnvOptions opt = env_options_from_config(c);
    if (!opt.name) {
        set_err(err, "env.name has the unknown value %d", c->env.name);
        return NULL;
    }
    return env_create(&opt, err);
}

void env_destroy(Env* env) {
    if (env) env->vt->destroy(env);
}

// ----------------------------------------------------------------------------
// the public wrappers

int env_num_tasks(const Env* env, EnvSplit split) {
    return (split == ENV_SPLIT_TRAIN || split == ENV_SPLIT_HELDOUT) ? env->ntasks[split] : 0;
}

const char* env_task_id(const Env* env, EnvSplit split, int task) {
    if (split != ENV_SPLIT_TRAIN && split != ENV_SPLIT_HELDOUT) return NULL;
    if (task < 0 || task >= env->ntasks[split]) return NULL;
    return env->task_ids[split][task];
}

int env_check_task(const Env* env, EnvSplit split, int task, EnvError* err) {
    if (split != ENV_SPLIT_TRAIN && split != ENV_SPLIT_HELDOUT)
        return set_err(err, "%s: unknown split %d", env->name, split);
    if (task < 0 || task >= env->ntasks[split])
        return set_err(err, "%s: task %d is out of range; the %s split has %d tasks", env->name, task,
                       split == ENV_SPLIT_TRAIN ? "train" : "held-out", env->ntasks[split]);
    return 0;
}

static void result_zero(EnvResult* r) {
    memset(r, 0, sizeof(*r));
}

int env_reset(Env* env, EnvSplit split, int task, uint64_t seed, EnvResult* out, EnvError* err) {
    result_zero(out);
    err->msg[0] = '\0';
    if (env_check_task(env, split, task, err) != 0) return -1;
    return env->vt->reset(env, split, task, seed, out, err);
}

int env_step(Env* env, const EnvAction* action, EnvResult* out, EnvError* err) {
    result_zero(out);
    err->msg[0] = '\0';
    return env->vt->step(env, action, out, err);
}

int env_policy(Env* env, uint32_t known, EnvPolicyAction* out, EnvError* err) {
    memset(out, 0, sizeof(*out));
    out->rule = -1;
    err->msg[0] = '\0';
    if (!env->vt->policy) return set_err(err, "%s: this environment has no scripted policy", env->name);
    return env->vt->policy(env, known, out, err);
}

uint32_t env_task_rules(const Env* env, EnvSplit split, int task) {
    if (!env->vt->task_rules || !env_task_id(env, split, task)) return 0;
    return env->vt->task_rules(env, split, task);
}

void env_result_free(EnvResult* r) {
    free(r->observation);
    free(r->info);
    result_zero(r);
}

char* env_tools_text(const Env* env) {
    StrBuf b = {0};
    for (int i = 0; i < env->ntools; i++) {
        const EnvTool* t = &env->tools[i];
        strbuf_printf(&b, "%s(", t->name);
        for (int a = 0; a < t->nargs; a++)
            strbuf_printf(&b, "%s%s%s: %s", a ? ", " : "", t->args[a].name, t->args[a].required ? "" : "?",
                          t->args[a].type);
        strbuf_printf(&b, ") - %s\n", t->description);
    }
    return strbuf_take(&b);
}

int env_rule_index(const Env* env, const char* id) {
    for (int i = 0; i < env->nrules; i++)
        if (strcmp(env->rules[i].id, id) == 0) return i;
    return -1;
}

// ----------------------------------------------------------------------------
// random numbers

uint64_t env_mix(uint64_t a, uint64_t b) {
    uint64_t z = a ^ (b + 0x9e3779b97f4a7c15ull + (a << 6) + (a >> 2));
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t env_rand(uint64_t* state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int env_rand_below(uint64_t* state, int n) {
    return n <= 1 ? 0 : (int)(env_rand(state) % (uint64_t)n);
}

double env_rand_unit(uint64_t* state) {
    return (double)(env_rand(state) >> 11) * (1.0 / 9007199254740992.0);
}

void env_shuffle(uint64_t* state, int* a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = env_rand_below(state, i + 1);
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

void env_make_word(uint64_t* state, char* out, size_t n) {
    static const char* onsets[] = {"b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br",
                                   "dr", "kr", "st", "th", "sh"};
    static const char* vowels[] = {"a", "e", "i", "o", "u", "ai", "ei", "ou"};
    static const char* codas[] = {"", "", "", "n", "r", "l", "s", "k", "m"};
    static const char* avoid[] = {"shit", "fuk", "kunt", "nig", "fag", "rape", "tit", "sex", "dik"};
    for (;;) {
        int nsyl = 2 + (env_rand_below(state, 4) == 0);
        out[0] = '\0';
        size_t len = 0;
        for (int s = 0; s < nsyl && len + 8 < n; s++) {
            len += (size_t)snprintf(
                out + len, n - len, "%s%s%s", onsets[env_rand_below(state, 20)], vowels[env_rand_below(state, 8)],
                s == nsyl - 1 ? codas[3 + env_rand_below(state, 6)] : codas[env_rand_below(state, 9)]);
        }
        int ok = 1;
        for (size_t i = 0; i < sizeof(avoid) / sizeof(avoid[0]); i++)
            if (strstr(out, avoid[i])) ok = 0;
        if (ok) break;
    }
    out[0] = (char)toupper((unsigned char)out[0]);
}

// ----------------------------------------------------------------------------
// text

void env_normalize(const char* in, char* out, size_t n) {
    size_t len = 0;
    const char* p = in;
    while (*p && len + 1 < n) {
        while (*p && !isalnum((unsigned char)*p)) p++;
        const char* w = p;
        while (*p && isalnum((unsigned char)*p)) p++;
        size_t wl = (size_t)(p - w);
        if (wl == 0) break;
        if ((wl == 1 && tolower((unsigned char)w[0]) == 'a') || (wl == 2 && strncasecmp(w, "an", 2) == 0) ||
            (wl == 3 && strncasecmp(w, "the", 3) == 0))
            continue;
        if (len > 0 && len + 1 < n) out[len++] = ' ';
        for (size_t i = 0; i < wl && len + 1 < n; i++) out[len++] = (char)tolower((unsigned char)w[i]);
    }
    out[len] = '\0';
}

int env_same_text(const char* a, const char* b) {
    char na[512], nb[512];
    env_normalize(a, na, sizeof(na));
    env_normalize(b, nb, sizeof(nb));
    return strcmp(na, nb) == 0;
}

// ----------------------------------------------------------------------------
// the common part of every environment

void env_base_init(Env* env, const EnvVtbl* vt, const char* name, const EnvTool* tools, int ntools,
                   const EnvRule* rules, int nrules) {
    env->vt = vt;
    snprintf(env->name, sizeof(env->name), "%s", name);
    env->tools = tools;
    env->ntools = ntools;
    env->rules = rules;
    env->nrules = nrules;
}

void env_base_builtin_tasks(Env* env, int ntrain, int nheldout) {
    const int counts[2] = {ntrain, nheldout};
    const char* names[2] = {"train", "heldout"};
    for (int s = 0; s < 2; s++) {
        env->ntasks[s] = counts[s];
        env->task_ids[s] = callocCheck((size_t)counts[s], sizeof(char*));
        for (int i = 0; i < counts[s]; i++) {
            char id[32];
            snprintf(id, sizeof(id), "%s/%d", names[s], i);
            env->task_ids[s][i] = strdupCheck(id);
        }
    }
}

void env_base_free(Env* env) {
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < env->ntasks[s]; i++) free(env->task_ids[s][i]);
        free(env->task_ids[s]);
        env->task_ids[s] = NULL;
        env->ntasks[s] = 0;
    }
}

// ----------------------------------------------------------------------------
// results

void env_result_take(EnvResult* r, char* obs) {
    r->observation = obs;
    r->reward = 0.0;
    r->done = 0;
    r->invalid = 0;
    r->info = strdupCheck("{}");
}

void env_result_text(EnvResult* r, const char* obs) {
    env_result_take(r, strdupCheck(obs));
}

void env_result_final(EnvResult* r, char* obs, double reward) {
    r->observation = obs;
    r->reward = reward;
    r->done = 1;
    r->invalid = 0;
    r->info = strdupCheck(reward > 0.0 ? "{\"success\": true}" : "{\"success\": false}");
}

void env_result_invalid(EnvResult* r, const char* fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    StrBuf b = {0};
    strbuf_printf(&b, "Error: %s", msg);
    r->observation = strbuf_take(&b);
    r->reward = 0.0;
    r->done = 0;
    r->invalid = 1;
    json_t* info = json_pack("{s:s}", "error", msg);
    r->info = info ? json_dumps(info, JSON_COMPACT) : NULL;
    if (!r->info) r->info = strdupCheck("{\"error\": \"invalid action\"}");
    json_decref(info);
}

// ----------------------------------------------------------------------------
// action check against the tool schema

static int type_matches(const char* type, const json_t* v) {
    if (strcmp(type, "string") == 0) return json_is_string(v);
    if (strcmp(type, "integer") == 0) return json_is_integer(v);
    if (strcmp(type, "string[]") == 0) {
        if (!json_is_array(v)) return 0;
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!json_is_string(json_array_get(v, i))) return 0;
        return 1;
    }
    return 0;
}

static const char* type_words(const char* type) {
    if (strcmp(type, "string") == 0) return "a string";
    if (strcmp(type, "integer") == 0) return "an integer";
    if (strcmp(type, "string[]") == 0) return "a list of strings";
    return type;
}

int env_parse_action(const Env* env, const EnvAction* action, json_t** args, EnvResult* out) {
    *args = NULL;
    const char* name = action->tool ? action->tool : "";
    int t = -1;
    for (int i = 0; i < env->ntools; i++)
        if (strcmp(env->tools[i].name, name) == 0) t = i;
    if (t < 0) {
        StrBuf list = {0};
        for (int i = 0; i < env->ntools; i++) strbuf_printf(&list, "%s%s", i ? ", " : "", env->tools[i].name);
        env_result_invalid(out, "unknown tool '%.64s'; the tools are: %s", name, list.s ? list.s : "");
        strbuf_free(&list);
        return -1;
    }
    const EnvTool* tool = &env->tools[t];
    const char* text = action->args_json;
    while (text && isspace((unsigned char)*text)) text++;
    json_t* obj = NULL;
    if (!text || !*text) {
        obj = json_object();
    } else {
        json_error_t jerr;
        obj = json_loads(text, JSON_DECODE_ANY, &jerr);
        if (!obj) {
            env_result_invalid(out, "the arguments of %s are not valid JSON (column %d: %s)", tool->name, jerr.column,
                               jerr.text);
            return -1;
        }
        if (!json_is_object(obj)) {
            json_decref(obj);
            env_result_invalid(out, "the arguments of %s must be a JSON object like {\"%s\": ...}", tool->name,
                               tool->nargs ? tool->args[0].name : "");
            return -1;
        }
    }
    const char* key;
    json_t* value;
    json_object_foreach(obj, key, value) {
        const EnvToolArg* a = NULL;
        for (int i = 0; i < tool->nargs; i++)
            if (strcmp(tool->args[i].name, key) == 0) a = &tool->args[i];
        if (!a) {
            StrBuf list = {0};
            for (int i = 0; i < tool->nargs; i++) strbuf_printf(&list, "%s%s", i ? ", " : "", tool->args[i].name);
            env_result_invalid(out, "%s has no argument '%.64s'; its arguments are: %s", tool->name, key,
                               list.s ? list.s : "none");
            strbuf_free(&list);
            json_decref(obj);
            return -1;
        }
        if (!type_matches(a->type, value)) {
            env_result_invalid(out, "argument '%s' of %s must be %s", a->name, tool->name, type_words(a->type));
            json_decref(obj);
            return -1;
        }
    }
    for (int i = 0; i < tool->nargs; i++) {
        if (tool->args[i].required && !json_object_get(obj, tool->args[i].name)) {
            env_result_invalid(out, "%s needs argument '%s' (%s)", tool->name, tool->args[i].name,
                               type_words(tool->args[i].type));
            json_decref(obj);
            return -1;
        }
    }
    *args = obj;
    return t;
}

// ----------------------------------------------------------------------------
// policy output

void env_policy_set(EnvPolicyAction* out, const char* tool, int rule, const char* args_fmt, ...) {
    snprintf(out->tool, sizeof(out->tool), "%s", tool);
    va_list ap;
    va_start(ap, args_fmt);
    vsnprintf(out->args_json, sizeof(out->args_json), args_fmt, ap);
    va_end(ap);
    out->rule = rule;
}

const char* env_json_str(const char* s, char* buf, size_t n) {
    json_t* j = json_string(s);
    char* d = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    snprintf(buf, n, "%s", d ? d : "\"\"");
    free(d);
    json_decref(j);
    return buf;
}
