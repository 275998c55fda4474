// textcraft: craft a target item through a seeded recipe graph. Tools: get(item, count) for base
// items, craft(item, using) for one unit of a recipe, inventory(). The episode ends when the
// target is crafted: reward 1 if it is sound, 0 if flawed.
// Hidden rules (TC_RULES): the recipes shown never mention them. Wooden (oak, pine) items need a
// saw in `using`, metal (iron, copper) items a hammer; both tools are kept. Glass and clay items
// need one coal per craft, which is used up. Without them an item comes out flawed, and a flaw
// passes to everything made from it, so the target fails.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "rollout/env_impl.h"

// ----------------------------------------------------------------------------
// the world

typedef enum { CAT_WOOD, CAT_METAL, CAT_FIRED, CAT_PLAIN } Category;
typedef enum { R_SAW = 0, R_HAMMER, R_COAL, R_COUNT } RuleId;

static const EnvRule TC_RULES[R_COUNT] = {
    {"saw", "When crafting any oak or pine item, get a saw once and list it in using every time; the saw is not "
            "consumed."},
    {"hammer", "When crafting any iron or copper item, get a hammer once and list it in using every time; the "
               "hammer is not consumed."},
    {"coal", "When crafting any glass or clay item, list one coal in using for each craft; coal is used up, so "
             "get enough."},
};

static const EnvTool TC_TOOLS[] = {
    {"get", "Take base items from the store.", 2,
     {{"item", "string", "a base item", 1}, {"count", "integer", "how many (1-10, default 1)", 0}}},
    {"craft", "Craft one unit of an item; using lists every unit consumed.", 2,
     {{"item", "string", "the item to make", 1}, {"using", "string[]", "the items used, repeated per unit", 1}}},
    {"inventory", "List what you hold.", 0, {{0}}},
};

typedef struct {
    const char* name;
    int cat;
    const char* base;                 // the base item it is made from
    const char* d1[3];                // forms made from the base
    const char* d2[2];                // forms made from a d1 form...
    int d2_from[2];                   // ...this one
} Material;

static const Material MATERIALS[] = {
    {"oak", CAT_WOOD, "oak log", {"plank", "stick", "peg"}, {"frame", "panel"}, {1, 0}},
    {"pine", CAT_WOOD, "pine log", {"plank", "stick", "peg"}, {"frame", "panel"}, {1, 0}},
    {"iron", CAT_METAL, "iron ore", {"rod", "plate", "ring"}, {"gear", "chain"}, {1, 2}},
    {"copper", CAT_METAL, "copper ore", {"rod", "plate", "ring"}, {"gear", "chain"}, {1, 2}},
    {"glass", CAT_FIRED, "sand", {"pane", "bead", NULL}, {"lens", NULL}, {0, 0}},
    {"clay", CAT_FIRED, "wet clay", {"tile", "pot", NULL}, {"vase", NULL}, {1, 0}},
    {"wool", CAT_PLAIN, "raw wool", {"thread", NULL, NULL}, {"cloth", NULL}, {0, 0}},
    {"hemp", CAT_PLAIN, "hemp fiber", {"cord", NULL, NULL}, {"rope", NULL}, {0, 0}},
    {"leather", CAT_PLAIN, "hide", {"strip", NULL, NULL}, {"belt", NULL}, {0, 0}},
};
#define N_MATERIALS 9

static const char* STYLES[] = {"small", "large", "tall", "round", "fine", "plain", "old", "grand",
                               "red", "blue", "light", "heavy", "short", "long", "green", "dark"};
static const char* NOUNS[] = {"lantern", "chest", "clock", "cart", "kite", "drum", "shield", "lamp",
                              "stool", "bucket", "loom", "compass", "harp", "sled", "bell", "table"};

#define MAX_ING 3
#define MAX_PARTS 3

typedef struct {
    char name[40];
    int cat;          // Category of a crafted item (targets: CAT_PLAIN)
    int is_base;
    int is_target;    // targets share names past 256 tasks: only the episode's own is found
    int ning;
    int ing[MAX_ING]; // ingredient items
    int cnt[MAX_ING]; // units of each
} Item;

typedef struct {
    int target;       // item
    char statement[512];
    uint32_t bites;
} TcTask;

