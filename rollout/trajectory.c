// Trajectory records: building, the wire format and the student view (see trajectory.h).
#include "rollout/trajectory.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "model/chat.h"

// the wire tags are the chat renderer's segments
_Static_assert((int)TRAJ_SEG_SYSTEM == (int)SEG_SYSTEM && (int)TRAJ_SEG_EXPERIENCE == (int)SEG_EXPERIENCE &&
                   (int)TRAJ_SEG_USER == (int)SEG_USER && (int)TRAJ_SEG_TOOL == (int)SEG_TOOL &&
                   (int)TRAJ_SEG_ASSISTANT == (int)SEG_ASSISTANT && (int)TRAJ_SEG_COUNT == (int)SEG_COUNT,
               "trajectory segment tags must match model/chat.h");

// ----------------------------------------------------------------------------
// building: arrays grow geometrically; capacities live beside the record

typedef struct {
    Trajectory t;
    int32_t cap_tokens, cap_agent, cap_steps, cap_items;
} TrajAlloc;

// the capacity to grow to for `need` elements (doubling), or 0 when `cap` suffices
static int32_t grown(int32_t cap, int32_t need) {
    if (need <= cap) return 0;
    int32_t c = cap ? cap : 64;
    while (c < need) c *= 2;
    return c;
}

Trajectory* traj_create(int32_t topk) {
    TrajAlloc* a = callocCheck(1, sizeof(TrajAlloc));
    a->t.topk = topk;
    a->t.item_offset = callocCheck(1, sizeof(int32_t));
    return &a->t;
}

void traj_free(Trajectory* t) {
    if (!t) return;
    free(t->tokens);
    free(t->segment);
    free(t->agent_mask);
    free(t->logprob);
    free(t->topk_ids);
    free(t->topk_lp);
    free(t->tail_mass);
    free(t->step_start);
    free(t->step_reward);
    free(t->item_offset);
    free(t->items);
    free(t->teacher_lp);
    free(t->tctx_step);
    free(t->tctx_at);
    free(t->tctx_end);
    free(t->tctx_offset);
    free(t->tctx_ids);
    free(t); // t is the first member of its TrajAlloc (or a plain decoded record of the same size)
}

static void grow_tokens(TrajAlloc* a, int32_t need) {
    int32_t c = grown(a->cap_tokens, need);
    if (!c) return;
    a->t.tokens = reallocCheck(a->t.tokens, sizeof(int32_t) * (size_t)c);
    a->t.segment = reallocCheck(a->t.segment, (size_t)c);
    a->t.agent_mask = reallocCheck(a->t.agent_mask, (size_t)c);
    a->t.logprob = reallocCheck(a->t.logprob, sizeof(float) * (size_t)c);
    a->cap_tokens = c;
}

static void grow_agent(TrajAlloc* a, int32_t need) {
    int32_t c = grown(a->cap_agent, need);
    if (!c) return;
    size_t k = (size_t)a->t.topk;
    if (k) {
        a->t.topk_ids = reallocCheck(a->t.topk_ids, sizeof(int32_t) * (size_t)c * k);
        a->t.topk_lp = reallocCheck(a->t.topk_lp, sizeof(float) * (size_t)c * k);
    }
    a->t.tail_mass = reallocCheck(a->t.tail_mass, sizeof(float) * (size_t)c);
    a->cap_agent = c;
}

static void grow_steps(TrajAlloc* a, int32_t need_steps, int32_t need_items) {
    int32_t c = grown(a->cap_steps, need_steps);
    if (c) {
        a->t.step_start = reallocCheck(a->t.step_start, sizeof(int32_t) * (size_t)c);
        a->t.step_reward = reallocCheck(a->t.step_reward, sizeof(float) * (size_t)c);
        a->t.item_offset = reallocCheck(a->t.item_offset, sizeof(int32_t) * (size_t)(c + 1));
        a->cap_steps = c;
    }
    c = grown(a->cap_items, need_items);
    if (c) {
        a->t.items = reallocCheck(a->t.items, sizeof(int32_t) * (size_t)c);
        a->cap_items = c;
    }
}

