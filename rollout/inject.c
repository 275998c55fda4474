// Experience list, its rendering, BM25 selection and the LLM selector's request and parser
// (see inject.h).
#include "rollout/inject.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"

// ----------------------------------------------------------------------------
// the list

void exp_list_init(ExpList* l) { memset(l, 0, sizeof(*l)); }

void exp_list_add(ExpList* l, int32_t id, const char* text) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->ids = reallocCheck(l->ids, sizeof(int32_t) * (size_t)l->cap);
        l->texts = reallocCheck(l->texts, sizeof(char*) * (size_t)l->cap);
    }
    l->ids[l->n] = id;
    l->texts[l->n] = strdupCheck(text);
    l->n++;
}

void exp_list_free(ExpList* l) {
    for (int i = 0; i < l->n; i++) free(l->texts[i]);
    free(l->ids);
    free(l->texts);
    memset(l, 0, sizeof(*l));
}

// ----------------------------------------------------------------------------
// a small growable string

typedef struct {
    char* s;
    size_t n, cap;
} Str;

static void str_add(Str* b, const char* s) {
    size_t len = strlen(s);
    if (b->n + len + 1 > b->cap) {
        b->cap = 2 * (b->n + len + 1);
        b->s = reallocCheck(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, len + 1);
    b->n += len;
}

__attribute__((format(printf, 2, 3))) static void str_addf(Str* b, const char* fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    str_add(b, tmp);
}

static void render_items(Str* b, const ExpList* l, const int* idx, int n) {
    for (int i = 0; i < n; i++) {
        str_add(b, "\n- ");
        str_add(b, l->texts[idx ? idx[i] : i]);
    }
}

char* inject_render_global(const ExpList* l) {
    Str b = {0};
    str_add(&b, "\n\n" INJECT_GLOBAL_HEADING);
    render_items(&b, l, NULL, l->n);
    return b.s;
}

int inject_message_parts(const char* text, Segment seg, const char* exp, ChatPart parts[2]) {
    const ChatPart own = {text, seg}, items = {exp, SEG_EXPERIENCE};
    if (!exp) return parts[0] = own, 1;
    const int after = seg == SEG_SYSTEM;
    parts[0] = after ? own : items;
    parts[1] = after ? items : own;
    return 2;
}

char* inject_render_step(const ExpList* l, const int* idx, int n) {
    Str b = {0};
    str_add(&b, INJECT_STEP_HEADING);
    render_items(&b, l, idx, n);
    str_add(&b, "\n\n");
    return b.s;
}

// ----------------------------------------------------------------------------
// triggers

// s after prefix, or NULL
static const char* after(const char* s, const char* prefix) {
    size_t n = strlen(prefix);
    return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

TriggerSource exp_item_trigger(const char* item, char** phrase) {
    *phrase = NULL;
    const char* t = strstr(item, ": ");
    if (!t) return TRIGGER_NONE;
    t += 2;
    const char* c = after(t, "When ");
    if (!c) c = after(t, "If ");
    if (!c) return TRIGGER_NONE;
    TriggerSource src = TRIGGER_TASK;
    const char* q = after(c, "the task mentions \"");
    if (!q) src = TRIGGER_RESULT, q = after(c, "the last tool result mentions \"");
    const char* end = q ? strchr(q, '"') : NULL;
    if (!end || end == q) return TRIGGER_NONE;
    *phrase = mallocCheck((size_t)(end - q) + 1);
    memcpy(*phrase, q, (size_t)(end - q));
    (*phrase)[end - q] = '\0';
    return src;
}

int exp_trigger_holds(TriggerSource src, const char* phrase, const char* task, const char* result) {
    if (src == TRIGGER_NONE) return 1;
    const char* text = src == TRIGGER_TASK ? task : result;
    return text && bm25_phrase_in(text, phrase, 0);
}

// ----------------------------------------------------------------------------
// selection

struct ExpSelector {
    const ExpList* list;
    SelectParams p;       // min and max capped by the list size
    Bm25* ix;
    TriggerSource* trig;  // (n) per item
    char** phrase;        // (n) per item, NULL without a trigger
    double* scores;       // (n) scratch
    int* order;           // (n) scratch
};

ExpSelector* selector_create(const ExpList* l, const SelectParams* p) {
    ExpSelector* s = callocCheck(1, sizeof(ExpSelector));
    s->list = l;
    s->p = *p;
    if (s->p.max > l->n) s->p.max = l->n;
    if (s->p.min > s->p.max) s->p.min = s->p.max;
    s->ix = bm25_create(BM25_K1, BM25_B);
    for (int i = 0; i < l->n; i++) bm25_add(s->ix, l->texts[i]);
    s->trig = mallocCheck(sizeof(TriggerSource) * (size_t)(l->n + 1));
    s->phrase = callocCheck((size_t)(l->n + 1), sizeof(char*));
    for (int i = 0; i < l->n; i++) s->trig[i] = p->triggers ? exp_item_trigger(l->texts[i], &s->phrase[i]) : TRIGGER_NONE;
    s->scores = mallocCheck(sizeof(double) * (size_t)(l->n + 1));
    s->order = mallocCheck(sizeof(int) * (size_t)(l->n + 1));
    return s;
}

void selector_free(ExpSelector* s) {
    if (!s) return;
    bm25_free(s->ix);
    for (int i = 0; i < s->list->n; i++) free(s->phrase[i]);
    free(s->phrase);
    free(s->trig);
    free(s->scores);
    free(s->order);
    free(s);
}

int selector_pick(const ExpSelector* s, const char* query, const char* task, const char* result, int* idx) {
    const int n = s->list->n;
    if (n == 0 || s->p.max == 0) return 0;
    bm25_score(s->ix, query, s->scores);
    // rank: items whose trigger holds, then the items without one; each by (score desc, index asc)
    // by insertion sort (pools hold tens of items); items whose trigger fails are left out
    int m = 0, n_fired = 0; // items ranked; those of them shown because their trigger holds
    for (int i = 0; i < n; i++) {
        const int fired = s->trig[i] != TRIGGER_NONE; // past this line: triggered and holding
        if (fired && !exp_trigger_holds(s->trig[i], s->phrase[i], task, result)) continue;
        int j = m++;
        while (j > 0) {
            const int o = s->order[j - 1], o_fired = s->trig[o] != TRIGGER_NONE;
            if (o_fired > fired || (o_fired == fired && s->scores[o] >= s->scores[i])) break;
            s->order[j] = o;
            j--;
        }
        s->order[j] = i;
        n_fired += fired;
    }
    int k = 0;
    for (; k < n_fired && k < s->p.max; k++) idx[k] = s->order[k];
    const double best = k < m ? s->scores[s->order[k]] : 0.0;
    while (k < m && k < s->p.max) {
        double sc = s->scores[s->order[k]];
        if (k >= s->p.min && !(sc > 0.0 && sc >= s->p.cut * best)) break;
        idx[k] = s->order[k];
        k++;
    }
    return k;
}

// ----------------------------------------------------------------------------
// the LLM selector: request and strict parse

char* selector_llm_request(const ExpSelector* s) {
    Str b = {0};
    str_add(&b, "Choose the experience items that help most with your next step.");
    for (int i = 0; i < s->list->n; i++) {
        str_addf(&b, "\n%d. ", i + 1);
        str_add(&b, s->list->texts[i]);
    }
    str_addf(&b, "\nReply with %d to %d item numbers separated by commas (for example: ", s->p.min, s->p.max);
    str_add(&b, s->list->n >= 2 ? "1, 2" : "1");
    str_add(&b, "), nothing else.");
    return b.s;
}

__attribute__((format(printf, 3, 4))) static int parse_fail(char* err, size_t errlen, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int selector_llm_parse(const ExpSelector* s, const char* reply, int* idx, char* err, size_t errlen) {
    const int n = s->list->n;
    const char* p = reply;
    int k = 0;
    for (;;) {
        while (is_space(*p)) p++;
        if (!isdigit((unsigned char)*p))
            return parse_fail(err, errlen, "expected an item number at offset %d", (int)(p - reply));
        long v = 0;
        while (isdigit((unsigned char)*p)) {
            if (v < 1000000) v = 10 * v + (*p - '0');
            p++;
        }
        if (v < 1 || v > n) return parse_fail(err, errlen, "item number %ld is outside 1..%d", v, n);
        for (int i = 0; i < k; i++)
            if (idx[i] == (int)v - 1) return parse_fail(err, errlen, "item number %ld is repeated", v);
        if (k == s->p.max) return parse_fail(err, errlen, "more than %d item numbers", s->p.max);
        idx[k++] = (int)v - 1;
        while (is_space(*p)) p++;
        if (*p == '\0') break;
        if (*p != ',') return parse_fail(err, errlen, "unexpected character '%c' at offset %d", *p, (int)(p - reply));
        p++;
    }
    if (k < s->p.min) return parse_fail(err, errlen, "%d item numbers, fewer than %d", k, s->p.min);
    return k;
}