typedef struct {
    Env base;
    Item* items;
    int nitems, cap;
    int saw, hammer, coal; // item indices of the hidden requirements
    int nbase;             // items [0, nbase) are base items
    TcTask* tasks[2];
    // the episode
    int active, done;
    const TcTask* task;
    int* good;   // (nitems) sound units held
    int* flawed; // (nitems) flawed units held
} CraftEnv;

static int add_item(CraftEnv* c, const char* name, int cat, int is_base) {
    if (c->nitems == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 128;
        c->items = reallocCheck(c->items, (size_t)c->cap * sizeof(Item));
    }
    Item* it = &c->items[c->nitems];
    memset(it, 0, sizeof(*it));
    snprintf(it->name, sizeof(it->name), "%s", name);
    it->cat = cat;
    it->is_base = is_base;
    return c->nitems++;
}

static int find_item(const CraftEnv* c, const char* name) {
    char want[64], have[64];
    env_normalize(name, want, sizeof(want));
    for (int i = 0; i < c->nitems; i++) {
        if (c->items[i].is_target && !(c->task && i == c->task->target)) continue;
        env_normalize(c->items[i].name, have, sizeof(have));
        if (strcmp(want, have) == 0) return i;
    }
    return -1;
}

// the tool or fuel an item's category needs, or -1
static int requirement(const CraftEnv* c, int item) {
    if (c->items[item].is_base) return -1;
    switch (c->items[item].cat) {
    case CAT_WOOD: return c->saw;
    case CAT_METAL: return c->hammer;
    case CAT_FIRED: return c->coal;
    default: return -1;
    }
}

static int requirement_rule(const CraftEnv* c, int item) {
    int r = requirement(c, item);
    return r < 0 ? -1 : r == c->saw ? R_SAW : r == c->hammer ? R_HAMMER : R_COAL;
}

static const char* flaw_word(int cat) {
    return cat == CAT_WOOD ? "splintered" : cat == CAT_METAL ? "bent" : cat == CAT_FIRED ? "cracked" : "flawed";
}

// ----------------------------------------------------------------------------
// world generation

// base items, then every material's forms with seeded unit counts
static void make_book(CraftEnv* c, uint64_t* rng) {
    int base_of[N_MATERIALS];
    for (int m = 0; m < N_MATERIALS; m++) base_of[m] = add_item(c, MATERIALS[m].base, MATERIALS[m].cat, 1);
    c->saw = add_item(c, "saw", CAT_PLAIN, 1);
    c->hammer = add_item(c, "hammer", CAT_PLAIN, 1);
    c->coal = add_item(c, "coal", CAT_PLAIN, 1);
    c->nbase = c->nitems;
    char name[40];
    for (int m = 0; m < N_MATERIALS; m++) {
        const Material* mat = &MATERIALS[m];
        int d1[3] = {-1, -1, -1};
        for (int f = 0; f < 3 && mat->d1[f]; f++) {
            snprintf(name, sizeof(name), "%s %s", mat->name, mat->d1[f]);
            d1[f] = add_item(c, name, mat->cat, 0);
            c->items[d1[f]].ning = 1;
            c->items[d1[f]].ing[0] = base_of[m];
            c->items[d1[f]].cnt[0] = 1 + (env_rand_below(rng, 3) == 0);
        }
        for (int f = 0; f < 2 && mat->d2[f]; f++) {
            snprintf(name, sizeof(name), "%s %s", mat->name, mat->d2[f]);
            int it = add_item(c, name, mat->cat, 0);
            c->items[it].ning = 1;
            c->items[it].ing[0] = d1[mat->d2_from[f]];
            c->items[it].cnt[0] = 2;
        }
    }
}

// a random crafted part of category cat: a d1 form (2/3) or a d2 form
static int random_part(const CraftEnv* c, int cat, uint64_t* rng) {
    int mats[N_MATERIALS], nm = 0;
    for (int m = 0; m < N_MATERIALS; m++)
        if (MATERIALS[m].cat == cat) mats[nm++] = m;
    const Material* mat = &MATERIALS[mats[env_rand_below(rng, nm)]];
    int nd1 = 0, nd2 = 0;
    while (nd1 < 3 && mat->d1[nd1]) nd1++;
    while (nd2 < 2 && mat->d2[nd2]) nd2++;
    char name[40];
    if (env_rand_below(rng, 3) < 2) snprintf(name, sizeof(name), "%s %s", mat->name, mat->d1[env_rand_below(rng, nd1)]);
    else snprintf(name, sizeof(name), "%s %s", mat->name, mat->d2[env_rand_below(rng, nd2)]);
    return find_item(c, name);
}

