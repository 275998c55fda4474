// The contrastive principle miner (see extract.h, docs/EXPERIENCE.md): for every step of every
// episode, the condition features of what the agent saw (1..max_ngram word phrases of the task or
// of the last tool result) are paired with the action it took next (the tool). A pair
// (condition c, action a) becomes a rule when the steps that saw c and did a succeeded clearly more
// often than the steps that saw c and did something else:
//
//   p_with  = (s_with + 1) / (n_with + 2)      p_other = (s_other + 1) / (n_other + 2)
//   lift    = p_with - p_other
//   score   = lift - z * sqrt(p_with (1 - p_with) / (e_with + 2) + p_other (1 - p_other) / (e_other + 2))
//   e_with  = n_with / k, e_other = n_other / k, k = steps with the condition per distinct task
//
// ranked by score (a lift discounted by z standard errors, so support counts), with minimum
// support in both arms (a contrast with one other step is its prior's), task diversity and lift,
// and score > 0, and (experience.mine_max_share) an action the agent does not already take at most
// of the condition's steps: a rule restating its habit tells it nothing. The effective sizes e
// count tasks, not steps: the G samples of a task, and the steps of one episode, are near copies of
// each other, so evidence from two tasks repeated ten times is evidence from two tasks (a cluster
// design effect taken at its worst, every copy identical). Many pairs are tested at once, so on
// pure noise a few rules can still pass; the pool's utility tracking prunes them once they are
// shown. Rules that restate a better one are dropped: the same condition, or the same action on
// steps that mostly (80%) lie inside the better rule's steps or contain them ("stock" or "lamp is
// out" next to "out of stock"). The rules become "Phrase: When the last tool result mentions
// "phrase", call tool." items, merged with the pool.
// With choices (experience.mine_choices) a call whose argument starts a line of the last tool result
// is also the action "tool on the line marked <word>", the first content word after the argument
// there ("1. Thusheil Foods (2) - company, brewer", visit "Thusheil Foods (2)": visit on the result
// marked "company"), so that a rule can say which of several results to take, not only which tool.
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "distill/extract.h"
#include "distill/text.h"
#include "rollout/bm25.h"

// ----------------------------------------------------------------------------
// hash maps: strings -> ids (terms, tools) and 64-bit keys -> indices (conditions, pairs)

typedef struct {
    int n, cap;
    char** keys; // (n)
    int* slot;   // (cap) index into keys, -1 empty
} StrMap;

