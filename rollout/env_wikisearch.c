// wikisearch: an offline stand-in for the paper's web-QA setting. A seeded corpus of short entity
// pages (people, cities, companies, and same-name decoys: rivers, bands, ships, films) and
// multi-hop questions ("In which country was the founder of X born?"). Tools: search(query),
// visit(title), answer(text); exact-match reward after normalisation.
// Hidden rules (WS_RULES): decoys share a name but their snippet shows another kind; some true
// pages rank below three decoys and need the kind added to the query; countries seen on the way
// (citizenship, the first city) are traps, the answer is only on the last city's page.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "rollout/env_impl.h"

// ----------------------------------------------------------------------------
// the world

typedef enum { K_PERSON, K_CITY, K_COMPANY, K_RIVER, K_BAND, K_SHIP, K_FILM, K_COUNT } Kind;
static const char* kind_names[K_COUNT] = {"person", "city", "company", "river", "band", "ship", "film"};
static const char* occupations[] = {"painter", "baker", "pilot", "judge", "poet", "chemist", "farmer", "sailor"};
static const char* industries[] = {"toolmaker", "brewer", "shipyard", "publisher", "bank", "weaver"};
static const char* company_suffixes[] = {"Works", "Labs", "Group", "Foods", "Motors", "Mills"};
#define N_OCC 8
#define N_IND 6
#define N_COUNTRIES 10
#define N_RESULTS 3

typedef struct {
    char name[48];  // shared by a same-name group
    char title[64]; // unique: the name, or "name (2)", ...
    int kind;
    int detail;     // occupation (person) or industry (company)
    int country;    // city: where it is; person: citizenship; decoys: origin; -1 none
    int born_in;    // person -> city
    int founded;    // person -> company
    int founder;    // company -> person
    int based_in;   // company -> city
    int mayor;      // city -> person
    int popularity; // search tie-break: lower first
} Entity;

typedef enum { REL_FOUNDER, REL_BORN_IN, REL_BASED_IN, REL_MAYOR, REL_FOUNDED } Relation;

typedef enum { T_FOUNDER_BORN, T_COMPANY_BASED, T_MAYOR_BORN, T_FOUNDED_BASED, T_BASED_MAYOR_BORN, T_COUNT } Template;

#define MAX_HOPS 3

typedef struct {
    int tmpl;
    int hops;              // H: relations followed; chain has H+1 entities
    int chain[MAX_HOPS + 1];
    int answer;            // country index
    char question[160];
    uint32_t bites;        // rules a policy must know to succeed (for tests and docs)
} WsTask;

typedef enum { R_PICK_KIND = 0, R_REFINE, R_PLACE_PAGE, R_COUNT } RuleId;

static const EnvRule WS_RULES[R_COUNT] = {
    {"pick_kind", "When search results share a name, visit the one whose snippet shows the kind of entity "
                  "you need (person, city, company), not simply the first hit."},
    {"refine_query", "When no search result is the kind of entity you need, search again with the kind added, "
                     "for example 'Kelda Moor person'."},
    {"place_page", "When a question asks for a country, answer only from the page of the last city in the "
                   "chain; citizenship or other countries seen on the way mislead."},
};

static const EnvTool WS_TOOLS[] = {
    {"search", "Search pages by name; returns the top 3 titles with a snippet.", 1,
     {{"query", "string", "words of the name, optionally a kind", 1}}},
    {"visit", "Open the page with this exact title.", 1, {{"title", "string", "a title from the results", 1}}},
    {"answer", "Give the final answer; ends the episode.", 1, {{"text", "string", "the answer", 1}}},
};

#define MAX_LOG 64

typedef struct {
    Env base;
    Entity* ents;
    int nents, cap;
    char countries[N_COUNTRIES][24];
    WsTask* tasks[2];
    uint64_t* name_set; // hashes of every normalised name, open addressing
    size_t name_cap, name_count;
    // the episode
    int active, done;
    const WsTask* task;
    int last_action;    // 0 none, 1 search, 2 visit
    int last_visit;     // entity
    char last_query_name[128]; // normalised name part of the last query
    int last_refined;   // the last query had a kind word
    int results[N_RESULTS];
    int nresults;
    int visited[MAX_LOG];
    int nvisited;
} WikiEnv;

