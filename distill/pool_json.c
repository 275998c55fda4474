// The pool's JSON form (see pool.h, docs/EXPERIENCE.md): written with jansson in a fixed key order,
// every value an integer, a string or null, so text -> pool -> text is byte-exact. Reading is
// strict: unknown keys, wrong types, out-of-range values and inconsistent statistics are errors
// that name the JSON path ("$.items[2].stats.shown_successes").
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "distill/pool.h"
#include "distill/text.h"
#include "io/json_util.h"

static const char* const kind_names[] = {"principle", "instance"};
static const char* const op_names[] = {"ADD", "UPDATE", "DELETE", "NONE"};

// ----------------------------------------------------------------------------
// writing

static json_t* jstr(const char* s) {
    json_t* v = json_string(s);
    if (!v) fatal("pool JSON: a string is not valid UTF-8: '%s'", s);
    return v;
}

static void set(json_t* obj, const char* key, json_t* v) {
    if (json_object_set_new(obj, key, v) != 0) fatal("pool JSON: cannot set key '%s'", key);
}

static json_t* refs_json(const TrajRef* r, int n) {
    json_t* a = json_array();
    for (int i = 0; i < n; i++) {
        json_t* pair = json_array();
        json_array_append_new(pair, json_integer(r[i].task_id));
        json_array_append_new(pair, json_integer(r[i].sample));
        json_array_append_new(a, pair);
    }
    return a;
}

static json_t* item_json(const PoolItem* it) {
    json_t* o = json_object();
    set(o, "id", json_integer(it->id));
    set(o, "kind", jstr(kind_names[it->kind]));
    set(o, "name", jstr(it->name));
    set(o, "text", jstr(it->text));
    set(o, "key", jstr(it->key));
    json_t* prov = json_object();
    set(prov, "created", json_integer(it->created));
    set(prov, "updated", json_integer(it->updated));
    json_t* tasks = json_array();
    for (int i = 0; i < it->n_tasks; i++) json_array_append_new(tasks, json_integer(it->tasks[i]));
    set(prov, "tasks", tasks);
    set(prov, "trajectories", refs_json(it->trajs, it->n_trajs));
    set(o, "provenance", prov);
    json_t* st = json_object();
    set(st, "times_shown", json_integer(it->times_shown));
    set(st, "shown_episodes", json_integer(it->shown_episodes));
    set(st, "shown_successes", json_integer(it->shown_successes));
    set(st, "unshown_episodes", json_integer(it->unshown_episodes));
    set(st, "unshown_successes", json_integer(it->unshown_successes));
    set(st, "last_used", json_integer(it->last_used));
    set(o, "stats", st);
    return o;
}

static json_t* audit_json(const PoolAudit* a) {
    json_t* o = json_object();
    set(o, "iteration", json_integer(a->iteration));
    set(o, "op", jstr(op_names[a->op]));
    set(o, "id", json_integer(a->item_id));
    set(o, "reason", jstr(a->reason));
    set(o, "before", a->before ? jstr(a->before) : json_null());
    set(o, "after", a->after ? jstr(a->after) : json_null());
    set(o, "evidence", refs_json(a->evidence, a->n_evidence));
    return o;
}

char* pool_to_json(const Pool* p) {
    json_t* root = json_object();
    set(root, "version", json_integer(POOL_JSON_VERSION));
    set(root, "next_id", json_integer(p->next_id));
    json_t* items = json_array();
    for (int i = 0; i < p->n_items; i++) json_array_append_new(items, item_json(&p->items[i]));
    set(root, "items", items);
    json_t* log = json_array();
    for (int i = 0; i < p->n_audit; i++) json_array_append_new(log, audit_json(&p->audit[i]));
    set(root, "audit", log);
    char* s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!s) fatal("pool JSON: serialisation failed (out of memory?)");
    char* out = strdupCheck(s); // callers free() it; jansson's allocator may differ
    free(s);
    return out;
}

// ----------------------------------------------------------------------------
// reading: each getter names the path of what it reads

typedef struct {
    char* err;
    size_t errlen;
} Ctx;

static int bad(Ctx* c, const char* path, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(Ctx* c, const char* path, const char* fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "pool JSON: %s: %s", path, msg);
    return -1;
}