void traj_push_context(Trajectory* t, const int32_t* ids, int n, int segment) {
    TrajAlloc* a = (TrajAlloc*)t;
    grow_tokens(a, t->n_tokens + n);
    for (int i = 0; i < n; i++) {
        t->tokens[t->n_tokens] = ids[i];
        t->segment[t->n_tokens] = (uint8_t)segment;
        t->agent_mask[t->n_tokens] = 0;
        t->logprob[t->n_tokens] = 0.0f;
        t->n_tokens++;
    }
}

void traj_push_agent(Trajectory* t, int32_t id, float logprob, const int32_t* topk_ids, const float* topk_lp,
                     float tail_mass) {
    TrajAlloc* a = (TrajAlloc*)t;
    grow_tokens(a, t->n_tokens + 1);
    t->tokens[t->n_tokens] = id;
    t->segment[t->n_tokens] = TRAJ_SEG_ASSISTANT;
    t->agent_mask[t->n_tokens] = 1;
    t->logprob[t->n_tokens] = logprob;
    t->n_tokens++;
    grow_agent(a, t->n_agent + 1);
    if (t->topk > 0) {
        memcpy(t->topk_ids + (size_t)t->n_agent * t->topk, topk_ids, sizeof(int32_t) * (size_t)t->topk);
        memcpy(t->topk_lp + (size_t)t->n_agent * t->topk, topk_lp, sizeof(float) * (size_t)t->topk);
    }
    t->tail_mass[t->n_agent] = tail_mass;
    if (t->teacher_lp) t->teacher_lp = reallocCheck(t->teacher_lp, sizeof(float) * (size_t)(t->n_agent + 1));
    if (t->teacher_lp) t->teacher_lp[t->n_agent] = 0.0f;
    t->n_agent++;
}

void traj_begin_step(Trajectory* t, const int32_t* items, int n_items) {
    TrajAlloc* a = (TrajAlloc*)t;
    int32_t base = t->item_offset[t->n_steps];
    grow_steps(a, t->n_steps + 1, base + n_items);
    if (n_items) memcpy(t->items + base, items, sizeof(int32_t) * (size_t)n_items);
    t->step_start[t->n_steps] = t->n_tokens;
    t->step_reward[t->n_steps] = 0.0f;
    t->item_offset[t->n_steps + 1] = base + n_items;
    t->n_steps++;
}

void traj_set_step_reward(Trajectory* t, float reward) {
    if (t->n_steps > 0) t->step_reward[t->n_steps - 1] = reward;
}

void traj_set_teacher_lp(Trajectory* t, const float* lp) {
    const size_t n = (size_t)t->n_agent;
    t->teacher_lp = reallocCheck(t->teacher_lp, sizeof(float) * (n ? n : 1));
    if (n) memcpy(t->teacher_lp, lp, sizeof(float) * n);
}

void traj_add_teacher_context(Trajectory* t, int32_t step, int32_t at, int32_t end, const int32_t* ids, int n) {
    const size_t e = (size_t)t->n_tctx, base = t->tctx_offset ? (size_t)t->tctx_offset[e] : 0;
    t->tctx_step = reallocCheck(t->tctx_step, sizeof(int32_t) * (e + 1));
    t->tctx_at = reallocCheck(t->tctx_at, sizeof(int32_t) * (e + 1));
    t->tctx_end = reallocCheck(t->tctx_end, sizeof(int32_t) * (e + 1));
    t->tctx_offset = reallocCheck(t->tctx_offset, sizeof(int32_t) * (e + 2));
    t->tctx_ids = reallocCheck(t->tctx_ids, sizeof(int32_t) * (base + (size_t)n + 1));
    t->tctx_step[e] = step;
    t->tctx_at[e] = at;
    t->tctx_end[e] = end;
    t->tctx_offset[e] = (int32_t)base;
    t->tctx_offset[e + 1] = (int32_t)(base + (size_t)n);
    if (n) memcpy(t->tctx_ids + base, ids, sizeof(int32_t) * (size_t)n);
    t->n_tctx++;
}