// ----------------------------------------------------------------------------
// names

static uint64_t str_hash(const char* s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ? h : 1;
}

static int name_set_has(const WikiEnv* w, uint64_t h) {
    if (w->name_cap == 0) return 0;
    for (size_t i = h % w->name_cap;; i = (i + 1) % w->name_cap) {
        if (w->name_set[i] == 0) return 0;
        if (w->name_set[i] == h) return 1;
    }
}

static void name_set_add(WikiEnv* w, uint64_t h) {
    if (2 * (w->name_count + 1) > w->name_cap) {
        uint64_t* old = w->name_set;
        size_t oldcap = w->name_cap;
        w->name_cap = oldcap ? 2 * oldcap : 1024;
        w->name_set = callocCheck(w->name_cap, sizeof(uint64_t));
        w->name_count = 0;
        for (size_t i = 0; i < oldcap; i++)
            if (old[i]) name_set_add(w, old[i]);
        free(old);
    }
    if (name_set_has(w, h)) return;
    size_t i = h % w->name_cap;
    while (w->name_set[i]) i = (i + 1) % w->name_cap;
    w->name_set[i] = h;
    w->name_count++;
}

static int is_kind_word(const char* word) {
    for (int k = 0; k < K_COUNT; k++)
        if (strcmp(word, kind_names[k]) == 0) return 1;
    return 0;
}

// a word that is no kind name and not used yet as a whole name
static void fresh_word(WikiEnv* w, uint64_t* rng, char* out, size_t n) {
    char norm[64];
    for (;;) {
        env_make_word(rng, out, n);
        env_normalize(out, norm, sizeof(norm));
        if (!is_kind_word(norm) && !name_set_has(w, str_hash(norm))) return;
    }
}

// a new name for an entity of kind k, unique in the world
static void fresh_name(WikiEnv* w, uint64_t* rng, int kind, char* out, size_t n) {
    char a[24], b[24], norm[64];
    for (;;) {
        fresh_word(w, rng, a, sizeof(a));
        if (kind == K_PERSON) {
            fresh_word(w, rng, b, sizeof(b));
            snprintf(out, n, "%s %s", a, b);
        } else if (kind == K_COMPANY) {
            snprintf(out, n, "%s %s", a, company_suffixes[env_rand_below(rng, 6)]);
        } else {
            snprintf(out, n, "%s", a);
        }
        env_normalize(out, norm, sizeof(norm));
        if (!name_set_has(w, str_hash(norm))) {
            name_set_add(w, str_hash(norm));
            return;
        }
    }
}

// ----------------------------------------------------------------------------
// world generation

static int new_entity(WikiEnv* w, int kind, const char* name, uint64_t* rng) {
    if (w->nents == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 256;
        w->ents = reallocCheck(w->ents, (size_t)w->cap * sizeof(Entity));
    }
    Entity* e = &w->ents[w->nents];
    memset(e, 0, sizeof(*e));
    snprintf(e->name, sizeof(e->name), "%s", name);
    snprintf(e->title, sizeof(e->title), "%s", name);
    e->kind = kind;
    e->detail = kind == K_PERSON ? env_rand_below(rng, N_OCC) : env_rand_below(rng, N_IND);
    e->country = -1;
    e->born_in = e->founded = e->founder = e->based_in = e->mayor = -1;
    e->popularity = 100 + env_rand_below(rng, 1000);
    return w->nents++;
}

static int new_named(WikiEnv* w, int kind, uint64_t* rng) {
    char name[48];
    fresh_name(w, rng, kind, name, sizeof(name));
    return new_entity(w, kind, name, rng);
}

static int other_country(uint64_t* rng, int avoid) {
    int c = env_rand_below(rng, N_COUNTRIES - 1);
    return c >= avoid ? c + 1 : c;
}

static const int tmpl_hops[T_COUNT] = {2, 1, 2, 2, 3};
// hop whose page shows the first country a reader meets (the trap); -1 none
static const int tmpl_trap_hop[T_COUNT] = {1, -1, 0, 0, 1};