static uint64_t hash_str(const char* s) {
    uint64_t h = 1469598103934665603ull; // FNV-1a
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int str_id(StrMap* m, const char* key) {
    if (2 * (m->n + 1) > m->cap) {
        int cap = m->cap ? 2 * m->cap : 1024;
        free(m->slot);
        m->slot = mallocCheck(sizeof(int) * (size_t)cap);
        for (int i = 0; i < cap; i++) m->slot[i] = -1;
        m->keys = reallocCheck(m->keys, sizeof(char*) * (size_t)cap);
        m->cap = cap;
        for (int k = 0; k < m->n; k++) {
            size_t h = hash_str(m->keys[k]) & (size_t)(cap - 1);
            while (m->slot[h] >= 0) h = (h + 1) & (size_t)(cap - 1);
            m->slot[h] = k;
        }
    }
    size_t mask = (size_t)m->cap - 1, h = hash_str(key) & mask;
    for (; m->slot[h] >= 0; h = (h + 1) & mask) {
        if (strcmp(m->keys[m->slot[h]], key) == 0) return m->slot[h];
    }
    m->keys[m->n] = strdupCheck(key);
    m->slot[h] = m->n;
    return m->n++;
}

static void str_free(StrMap* m) {
    for (int i = 0; i < m->n; i++) free(m->keys[i]);
    free(m->keys);
    free(m->slot);
}

typedef struct {
    int n, cap;
    uint64_t* key; // (cap)
    int* val;      // (cap) -1 empty
} U64Map;

static uint64_t mix64(uint64_t x) { // splitmix64 finaliser
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// the value of key; when absent: -1, or (add) the next index n, which is stored
static int u64_get(U64Map* m, uint64_t key, int add) {
    if (add && 2 * (m->n + 1) > m->cap) {
        int cap = m->cap ? 2 * m->cap : 4096;
        uint64_t* k = mallocCheck(sizeof(uint64_t) * (size_t)cap);
        int* v = mallocCheck(sizeof(int) * (size_t)cap);
        for (int i = 0; i < cap; i++) v[i] = -1;
        for (int i = 0; i < m->cap; i++) {
            if (m->val[i] < 0) continue;
            size_t h = mix64(m->key[i]) & (size_t)(cap - 1);
            while (v[h] >= 0) h = (h + 1) & (size_t)(cap - 1);
            k[h] = m->key[i];
            v[h] = m->val[i];
        }
        free(m->key);
        free(m->val);
        m->key = k;
        m->val = v;
        m->cap = cap;
    }
    if (!m->cap) return -1;
    size_t mask = (size_t)m->cap - 1, h = mix64(key) & mask;
    for (; m->val[h] >= 0; h = (h + 1) & mask) {
        if (m->key[h] == key) return m->val[h];
    }
    if (!add) return -1;
    m->key[h] = key;
    m->val[h] = m->n;
    return m->n++;
}

static void u64_free(U64Map* m) {
    free(m->key);
    free(m->val);
}

// ----------------------------------------------------------------------------
// conditions: a phrase of 1..3 terms from the task or the last tool result, packed in 64 bits as
// source (bit 63) and three 21-bit slots of term id + 1 (0: empty)

#define TERM_BITS 21
#define TERM_LIMIT ((1 << TERM_BITS) - 2) // terms past this many distinct ones are not used
#define MAX_NGRAM 3

static const char* const stopwords[] = {
    "a", "an", "the", "of", "to", "in", "on", "for", "and", "or", "is", "are", "was", "were", "be", "been", "it",
    "its", "this", "that", "these", "those", "with", "as", "at", "by", "from", "you", "your", "i", "we", "he", "she",
    "they", "his", "her", "their", "has", "have", "had", "do", "does", "did", "will", "would", "can", "could", "if",
    "then", "so", "but", "into", "than", "there", "which", "what", "who", "whom", "when", "where", "how", "s", NULL};

static int is_content(const char* w) {
    int digits = 1;
    for (const char* p = w; *p; p++) digits &= (*p >= '0' && *p <= '9');
    if (digits) return 0;
    for (const char* const* s = stopwords; *s; s++) {
        if (strcmp(*s, w) == 0) return 0;
    }
    return 1;
}

typedef struct {
    StrMap terms;
    unsigned char* content; // (terms.cap) per term id: a content word
    int cap_content;
} Vocab;

static int term_of(Vocab* v, const char* w) {
    int id = str_id(&v->terms, w);
    if (id >= v->cap_content) {
        int cap = v->cap_content ? 2 * v->cap_content : 1024;
        while (cap <= id) cap *= 2;
        v->content = reallocCheck(v->content, (size_t)cap);
        v->cap_content = cap;
    }
    if (id == v->terms.n - 1) v->content[id] = (unsigned char)is_content(w);
    return id;
}

static int cmp_u64(const void* a, const void* b) {
    uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
    return (x > y) - (x < y);
}

// the distinct conditions of one step, sorted
static int step_conditions(Vocab* v, const StepText* st, int max_terms, int max_ngram, uint64_t** out) {
    char* buf;
    int n;
    bm25_tokenize(st->observation, &buf, &n);
    if (n > max_terms) n = max_terms;
    int* id = mallocCheck(sizeof(int) * (size_t)(n ? n : 1));
    const char* w = buf;
    for (int i = 0; i < n; i++, w += strlen(w) + 1) id[i] = term_of(v, w);
    free(buf);
    uint64_t src = st->obs_is_task ? 0 : 1ull << 63;
    uint64_t* f = mallocCheck(sizeof(uint64_t) * (size_t)(n * max_ngram + 1));
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (id[i] >= TERM_LIMIT || !v->content[id[i]]) continue; // phrases start with a content word
        uint64_t key = src;
        for (int len = 1; len <= max_ngram && i + len <= n; len++) {
            int t = id[i + len - 1];
            if (t >= TERM_LIMIT) break;
            key |= (uint64_t)(t + 1) << (TERM_BITS * (len - 1));
            if (v->content[t]) f[m++] = key; // ... and end with one
        }
    }
    free(id);
    qsort(f, (size_t)m, sizeof(uint64_t), cmp_u64);
    int u = 0;
    for (int i = 0; i < m; i++) {
        if (u == 0 || f[u - 1] != f[i]) f[u++] = f[i];
    }
    *out = f;
    return u;
}

static char* condition_phrase(const Vocab* v, uint64_t key) {
    StrBuf b = {0};
    for (int k = 0; k < MAX_NGRAM; k++) {
        uint64_t t = (key >> (TERM_BITS * k)) & ((1ull << TERM_BITS) - 1);
        if (t) strbuf_printf(&b, "%s%s", k ? " " : "", v->terms.keys[t - 1]);
    }
    char* raw = strbuf_take(&b);
    char* phrase = text_utf8_sanitize(raw); // a term cut at BM25_MAX_TERM bytes may split a character
    free(raw);
    return phrase;
}

// every content word of the step's arguments appears in its observation
static int args_from_observation(const StepText* st) {
    char *ob, *ab;
    int no, na, found = 0, content = 0;
    bm25_tokenize(st->observation, &ob, &no);
    bm25_tokenize(st->args, &ab, &na);
    const char* a = ab;
    for (int i = 0; i < na; i++, a += strlen(a) + 1) {
        if (!is_content(a)) continue;
        content++;
        const char* o = ob;
        int hit = 0;
        for (int j = 0; j < no && !hit; j++, o += strlen(o) + 1) hit = strcmp(a, o) == 0;
        found += hit;
    }
    free(ob);
    free(ab);
    return content > 0 && found == content;
}

// ----------------------------------------------------------------------------
// choices among the lines of a tool result

// the one string value of a call's arguments (compact JSON), or the text itself when it is not a
// JSON object; NULL when the object has no string value or more than one
static char* args_value(const char* args) {
    if (args[0] != '{') return strdupCheck(args);
    json_t* j = json_loads(args, 0, NULL);
    const char* found = NULL;
    int n = 0;
    const char* k;
    json_t* v;
    if (json_is_object(j)) {
        json_object_foreach(j, k, v) {
            if (json_is_string(v)) found = json_string_value(v), n++;
        }
    }
    char* out = n == 1 ? strdupCheck(found) : NULL;
    json_decref(j);
    return out;
}

char* contrastive_choice(const char* observation, const char* args) {
    char* value = args_value(args);
    if (!value) return NULL;
    const size_t len = strlen(value);
    char* out = NULL;
    for (const char* line = observation; len && *line && !out;) {
        const char* p = line;
        const char* eol = strchr(line, '\n');
        line = eol ? eol + 1 : line + strlen(line);
        while (*p == ' ' || *p == '\t') p++;
        const char* q = p;
        while (*q >= '0' && *q <= '9') q++;
        if (q > p && (*q == '.' || *q == ')') && q[1] == ' ') p = q + 2; // a list number "3. "
        if (strncmp(p, value, len) != 0) continue;
        p += len;
        while (*p == ' ') p++;
        if (*p != '-' && *p != ':' && *p != ',' && *p != '|') continue; // the value must be the line's whole head
        // the first content word after the separator, on the same line
        for (p++; *p && *p != '\n' && !out;) {
            while (*p && *p != '\n' && !((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))) p++;
            char w[CHOICE_MAX];
            size_t n = 0;
            for (; (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'); p++)
                if (n + 1 < sizeof(w)) w[n++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
            w[n] = '\0';
            if (n && is_content(w)) out = strdupCheck(w);
        }
    }
    free(value);
    return out;
}

static int is_tool_name(const char* t) {
    if (!*t) return 0;
    for (const char* p = t; *p; p++) {
        int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
                 *p == '-' || *p == '.';
        if (!ok) return 0;
    }
    return 1;
}

// ----------------------------------------------------------------------------
// counting

typedef struct {
    const EpisodeText* e;
    const StepText* st;
    int n_act;
    int act[2];      // ids in the action map: the tool, and "tool:choice" where the call chose a line
    int n_cond;
    uint64_t* cond;  // (n_cond) sorted
} Step;

typedef struct {
    int n, s;       // steps with the condition, successes
    int n_tasks;    // distinct tasks among them (episodes arrive sorted by task)
    int32_t last_task;
} CondStat;

typedef struct {
    int cond, act;
    int n, s;               // steps with the condition and this action, successes
    int n_tasks, last_task_set;
    int32_t last_task;      // of the successful steps (episodes arrive sorted by task)
    int candidate;
    // candidates only (third pass)
    const char* args;       // the common argument of the successful steps, NULL when they differ
    int args_differ, args_obs;
    int n_steps;
    int* steps;             // step indices with the condition and this action
    int n_ev;
    TrajRef* ev;
} PairStat;

typedef struct {
    Vocab vocab;
    StrMap acts;            // "tool", or "tool:choice"
    int choices;            // ExtractParams.choices
    int n_steps;
    Step* steps;
    U64Map conds, pairs;
    uint64_t* cond_key;     // (conds.n)
    CondStat* cs;
    PairStat* ps;
    int cap_cs, cap_ps;
} Miner;

static uint64_t pair_key(int cond, int act) { return ((uint64_t)(uint32_t)cond << 24) | (uint64_t)(uint32_t)act; }

// an action ("tool", or "tool:choice", formed only from a callable tool) a model can take
static int is_tool_action(const char* a) { return strchr(a, ':') != NULL || is_tool_name(a); }

// "tool", or "tool:choice" for a rule that names a result: the action as the miner keys it
static char* rule_action(const Rule* r) {
    return r->choice ? text_printf("%s:%s", r->tool, r->choice) : strdupCheck(r->tool);
}

static void score_pair(const Miner* mn, const PairStat* p, double z, double* lift, double* score) {
    const CondStat* c = &mn->cs[p->cond];
    double n1 = p->n, s1 = p->s, n0 = c->n - p->n, s0 = c->s - p->s;
    double p1 = (s1 + 1.0) / (n1 + 2.0), p0 = (s0 + 1.0) / (n0 + 2.0);
    *lift = p1 - p0;
    // the standard error counts tasks, not steps: steps of one task are near copies
    const double per_task = (double)c->n / (double)c->n_tasks, e1 = n1 / per_task, e0 = n0 / per_task;
    *score = *lift - z * sqrt(p1 * (1.0 - p1) / (e1 + 2.0) + p0 * (1.0 - p0) / (e0 + 2.0));
}

static int passes(const Miner* mn, const PairStat* p, const ExtractParams* prm) {
    double lift, score;
    score_pair(mn, p, prm->z, &lift, &score);
    const int n_cond = mn->cs[p->cond].n, n_other = n_cond - p->n;
    return is_tool_action(mn->acts.keys[p->act]) && p->n >= prm->min_support && p->s > 0 &&
           n_other >= prm->min_support && p->n_tasks >= prm->min_tasks && lift >= prm->min_lift && score > 0.0 &&
           p->n <= prm->max_share * n_cond;
}

// pass 1: conditions of every step and their counts
static void count_conditions(Miner* mn, const EpisodeText* eps, const int* order, int n, const ExtractParams* prm) {
    int total = 0;
    for (int k = 0; k < n; k++) total += eps[order[k]].n_steps;
    mn->steps = mallocCheck(sizeof(Step) * (size_t)(total ? total : 1));
    int ngram = prm->max_ngram < MAX_NGRAM ? prm->max_ngram : MAX_NGRAM;
    for (int k = 0; k < n; k++) {
        const EpisodeText* e = &eps[order[k]];
        for (int s = 0; s < e->n_steps; s++) {
            Step* st = &mn->steps[mn->n_steps++];
            st->e = e;
            st->st = &e->steps[s];
            st->n_act = 0;
            st->act[st->n_act++] = str_id(&mn->acts, e->steps[s].tool);
            char* choice = mn->choices && !st->st->obs_is_task && is_tool_name(e->steps[s].tool)
                               ? contrastive_choice(st->st->observation, st->st->args)
                               : NULL;
            if (choice) {
                char* a = text_printf("%s:%s", e->steps[s].tool, choice);
                st->act[st->n_act++] = str_id(&mn->acts, a);
                free(a);
                free(choice);
            }
            st->n_cond = step_conditions(&mn->vocab, st->st, prm->max_obs_terms, ngram, &st->cond);
            for (int c = 0; c < st->n_cond; c++) {
                int before = mn->conds.n;
                int ci = u64_get(&mn->conds, st->cond[c], 1);
                if (ci == before) {
                    if (ci >= mn->cap_cs) {
                        mn->cap_cs = mn->cap_cs ? 2 * mn->cap_cs : 4096;
                        mn->cs = reallocCheck(mn->cs, sizeof(CondStat) * (size_t)mn->cap_cs);
                        mn->cond_key = reallocCheck(mn->cond_key, sizeof(uint64_t) * (size_t)mn->cap_cs);
                    }
                    mn->cs[ci] = (CondStat){0, 0, 0, 0};
                    mn->cond_key[ci] = st->cond[c];
                }
                CondStat* cs = &mn->cs[ci];
                if (cs->n == 0 || cs->last_task != e->task_id) cs->n_tasks++;
                cs->last_task = e->task_id;
                cs->n++;
                cs->s += e->success != 0;
            }
        }
    }
}

// pass 2: (condition, action) pairs, for conditions frequent enough to hold a rule (support + contrast)
static void count_pairs(Miner* mn, const ExtractParams* prm) {
    for (int i = 0; i < mn->n_steps; i++) {
        const Step* st = &mn->steps[i];
        for (int c = 0; c < st->n_cond; c++) {
            int ci = u64_get(&mn->conds, st->cond[c], 0);
            if (mn->cs[ci].n < prm->min_support + 1) continue;
            for (int a = 0; a < st->n_act; a++) {
                int before = mn->pairs.n;
                int pi = u64_get(&mn->pairs, pair_key(ci, st->act[a]), 1);
                if (pi == before) {
                    if (pi >= mn->cap_ps) {
                        mn->cap_ps = mn->cap_ps ? 2 * mn->cap_ps : 4096;
                        mn->ps = reallocCheck(mn->ps, sizeof(PairStat) * (size_t)mn->cap_ps);
                    }
                    memset(&mn->ps[pi], 0, sizeof(PairStat));
                    mn->ps[pi].cond = ci;
                    mn->ps[pi].act = st->act[a];
                }
                PairStat* p = &mn->ps[pi];
                p->n++;
                if (!st->e->success) continue;
                p->s++;
                if (!p->last_task_set || p->last_task != st->e->task_id) p->n_tasks++;
                p->last_task_set = 1;
                p->last_task = st->e->task_id;
            }
        }
    }
}

// pass 3: step lists, evidence and argument patterns of the candidates
static void collect_candidates(Miner* mn) {
    for (int i = 0; i < mn->n_steps; i++) {
        const Step* st = &mn->steps[i];
        int obs_args = -1; // computed once per step, when needed
        for (int c = 0; c < st->n_cond; c++) {
            int ci = u64_get(&mn->conds, st->cond[c], 0);
            for (int a = 0; a < st->n_act; a++) {
                int pi = u64_get(&mn->pairs, pair_key(ci, st->act[a]), 0);
                if (pi < 0 || !mn->ps[pi].candidate) continue;
                PairStat* p = &mn->ps[pi];
                p->steps = reallocCheck(p->steps, sizeof(int) * (size_t)(p->n_steps + 1));
                p->steps[p->n_steps++] = i;
                TrajRef r = {st->e->task_id, st->e->sample};
                if (p->n_ev == 0 || p->ev[p->n_ev - 1].task_id != r.task_id ||
                    p->ev[p->n_ev - 1].sample != r.sample) {
                    p->ev = reallocCheck(p->ev, sizeof(TrajRef) * (size_t)(p->n_ev + 1));
                    p->ev[p->n_ev++] = r;
                }
                if (!st->e->success) continue;
                if (!p->args) p->args = st->st->args;
                else if (strcmp(p->args, st->st->args) != 0) p->args_differ = 1;
                if (obs_args < 0) obs_args = args_from_observation(st->st);
                p->args_obs += obs_args;
            }
        }
    }
}

static void miner_free(Miner* mn) {
    for (int i = 0; i < mn->n_steps; i++) free(mn->steps[i].cond);
    free(mn->steps);
    for (int i = 0; i < mn->pairs.n; i++) {
        free(mn->ps[i].steps);
        free(mn->ps[i].ev);
    }
    free(mn->ps);
    free(mn->cs);
    free(mn->cond_key);
    u64_free(&mn->conds);
    u64_free(&mn->pairs);
    str_free(&mn->acts);
    str_free(&mn->vocab.terms);
    free(mn->vocab.content);
}

// ----------------------------------------------------------------------------
// mining

static int rule_cmp(const Rule* a, const Rule* b) {
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    int wa = text_count_words(a->phrase), wb = text_count_words(b->phrase);
    if (wa != wb) return wa > wb ? -1 : 1; // the more specific condition first
    if (a->source != b->source) return a->source < b->source ? -1 : 1;
    int s = strcmp(a->phrase, b->phrase);
    return s ? s : strcmp(a->tool, b->tool);
}

// overlap of two ascending step lists relative to the smaller one: 1 when one contains the other
static double overlap(const int* a, int na, const int* b, int nb) {
    int i = 0, j = 0, both = 0;
    while (i < na && j < nb) {
        if (a[i] == b[j]) both++, i++, j++;
        else if (a[i] < b[j]) i++;
        else j++;
    }
    int small = na < nb ? na : nb;
    return small > 0 ? (double)both / (double)small : 0.0;
}

typedef struct {
    Rule rule;
    const PairStat* pair;
} Candidate;

int contrastive_mine(const EpisodeText* eps, int n, const ExtractParams* prm, Rule** rules) {
    int* order = mallocCheck(sizeof(int) * (size_t)(n ? n : 1));
    episode_order(eps, n, order);
    Miner mn = {.choices = prm->choices};
    count_conditions(&mn, eps, order, n, prm);
    count_pairs(&mn, prm);
    int m = 0;
    for (int i = 0; i < mn.pairs.n; i++) {
        mn.ps[i].candidate = passes(&mn, &mn.ps[i], prm);
        m += mn.ps[i].candidate;
    }
    if (m) collect_candidates(&mn);
    Candidate* cand = mallocCheck(sizeof(Candidate) * (size_t)(m ? m : 1));
    m = 0;
    for (int i = 0; i < mn.pairs.n; i++) {
        const PairStat* p = &mn.ps[i];
        if (!p->candidate) continue;
        Rule* r = &cand[m].rule;
        cand[m++].pair = p;
        uint64_t key = mn.cond_key[p->cond];
        r->source = (key >> 63) ? RULE_FROM_RESULT : RULE_FROM_TASK;
        r->phrase = condition_phrase(&mn.vocab, key);
        r->tool = strdupCheck(mn.acts.keys[p->act]);
        char* colon = strchr(r->tool, ':');
        r->choice = colon ? strdupCheck(colon + 1) : NULL;
        if (colon) *colon = '\0';
        // a choice of line says which argument: the steps' own values are one of them
        r->args = !colon && !p->args_differ && p->args && p->args[0] ? strdupCheck(p->args) : NULL;
        r->args_from_obs = !colon && 5 * p->args_obs >= 4 * p->s; // at least 80% of the successful steps
        r->n_with = p->n;
        r->s_with = p->s;
        r->n_other = mn.cs[p->cond].n - p->n;
        r->s_other = mn.cs[p->cond].s - p->s;
        r->n_tasks = p->n_tasks;
        score_pair(&mn, p, prm->z, &r->lift, &r->score);
        r->n_ev = p->n_ev;
        r->ev = mallocCheck(sizeof(TrajRef) * (size_t)(p->n_ev ? p->n_ev : 1));
        if (p->n_ev) memcpy(r->ev, p->ev, sizeof(TrajRef) * (size_t)p->n_ev);
    }
    // rank (insertion sort: few candidates, deterministic)
    for (int i = 1; i < m; i++) {
        Candidate v = cand[i];
        int j = i - 1;
        while (j >= 0 && rule_cmp(&cand[j].rule, &v.rule) > 0) cand[j + 1] = cand[j], j--;
        cand[j + 1] = v;
    }
    // Restatements: a candidate with a kept rule's phrase, or with its action on mostly the same
    // steps, says nothing new. Of two rules on the same steps, the one whose successes span more
    // tasks stays, in the better-ranked one's place: the G samples of a task are near copies, so a
    // condition seen in few tasks (often one entity's name, "gunmol") is the narrower rule and
    // transfers worse to unseen tasks than the word every such page shares ("citizen").
    Rule* out = mallocCheck(sizeof(Rule) * (size_t)(m ? m : 1));
    const PairStat** kept = mallocCheck(sizeof(PairStat*) * (size_t)(m ? m : 1));
    int n_kept = 0;
    for (int i = 0; i < m; i++) {
        const Rule* c = &cand[i].rule;
        const PairStat* cp = cand[i].pair;
        int k = 0, same_phrase = 0;
        for (; k < n_kept; k++) {
            same_phrase = out[k].source == c->source && strcmp(out[k].phrase, c->phrase) == 0;
            if (same_phrase ||
                (kept[k]->act == cp->act && overlap(kept[k]->steps, kept[k]->n_steps, cp->steps, cp->n_steps) >= 0.8))
                break;
        }
        const int broader = k < n_kept && !same_phrase && c->n_tasks > out[k].n_tasks;
        log_debug("miner: \"%s\" -> %s%s%s: %d/%d vs %d/%d, %d tasks, lift %+.2f, score %+.3f%s%s%s", c->phrase,
                  c->tool, c->choice ? " on the result marked " : "", c->choice ? c->choice : "", c->s_with, c->n_with,
                  c->s_other, c->n_other, c->n_tasks, c->lift, c->score,
                  k == n_kept ? "" : broader ? " (replaces the narrower \"" : " (restates \"",
                  k == n_kept ? "" : out[k].phrase, k == n_kept ? "" : "\")");
        if (k == n_kept) {
            kept[n_kept] = cp;
            out[n_kept++] = *c;
        } else if (broader) {
            contrastive_rules_free(&out[k], 1);
            kept[k] = cp;
            out[k] = *c;
        } else {
            contrastive_rules_free(&cand[i].rule, 1);
        }
    }
    free(kept);
    free(cand);
    miner_free(&mn);
    free(order);
    *rules = out;
    return n_kept;
}

void contrastive_rules_free(Rule* rules, int n) {
    for (int i = 0; i < n; i++) {
        free(rules[i].phrase);
        free(rules[i].tool);
        free(rules[i].choice);
        free(rules[i].args);
        free(rules[i].ev);
    }
}

// ----------------------------------------------------------------------------
// rendering: level 0 full, 1 without the argument detail, 2 the shortest form

static void render_level(const Rule* r, int level, char** name, char** text, char** key) {
    StrBuf nb = {0};
    strbuf_printf(&nb, "%s", r->phrase);
    if (nb.s[0] >= 'a' && nb.s[0] <= 'z') nb.s[0] = (char)(nb.s[0] - 32);
    *name = strbuf_take(&nb);
    const char* where = r->source == RULE_FROM_TASK ? "the task" : "the last tool result";
    int short_args = r->args && text_count_words(r->args) <= 6 && !strchr(r->args, '"') && !text_has_control(r->args);
    if (r->choice) {
        *text = text_printf("When %s mentions \"%s\", call %s on the result marked \"%s\".", where, r->phrase, r->tool,
                            r->choice);
    } else if (level == 2) {
        *text = text_printf("If %s mentions \"%s\", call %s.", where, r->phrase, r->tool);
    } else if (level == 0 && short_args) {
        *text = text_printf("When %s mentions \"%s\", call %s with \"%s\".", where, r->phrase, r->tool, r->args);
    } else if (level == 0 && r->args_from_obs) {
        *text = text_printf("When %s mentions \"%s\", call %s with a value taken from it.", where, r->phrase, r->tool);
    } else {
        *text = text_printf("When %s mentions \"%s\", call %s next.", where, r->phrase, r->tool);
    }
    char* action = rule_action(r);
    *key = text_printf("rule|%s|%s|%s", r->source == RULE_FROM_TASK ? "task" : "result", r->phrase, action);
    free(action);
}

void contrastive_render(const Rule* r, char** name, char** text, char** key) { render_level(r, 0, name, text, key); }

// ----------------------------------------------------------------------------
// merging into the pool

// " a b " contains " b " : phrase x nests in phrase y at word boundaries
static int nests(const char* x, const char* y) {
    char* xs = text_printf(" %s ", x);
    char* ys = text_printf(" %s ", y);
    int r = strstr(ys, xs) != NULL || strstr(xs, ys) != NULL;
    free(xs);
    free(ys);
    return r;
}

// the pool item a rule should update: same key; same condition (another action); the same action on
// a nested condition; or an item without key whose text names both the phrase and the tool
static const PoolItem* find_match(const Pool* p, const Rule* r, const char* key) {
    const PoolItem* same = pool_find_key(p, key);
    if (same) return same;
    const char* src = r->source == RULE_FROM_TASK ? "task" : "result";
    const char* action = strrchr(key, '|') + 1; // the rule's key ends in its action (rule_action)
    for (int i = 0; i < p->n_items; i++) {
        const PoolItem* it = &p->items[i];
        if (it->kind != ITEM_PRINCIPLE) continue;
        if (strncmp(it->key, "rule|", 5) == 0) {
            char* k = strdupCheck(it->key + 5);
            char* bar1 = strchr(k, '|');
            char* bar2 = bar1 ? strchr(bar1 + 1, '|') : NULL;
            int match = 0;
            if (bar2) {
                *bar1 = *bar2 = '\0';
                const char *ksrc = k, *kphrase = bar1 + 1, *ktool = bar2 + 1;
                match = strcmp(ksrc, src) == 0 &&
                        (strcmp(kphrase, r->phrase) == 0 || (strcmp(ktool, action) == 0 && nests(kphrase, r->phrase)));
            }
            free(k);
            if (match) return it;
        } else if (!it->key[0]) {
            char* low = strdupCheck(it->text);
            for (char* q = low; *q; q++) *q = (char)((*q >= 'A' && *q <= 'Z') ? *q + 32 : *q);
            int match = strstr(low, r->phrase) != NULL && strstr(low, r->tool) != NULL;
            free(low);
            if (match) return it;
        }
    }
    return NULL;
}

void extract_contrastive(Pool* p, const EpisodeText* eps, int n, int32_t iteration, const ExtractParams* prm) {
    Rule* rules;
    int m = contrastive_mine(eps, n, prm, &rules);
    int32_t* touched = mallocCheck(sizeof(int32_t) * (size_t)(m ? m : 1));
    int n_touched = 0, applied = 0;
    for (int i = 0; i < m && applied < prm->max_rules; i++) {
        const Rule* r = &rules[i];
        char *name = NULL, *text = NULL, *key = NULL, err[256];
        for (int level = 0; level < 3; level++) {
            free(name), free(text), free(key);
            render_level(r, level, &name, &text, &key);
            if (pool_check_text(p, ITEM_PRINCIPLE, name, text, err, sizeof(err)) == 0) break;
        }
        char* why = text_printf("mined: after \"%s\" in %s, %s%s%s succeeded %d/%d vs %d/%d with other actions "
                                "(lift %+.2f, score %+.2f, %d tasks)",
                                r->phrase, r->source == RULE_FROM_TASK ? "the task" : "a tool result", r->tool,
                                r->choice ? " on the result marked " : "", r->choice ? r->choice : "",
                                r->s_with, r->n_with, r->s_other, r->n_other, r->lift, r->score, r->n_tasks);
        const PoolItem* match = find_match(p, r, key);
        int skip = 0;
        for (int k = 0; match && k < n_touched; k++) skip |= touched[k] == match->id;
        if (!skip && pool_check_text(p, ITEM_PRINCIPLE, name, text, err, sizeof(err)) == 0) {
            if (!match) {
                skip = pool_add(p, iteration, ITEM_PRINCIPLE, name, text, key, r->ev, r->n_ev, why, err,
                                sizeof(err)) < 0;
            } else if (strcmp(match->name, name) == 0 && strcmp(match->text, text) == 0) {
                touched[n_touched++] = match->id;
                char* conf = text_printf("item %d confirmed: %s", match->id, why);
                pool_none(p, iteration, r->ev, r->n_ev, conf);
                free(conf);
            } else {
                int32_t id = match->id;
                touched[n_touched++] = id;
                skip = pool_update(p, iteration, id, name, text, key, r->ev, r->n_ev, why, err, sizeof(err)) != 0;
            }
            applied += !skip;
        }
        free(why);
        free(name);
        free(text);
        free(key);
    }
    if (applied == 0) {
        int steps = 0;
        for (int i = 0; i < n; i++) steps += eps[i].n_steps;
        char* why = text_printf("contrastive: no condition separates successful from failed steps "
                                "(%d episodes, %d steps, %d candidate rules)", n, steps, m);
        pool_none(p, iteration, NULL, 0, why);
        free(why);
    }
    free(touched);
    contrastive_rules_free(rules, m);
    free(rules);
}
