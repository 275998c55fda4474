// The experience pool (see pool.h): items, the audited operations, utility, pruning, the cap and
// the text views. The JSON form lives in pool_json.c.
#include "distill/pool.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "distill/text.h"
#include "rollout/bm25.h"

PoolParams pool_default_params(void) {
    return (PoolParams){.max_size = 50,
                        .max_item_words = 32,
                        .max_instance_words = 96,
                        .prune_threshold = -0.2,
                        .min_exposures = 5,
                        .prior = 1.0};
}

// ----------------------------------------------------------------------------
// lifetime and lookup

Pool* pool_create(PoolParams params) {
    Pool* p = callocCheck(1, sizeof(Pool));
    p->params = params;
    p->next_id = 1;
    return p;
}

static void item_free(PoolItem* it) {
    free(it->name);
    free(it->text);
    free(it->key);
    free(it->tasks);
    free(it->trajs);
}

static void audit_free(PoolAudit* a) {
    free(a->reason);
    free(a->before);
    free(a->after);
    free(a->evidence);
}

void pool_free(Pool* p) {
    if (!p) return;
    for (int i = 0; i < p->n_items; i++) item_free(&p->items[i]);
    for (int i = 0; i < p->n_audit; i++) audit_free(&p->audit[i]);
    free(p->items);
    free(p->audit);
    free(p);
}

int pool_size(const Pool* p) { return p->n_items; }