// Builds the chain of task t: entities, links, countries, the question.
static void make_chain(WikiEnv* w, WsTask* t, uint64_t* rng, int trap_differs) {
    int* c = t->chain;
    int answer = env_rand_below(rng, N_COUNTRIES);
    t->answer = answer;
    int trap = trap_differs ? other_country(rng, answer) : answer;
    switch (t->tmpl) {
    case T_FOUNDER_BORN: // company -founder-> person -born_in-> city
        c[0] = new_named(w, K_COMPANY, rng);
        c[1] = new_named(w, K_PERSON, rng);
        c[2] = new_named(w, K_CITY, rng);
        w->ents[c[0]].founder = c[1];
        w->ents[c[1]].founded = c[0];
        w->ents[c[1]].born_in = c[2];
        w->ents[c[1]].country = trap;
        w->ents[c[2]].country = answer;
        snprintf(t->question, sizeof(t->question), "In which country was the founder of %s born?",
                 w->ents[c[0]].name);
        break;
    case T_COMPANY_BASED: // company -based_in-> city
        c[0] = new_named(w, K_COMPANY, rng);
        c[1] = new_named(w, K_CITY, rng);
        w->ents[c[0]].based_in = c[1];
        w->ents[c[1]].country = answer;
        snprintf(t->question, sizeof(t->question), "In which country is %s based?", w->ents[c[0]].name);
        break;
    case T_MAYOR_BORN: // city -mayor-> person -born_in-> city
        c[0] = new_named(w, K_CITY, rng);
        c[1] = new_named(w, K_PERSON, rng);
        c[2] = new_named(w, K_CITY, rng);
        w->ents[c[0]].mayor = c[1];
        w->ents[c[0]].country = trap;
        w->ents[c[1]].born_in = c[2];
        w->ents[c[1]].country = env_rand_below(rng, N_COUNTRIES);
        w->ents[c[2]].country = answer;
        snprintf(t->question, sizeof(t->question), "In which country was the mayor of %s born?", w->ents[c[0]].name);
        break;
    case T_FOUNDED_BASED: // person -founded-> company -based_in-> city
        c[0] = new_named(w, K_PERSON, rng);
        c[1] = new_named(w, K_COMPANY, rng);
        c[2] = new_named(w, K_CITY, rng);
        w->ents[c[0]].founded = c[1];
        w->ents[c[0]].country = trap;
        w->ents[c[1]].founder = c[0];
        w->ents[c[1]].based_in = c[2];
        w->ents[c[2]].country = answer;
        snprintf(t->question, sizeof(t->question), "In which country is the company founded by %s based?",
                 w->ents[c[0]].name);
        break;
    default: // company -based_in-> city -mayor-> person -born_in-> city
        c[0] = new_named(w, K_COMPANY, rng);
        c[1] = new_named(w, K_CITY, rng);
        c[2] = new_named(w, K_PERSON, rng);
        c[3] = new_named(w, K_CITY, rng);
        w->ents[c[0]].based_in = c[1];
        w->ents[c[1]].country = trap;
        w->ents[c[1]].mayor = c[2];
        w->ents[c[2]].born_in = c[3];
        w->ents[c[2]].country = env_rand_below(rng, N_COUNTRIES);
        w->ents[c[3]].country = answer;
        snprintf(t->question, sizeof(t->question), "In which country was the mayor of the city where %s is based born?",
                 w->ents[c[0]].name);
        break;
    }
}

// Gives chain entity `target` same-name decoys: `above` of them rank above it in search, and
// `below` below. Decoys are of other kinds, from a country other than the answer.
static void add_decoys(WikiEnv* w, int target, int above, int below, int answer, uint64_t* rng) {
    // kinds whose names look like the target's: a company's name ("Brill Works") suits a band,
    // a film or a ship; a person's or a city's name also suits a company or a river
    int kinds[K_COUNT], nk = 0;
    for (int k = K_COMPANY; k < K_COUNT; k++)
        if (k != w->ents[target].kind && !(w->ents[target].kind == K_COMPANY && k == K_RIVER)) kinds[nk++] = k;
    env_shuffle(rng, kinds, nk);
    int group[8], ng = 0;
    group[ng++] = target;
    w->ents[target].popularity = 50;
    for (int i = 0; i < above + below; i++) {
        char name[48];
        snprintf(name, sizeof(name), "%s", w->ents[target].name); // new_entity may move w->ents
        int d = new_entity(w, kinds[i], name, rng);
        w->ents[d].country = other_country(rng, answer);
        w->ents[d].popularity = i < above ? 10 + i : 60 + i;
        group[ng++] = d;
    }
    // one member keeps the bare name as its title, the others get " (2)", " (3)", ...
    env_shuffle(rng, group, ng);
    for (int i = 1; i < ng; i++) {
        Entity* e = &w->ents[group[i]];
        snprintf(e->title, sizeof(e->title), "%s (%d)", e->name, i + 1);
    }
}

