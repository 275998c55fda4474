// Teacher scoring for on-policy distillation (see agent.h): a student trajectory's agent tokens
// are scored by the model with the experience in context, built exactly as a teacher rollout
// builds it. The record's messages are found from its segment tags; the one message that gets
// experience (the system message, or step-wise the last user/tool message before a turn) is
// rendered again from its text, recovered by decoding and checked by rendering it back to the
// same ids; every other id, the sampled ones above all, is used as it is.
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

// the same message with the experience text appended as a SEG_EXPERIENCE part
static int message_with_experience(Agent* a, int seg, int first, const int* ids, int n, int at, const char* exp_text,
                                   TokenBuf* out, char* err, size_t errlen) {
    char* content = message_content(a, seg, first, ids, n, at, err, errlen);
    if (!content) return -1;
    const ChatPart parts[2] = {{content, (Segment)seg}, {exp_text, SEG_EXPERIENCE}};
    agent_render_message(a, segment_role(seg), parts, 2, first, 0, out);
    free(content);
    return 0;
}

// ----------------------------------------------------------------------------
// scoring one turn: ctx[0..n) is the context up to the turn's first agent token, agent[0..na)
// the turn's agent tokens, rows their top-k rows in the record

static int score_turn(Agent* a, Trajectory* t, const int* ctx, int n, const int* agent, int na, int row,
                      float* teacher_lp, char* err, size_t errlen) {
    const int slot = 0, K = t->topk, V = a->V;
    if (n + na > decoder_max_len(a->dec))
        return fail(err, errlen,
                    "teacher scoring: the teacher's context of agent row %d needs %d tokens, more than "
                    "rollout.max_context (%d)",
                    row, n + na, decoder_max_len(a->dec));
    decoder_assign(a->dec, 1, &slot, &ctx, &n);
    float* logits = mallocCheck(sizeof(float) * (size_t)V * (size_t)na); // (na, V): row j predicts agent[j]
    const float* first = decoder_logits(a->dec, slot);
    memcpy(logits, first, sizeof(float) * (size_t)V);
    if (na > 1) {
        const int m = na - 1;
        decoder_feed(a->dec, 1, &slot, &agent, &m, logits + V);
    }
    int* ids = mallocCheck(sizeof(int) * (size_t)(K + 1));
    float* lp = mallocCheck(sizeof(float) * (size_t)(K + 1));
    for (int j = 0; j < na; j++) {
        SampledToken st = {.topk_ids = ids, .topk_lp = lp};
        score_token(logits + (size_t)j * V, V, agent[j], K, &st);
        const size_t r = (size_t)(row + j);
        if (K > 0) {
            memcpy(t->topk_ids + r * K, ids, sizeof(int32_t) * (size_t)K);
            memcpy(t->topk_lp + r * K, lp, sizeof(float) * (size_t)K);
        }
        t->tail_mass[r] = st.tail_mass;
        if (teacher_lp) teacher_lp[r] = st.logprob;
    }
    free(ids);
    free(lp);
    free(logits);
    return 0;
}

// ----------------------------------------------------------------------------