void traj_copy_teacher(Trajectory* dst, const Trajectory* src) {
    if (src->teacher_lp) traj_set_teacher_lp(dst, src->teacher_lp);
    for (int32_t e = 0; e < src->n_tctx; e++) {
        const int32_t o = src->tctx_offset[e];
        traj_add_teacher_context(dst, src->tctx_step[e], src->tctx_at[e], src->tctx_end[e], src->tctx_ids + o,
                                 src->tctx_offset[e + 1] - o);
    }
}

// ----------------------------------------------------------------------------
// the teacher's contexts

int traj_teacher_entry(const Trajectory* t, int step) {
    int e = -1;
    for (int i = 0; i < t->n_tctx && t->tctx_step[i] <= step; i++) e = i;
    return e;
}

int32_t* traj_teacher_context(const Trajectory* t, int step, int* n, int* end, int* shift) {
    const int e = traj_teacher_entry(t, step);
    const int32_t nr = e < 0 ? 0 : t->tctx_offset[e + 1] - t->tctx_offset[e];
    int32_t* out = mallocCheck(sizeof(int32_t) * ((size_t)t->n_tokens + (size_t)nr + 1));
    int h = 0; // the history first
    for (int32_t i = 0; i < t->n_tokens; i++) {
        if (t->segment[i] != TRAJ_SEG_EXPERIENCE) out[h++] = t->tokens[i];
    }
    *n = h;
    *end = *shift = 0;
    if (e < 0) return out;
    const int at = t->tctx_at[e], to = t->tctx_end[e];
    memmove(out + at + nr, out + to, sizeof(int32_t) * (size_t)(h - to));
    memcpy(out + at, t->tctx_ids + t->tctx_offset[e], sizeof(int32_t) * (size_t)nr);
    *n = h + nr - (to - at);
    *end = to;
    *shift = nr - (to - at);
    return out;
}

// ----------------------------------------------------------------------------
// encoding

static void buf_put(TrajBuf* b, const void* p, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 256;
        b->data = reallocCheck(b->data, b->cap);
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
}

// every supported host is little-endian (x86-64, aarch64); the static assert keeps it honest
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the trajectory wire format assumes a little-endian host");

static void put_u32(TrajBuf* b, uint32_t v) { buf_put(b, &v, 4); }
static void put_i32(TrajBuf* b, int32_t v) { buf_put(b, &v, 4); }

static const char TRAJ_MAGIC[4] = {'I', 'G', 'T', 'J'};

void traj_encode(const Trajectory* t, TrajBuf* b) {
    buf_put(b, TRAJ_MAGIC, 4);
    put_u32(b, TRAJ_WIRE_VERSION);
    put_i32(b, t->task_id);
    put_i32(b, t->sample);
    put_i32(b, t->iteration);
    put_u32(b, t->flags);
    buf_put(b, &t->seed, 8);
    buf_put(b, &t->final_reward, 4);
    put_i32(b, t->n_tokens);
    put_i32(b, t->n_agent);
    put_i32(b, t->topk);
    put_i32(b, t->n_steps);
    int32_t n_items = t->item_offset ? t->item_offset[t->n_steps] : 0;
    put_i32(b, n_items);
    size_t n = (size_t)t->n_tokens, na = (size_t)t->n_agent, k = (size_t)t->topk;
    buf_put(b, t->tokens, 4 * n);
    buf_put(b, t->segment, n);
    buf_put(b, t->agent_mask, n);
    buf_put(b, t->logprob, 4 * n);
    buf_put(b, t->topk_ids, 4 * na * k);
    buf_put(b, t->topk_lp, 4 * na * k);
    buf_put(b, t->tail_mass, 4 * na);
    buf_put(b, t->step_start, 4 * (size_t)t->n_steps);
    buf_put(b, t->step_reward, 4 * (size_t)t->n_steps);
    buf_put(b, t->item_offset, 4 * (size_t)(t->n_steps + 1));
    buf_put(b, t->items, 4 * (size_t)n_items);
    // version 2: the teacher's sampled-token log-probs and contexts
    put_u32(b, t->teacher_lp != NULL);
    if (t->teacher_lp) buf_put(b, t->teacher_lp, 4 * na);
    const size_t ne = (size_t)t->n_tctx;
    put_i32(b, t->n_tctx);
    put_i32(b, ne ? t->tctx_offset[ne] : 0);
    buf_put(b, t->tctx_step, 4 * ne);
    buf_put(b, t->tctx_at, 4 * ne);
    buf_put(b, t->tctx_end, 4 * ne);
    if (ne)
        buf_put(b, t->tctx_offset, 4 * (ne + 1));
    else
        put_i32(b, 0);
    buf_put(b, t->tctx_ids, 4 * (ne ? (size_t)t->tctx_offset[ne] : 0));
}