static int find_index(const Pool* p, int32_t id) {
    int lo = 0, hi = p->n_items - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (p->items[mid].id == id) return mid;
        if (p->items[mid].id < id) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

const PoolItem* pool_find(const Pool* p, int32_t id) {
    int i = find_index(p, id);
    return i < 0 ? NULL : &p->items[i];
}

const PoolItem* pool_find_key(const Pool* p, const char* key) {
    if (!key || !*key) return NULL;
    for (int i = 0; i < p->n_items; i++) {
        if (strcmp(p->items[i].key, key) == 0) return &p->items[i];
    }
    return NULL;
}

char* pool_item_render(const PoolItem* it) { return text_printf("%s: %s", it->name, it->text); }

// ----------------------------------------------------------------------------
// text rules

static int fail(char* err, size_t errlen, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char* err, size_t errlen, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int pool_check_text(const Pool* p, int kind, const char* name, const char* text, char* err, size_t errlen) {
    if (kind != ITEM_PRINCIPLE && kind != ITEM_INSTANCE) return fail(err, errlen, "unknown item kind %d", kind);
    if (!name || !text) return fail(err, errlen, "item name and text are required");
    if (!text_utf8_valid(name) || !text_utf8_valid(text)) return fail(err, errlen, "item text is not valid UTF-8");
    if (text_has_control(name) || text_has_control(text)) {
        return fail(err, errlen, "item text has a newline or control character (one line only)");
    }
    if (strchr(name, ':')) return fail(err, errlen, "item name '%s' contains a colon", name);
    int nw = text_count_words(name), tw = text_count_words(text);
    if (nw == 0) return fail(err, errlen, "item name is empty");
    if (nw > POOL_MAX_NAME_WORDS) {
        return fail(err, errlen, "item name has %d words, at most %d", nw, POOL_MAX_NAME_WORDS);
    }
    if (tw == 0) return fail(err, errlen, "item text is empty");
    int limit = kind == ITEM_PRINCIPLE ? p->params.max_item_words : p->params.max_instance_words;
    if (nw + tw > limit) {
        return fail(err, errlen, "%s has %d words, at most %d", kind == ITEM_PRINCIPLE ? "principle" : "instance",
                    nw + tw, limit);
    }
    return 0;
}

int pool_split_text(const char* full, char** name, char** text, char* err, size_t errlen) {
    *name = *text = NULL;
    const char* colon = strchr(full, ':');
    if (!colon) return fail(err, errlen, "text is not of the form 'Name: sentence' (no colon)");
    char* n = text_trim_dup(full, (size_t)(colon - full));
    char* t = text_trim_dup(colon + 1, strlen(colon + 1));
    if (!*n || !*t) {
        const char* empty = *n ? "sentence" : "name";
        free(n);
        free(t);
        return fail(err, errlen, "text is not of the form 'Name: sentence' (empty %s)", empty);
    }
    *name = n;
    *text = t;
    return 0;
}

// ----------------------------------------------------------------------------
// provenance and the audit log

static void keep_recent_tasks(PoolItem* it, int32_t task) {
    for (int i = 0; i < it->n_tasks; i++) {
        if (it->tasks[i] == task) return;
    }
    if (it->n_tasks == POOL_MAX_PROVENANCE) {
        memmove(it->tasks, it->tasks + 1, sizeof(int32_t) * (POOL_MAX_PROVENANCE - 1));
        it->n_tasks--;
    }
    it->tasks = reallocCheck(it->tasks, sizeof(int32_t) * (size_t)(it->n_tasks + 1));
    it->tasks[it->n_tasks++] = task;
}

static void keep_recent_traj(PoolItem* it, TrajRef r) {
    for (int i = 0; i < it->n_trajs; i++) {
        if (it->trajs[i].task_id == r.task_id && it->trajs[i].sample == r.sample) return;
    }
    if (it->n_trajs == POOL_MAX_PROVENANCE) {
        memmove(it->trajs, it->trajs + 1, sizeof(TrajRef) * (POOL_MAX_PROVENANCE - 1));
        it->n_trajs--;
    }
    it->trajs = reallocCheck(it->trajs, sizeof(TrajRef) * (size_t)(it->n_trajs + 1));
    it->trajs[it->n_trajs++] = r;
}

static void add_provenance(PoolItem* it, const TrajRef* ev, int n_ev) {
    for (int i = 0; i < n_ev; i++) {
        keep_recent_tasks(it, ev[i].task_id);
        keep_recent_traj(it, ev[i]);
    }
}

static void audit(Pool* p, int32_t iteration, int op, int32_t id, const char* reason, char* before, char* after,
                  const TrajRef* ev, int n_ev) {
    if (p->n_audit == p->cap_audit) {
        p->cap_audit = p->cap_audit ? 2 * p->cap_audit : 64;
        p->audit = reallocCheck(p->audit, sizeof(PoolAudit) * (size_t)p->cap_audit);
    }
    int n = n_ev < POOL_MAX_PROVENANCE ? n_ev : POOL_MAX_PROVENANCE;
    PoolAudit* a = &p->audit[p->n_audit++];
    a->iteration = iteration;
    a->op = op;
    a->item_id = id;
    a->reason = text_utf8_sanitize(reason ? reason : "");
    a->before = before;
    a->after = after;
    a->n_evidence = n;
    a->evidence = mallocCheck(sizeof(TrajRef) * (size_t)(n ? n : 1));
    if (n) memcpy(a->evidence, ev, sizeof(TrajRef) * (size_t)n);
}

// ----------------------------------------------------------------------------
// operations

int pool_add(Pool* p, int32_t iteration, int kind, const char* name, const char* text, const char* key,
             const TrajRef* ev, int n_ev, const char* reason, char* err, size_t errlen) {
    if (pool_check_text(p, kind, name, text, err, errlen) != 0) return -1;
    const PoolItem* same = pool_find_key(p, key);
    if (same) return fail(err, errlen, "an item with key '%s' exists already (id %d): UPDATE it", key, same->id);
    if (p->n_items == p->cap_items) {
        p->cap_items = p->cap_items ? 2 * p->cap_items : 64;
        p->items = reallocCheck(p->items, sizeof(PoolItem) * (size_t)p->cap_items);
    }
    PoolItem* it = &p->items[p->n_items++]; // ids only grow, so the array stays sorted
    memset(it, 0, sizeof(*it));
    it->id = p->next_id++;
    it->kind = kind;
    it->name = text_trim_dup(name, strlen(name));
    it->text = text_trim_dup(text, strlen(text));
    it->key = text_utf8_sanitize(key ? key : "");
    it->created = it->updated = iteration;
    it->last_used = -1;
    add_provenance(it, ev, n_ev);
    audit(p, iteration, POOL_ADD, it->id, reason, NULL, pool_item_render(it), ev, n_ev);
    return it->id;
}

int pool_update(Pool* p, int32_t iteration, int32_t id, const char* name, const char* text, const char* key,
                const TrajRef* ev, int n_ev, const char* reason, char* err, size_t errlen) {
    int i = find_index(p, id);
    if (i < 0) return fail(err, errlen, "no item with id %d", id);
    PoolItem* it = &p->items[i];
    if (pool_check_text(p, it->kind, name ? name : it->name, text, err, errlen) != 0) return -1;
    const PoolItem* same = pool_find_key(p, key);
    if (same && same != it) return fail(err, errlen, "key '%s' belongs to item %d already", key, same->id);
    char* before = pool_item_render(it);
    if (name) {
        free(it->name);
        it->name = text_trim_dup(name, strlen(name));
    }
    if (key) {
        free(it->key);
        it->key = text_utf8_sanitize(key);
    }
    free(it->text);
    it->text = text_trim_dup(text, strlen(text));
    it->updated = iteration;
    add_provenance(it, ev, n_ev);
    audit(p, iteration, POOL_UPDATE, id, reason, before, pool_item_render(it), ev, n_ev);
    return 0;
}

int pool_delete(Pool* p, int32_t iteration, int32_t id, const TrajRef* ev, int n_ev, const char* reason, char* err,
                size_t errlen) {
    int i = find_index(p, id);
    if (i < 0) return fail(err, errlen, "no item with id %d", id);
    char* before = pool_item_render(&p->items[i]);
    item_free(&p->items[i]);
    memmove(p->items + i, p->items + i + 1, sizeof(PoolItem) * (size_t)(p->n_items - i - 1));
    p->n_items--;
    audit(p, iteration, POOL_DELETE, id, reason, before, NULL, ev, n_ev);
    return 0;
}

void pool_none(Pool* p, int32_t iteration, const TrajRef* ev, int n_ev, const char* reason) {
    audit(p, iteration, POOL_NONE, -1, reason, NULL, NULL, ev, n_ev);
}

// ----------------------------------------------------------------------------
// utility, pruning and the cap

static int cmp_i32(const void* a, const void* b) {
    int32_t x = *(const int32_t*)a, y = *(const int32_t*)b;
    return (x > y) - (x < y);
}

void pool_observe(Pool* p, Trajectory* const* trajs, const uint8_t* success, int n) {
    for (int e = 0; e < n; e++) {
        const Trajectory* t = trajs[e];
        if (t->flags & TRAJ_FLAG_HELDOUT) continue;
        int m = t->item_offset[t->n_steps];
        int32_t* shown = mallocCheck(sizeof(int32_t) * (size_t)(m ? m : 1));
        if (m) memcpy(shown, t->items, sizeof(int32_t) * (size_t)m);
        qsort(shown, (size_t)m, sizeof(int32_t), cmp_i32);
        for (int i = 0; i < p->n_items; i++) {
            PoolItem* it = &p->items[i];
            if (it->created >= t->iteration) continue; // not in the pool while this episode ran
            int lo = 0, hi = m;                          // first position >= id
            while (lo < hi) {
                int mid = (lo + hi) / 2;
                if (shown[mid] < it->id) lo = mid + 1;
                else hi = mid;
            }
            int count = 0;
            while (lo + count < m && shown[lo + count] == it->id) count++;
            if (count) {
                it->times_shown += count;
                it->shown_episodes++;
                it->shown_successes += success[e] ? 1 : 0;
                if (t->iteration > it->last_used) it->last_used = t->iteration;
            } else {
                it->unshown_episodes++;
                it->unshown_successes += success[e] ? 1 : 0;
            }
        }
        free(shown);
    }
}

double pool_utility(const Pool* p, const PoolItem* it) {
    double a = p->params.prior;
    double shown = ((double)it->shown_successes + a) / ((double)it->shown_episodes + 2.0 * a);
    double unshown = ((double)it->unshown_successes + a) / ((double)it->unshown_episodes + 2.0 * a);
    return shown - unshown;
}

static char* stats_text(const Pool* p, const PoolItem* it) {
    return text_printf("utility %+.3f; success %lld/%lld shown, %lld/%lld not shown", pool_utility(p, it),
                       (long long)it->shown_successes, (long long)it->shown_episodes,
                       (long long)it->unshown_successes, (long long)it->unshown_episodes);
}

int pool_prune(Pool* p, int32_t iteration) {
    int deleted = 0;
    for (int i = 0; i < p->n_items;) {
        const PoolItem* it = &p->items[i];
        double u = pool_utility(p, it);
        // both sides need data: an item shown in every episode (global injection, or a condition
        // every episode meets) has no episodes to compare with, so its utility says nothing
        if (it->shown_episodes >= p->params.min_exposures && it->unshown_episodes >= p->params.min_exposures &&
            u < p->params.prune_threshold) {
            char* st = stats_text(p, it);
            char* why = text_printf("pruned: %s, below the threshold %+.3f", st, p->params.prune_threshold);
            char err[128];
            pool_delete(p, iteration, it->id, NULL, 0, why, err, sizeof(err));
            free(st);
            free(why);
            deleted++;
        } else {
            i++;
        }
    }
    return deleted;
}

int pool_enforce_cap(Pool* p, int32_t iteration) {
    int deleted = 0;
    while (p->n_items > p->params.max_size) {
        int worst = 0;
        double uw = pool_utility(p, &p->items[0]);
        for (int i = 1; i < p->n_items; i++) {
            double u = pool_utility(p, &p->items[i]);
            if (u <= uw) worst = i, uw = u; // '<=': on a tie the later (newer) item goes
        }
        char* st = stats_text(p, &p->items[worst]);
        char* why = text_printf("over the cap of %d items: lowest %s", p->params.max_size, st);
        char err[128];
        pool_delete(p, iteration, p->items[worst].id, NULL, 0, why, err, sizeof(err));
        free(st);
        free(why);
        deleted++;
    }
    return deleted;
}

// ----------------------------------------------------------------------------
// views

void pool_listing(const Pool* p, PoolListing* out) {
    out->n = p->n_items;
    out->ids = mallocCheck(sizeof(int32_t) * (size_t)(p->n_items ? p->n_items : 1));
    out->texts = mallocCheck(sizeof(char*) * (size_t)(p->n_items ? p->n_items : 1));
    for (int i = 0; i < p->n_items; i++) {
        out->ids[i] = p->items[i].id;
        out->texts[i] = pool_item_render(&p->items[i]);
    }
}

void pool_listing_free(PoolListing* l) {
    for (int i = 0; i < l->n; i++) free(l->texts[i]);
    free(l->ids);
    free(l->texts);
    memset(l, 0, sizeof(*l));
}

int pool_retrieve(const Pool* p, const char* query, int kind, int k, int32_t* ids, double* scores) {
    Bm25* ix = bm25_create(BM25_K1, BM25_B);
    int32_t* map = mallocCheck(sizeof(int32_t) * (size_t)(p->n_items ? p->n_items : 1));
    for (int i = 0; i < p->n_items; i++) {
        if (kind >= 0 && p->items[i].kind != kind) continue;
        char* s = pool_item_render(&p->items[i]);
        map[bm25_add(ix, s)] = p->items[i].id;
        free(s);
    }
    int* top = mallocCheck(sizeof(int) * (size_t)(k > 0 ? k : 1));
    int m = bm25_top(ix, query, k, top, scores);
    for (int i = 0; i < m; i++) ids[i] = map[top[i]];
    free(top);
    free(map);
    bm25_free(ix);
    return m;
}

static void append_evidence(StrBuf* b, const PoolAudit* a) {
    if (a->reason[0]) strbuf_printf(b, " [%s", a->reason);
    else strbuf_printf(b, " [");
    for (int i = 0; i < a->n_evidence; i++) {
        strbuf_printf(b, "%s%d/%d", i == 0 ? (a->reason[0] ? "; evidence " : "evidence ") : " ",
                      a->evidence[i].task_id, a->evidence[i].sample);
    }
    strbuf_printf(b, "]\n");
}

char* pool_diff_text(const Pool* p, int32_t iteration) {
    int count[4] = {0};
    for (int i = 0; i < p->n_audit; i++) {
        if (p->audit[i].iteration == iteration) count[p->audit[i].op]++;
    }
    StrBuf b = {0};
    strbuf_printf(&b, "iteration %d: %d added, %d updated, %d deleted, %d none; %d items in the pool\n", iteration,
                  count[POOL_ADD], count[POOL_UPDATE], count[POOL_DELETE], count[POOL_NONE], p->n_items);
    for (int i = 0; i < p->n_audit; i++) {
        const PoolAudit* a = &p->audit[i];
        if (a->iteration != iteration) continue;
        switch (a->op) {
        case POOL_ADD: strbuf_printf(&b, "+ #%d %s", a->item_id, a->after); break;
        case POOL_UPDATE: strbuf_printf(&b, "~ #%d %s\n    -> %s", a->item_id, a->before, a->after); break;
        case POOL_DELETE: strbuf_printf(&b, "- #%d %s", a->item_id, a->before); break;
        default: strbuf_printf(&b, "= none"); break;
        }
        append_evidence(&b, a);
    }
    return strbuf_take(&b);
}

void pool_print(const Pool* p, FILE* out) {
    fprintf(out, "experience pool: %d items (cap %d), next id %d, %d audit entries\n", p->n_items,
            p->params.max_size, p->next_id, p->n_audit);
    fprintf(out, "%5s %-9s %6s %10s %9s %8s %5s  %s\n", "id", "kind", "shown", "succ|shown", "succ|not", "utility",
            "last",
            "name: text");
    for (int i = 0; i < p->n_items; i++) {
        const PoolItem* it = &p->items[i];
        char shown[32], unshown[32];
        snprintf(shown, sizeof(shown), "%lld/%lld", (long long)it->shown_successes, (long long)it->shown_episodes);
        snprintf(unshown, sizeof(unshown), "%lld/%lld", (long long)it->unshown_successes,
                 (long long)it->unshown_episodes);
        fprintf(out, "%5d %-9s %6lld %10s %9s %+8.3f %5d  %s: %s\n", it->id,
                it->kind == ITEM_PRINCIPLE ? "principle" : "instance", (long long)it->times_shown, shown, unshown,
                pool_utility(p, it), it->last_used, it->name, it->text);
    }
}