static void statement_recipe(const CraftEnv* c, int item, StrBuf* b, int* listed) {
    if (c->items[item].is_base || listed[item]) return;
    listed[item] = 1;
    const Item* it = &c->items[item];
    strbuf_printf(b, "%s%s = ", b->len && b->s[b->len - 1] != ' ' ? "; " : "", it->name);
    for (int k = 0; k < it->ning; k++) {
        if (it->cnt[k] > 1) strbuf_printf(b, "%s%d %s", k ? " + " : "", it->cnt[k], c->items[it->ing[k]].name);
        else strbuf_printf(b, "%s%s", k ? " + " : "", c->items[it->ing[k]].name);
    }
    for (int k = 0; k < it->ning; k++) statement_recipe(c, it->ing[k], b, listed);
}

static void statement_bases(const CraftEnv* c, int item, int* listed, StrBuf* b) {
    const Item* it = &c->items[item];
    if (it->is_base) {
        if (!listed[item]) strbuf_printf(b, "%s, ", it->name);
        listed[item] = 1;
        return;
    }
    for (int k = 0; k < it->ning; k++) statement_bases(c, it->ing[k], listed, b);
}

static int expert_steps(CraftEnv* c, const TcTask* t);

#define MAX_STATEMENT 280 // bytes: the built-in models have a 1-2K token context

// the task statement: the target, every recipe under it, the base items; returns its length
static size_t write_statement(const CraftEnv* c, TcTask* t, const char* name) {
    StrBuf b = {0};
    strbuf_printf(&b, "Craft a %s.\nRecipes: ", name);
    int* listed = callocCheck((size_t)c->nitems, sizeof(int));
    statement_recipe(c, t->target, &b, listed);
    memset(listed, 0, (size_t)c->nitems * sizeof(int));
    strbuf_printf(&b, ".\nBase items: ");
    statement_bases(c, t->target, listed, &b);
    strbuf_printf(&b, "saw, hammer, coal.");
    free(listed);
    snprintf(t->statement, sizeof(t->statement), "%s", b.s);
    size_t len = b.len;
    strbuf_free(&b);
    return len;
}

static void make_task(CraftEnv* c, TcTask* t, uint64_t rng, uint8_t* used_names) {
    // which rules bite: none (40%), one category (45%), two (15%)
    double u = env_rand_unit(&rng);
    uint32_t bites = u < 0.40 ? 0 : u < 0.85 ? 1u << env_rand_below(&rng, 3) : 7u & ~(1u << env_rand_below(&rng, 3));
    // target names are unique until all 256 are taken, then repeat (each task keeps its own item)
    int nfree = 0;
    for (int k = 0; k < 256; k++) nfree += !used_names[k];
    if (nfree == 0) memset(used_names, 0, 256);
    int nameidx = env_rand_below(&rng, 256);
    while (used_names[nameidx]) nameidx = (nameidx + 1) % 256;
    used_names[nameidx] = 1;
    char name[40];
    snprintf(name, sizeof(name), "%s %s", STYLES[nameidx / 16], NOUNS[nameidx % 16]);
    t->target = add_item(c, name, CAT_PLAIN, 0);
    c->items[t->target].is_target = 1;
    t->bites = bites;
    for (;;) {
        int cats[MAX_PARTS], np = 0;
        for (int r = 0; r < R_COUNT; r++)
            if (bites & (1u << r)) cats[np++] = r; // rule r <-> category r
        int nparts = 2 + env_rand_below(&rng, 2);
        if (nparts < np) nparts = np;
        while (np < nparts) cats[np++] = CAT_PLAIN;
        Item* it = &c->items[t->target];
        it->ning = 0;
        for (int p = 0; p < nparts; p++) {
            int part = random_part(c, cats[p], &rng);
            int dup = 0;
            for (int k = 0; k < it->ning; k++) dup |= it->ing[k] == part;
            if (dup) continue;
            it->ing[it->ning] = part;
            it->cnt[it->ning] = 1;
            it->ning++;
        }
        int steps = expert_steps(c, t);
        int ok = it->ning >= 2 && steps >= 5 && steps <= 14 && write_statement(c, t, name) <= MAX_STATEMENT;
        for (int r = 0; r < R_COUNT; r++) { // every biting category must be present
            int present = 0;
            for (int k = 0; k < it->ning; k++) present |= c->items[it->ing[k]].cat == r;
            if ((bites & (1u << r)) && !present) ok = 0;
        }
        if (ok) break;
    }
}