static void make_task(WikiEnv* w, WsTask* t, uint64_t rng, double trap_rate) {
    double u = env_rand_unit(&rng);
    t->tmpl = u < 0.25 ? T_FOUNDER_BORN : u < 0.40 ? T_COMPANY_BASED : u < 0.65 ? T_MAYOR_BORN
            : u < 0.85 ? T_FOUNDED_BASED : T_BASED_MAYOR_BORN;
    t->hops = tmpl_hops[t->tmpl];
    int trap_hop = tmpl_trap_hop[t->tmpl];
    int trap_differs = trap_hop >= 0 && env_rand_unit(&rng) < trap_rate;
    make_chain(w, t, &rng, trap_differs);
    // decoys: none that matter (50%), some ranked first (pick_kind, 25%), three ranked first so
    // that the true page drops out of the top 3 (refine_query, 25%). A reader who stops at the
    // trap never reaches later hops, so decoys that matter sit at or before it unless the trap
    // itself bites.
    double m = env_rand_unit(&rng);
    int mode = m < 0.5 ? 0 : m < 0.75 ? 1 : 2;
    int last_hop = (trap_hop >= 0 && !trap_differs) ? trap_hop : t->hops;
    int hop = env_rand_below(&rng, last_hop + 1);
    if (mode == 0) {
        if (env_rand_below(&rng, 2)) add_decoys(w, t->chain[hop], 0, 1 + env_rand_below(&rng, 2), t->answer, &rng);
    } else if (mode == 1) {
        add_decoys(w, t->chain[hop], 1 + env_rand_below(&rng, 2), 0, t->answer, &rng);
    } else {
        add_decoys(w, t->chain[hop], 3, 0, t->answer, &rng);
    }
    t->bites = (mode == 1 ? 1u << R_PICK_KIND : 0) | (mode == 2 ? 1u << R_REFINE : 0) |
               (trap_differs ? 1u << R_PLACE_PAGE : 0);
}

// ----------------------------------------------------------------------------
// pages and search

static int relation_of(const Entity* e, int rel) {
    switch (rel) {
    case REL_FOUNDER: return e->founder;
    case REL_BORN_IN: return e->born_in;
    case REL_BASED_IN: return e->based_in;
    case REL_MAYOR: return e->mayor;
    default: return e->founded;
    }
}

// the relation followed at hop h of a template
static int tmpl_relation(int tmpl, int h) {
    static const int rels[T_COUNT][MAX_HOPS] = {
        {REL_FOUNDER, REL_BORN_IN, 0},
        {REL_BASED_IN, 0, 0},
        {REL_MAYOR, REL_BORN_IN, 0},
        {REL_FOUNDED, REL_BASED_IN, 0},
        {REL_BASED_IN, REL_MAYOR, REL_BORN_IN},
    };
    return rels[tmpl][h];
}

static void snippet(const Entity* e, StrBuf* b) {
    if (e->kind == K_PERSON) strbuf_printf(b, "person, %s", occupations[e->detail]);
    else if (e->kind == K_COMPANY) strbuf_printf(b, "company, %s", industries[e->detail]);
    else strbuf_printf(b, "%s", kind_names[e->kind]);
}