void traj_encode_batch(Trajectory* const* list, int n, TrajBuf* out) {
    put_u32(out, (uint32_t)n);
    for (int i = 0; i < n; i++) traj_encode(list[i], out);
}

void traj_buf_free(TrajBuf* b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

// ----------------------------------------------------------------------------
// decoding: every read is bounds-checked, every value validated

typedef struct {
    const uint8_t* data;
    size_t len, pos;
    char* err;
    size_t errlen;
} Reader;

static int bad(Reader* r, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(Reader* r, const char* fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(r->err, r->errlen, "trajectory record at byte %zu: %s", r->pos, msg);
    return -1;
}

static int take(Reader* r, void* dst, size_t n, const char* field) {
    if (n > r->len - r->pos) {
        return bad(r, "field '%s' needs %zu bytes, only %zu left (truncated message?)", field, n, r->len - r->pos);
    }
    if (n) memcpy(dst, r->data + r->pos, n);
    r->pos += n;
    return 0;
}

static int take_count(Reader* r, int32_t* v, int32_t max, const char* field) {
    if (take(r, v, 4, field) != 0) return -1;
    if (*v < 0 || *v > max) return bad(r, "'%s' is %d, must be in [0, %d]", field, *v, max);
    return 0;
}

// allocate and read an array of n elements of `size` bytes
static int take_array(Reader* r, void** dst, size_t n, size_t size, const char* field) {
    size_t bytes = n * size;
    *dst = mallocCheck(bytes > 0 ? bytes : 1);
    return take(r, *dst, bytes, field);
}

// the teacher's contexts: ascending steps, splices inside the history and before the first agent
// token of their first step, CSR offsets, ids
static int validate_teacher_contexts(Reader* r, const Trajectory* t) {
    if (t->n_tctx == 0) return 0;
    if (t->tctx_offset[0] != 0) return bad(r, "tctx_offset[0] = %d, must be 0", t->tctx_offset[0]);
    for (int32_t e = 0; e < t->n_tctx; e++) {
        const int32_t s = t->tctx_step[e];
        if (s < 0 || s >= t->n_steps || (e > 0 && s <= t->tctx_step[e - 1]))
            return bad(r, "tctx_step[%d] = %d is out of order or not a step (n_steps %d)", e, s, t->n_steps);
        if (t->tctx_offset[e + 1] < t->tctx_offset[e]) return bad(r, "tctx_offset is decreasing at entry %d", e);
        int32_t first = 0; // history index of the step's first token
        for (int32_t i = 0; i < t->step_start[s]; i++) first += t->segment[i] != TRAJ_SEG_EXPERIENCE;
        if (t->tctx_at[e] < 0 || t->tctx_end[e] < t->tctx_at[e] || t->tctx_end[e] > first)
            return bad(r, "teacher context %d replaces [%d, %d), not a range before step %d's first token (%d)", e,
                       t->tctx_at[e], t->tctx_end[e], s, first);
    }
    for (int32_t i = 0; i < t->tctx_offset[t->n_tctx]; i++) {
        if (t->tctx_ids[i] < 0) return bad(r, "tctx_ids[%d] = %d is negative", i, t->tctx_ids[i]);
    }
    return 0;
}

static int validate(Reader* r, const Trajectory* t) {
    int32_t agents = 0;
    for (int32_t i = 0; i < t->n_tokens; i++) {
        if (t->tokens[i] < 0) return bad(r, "tokens[%d] = %d is negative", i, t->tokens[i]);
        if (t->segment[i] >= TRAJ_SEG_COUNT) return bad(r, "segment[%d] = %u is not a segment tag", i, t->segment[i]);
        if (t->agent_mask[i] > 1) return bad(r, "agent_mask[%d] = %u is not 0 or 1", i, t->agent_mask[i]);
        if (t->agent_mask[i] && !(isfinite(t->logprob[i]) && t->logprob[i] <= 0.0f)) {
            return bad(r, "logprob[%d] = %g is not a log-probability", i, (double)t->logprob[i]);
        }
        agents += t->agent_mask[i];
    }
    if (agents != t->n_agent) return bad(r, "n_agent is %d but agent_mask has %d ones", t->n_agent, agents);
    for (int64_t i = 0; i < (int64_t)t->n_agent * t->topk; i++) {
        if (t->topk_ids[i] < 0) return bad(r, "topk_ids[%lld] = %d is negative", (long long)i, t->topk_ids[i]);
        if (!(t->topk_lp[i] <= 0.0f) || isnan(t->topk_lp[i])) {
            return bad(r, "topk_lp[%lld] = %g is not a log-probability", (long long)i, (double)t->topk_lp[i]);
        }
    }
    for (int32_t i = 0; i < t->n_agent; i++) {
        if (!(t->tail_mass[i] >= 0.0f && t->tail_mass[i] <= 1.0f)) {
            return bad(r, "tail_mass[%d] = %g is outside [0, 1]", i, (double)t->tail_mass[i]);
        }
    }
    for (int32_t s = 0; s < t->n_steps; s++) {
        if (t->step_start[s] < 0 || t->step_start[s] > t->n_tokens || (s > 0 && t->step_start[s] < t->step_start[s - 1])) {
            return bad(r, "step_start[%d] = %d is out of order or outside the %d tokens", s, t->step_start[s], t->n_tokens);
        }
        if (!isfinite(t->step_reward[s])) return bad(r, "step_reward[%d] is not finite", s);
    }
    if (t->item_offset[0] != 0) return bad(r, "item_offset[0] = %d, must be 0", t->item_offset[0]);
    for (int32_t s = 0; s < t->n_steps; s++) {
        if (t->item_offset[s + 1] < t->item_offset[s]) return bad(r, "item_offset is decreasing at step %d", s);
    }
    if (!isfinite(t->final_reward)) return bad(r, "final_reward is not finite");
    for (int32_t i = 0; t->teacher_lp && i < t->n_agent; i++) {
        if (!(isfinite(t->teacher_lp[i]) && t->teacher_lp[i] <= 0.0f))
            return bad(r, "teacher_lp[%d] = %g is not a log-probability", i, (double)t->teacher_lp[i]);
    }
    return validate_teacher_contexts(r, t);
}

// version 2's fields after the items
static int take_extras(Reader* r, Trajectory* t) {
    uint32_t has_lp = 0;
    int32_t n_ids = 0;
    if (take(r, &has_lp, 4, "has_teacher_lp") != 0) return -1;
    if (has_lp > 1) return bad(r, "has_teacher_lp is %u, must be 0 or 1", has_lp);
    if (has_lp && take_array(r, (void**)&t->teacher_lp, (size_t)t->n_agent, 4, "teacher_lp") != 0) return -1;
    if (take_count(r, &t->n_tctx, TRAJ_MAX_STEPS, "n_tctx") != 0 ||
        take_count(r, &n_ids, TRAJ_MAX_TCTX_IDS, "n_tctx_ids") != 0)
        return -1;
    const size_t ne = (size_t)t->n_tctx;
    if (take_array(r, (void**)&t->tctx_step, ne, 4, "tctx_step") != 0 ||
        take_array(r, (void**)&t->tctx_at, ne, 4, "tctx_at") != 0 ||
        take_array(r, (void**)&t->tctx_end, ne, 4, "tctx_end") != 0 ||
        take_array(r, (void**)&t->tctx_offset, ne + 1, 4, "tctx_offset") != 0)
        return -1;
    if (t->tctx_offset[ne] != n_ids)
        return bad(r, "tctx_offset[%zu] = %d but n_tctx_ids = %d", ne, t->tctx_offset[ne], n_ids);
    if (take_array(r, (void**)&t->tctx_ids, (size_t)n_ids, 4, "tctx_ids") != 0) return -1;
    if (ne == 0) { // a record without entries keeps no offsets (as traj_create makes it)
        free(t->tctx_offset), free(t->tctx_ids), free(t->tctx_step), free(t->tctx_at), free(t->tctx_end);
        t->tctx_offset = t->tctx_ids = t->tctx_step = t->tctx_at = t->tctx_end = NULL;
    }
    return 0;
}

Trajectory* traj_decode(const uint8_t* data, size_t len, size_t* pos, char* err, size_t errlen) {
    Reader r = {data, len, *pos, err, errlen};
    char magic[4] = {0};
    uint32_t version = 0;
    if (take(&r, magic, 4, "magic") != 0) return NULL;
    if (memcmp(magic, TRAJ_MAGIC, 4) != 0) return bad(&r, "bad magic (not a trajectory record)"), NULL;
    if (take(&r, &version, 4, "version") != 0) return NULL;
    if (version < TRAJ_WIRE_VERSION_MIN || version > TRAJ_WIRE_VERSION) {
        return bad(&r, "wire version %u, this ingrain reads versions %d to %d (written by a %s ingrain?)", version,
                   TRAJ_WIRE_VERSION_MIN, TRAJ_WIRE_VERSION, version > TRAJ_WIRE_VERSION ? "newer" : "much older"),
               NULL;
    }
    Trajectory* t = traj_create(0);
    int32_t n_items = 0;
    int ok = take(&r, &t->task_id, 4, "task_id") == 0 && take(&r, &t->sample, 4, "sample") == 0 &&
             take(&r, &t->iteration, 4, "iteration") == 0 && take(&r, &t->flags, 4, "flags") == 0 &&
             take(&r, &t->seed, 8, "seed") == 0 && take(&r, &t->final_reward, 4, "final_reward") == 0 &&
             take_count(&r, &t->n_tokens, TRAJ_MAX_TOKENS, "n_tokens") == 0 &&
             take_count(&r, &t->n_agent, t->n_tokens, "n_agent") == 0 &&
             take_count(&r, &t->topk, TRAJ_MAX_TOPK, "topk") == 0 &&
             take_count(&r, &t->n_steps, TRAJ_MAX_STEPS, "n_steps") == 0 &&
             take_count(&r, &n_items, TRAJ_MAX_ITEMS, "n_items") == 0;
    size_t n = (size_t)t->n_tokens, na = (size_t)t->n_agent, k = (size_t)t->topk, ns = (size_t)t->n_steps;
    free(t->item_offset);
    t->item_offset = NULL;
    ok = ok && take_array(&r, (void**)&t->tokens, n, 4, "tokens") == 0 &&
         take_array(&r, (void**)&t->segment, n, 1, "segment") == 0 &&
         take_array(&r, (void**)&t->agent_mask, n, 1, "agent_mask") == 0 &&
         take_array(&r, (void**)&t->logprob, n, 4, "logprob") == 0 &&
         take_array(&r, (void**)&t->topk_ids, na * k, 4, "topk_ids") == 0 &&
         take_array(&r, (void**)&t->topk_lp, na * k, 4, "topk_lp") == 0 &&
         take_array(&r, (void**)&t->tail_mass, na, 4, "tail_mass") == 0 &&
         take_array(&r, (void**)&t->step_start, ns, 4, "step_start") == 0 &&
         take_array(&r, (void**)&t->step_reward, ns, 4, "step_reward") == 0 &&
         take_array(&r, (void**)&t->item_offset, ns + 1, 4, "item_offset") == 0;
    ok = ok && (t->item_offset[ns] == n_items || bad(&r, "item_offset[%zu] = %d but n_items = %d", ns,
                                                     t->item_offset[ns], n_items) == 0);
    ok = ok && take_array(&r, (void**)&t->items, (size_t)n_items, 4, "items") == 0;
    ok = ok && (version < 2 || take_extras(&r, t) == 0) && validate(&r, t) == 0;
    if (!ok) {
        traj_free(t);
        return NULL;
    }
    // a decoded record can be extended like a built one: capacities = sizes
    TrajAlloc* a = (TrajAlloc*)t;
    a->cap_tokens = t->n_tokens;
    a->cap_agent = t->n_agent;
    a->cap_steps = t->n_steps;
    a->cap_items = n_items;
    *pos = r.pos;
    return t;
}

int traj_decode_batch(const uint8_t* data, size_t len, Trajectory*** list, int* n, char* err, size_t errlen) {
    Reader r = {data, len, 0, err, errlen};
    uint32_t count = 0;
    *list = NULL;
    *n = 0;
    if (take(&r, &count, 4, "batch count") != 0) return -1;
    // each record is at least 60 bytes: a count larger than the message allows is corrupt
    if (count > len / 60) return bad(&r, "batch count %u does not fit in a %zu-byte message", count, len);
    Trajectory** out = callocCheck(count ? count : 1, sizeof(Trajectory*));
    size_t pos = r.pos;
    for (uint32_t i = 0; i < count; i++) {
        out[i] = traj_decode(data, len, &pos, err, errlen);
        if (!out[i]) {
            for (uint32_t j = 0; j < i; j++) traj_free(out[j]);
            free(out);
            char inner[512];
            snprintf(inner, sizeof(inner), "%s", err);
            snprintf(err, errlen, "record %u of %u: %s", i, count, inner);
            return -1;
        }
    }
    if (pos != len) {
        for (uint32_t j = 0; j < count; j++) traj_free(out[j]);
        free(out);
        snprintf(err, errlen, "trajectory batch: %zu trailing bytes after %u records", len - pos, count);
        return -1;
    }
    *list = out;
    *n = (int)count;
    return 0;
}

// ----------------------------------------------------------------------------
// student view

int32_t traj_student_end(const Trajectory* t) {
    int32_t end = t->n_tokens;
    while (end > 0 && !t->agent_mask[end - 1]) end--;
    return end > 0 ? end : t->n_tokens;
}

void traj_student_view(const Trajectory* t, StudentView* v) {
    size_t n = (size_t)t->n_tokens;
    v->tokens = mallocCheck(sizeof(int32_t) * (n ? n : 1));
    v->agent_mask = mallocCheck(n ? n : 1);
    v->src_index = mallocCheck(sizeof(int32_t) * (n ? n : 1));
    v->topk_row = mallocCheck(sizeof(int32_t) * (n ? n : 1));
    int32_t m = 0, row = 0;
    const int32_t end = traj_student_end(t);
    for (int32_t i = 0; i < end; i++) {
        int is_agent = t->agent_mask[i];
        if (t->segment[i] != TRAJ_SEG_EXPERIENCE) {
            v->tokens[m] = t->tokens[i];
            v->agent_mask[m] = (uint8_t)is_agent;
            v->src_index[m] = i;
            v->topk_row[m] = is_agent ? row : -1;
            m++;
        }
        row += is_agent;
    }
    v->n_tokens = m;
}

void student_view_free(StudentView* v) {
    free(v->tokens);
    free(v->agent_mask);
    free(v->src_index);
    free(v->topk_row);
    memset(v, 0, sizeof(*v));
}