// obj must be an object whose keys are all in `keys` (NULL-terminated) and present
static int check_object(Ctx* c, const json_t* obj, const char* path, const char* const* keys) {
    if (!json_is_object(obj)) return bad(c, path, "expected an object, got %s", json_kind(obj));
    const char* key;
    json_t* v;
    json_object_foreach((json_t*)obj, key, v) {
        int known = 0;
        for (const char* const* k = keys; *k; k++) known |= strcmp(*k, key) == 0;
        if (!known) return bad(c, path, "unknown key '%s'", key);
    }
    for (const char* const* k = keys; *k; k++) {
        if (!json_object_get(obj, *k)) return bad(c, path, "missing key '%s'", *k);
    }
    return 0;
}

static int get_int(Ctx* c, const json_t* obj, const char* path, const char* key, long long lo, long long hi,
                   long long* out) {
    char p[256];
    snprintf(p, sizeof(p), "%s.%s", path, key);
    const json_t* v = json_object_get(obj, key);
    if (!json_is_integer(v)) return bad(c, p, "expected an integer, got %s", json_kind(v));
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return bad(c, p, "%lld is outside [%lld, %lld]", x, lo, hi);
    *out = x;
    return 0;
}

static int get_i32(Ctx* c, const json_t* obj, const char* path, const char* key, long long lo, int32_t* out) {
    long long x;
    if (get_int(c, obj, path, key, lo, INT32_MAX, &x) != 0) return -1;
    *out = (int32_t)x;
    return 0;
}

// a malloc'd copy of a string (or NULL for null when nullable)
static int get_str(Ctx* c, const json_t* obj, const char* path, const char* key, int nullable, char** out) {
    char p[256];
    snprintf(p, sizeof(p), "%s.%s", path, key);
    const json_t* v = json_object_get(obj, key);
    if (nullable && json_is_null(v)) {
        *out = NULL;
        return 0;
    }
    if (!json_is_string(v)) return bad(c, p, "expected a string%s, got %s", nullable ? " or null" : "", json_kind(v));
    if (strlen(json_string_value(v)) != json_string_length(v)) return bad(c, p, "string contains a NUL character");
    *out = strdupCheck(json_string_value(v));
    return 0;
}

static int get_enum(Ctx* c, const json_t* obj, const char* path, const char* key, const char* const* names, int n,
                    int* out) {
    char p[256];
    snprintf(p, sizeof(p), "%s.%s", path, key);
    const json_t* v = json_object_get(obj, key);
    if (!json_is_string(v)) return bad(c, p, "expected a string, got %s", json_kind(v));
    for (int i = 0; i < n; i++) {
        if (strcmp(json_string_value(v), names[i]) == 0) return *out = i, 0;
    }
    char choices[128] = "";
    for (int i = 0; i < n; i++) {
        snprintf(choices + strlen(choices), sizeof(choices) - strlen(choices), "%s%s", i ? ", " : "", names[i]);
    }
    return bad(c, p, "'%s' is not one of: %s", json_string_value(v), choices);
}

static int get_refs(Ctx* c, const json_t* obj, const char* path, const char* key, TrajRef** out, int32_t* n) {
    char p[256];
    snprintf(p, sizeof(p), "%s.%s", path, key);
    const json_t* a = json_object_get(obj, key);
    if (!json_is_array(a)) return bad(c, p, "expected an array, got %s", json_kind(a));
    size_t m = json_array_size(a);
    if (m > POOL_MAX_PROVENANCE) return bad(c, p, "%zu entries, at most %d", m, POOL_MAX_PROVENANCE);
    *out = mallocCheck(sizeof(TrajRef) * (m ? m : 1));
    *n = (int32_t)m;
    for (size_t i = 0; i < m; i++) {
        const json_t* pair = json_array_get(a, i);
        const json_t *t = json_array_get(pair, 0), *s = json_array_get(pair, 1);
        if (!json_is_array(pair) || json_array_size(pair) != 2 || !json_is_integer(t) || !json_is_integer(s) ||
            json_integer_value(t) < INT32_MIN || json_integer_value(t) > INT32_MAX || json_integer_value(s) < 0 ||
            json_integer_value(s) > INT32_MAX) {
            char q[300];
            snprintf(q, sizeof(q), "%s[%zu]", p, i);
            return bad(c, q, "expected a [task_id, sample] pair of integers (sample >= 0)");
        }
        (*out)[i] = (TrajRef){(int32_t)json_integer_value(t), (int32_t)json_integer_value(s)};
    }
    return 0;
}

