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
    return 0;
}

Trajectory* traj_decode(const uint8_t* data, size_t len, size_t* pos, char* err, size_t errlen) {
    Reader r = {data, len, *pos, err, errlen};
    char magic[4] = {0};
    uint32_t version = 0;
    if (take(&r, magic, 4, "magic") != 0) return NULL;
    if (memcmp(magic, TRAJ_MAGIC, 4) != 0) return bad(&r, "bad magic (not a trajectory record)"), NULL;
    if (take(&r, &version, 4, "version") != 0) return NULL;
    if (version != TRAJ_WIRE_VERSION) {
        return bad(&r, "wire version %u, this ingrain speaks %d (mixed ingrain versions in one job?)", version,
                   TRAJ_WIRE_VERSION), NULL;
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
    ok = ok && take_array(&r, (void**)&t->items, (size_t)n_items, 4, "items") == 0 && validate(&r, t) == 0;
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

void traj_student_view(const Trajectory* t, StudentView* v) {
    size_t n = (size_t)t->n_tokens;
    v->tokens = mallocCheck(sizeof(int32_t) * (n ? n : 1));
    v->agent_mask = mallocCheck(n ? n : 1);
    v->src_index = mallocCheck(sizeof(int32_t) * (n ? n : 1));
    v->topk_row = mallocCheck(sizeof(int32_t) * (n ? n : 1));
    int32_t m = 0, row = 0;
    for (int32_t i = 0; i < t->n_tokens; i++) {
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