// ----------------------------------------------------------------------------
// the episode

static void start_episode(CraftEnv* c, const TcTask* t) {
    c->task = t;
    c->active = 1;
    c->done = 0;
    free(c->good);
    free(c->flawed);
    c->good = callocCheck((size_t)c->nitems, sizeof(int));
    c->flawed = callocCheck((size_t)c->nitems, sizeof(int));
}

static void do_get(CraftEnv* c, const char* name, int count, EnvResult* out) {
    char buf[160];
    int item = find_item(c, name);
    if (item < 0) snprintf(buf, sizeof(buf), "There is no item called '%.60s'.", name);
    else if (!c->items[item].is_base)
        snprintf(buf, sizeof(buf), "%s is not a base item; craft it.", c->items[item].name);
    else if (count < 1 || count > 10) snprintf(buf, sizeof(buf), "count must be between 1 and 10.");
    else {
        c->good[item] += count;
        snprintf(buf, sizeof(buf), "Got %d %s.", count, c->items[item].name);
    }
    env_result_text(out, buf);
}

static void do_inventory(const CraftEnv* c, EnvResult* out) {
    StrBuf b = {0};
    strbuf_printf(&b, "Inventory:");
    int any = 0;
    for (int i = 0; i < c->nitems; i++) {
        if (c->good[i]) strbuf_printf(&b, "%s %d %s", any++ ? "," : "", c->good[i], c->items[i].name);
        if (c->flawed[i])
            strbuf_printf(&b, "%s %d %s (%s)", any++ ? "," : "", c->flawed[i], c->items[i].name,
                          flaw_word(c->items[i].cat));
    }
    if (!any) strbuf_printf(&b, " empty");
    strbuf_printf(&b, ".");
    env_result_take(out, strbuf_take(&b));
}

static void do_craft(CraftEnv* c, const char* name, const json_t* using, EnvResult* out) {
    char buf[256];
    int item = find_item(c, name);
    if (item < 0) {
        snprintf(buf, sizeof(buf), "There is no recipe for '%.60s'.", name);
        env_result_text(out, buf);
        return;
    }
    const Item* it = &c->items[item];
    if (it->is_base) {
        snprintf(buf, sizeof(buf), "%s is a base item; use get.", it->name);
        env_result_text(out, buf);
        return;
    }
    // count the units listed in `using` per item
    int ids[16], counts[16], n = 0;
    for (size_t k = 0; k < json_array_size(using); k++) {
        const char* uname = json_string_value(json_array_get(using, k));
        int u = find_item(c, uname);
        if (u < 0) {
            snprintf(buf, sizeof(buf), "There is no item called '%.60s'.", uname);
            env_result_text(out, buf);
            return;
        }
        int j = 0;
        while (j < n && ids[j] != u) j++;
        if (j == n) {
            if (n == 16) break;
            ids[n] = u;
            counts[n++] = 0;
        }
        counts[j]++;
    }
    int req = requirement(c, item), has_req = 0;
    for (int j = 0; j < n; j++) {
        int need = 0;
        for (int k = 0; k < it->ning; k++)
            if (it->ing[k] == ids[j]) need = it->cnt[k];
        if (ids[j] == req && need == 0 && counts[j] == 1) {
            has_req = 1;
            continue;
        }
        if (need == 0) {
            snprintf(buf, sizeof(buf), "%s is not used to make %s.", c->items[ids[j]].name, it->name);
            env_result_text(out, buf);
            return;
        }
    }
    for (int k = 0; k < it->ning; k++) {
        int listed = 0;
        for (int j = 0; j < n; j++)
            if (ids[j] == it->ing[k]) listed = counts[j];
        if (listed != it->cnt[k]) {
            snprintf(buf, sizeof(buf), "%s needs %d %s; using lists %d.", it->name, it->cnt[k],
                     c->items[it->ing[k]].name, listed);
            env_result_text(out, buf);
            return;
        }
    }
    for (int j = 0; j < n; j++) {
        int have = c->good[ids[j]] + c->flawed[ids[j]];
        if (have < counts[j]) {
            snprintf(buf, sizeof(buf), "You have %d %s; need %d.", have, c->items[ids[j]].name, counts[j]);
            env_result_text(out, buf);
            return;
        }
    }
    // consume: sound units first; any flawed unit, or a missing requirement, flaws the product
    int flawed = !(req < 0 || has_req);
    const char* reason = flawed ? flaw_word(it->cat) : NULL;
    for (int k = 0; k < it->ning; k++) {
        int i = it->ing[k], take = it->cnt[k];
        int g = take < c->good[i] ? take : c->good[i];
        c->good[i] -= g;
        c->flawed[i] -= take - g;
        if (take - g > 0) {
            flawed = 1;
            reason = "flawed";
        }
    }
    if (has_req && req == c->coal) {
        if (c->good[req]) c->good[req]--;
        else c->flawed[req]--;
    }
    if (item == c->task->target) {
        snprintf(buf, sizeof(buf), flawed ? "Crafted %s, but it is %s. Task failed." : "Crafted %s. Task complete.",
                 it->name, reason);
        c->done = 1;
        env_result_final(out, strdupCheck(buf), flawed ? 0.0 : 1.0);
        return;
    }
    if (flawed) {
        c->flawed[item]++;
        snprintf(buf, sizeof(buf), "Crafted %s, but it is %s.", it->name, reason);
    } else {
        c->good[item]++;
        snprintf(buf, sizeof(buf), "Crafted %s.", it->name);
    }
    env_result_text(out, buf);
}