// ----------------------------------------------------------------------------
// reading items and audit entries

static int read_item(Ctx* c, const json_t* o, const char* path, int32_t next_id, PoolItem* it) {
    static const char* const keys[] = {"id", "kind", "name", "text", "key", "provenance", "stats", NULL};
    static const char* const prov_keys[] = {"created", "updated", "tasks", "trajectories", NULL};
    static const char* const stat_keys[] = {"times_shown",      "shown_episodes",    "shown_successes",
                                            "unshown_episodes", "unshown_successes", "last_used", NULL};
    if (check_object(c, o, path, keys) != 0 || get_i32(c, o, path, "id", 1, &it->id) != 0 ||
        get_enum(c, o, path, "kind", kind_names, 2, &it->kind) != 0 || get_str(c, o, path, "name", 0, &it->name) != 0 ||
        get_str(c, o, path, "text", 0, &it->text) != 0 || get_str(c, o, path, "key", 0, &it->key) != 0) {
        return -1;
    }
    char p[256];
    if (it->id >= next_id) {
        snprintf(p, sizeof(p), "%s.id", path);
        return bad(c, p, "%d is not below next_id %d", it->id, next_id);
    }
    if (text_count_words(it->name) == 0 || text_has_control(it->name) || strchr(it->name, ':')) {
        snprintf(p, sizeof(p), "%s.name", path);
        return bad(c, p, "must be one line of words without a colon");
    }
    if (text_count_words(it->text) == 0 || text_has_control(it->text)) {
        snprintf(p, sizeof(p), "%s.text", path);
        return bad(c, p, "must be one non-empty line");
    }
    snprintf(p, sizeof(p), "%s.provenance", path);
    const json_t* prov = json_object_get(o, "provenance");
    if (check_object(c, prov, p, prov_keys) != 0 || get_i32(c, prov, p, "created", -1, &it->created) != 0 ||
        get_i32(c, prov, p, "updated", -1, &it->updated) != 0 ||
        get_refs(c, prov, p, "trajectories", &it->trajs, &it->n_trajs) != 0) {
        return -1;
    }
    const json_t* tasks = json_object_get(prov, "tasks");
    char q[300];
    snprintf(q, sizeof(q), "%s.tasks", p);
    if (!json_is_array(tasks)) return bad(c, q, "expected an array, got %s", json_kind(tasks));
    size_t m = json_array_size(tasks);
    if (m > POOL_MAX_PROVENANCE) return bad(c, q, "%zu entries, at most %d", m, POOL_MAX_PROVENANCE);
    it->tasks = mallocCheck(sizeof(int32_t) * (m ? m : 1));
    it->n_tasks = (int32_t)m;
    for (size_t i = 0; i < m; i++) {
        const json_t* v = json_array_get(tasks, i);
        if (!json_is_integer(v) || json_integer_value(v) < INT32_MIN || json_integer_value(v) > INT32_MAX) {
            snprintf(q, sizeof(q), "%s.tasks[%zu]", p, i);
            return bad(c, q, "expected a 32-bit integer task id, got %s", json_kind(v));
        }
        it->tasks[i] = (int32_t)json_integer_value(v);
    }
    snprintf(p, sizeof(p), "%s.stats", path);
    const json_t* st = json_object_get(o, "stats");
    long long v[5];
    if (check_object(c, st, p, stat_keys) != 0 || get_int(c, st, p, "times_shown", 0, INT64_MAX, &v[0]) != 0 ||
        get_int(c, st, p, "shown_episodes", 0, INT64_MAX, &v[1]) != 0 ||
        get_int(c, st, p, "shown_successes", 0, v[1], &v[2]) != 0 ||
        get_int(c, st, p, "unshown_episodes", 0, INT64_MAX, &v[3]) != 0 ||
        get_int(c, st, p, "unshown_successes", 0, v[3], &v[4]) != 0 ||
        get_i32(c, st, p, "last_used", -1, &it->last_used) != 0) {
        return -1;
    }
    it->times_shown = v[0];
    it->shown_episodes = v[1];
    it->shown_successes = v[2];
    it->unshown_episodes = v[3];
    it->unshown_successes = v[4];
    return 0;
}