static void page_text(const WikiEnv* w, const Entity* e, StrBuf* b) {
    const Entity* E = w->ents;
    switch (e->kind) {
    case K_PERSON:
        strbuf_printf(b, "%s: a person, %s.", e->title, occupations[e->detail]);
        if (e->born_in >= 0) strbuf_printf(b, " Born in %s.", E[e->born_in].name);
        strbuf_printf(b, " Citizen of %s.", w->countries[e->country]);
        if (e->founded >= 0) strbuf_printf(b, " Founder of %s.", E[e->founded].name);
        break;
    case K_CITY:
        strbuf_printf(b, "%s: a city in %s.", e->title, w->countries[e->country]);
        if (e->mayor >= 0) strbuf_printf(b, " Mayor: %s.", E[e->mayor].name);
        break;
    case K_COMPANY:
        strbuf_printf(b, "%s: a company, %s.", e->title, industries[e->detail]);
        if (e->founder >= 0) strbuf_printf(b, " Founded by %s.", E[e->founder].name);
        if (e->based_in >= 0) strbuf_printf(b, " Based in %s.", E[e->based_in].name);
        break;
    default:
        strbuf_printf(b, "%s: a %s from %s.", e->title, kind_names[e->kind], w->countries[e->country]);
        break;
    }
}

// the country a page mentions first, or -1 (companies mention none)
static int page_country(const Entity* e) {
    return e->kind == K_COMPANY ? -1 : e->country;
}