// ----------------------------------------------------------------------------
// vtable

static int tc_reset(Env* env, EnvSplit split, int task, uint64_t seed, EnvResult* out, EnvError* err) {
    (void)seed; (void)err; // the world seed fixes everything; see docs/ENVIRONMENTS.md
    CraftEnv* c = (CraftEnv*)env;
    start_episode(c, &c->tasks[split][task]);
    env_result_text(out, c->task->statement);
    return 0;
}

static int tc_step(Env* env, const EnvAction* action, EnvResult* out, EnvError* err) {
    CraftEnv* c = (CraftEnv*)env;
    if (!c->active || c->done) {
        snprintf(err->msg, sizeof(err->msg), "textcraft: step called %s",
                 c->active ? "after the episode ended" : "before reset");
        return -1;
    }
    json_t* args;
    int t = env_parse_action(env, action, &args, out);
    if (t < 0) return 0;
    if (t == 0) {
        json_t* count = json_object_get(args, "count");
        do_get(c, json_string_value(json_object_get(args, "item")), count ? (int)json_integer_value(count) : 1, out);
    } else if (t == 1) {
        do_craft(c, json_string_value(json_object_get(args, "item")), json_object_get(args, "using"), out);
    } else {
        do_inventory(c, out);
    }
    json_decref(args);
    return 0;
}

// ----------------------------------------------------------------------------
// scripted policy: works down the recipe tree in the order shown, getting every base item it
// will still need in one call, and adds the hidden requirements of the rules it knows

// units of each base item (and coal) still needed to make n more `item`, given a copy of the
// inventory that the walk consumes
static void demand(const CraftEnv* c, int item, int n, int* virt, int* need, uint32_t known) {
    int take = n < virt[item] ? n : virt[item];
    virt[item] -= take;
    n -= take;
    if (n == 0) return;
    const Item* it = &c->items[item];
    if (it->is_base) {
        need[item] += n;
        return;
    }
    int rule = requirement_rule(c, item);
    if (rule == R_COAL && (known >> R_COAL & 1)) demand(c, c->coal, n, virt, need, known);
    for (int k = 0; k < it->ning; k++) demand(c, it->ing[k], n * it->cnt[k], virt, need, known);
}