static int read_audit(Ctx* c, const json_t* o, const char* path, int32_t next_id, PoolAudit* a) {
    static const char* const keys[] = {"iteration", "op", "id", "reason", "before", "after", "evidence", NULL};
    if (check_object(c, o, path, keys) != 0 || get_i32(c, o, path, "iteration", -1, &a->iteration) != 0 ||
        get_enum(c, o, path, "op", op_names, 4, &a->op) != 0 || get_i32(c, o, path, "id", -1, &a->item_id) != 0 ||
        get_str(c, o, path, "reason", 0, &a->reason) != 0 || get_str(c, o, path, "before", 1, &a->before) != 0 ||
        get_str(c, o, path, "after", 1, &a->after) != 0 ||
        get_refs(c, o, path, "evidence", &a->evidence, &a->n_evidence) != 0) {
        return -1;
    }
    char p[256];
    snprintf(p, sizeof(p), "%s.id", path);
    if (a->op == POOL_NONE && a->item_id != -1) return bad(c, p, "a NONE entry has id -1, got %d", a->item_id);
    if (a->op != POOL_NONE && (a->item_id < 1 || a->item_id >= next_id)) {
        return bad(c, p, "%d is not an item id (1 .. next_id - 1 = %d)", a->item_id, next_id - 1);
    }
    return 0;
}

Pool* pool_from_json(const char* json, size_t len, PoolParams params, char* err, size_t errlen) {
    Ctx c = {err, errlen};
    json_error_t je;
    json_t* root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(err, errlen, "pool JSON: line %d, column %d: %s", je.line, je.column, je.text);
        return NULL;
    }
    static const char* const keys[] = {"version", "next_id", "items", "audit", NULL};
    Pool* p = pool_create(params);
    long long version = 0;
    int ok = check_object(&c, root, "$", keys) == 0 && get_int(&c, root, "$", "version", 0, INT32_MAX, &version) == 0;
    if (ok && version != POOL_JSON_VERSION) {
        ok = bad(&c, "$.version", "%lld, this ingrain reads version %d", version, POOL_JSON_VERSION) == 0;
    }
    ok = ok && get_i32(&c, root, "$", "next_id", 1, &p->next_id) == 0;
    const json_t* items = json_object_get(root, "items");
    const json_t* log = json_object_get(root, "audit");
    if (ok && !json_is_array(items)) ok = bad(&c, "$.items", "expected an array, got %s", json_kind(items)) == 0;
    if (ok && !json_is_array(log)) ok = bad(&c, "$.audit", "expected an array, got %s", json_kind(log)) == 0;
    char path[64];
    for (size_t i = 0; ok && i < json_array_size(items); i++) {
        snprintf(path, sizeof(path), "$.items[%zu]", i);
        if (p->n_items == p->cap_items) {
            p->cap_items = p->cap_items ? 2 * p->cap_items : 64;
            p->items = reallocCheck(p->items, sizeof(PoolItem) * (size_t)p->cap_items);
        }
        PoolItem* it = &p->items[p->n_items++];
        memset(it, 0, sizeof(*it));
        ok = read_item(&c, json_array_get(items, i), path, p->next_id, it) == 0;
        if (ok && i > 0 && it->id <= p->items[p->n_items - 2].id) {
            ok = bad(&c, path, "id %d does not follow id %d (items are in ascending id order)", it->id,
                     p->items[p->n_items - 2].id) == 0;
        }
        if (ok && it->key[0]) {
            for (int j = 0; j + 1 < p->n_items; j++) {
                if (strcmp(p->items[j].key, it->key) == 0) {
                    ok = bad(&c, path, "key '%s' repeats the key of item %d", it->key, p->items[j].id) == 0;
                    break;
                }
            }
        }
    }
    for (size_t i = 0; ok && i < json_array_size(log); i++) {
        snprintf(path, sizeof(path), "$.audit[%zu]", i);
        if (p->n_audit == p->cap_audit) {
            p->cap_audit = p->cap_audit ? 2 * p->cap_audit : 64;
            p->audit = reallocCheck(p->audit, sizeof(PoolAudit) * (size_t)p->cap_audit);
        }
        PoolAudit* a = &p->audit[p->n_audit++];
        memset(a, 0, sizeof(*a));
        ok = read_audit(&c, json_array_get(log, i), path, p->next_id, a) == 0;
    }
    json_decref(root);
    if (!ok) {
        pool_free(p);
        return NULL;
    }
    return p;
}
