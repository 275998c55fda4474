// Teacher scoring for on-policy distillation and the teacher's contexts for distill.teacher:
// recompute (see agent.h). Both build, for every turn of a record, the context its teacher sees:
// the experience in context exactly as a teacher rollout puts it there. The record's messages are
// found from its segment tags; the one message that gets experience (the system message, or
// step-wise the last user/tool message before a turn) is rendered again from its text, recovered
// by decoding and checked by rendering it back to the same ids; every other id, the sampled ones
// above all, is used as it is. A turn's context is a splice of the history (the record without
// experience segments): one range replaced by the message with experience.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "rollout/agent_impl.h"

#define CONTENT_MARK "\x01ingrain-content\x01"

__attribute__((format(printf, 3, 4))) static int fail(char* err, size_t errlen, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static ChatRole segment_role(int seg) {
    return seg == SEG_SYSTEM ? CHAT_SYSTEM : seg == SEG_USER ? CHAT_USER : seg == SEG_TOOL ? CHAT_TOOL : CHAT_ASSISTANT;
}

// The text content of the message rendered as ids[0..n) (one role, no experience): the decoded
// ids without the decoded markup around a marker rendered in its place. NULL with err when the
// content does not render back to exactly these ids.
static char* message_content(Agent* a, int seg, int first, const int* ids, int n, int at, char* err, size_t errlen) {
    const ChatRole role = segment_role(seg);
    TokenBuf buf = {0};
    const ChatPart mark = {CONTENT_MARK, (Segment)seg};
    agent_render_message(a, role, &mark, 1, first, 0, &buf);
    size_t mlen, slen;
    char* ms = tokenizer_decode_alloc(a->tok, buf.ids, buf.n, &mlen);
    char* s = tokenizer_decode_alloc(a->tok, ids, n, &slen);
    const char* hit = strstr(ms, CONTENT_MARK);
    char* content = NULL;
    if (hit) {
        size_t pre = (size_t)(hit - ms), post = mlen - pre - strlen(CONTENT_MARK);
        if (slen >= pre + post && memcmp(s, ms, pre) == 0 &&
            memcmp(s + slen - post, hit + strlen(CONTENT_MARK), post) == 0) {
            content = mallocCheck(slen - pre - post + 1);
            memcpy(content, s + pre, slen - pre - post);
            content[slen - pre - post] = '\0';
        }
    }
    if (content) { // the proof: rendering the content gives the same ids
        buf.n = 0;
        const ChatPart part = {content, (Segment)seg};
        agent_render_message(a, role, &part, 1, first, 0, &buf);
        if (buf.n != n || memcmp(buf.ids, ids, sizeof(int) * (size_t)n) != 0) {
            free(content);
            content = NULL;
        }
    }
    if (!content)
        fail(err, errlen, "teacher scoring: the %s message at token %d does not render back to its %d ids",
             chat_segment_name((Segment)seg), at, n);
    free(ms);
    free(s);
    tokenbuf_free(&buf);
    return content;
}

// the same message with the experience text as a SEG_EXPERIENCE part, where the agent puts it
// (inject_message_parts)
static int message_with_experience(Agent* a, int seg, int first, const int* ids, int n, int at, const char* exp_text,
                                   TokenBuf* out, char* err, size_t errlen) {
    char* content = message_content(a, seg, first, ids, n, at, err, errlen);
    if (!content) return -1;
    ChatPart parts[2];
    const int np = inject_message_parts(content, (Segment)seg, exp_text, parts);
    agent_render_message(a, segment_role(seg), parts, np, first, 0, out);
    free(content);
    return 0;
}

// ----------------------------------------------------------------------------
// the teacher's context of every turn

typedef struct {
    int* ids;       // (n) the record's tokens without experience segments
    uint8_t* seg;   // (n)
    uint8_t* agent; // (n)
    int n;
} History;

// turn `step`: agent tokens [first, last) of the history; its teacher saw the history before
// `first` with [at, end) replaced by repl
typedef struct {
    int step, first, last, at, end;
    TokenBuf repl;
} Turn;

typedef int (*TurnFn)(Agent* a, Trajectory* t, const History* h, const Turn* turn, void* ctx, char* err,
                      size_t errlen);

static void history_of(const Trajectory* t, History* h) {
    h->ids = mallocCheck(sizeof(int) * (size_t)(t->n_tokens + 1));
    h->seg = mallocCheck((size_t)t->n_tokens + 1);
    h->agent = mallocCheck((size_t)t->n_tokens + 1);
    h->n = 0;
    for (int i = 0; i < t->n_tokens; i++) {
        if (t->segment[i] == SEG_EXPERIENCE) continue;
        h->ids[h->n] = t->tokens[i];
        h->seg[h->n] = t->segment[i];
        h->agent[h->n++] = t->agent_mask[i];
    }
}

static void history_free(History* h) {
    free(h->ids);
    free(h->seg);
    free(h->agent);
}

// the global splice of a record that holds its experience: the experience tokens put back, as
// one range of the history (the history tokens between two experience runs are in it too)
static void recorded_global(const Trajectory* t, Turn* g) {
    int first = -1, last = -1, h = 0, at = 0, end = 0;
    for (int i = 0; i < t->n_tokens; i++) {
        if (t->segment[i] == SEG_EXPERIENCE) {
            if (first < 0) first = i, at = h;
            last = i, end = h;
        } else {
            h++;
        }
    }
    g->at = at;
    g->end = end;
    for (int i = first; first >= 0 && i <= last; i++) tokenbuf_push(&g->repl, t->tokens[i]);
}

// the record's own items of step s as list indices of exp
static int recorded_items(const Trajectory* t, const ExpList* exp, int s, int* idx, int cap, int* k, char* err,
                          size_t errlen) {
    *k = 0;
    if (s >= t->n_steps) return 0;
    for (int j = t->item_offset[s]; j < t->item_offset[s + 1]; j++) {
        int found = -1;
        for (int q = 0; q < exp->n && found < 0; q++) found = exp->ids[q] == t->items[j] ? q : -1;
        if (found < 0)
            return fail(err, errlen, "teacher context: step %d showed pool item %d, which the experience list lacks",
                        s, t->items[j]);
        if (*k < cap) idx[(*k)++] = found;
    }
    return 0;
}

// Calls fn for every turn of t, in order, with its teacher's splice. Global injection: the system
// message again with the pool (recorded = 1 and experience in the record: its own experience
// tokens). Step-wise: the last user or tool message before the turn again with the turn's items,
// the record's own (recorded = 1) or selected from the history as during a rollout. Without
// experience, or a turn with no items: an empty splice.
static int teacher_turns(Agent* a, Trajectory* t, const ExpList* exp, int recorded, TurnFn fn, void* ctx, char* err,
                         size_t errlen) {
    History hist, *h = &hist;
    history_of(t, h);
    const int has_exp = exp && exp->n > 0;
    const int stepwise = has_exp && a->o.injection == INJECTION_STEPWISE;
    int has_own = 0;
    for (int i = 0; i < t->n_tokens; i++) has_own |= t->segment[i] == SEG_EXPERIENCE;
    Turn global = {0};
    int rc = 0;
    if (recorded && has_own && !stepwise) {
        recorded_global(t, &global);
    } else if (has_exp && !stepwise) {
        while (global.end < h->n && h->seg[global.end] == SEG_SYSTEM) global.end++;
        char* text = inject_render_global(exp);
        rc = global.end == 0 ? fail(err, errlen, "teacher scoring: the record has no system message")
                             : message_with_experience(a, SEG_SYSTEM, 1, h->ids, global.end, 0, text, &global.repl,
                                                       err, errlen);
        free(text);
    }
    ExpSelector* sel = stepwise && !recorded ? selector_create(exp, &a->o.select) : NULL;
    const int cap = (exp ? exp->n : 0) + a->o.select.max + 1;
    int* items = mallocCheck(sizeof(int) * (size_t)cap);
    int steps = 0, rows = 0;
    for (int i = 0; i < h->n && rc == 0;) {
        if (!h->agent[i]) {
            i++;
            continue;
        }
        // a turn: agent tokens [i, j); the message before its generation prompt is [m0, g)
        int j = i;
        while (j < h->n && h->agent[j]) j++;
        int g = i;
        while (g > 0 && h->seg[g - 1] == SEG_ASSISTANT && !h->agent[g - 1]) g--;
        int m0 = g;
        while (m0 > 0 && h->seg[m0 - 1] == h->seg[g - 1] && h->seg[g - 1] != SEG_ASSISTANT) m0--;
        Turn turn = {.step = steps, .first = i, .last = j};
        if (stepwise && g > 0 && (h->seg[g - 1] == SEG_USER || h->seg[g - 1] == SEG_TOOL)) {
            int k = 0;
            if (recorded) {
                rc = recorded_items(t, exp, steps, items, cap, &k, err, errlen);
            } else {
                const int sel_slot = a->o.max_episodes;
                const int* sids = h->ids;
                const uint8_t* sseg = h->seg;
                int* idx = items;
                agent_select_items(a, sel, 1, &sel_slot, &sids, &sseg, &g, &idx, &k);
            }
            if (rc == 0 && k > 0) {
                char* text = inject_render_step(exp, items, k);
                turn.at = m0;
                turn.end = g;
                rc = message_with_experience(a, h->seg[g - 1], m0 == 0, h->ids + m0, g - m0, m0, text, &turn.repl,
                                             err, errlen);
                free(text);
            }
        } else if (global.repl.n > 0 || global.end > global.at) {
            turn.at = global.at;
            turn.end = global.end;
            for (int q = 0; q < global.repl.n; q++) tokenbuf_push(&turn.repl, global.repl.ids[q]);
        }
        if (rc == 0) rc = fn(a, t, h, &turn, ctx, err, errlen);
        tokenbuf_free(&turn.repl);
        rows += j - i;
        steps++;
        i = j;
    }
    if (rc == 0 && (rows != t->n_agent || steps != t->n_steps))
        rc = fail(err, errlen,
                  "teacher scoring: the record's mask gives %d agent tokens in %d turns, its header says %d in %d", rows,
                  steps, t->n_agent, t->n_steps);
    selector_free(sel);
    free(items);
    tokenbuf_free(&global.repl);
    history_free(h);
    return rc;
}

// the turn's context: the history before its first agent token with the splice applied
static void turn_context(const History* h, const Turn* turn, TokenBuf* out) {
    out->n = 0;
    for (int q = 0; q < turn->at; q++) tokenbuf_push(out, h->ids[q]);
    for (int q = 0; q < turn->repl.n; q++) tokenbuf_push(out, turn->repl.ids[q]);
    for (int q = turn->end; q < turn->first; q++) tokenbuf_push(out, h->ids[q]);
}

// the teacher's room: the larger of rollout.max_context and the model's max_seq_len
static int teacher_room(const Agent* a) {
    const int ms = model_config(a->m)->max_seq_len;
    return a->o.max_context > ms ? a->o.max_context : ms;
}

static Decoder* score_decoder(Agent* a) {
    if (!a->score_dec) a->score_dec = decoder_create(a->m, 1, teacher_room(a));
    return a->score_dec;
}

static int check_fits(const Agent* a, int n, int row, char* err, size_t errlen) {
    if (n <= teacher_room(a)) return 0;
    return fail(err, errlen,
                "teacher scoring: the teacher's context of agent row %d needs %d tokens, more than the larger of "
                "rollout.max_context and model.max_seq_len (%d); raise model.max_seq_len or shorten the experience "
                "(experience.max_item_words, experience.select_max)",
                row, n, teacher_room(a));
}

// ----------------------------------------------------------------------------
// scoring: ctx[0..n) is the context up to the turn's first agent token, agent[0..na) the turn's
// agent tokens, row the first one's top-k row in the record

static int score_turn(Agent* a, Trajectory* t, const int* ctx, int n, const int* agent, int na, int row,
                      float* teacher_lp) {
    const int slot = 0, K = t->topk;
    Decoder* dec = score_decoder(a);
    decoder_assign(dec, 1, &slot, &ctx, &n);
    // the statistics land in the record's rows: row + j predicts agent[j]
    SampledToken* st = callocCheck((size_t)na, sizeof(SampledToken));
    for (int j = 0; j < na && K; j++) {
        st[j].topk_ids = (int*)t->topk_ids + (size_t)(row + j) * K;
        st[j].topk_lp = t->topk_lp + (size_t)(row + j) * K;
    }
    decoder_score(dec, slot, agent, na, K, st);
    for (int j = 0; j < na; j++) {
        const size_t r = (size_t)(row + j);
        t->tail_mass[r] = st[j].tail_mass;
        if (teacher_lp) teacher_lp[r] = st[j].logprob;
    }
    free(st);
    return 0;
}

typedef struct {
    float* teacher_lp;
    int row;
    TokenBuf ctx;
} ScoreState;

static int score_fn(Agent* a, Trajectory* t, const History* h, const Turn* turn, void* ctx, char* err,
                    size_t errlen) {
    ScoreState* s = ctx;
    turn_context(h, turn, &s->ctx);
    const int na = turn->last - turn->first;
    int rc = check_fits(a, s->ctx.n + na, s->row, err, errlen);
    if (rc == 0) rc = score_turn(a, t, s->ctx.ids, s->ctx.n, h->ids + turn->first, na, s->row, s->teacher_lp);
    s->row += na;
    return rc;
}

int agent_score_teacher(Agent* a, Trajectory* t, const ExpList* exp, float* teacher_lp, char* err, size_t errlen) {
    const double t0 = agent_now();
    if (t->topk != a->o.sampling.record_topk)
        return fail(err, errlen, "teacher scoring: the record keeps top-%d rows, the agent records top-%d", t->topk,
                    a->o.sampling.record_topk);
    a->first_fallback[0] = '\0';
    const long fallbacks0 = a->st.llm_fallbacks;
    ScoreState s = {.teacher_lp = teacher_lp};
    // prefix reuse only among this record's turns: a cache left by the record scored before
    // (which depends on how records are spread over ranks) would change the chunking, and the
    // last bits of the results with it
    decoder_reset(score_decoder(a), 0);
    const int rc = teacher_turns(a, t, exp, 0, score_fn, &s, err, errlen);
    if (a->st.llm_fallbacks > fallbacks0)
        log_warn("teacher scoring: %ld LLM-selector replies did not parse or fit, BM25 picked instead (first: %s)",
                 a->st.llm_fallbacks - fallbacks0, a->first_fallback);
    tokenbuf_free(&s.ctx);
    a->st.t_score += agent_now() - t0;
    return rc;
}

// ----------------------------------------------------------------------------
// the teacher's contexts, recorded for the trainers (distill.teacher: recompute)

typedef struct {
    int row;
    TokenBuf ctx;
    Trajectory* out; // entries are collected here, then moved into the record
} ViewState;

static int view_fn(Agent* a, Trajectory* t, const History* h, const Turn* turn, void* ctx, char* err,
                   size_t errlen) {
    (void)t;
    ViewState* s = ctx;
    turn_context(h, turn, &s->ctx);
    const int na = turn->last - turn->first;
    const int rc = check_fits(a, s->ctx.n + na, s->row, err, errlen);
    s->row += na;
    if (rc) return rc;
    // the smallest splice: drop what the replacement shares with the range at both ends
    int at = turn->at, end = turn->end, r0 = 0, r1 = turn->repl.n;
    while (at < end && r0 < r1 && h->ids[at] == turn->repl.ids[r0]) at++, r0++;
    while (at < end && r0 < r1 && h->ids[end - 1] == turn->repl.ids[r1 - 1]) end--, r1--;
    if (at == end && r0 == r1) at = end = r0 = r1 = 0; // no experience
    const Trajectory* o = s->out;
    const int e = o->n_tctx - 1;
    const int empty = at == end && r0 == r1;
    if (e < 0 && empty) return 0; // the history, as before any entry
    if (e >= 0 && o->tctx_at[e] == at && o->tctx_end[e] == end && o->tctx_offset[e + 1] - o->tctx_offset[e] == r1 - r0 &&
        memcmp(o->tctx_ids + o->tctx_offset[e], turn->repl.ids + r0, sizeof(int32_t) * (size_t)(r1 - r0)) == 0)
        return 0; // the same context as the previous turn's (global injection)
    traj_add_teacher_context(s->out, turn->step, at, end, turn->repl.ids + r0, r1 - r0);
    return 0;
}

int agent_teacher_view(Agent* a, Trajectory* t, const ExpList* exp, char* err, size_t errlen) {
    const double t0 = agent_now();
    a->first_fallback[0] = '\0';
    const long fallbacks0 = a->st.llm_fallbacks;
    ViewState s = {.out = traj_create(0)};
    const int rc = teacher_turns(a, t, exp, (t->flags & TRAJ_FLAG_TEACHER) != 0, view_fn, &s, err, errlen);
    if (a->st.llm_fallbacks > fallbacks0)
        log_warn("teacher contexts: %ld LLM-selector replies did not parse or fit, BM25 picked instead (first: %s)",
                 a->st.llm_fallbacks - fallbacks0, a->first_fallback);
    if (rc == 0) {
        free(t->tctx_step), free(t->tctx_at), free(t->tctx_end), free(t->tctx_offset), free(t->tctx_ids);
        t->n_tctx = s.out->n_tctx;
        t->tctx_step = s.out->tctx_step, t->tctx_at = s.out->tctx_at, t->tctx_end = s.out->tctx_end;
        t->tctx_offset = s.out->tctx_offset, t->tctx_ids = s.out->tctx_ids;
        s.out->n_tctx = 0;
        s.out->tctx_step = s.out->tctx_at = s.out->tctx_end = s.out->tctx_offset = s.out->tctx_ids = NULL;
        t->flags |= TRAJ_FLAG_TEACHER_VIEW;
    }
    traj_free(s.out);
    tokenbuf_free(&s.ctx);
    a->st.t_score += agent_now() - t0;
    return rc;
}