// the next action towards having n units of item; 0 if they are already held
static int next_action(const CraftEnv* c, int item, int n, uint32_t known, EnvPolicyAction* out) {
    if (c->good[item] + c->flawed[item] >= n) return 0;
    const Item* it = &c->items[item];
    char q[96];
    if (it->is_base) {
        int* virt = mallocCheck((size_t)c->nitems * sizeof(int));
        int* need = callocCheck((size_t)c->nitems, sizeof(int));
        for (int i = 0; i < c->nitems; i++) virt[i] = c->good[i] + c->flawed[i];
        demand(c, c->task->target, 1, virt, need, known);
        int count = need[item] > n - c->good[item] - c->flawed[item] ? need[item] : n - c->good[item] - c->flawed[item];
        free(virt);
        free(need);
        if (count > 10) count = 10;
        if (count == 1) env_policy_set(out, "get", -1, "{\"item\": %s}", env_json_str(it->name, q, sizeof(q)));
        else
            env_policy_set(out, "get", -1, "{\"item\": %s, \"count\": %d}", env_json_str(it->name, q, sizeof(q)),
                           count);
        return 1;
    }
    for (int k = 0; k < it->ning; k++)
        if (next_action(c, it->ing[k], it->cnt[k], known, out)) return 1;
    int req = requirement(c, item), rule = requirement_rule(c, item);
    int use_req = rule >= 0 && (known >> rule & 1);
    if (use_req && c->good[req] + c->flawed[req] == 0) {
        if (next_action(c, req, 1, known, out)) {
            out->rule = rule;
            return 1;
        }
    }
    StrBuf b = {0};
    strbuf_printf(&b, "{\"item\": %s, \"using\": [", env_json_str(it->name, q, sizeof(q)));
    int first = 1;
    for (int k = 0; k < it->ning; k++)
        for (int u = 0; u < it->cnt[k]; u++) {
            strbuf_printf(&b, "%s%s", first ? "" : ", ", env_json_str(c->items[it->ing[k]].name, q, sizeof(q)));
            first = 0;
        }
    if (use_req) strbuf_printf(&b, ", %s", env_json_str(c->items[req].name, q, sizeof(q)));
    strbuf_printf(&b, "]}");
    env_policy_set(out, "craft", use_req ? rule : -1, "%s", b.s);
    strbuf_free(&b);
    return 1;
}

static int tc_policy(Env* env, uint32_t known, EnvPolicyAction* out, EnvError* err) {
    CraftEnv* c = (CraftEnv*)env;
    if (!c->active || c->done) {
        snprintf(err->msg, sizeof(err->msg), "textcraft: no episode is running");
        return -1;
    }
    if (!next_action(c, c->task->target, 1, known, out)) env_policy_set(out, "inventory", -1, "{}");
    return 0;
}

// steps the expert takes on task t (generation keeps tasks within the turn limit)
static int expert_steps(CraftEnv* c, const TcTask* t) {
    start_episode(c, t);
    int steps = 0;
    EnvError err;
    while (!c->done && steps < 64) {
        EnvPolicyAction a;
        EnvResult r = {0};
        if (tc_policy(&c->base, ENV_RULES_ALL, &a, &err) != 0) break;
        EnvAction act = {a.tool, a.args_json};
        if (tc_step(&c->base, &act, &r, &err) != 0) break;
        env_result_free(&r);
        steps++;
    }
    c->active = 0;
    c->task = NULL;
    return c->done ? steps : 1000;
}

// ----------------------------------------------------------------------------
// creation

static uint32_t tc_task_rules(const Env* env, EnvSplit split, int task) {
    return ((const CraftEnv*)env)->tasks[split][task].bites;
}

static void tc_destroy(Env* env) {
    CraftEnv* c = (CraftEnv*)env;
    free(c->items);
    free(c->tasks[0]);
    free(c->tasks[1]);
    free(c->good);
    free(c->flawed);
    env_base_free(env);
    free(c);
}

static const EnvVtbl TC_VTBL = {tc_reset, tc_step, tc_policy, tc_task_rules, tc_destroy};

Env* env_textcraft_create(uint64_t seed, int ntrain, int nheldout, EnvError* err) {
    (void)err;
    CraftEnv* c = callocCheck(1, sizeof(CraftEnv));
    env_base_init(&c->base, &TC_VTBL, "textcraft", TC_TOOLS, 3, TC_RULES, R_COUNT);
    env_base_builtin_tasks(&c->base, ntrain, nheldout);
    uint64_t rng = env_mix(seed, 0x5443);
    make_book(c, &rng);
    uint8_t used_names[256] = {0};
    // held-out tasks first: the evaluation set must not change with env.train_tasks
    const int counts[2] = {ntrain, nheldout};
    for (int s = 1; s >= 0; s--) {
        c->tasks[s] = callocCheck((size_t)(counts[s] ? counts[s] : 1), sizeof(TcTask));
        for (int i = 0; i < counts[s]; i++)
            make_task(c, &c->tasks[s][i], env_mix(env_mix(seed, (uint64_t)s + 101), (uint64_t)i), used_names);
    }
    return &c->base;
}