// splits a normalised query into its name part and whether it names a kind
static void split_query(const char* query, char* name, size_t n, int* has_kind) {
    char norm[256];
    env_normalize(query, norm, sizeof(norm));
    name[0] = '\0';
    *has_kind = 0;
    size_t len = 0;
    char* save = NULL;
    for (char* tok = strtok_r(norm, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        if (is_kind_word(tok)) {
            *has_kind = 1;
            continue;
        }
        int w = snprintf(name + len, n - len, "%s%s", len ? " " : "", tok);
        if (w < 0 || (size_t)w >= n - len) break; // the name part is cut at the buffer's end
        len += (size_t)w;
    }
}

static int word_in(const char* word, const char* words) {
    size_t wl = strlen(word);
    for (const char* p = words; (p = strstr(p, word)); p += wl)
        if ((p == words || p[-1] == ' ') && (p[wl] == ' ' || p[wl] == '\0')) return 1;
    return 0;
}

// Score of entity e for a query: an exact name match beats any partial one; a kind word in
// the query adds one for entities of that kind.
static int search_score(const Entity* e, const char* qname, const char* qnorm) {
    char ename[64];
    env_normalize(e->name, ename, sizeof(ename));
    int score = 0;
    if (qname[0] && strcmp(ename, qname) == 0) {
        score = 10;
    } else {
        char copy[128];
        snprintf(copy, sizeof(copy), "%s", qname);
        char* save = NULL;
        for (char* tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
            if (word_in(tok, ename)) score += 2;
    }
    if (score > 0 && word_in(kind_names[e->kind], qnorm)) score += 1;
    return score;
}

static int better(const WikiEnv* w, int a, int sa, int b, int sb) {
    if (sa != sb) return sa > sb;
    if (w->ents[a].popularity != w->ents[b].popularity) return w->ents[a].popularity < w->ents[b].popularity;
    return a < b;
}

static void do_search(WikiEnv* w, const char* query, StrBuf* out) {
    char qnorm[256], qname[128];
    int has_kind;
    env_normalize(query, qnorm, sizeof(qnorm));
    split_query(query, qname, sizeof(qname), &has_kind);
    int best[N_RESULTS], bscore[N_RESULTS], nb = 0;
    for (int i = 0; i < w->nents; i++) {
        int s = search_score(&w->ents[i], qname, qnorm);
        if (s <= 0) continue;
        int pos = nb;
        while (pos > 0 && better(w, i, s, best[pos - 1], bscore[pos - 1])) pos--;
        if (pos >= N_RESULTS) continue;
        int end = nb < N_RESULTS ? nb : N_RESULTS - 1;
        for (int k = end; k > pos; k--) {
            best[k] = best[k - 1];
            bscore[k] = bscore[k - 1];
        }
        best[pos] = i;
        bscore[pos] = s;
        if (nb < N_RESULTS) nb++;
    }
    w->last_action = 1;
    snprintf(w->last_query_name, sizeof(w->last_query_name), "%s", qname);
    w->last_refined = has_kind;
    w->nresults = nb;
    memcpy(w->results, best, sizeof(int) * (size_t)nb);
    if (nb == 0) {
        strbuf_printf(out, "No results for '%.80s'.", query);
        return;
    }
    strbuf_printf(out, "Results for '%.80s':", query);
    for (int k = 0; k < nb; k++) {
        strbuf_printf(out, "\n%d. %s - ", k + 1, w->ents[best[k]].title);
        snippet(&w->ents[best[k]], out);
    }
}

static int find_title(const WikiEnv* w, const char* title) {
    char want[128], have[128];
    env_normalize(title, want, sizeof(want));
    for (int i = 0; i < w->nents; i++) {
        env_normalize(w->ents[i].title, have, sizeof(have));
        if (strcmp(want, have) == 0) return i;
    }
    return -1;
}

// ----------------------------------------------------------------------------
// vtable

static int ws_reset(Env* env, EnvSplit split, int task, uint64_t seed, EnvResult* out, EnvError* err) {
    (void)seed; (void)err; // the world seed fixes everything; see docs/ENVIRONMENTS.md
    WikiEnv* w = (WikiEnv*)env;
    w->task = &w->tasks[split][task];
    w->active = 1;
    w->done = 0;
    w->last_action = 0;
    w->last_visit = -1;
    w->last_query_name[0] = '\0';
    w->last_refined = 0;
    w->nresults = 0;
    w->nvisited = 0;
    env_result_text(out, w->task->question);
    return 0;
}

static int ws_step(Env* env, const EnvAction* action, EnvResult* out, EnvError* err) {
    WikiEnv* w = (WikiEnv*)env;
    if (!w->active || w->done) {
        snprintf(err->msg, sizeof(err->msg), "wikisearch: step called %s",
                 w->active ? "after the episode ended" : "before reset");
        return -1;
    }
    json_t* args;
    int t = env_parse_action(env, action, &args, out);
    if (t < 0) return 0;
    StrBuf b = {0};
    if (t == 0) {
        do_search(w, json_string_value(json_object_get(args, "query")), &b);
        env_result_take(out, strbuf_take(&b));
    } else if (t == 1) {
        const char* title = json_string_value(json_object_get(args, "title"));
        int e = find_title(w, title);
        if (e < 0) {
            strbuf_printf(&b, "No page titled '%.80s'. Search to find exact titles.", title);
        } else {
            page_text(w, &w->ents[e], &b);
            w->last_action = 2;
            w->last_visit = e;
            if (w->nvisited < MAX_LOG) w->visited[w->nvisited++] = e;
        }
        env_result_take(out, strbuf_take(&b));
    } else {
        const char* text = json_string_value(json_object_get(args, "text"));
        int ok = env_same_text(text, w->countries[w->task->answer]);
        strbuf_printf(&b, "Answer recorded: %.80s.", text);
        env_result_final(out, strbuf_take(&b), ok ? 1.0 : 0.0);
        w->done = 1;
    }
    json_decref(args);
    return 0;
}

// ----------------------------------------------------------------------------
// scripted policy (reads the episode as a reader would: the pages visited, the last results)

static int ws_policy(Env* env, uint32_t known, EnvPolicyAction* out, EnvError* err) {
    WikiEnv* w = (WikiEnv*)env;
    if (!w->active || w->done) {
        snprintf(err->msg, sizeof(err->msg), "wikisearch: no episode is running");
        return -1;
    }
    const WsTask* t = w->task;
    const Entity* E = w->ents;
    int k_pick = (known >> R_PICK_KIND) & 1, k_refine = (known >> R_REFINE) & 1, k_place = (known >> R_PLACE_PAGE) & 1;
    char q[160];

    // Follow the visited pages along the question's chain: each page whose name is the one
    // sought gives the next name through the template's relation.
    int hop = 0, final_page = -1, stuck = -1;
    const char* target_name = E[t->chain[0]].name;
    for (int i = 0; i < w->nvisited && final_page < 0 && stuck < 0; i++) {
        const Entity* v = &E[w->visited[i]];
        if (strcmp(v->name, target_name) != 0) continue;
        if (hop == t->hops) {
            final_page = w->visited[i];
            break;
        }
        int link = relation_of(v, tmpl_relation(t->tmpl, hop));
        if (link < 0) {
            stuck = w->visited[i];
            break;
        }
        hop++;
        target_name = E[link].name;
    }
    int target_kind = E[t->chain[hop]].kind;

    // a country on the page just read: a reader who does not know place_page answers with it
    int trap_rule = -1;
    if (w->last_action == 2 && page_country(&E[w->last_visit]) >= 0 && w->last_visit != final_page) {
        if (!k_place) {
            env_policy_set(out, "answer", -1, "{\"text\": %s}",
                           env_json_str(w->countries[page_country(&E[w->last_visit])], q, sizeof(q)));
            return 0;
        }
        trap_rule = R_PLACE_PAGE;
    }
    if (final_page >= 0) {
        env_policy_set(out, "answer", -1, "{\"text\": %s}",
                       env_json_str(w->countries[E[final_page].country], q, sizeof(q)));
        return 0;
    }
    if (stuck >= 0) {
        int c = page_country(&E[stuck]);
        env_policy_set(out, "answer", -1, "{\"text\": %s}",
                       env_json_str(c >= 0 ? w->countries[c] : "unknown", q, sizeof(q)));
        return 0;
    }
    char want[64];
    env_normalize(target_name, want, sizeof(want));
    if (w->last_action == 1 && w->nresults > 0 && strcmp(w->last_query_name, want) == 0) {
        int match = -1;
        for (int k = 0; k < w->nresults && match < 0; k++)
            if (E[w->results[k]].kind == target_kind && strcmp(E[w->results[k]].name, target_name) == 0) match = k;
        int pick = 0, rule = trap_rule;
        if (k_pick && match > 0) {
            pick = match;
            rule = R_PICK_KIND;
        }
        if (match < 0 && k_refine && !w->last_refined) {
            char query[128];
            snprintf(query, sizeof(query), "%s %s", target_name, kind_names[target_kind]);
            env_policy_set(out, "search", R_REFINE, "{\"query\": %s}", env_json_str(query, q, sizeof(q)));
            return 0;
        }
        env_policy_set(out, "visit", rule, "{\"title\": %s}", env_json_str(E[w->results[pick]].title, q, sizeof(q)));
        return 0;
    }
    env_policy_set(out, "search", trap_rule, "{\"query\": %s}", env_json_str(target_name, q, sizeof(q)));
    return 0;
}

// ----------------------------------------------------------------------------
// creation

static void ws_destroy(Env* env) {
    WikiEnv* w = (WikiEnv*)env;
    free(w->ents);
    free(w->tasks[0]);
    free(w->tasks[1]);
    free(w->name_set);
    env_base_free(env);
    free(w);
}

static uint32_t ws_task_rules(const Env* env, EnvSplit split, int task) {
    return ((const WikiEnv*)env)->tasks[split][task].bites;
}

static const EnvVtbl WS_VTBL = {ws_reset, ws_step, ws_policy, ws_task_rules, ws_destroy};

Env* env_wikisearch_create(uint64_t seed, int ntrain, int nheldout, double trap_rate, EnvError* err) {
    (void)err;
    WikiEnv* w = callocCheck(1, sizeof(WikiEnv));
    env_base_init(&w->base, &WS_VTBL, "wikisearch", WS_TOOLS, 3, WS_RULES, R_COUNT);
    env_base_builtin_tasks(&w->base, ntrain, nheldout);
    uint64_t rng = env_mix(seed, 0x5753);
    for (int c = 0; c < N_COUNTRIES; c++) {
        fresh_name(w, &rng, K_CITY, w->countries[c], sizeof(w->countries[c]));
    }
    // held-out tasks first: the evaluation set must not change with env.train_tasks
    const int counts[2] = {ntrain, nheldout};
    for (int s = 1; s >= 0; s--) {
        w->tasks[s] = callocCheck((size_t)(counts[s] ? counts[s] : 1), sizeof(WsTask));
        for (int i = 0; i < counts[s]; i++)
            make_task(w, &w->tasks[s][i], env_mix(env_mix(seed, (uint64_t)s + 1), (uint64_t)i), trap_rate);
    }
    return &w->base;
}