int agent_score_teacher(Agent* a, Trajectory* t, const ExpList* exp, float* teacher_lp, char* err, size_t errlen) {
    const double t0 = agent_now();
    if (t->topk != a->o.sampling.record_topk)
        return fail(err, errlen, "teacher scoring: the record keeps top-%d rows, the agent records top-%d", t->topk,
                    a->o.sampling.record_topk);
    a->first_fallback[0] = '\0';
    const long fallbacks0 = a->st.llm_fallbacks;
    // the stored history without experience segments (a global teacher record's pool)
    int* ids = mallocCheck(sizeof(int) * (size_t)(t->n_tokens + 1));
    uint8_t* seg = mallocCheck((size_t)t->n_tokens + 1);
    uint8_t* agent = mallocCheck((size_t)t->n_tokens + 1);
    int n = 0;
    for (int i = 0; i < t->n_tokens; i++) {
        if (t->segment[i] == SEG_EXPERIENCE) continue;
        ids[n] = t->tokens[i];
        seg[n] = t->segment[i];
        agent[n++] = t->agent_mask[i];
    }
    const int has_exp = exp && exp->n > 0;
    const int stepwise = has_exp && a->o.injection == INJECTION_STEPWISE;
    TokenBuf ctx = {0};
    int rc = 0;
    // global: the system message (the first run) again, with the pool
    int sys_end = 0;
    if (has_exp && !stepwise) {
        while (sys_end < n && seg[sys_end] == SEG_SYSTEM) sys_end++;
        char* text = inject_render(exp, NULL, 0, INJECT_GLOBAL_HEADING);
        rc = sys_end == 0 ? fail(err, errlen, "teacher scoring: the record has no system message")
                          : message_with_experience(a, SEG_SYSTEM, 1, ids, sys_end, 0, text, &ctx, err, errlen);
        free(text);
    }
    ExpSelector* sel = stepwise ? selector_create(exp, &a->o.select) : NULL;
    int* items = mallocCheck(sizeof(int) * (size_t)(a->o.select.max + 1));
    int row = 0, steps = 0;
    for (int i = sys_end; i < n && rc == 0;) {
        if (!agent[i]) {
            i++;
            continue;
        }
        // a turn: agent tokens [i, j); the message before its generation prompt is [m0, m1)
        int j = i;
        while (j < n && agent[j]) j++;
        int g = i;
        while (g > 0 && seg[g - 1] == SEG_ASSISTANT && !agent[g - 1]) g--;
        int m0 = g;
        while (m0 > 0 && seg[m0 - 1] == seg[g - 1] && seg[g - 1] != SEG_ASSISTANT) m0--;
        TokenBuf turn = {0};
        if (stepwise && g > 0 && (seg[g - 1] == SEG_USER || seg[g - 1] == SEG_TOOL)) {
            const int sel_slot = a->o.max_episodes;
            const int* sids = ids;
            const uint8_t* sseg = seg;
            int k = 0;
            int* idx = items;
            agent_select_items(a, sel, 1, &sel_slot, &sids, &sseg, &g, &idx, &k);
            for (int q = 0; q < m0; q++) tokenbuf_push(&turn, ids[q]);
            if (k > 0) {
                char* text = inject_render(exp, items, k, INJECT_STEP_HEADING);
                rc = message_with_experience(a, seg[g - 1], m0 == 0, ids + m0, g - m0, m0, text, &turn, err, errlen);
                free(text);
            } else {
                for (int q = m0; q < g; q++) tokenbuf_push(&turn, ids[q]);
            }
            for (int q = g; q < i; q++) tokenbuf_push(&turn, ids[q]);
        } else {
            for (int q = 0; q < ctx.n; q++) tokenbuf_push(&turn, ctx.ids[q]);
            for (int q = sys_end; q < i; q++) tokenbuf_push(&turn, ids[q]);
        }
        if (rc == 0) rc = score_turn(a, t, turn.ids, turn.n, ids + i, j - i, row, teacher_lp, err, errlen);
        tokenbuf_free(&turn);
        row += j - i;
        steps++;
        i = j;
    }
    if (rc == 0 && (row != t->n_agent || steps != t->n_steps))
        rc = fail(err, errlen,
                  "teacher scoring: the record's mask gives %d agent tokens in %d turns, its header says %d in %d", row,
                  steps, t->n_agent, t->n_steps);
    if (a->st.llm_fallbacks > fallbacks0)
        log_warn("teacher scoring: %ld LLM-selector replies did not parse or fit, BM25 picked instead (first: %s)",
                 a->st.llm_fallbacks - fallbacks0, a->first_fallback);
    selector_free(sel);
    free(items);
    tokenbuf_free(&ctx);
    free(ids);
    free(seg);
    free(agent);
    a->st.t_score += agent_now() - t0;
    return rc;
}
