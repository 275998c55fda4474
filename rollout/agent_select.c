// Step-wise selection inside the agent: the BM25 query built from the stored history, and the LLM
// selector, which asks the model itself (greedy, in the episode's selector slot) which numbered
// items help with the next step. See agent_impl.h.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "rollout/agent_impl.h"

// ----------------------------------------------------------------------------
// the query

char* agent_plain_text(const Agent* a, const int* ids, int n) {
    int* plain = mallocCheck(sizeof(int) * (size_t)(n + 1));
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!tokenizer_is_special(a->tok, ids[i])) plain[k++] = ids[i];
    char* s = tokenizer_decode_alloc(a->tok, plain, k, NULL);
    free(plain);
    return s;
}

// appends the plain text of ids[from..to) and a space to *q
static void query_add(const Agent* a, char** q, size_t* len, const int* ids, int from, int to) {
    char* s = agent_plain_text(a, ids + from, to - from);
    size_t n = strlen(s);
    *q = reallocCheck(*q, *len + n + 2);
    memcpy(*q + *len, s, n);
    (*q)[*len + n] = ' ';
    (*q)[*len + n + 1] = '\0';
    *len += n + 1;
    free(s);
}

char* agent_history_query(const Agent* a, const int* ids, const uint8_t* seg, int n) {
    char* q = strdupCheck("");
    size_t len = 0;
    // the task: the first user message
    int u0 = 0;
    while (u0 < n && seg[u0] != SEG_USER) u0++;
    int u1 = u0;
    while (u1 < n && seg[u1] == SEG_USER) u1++;
    if (u0 < n) query_add(a, &q, &len, ids, u0, u1);
    // the last messages after it, each a run of one segment
    int end = n, taken = 0;
    while (end > u1 && taken < AGENT_QUERY_MESSAGES) {
        int start = end - 1;
        while (start > u1 && seg[start - 1] == seg[end - 1]) start--;
        query_add(a, &q, &len, ids, start, end);
        end = start;
        taken++;
    }
    return q;
}

// ----------------------------------------------------------------------------
// selection

// the content of the last message (chat_message_content: no header, no tool wrapper), or NULL
// unless its segment is `want`; leading experience parts are not part of it
static char* last_message_text(const Agent* a, const int* ids, const uint8_t* seg, int n, Segment want) {
    if (n == 0 || seg[n - 1] != want) return NULL;
    int start = n - 1;
    while (start > 0 && seg[start - 1] == want) start--;
    return chat_message_content(agent_plain_text(a, ids + start, n - start));
}

int agent_select_bm25(const Agent* a, const ExpSelector* sel, const int* ids, const uint8_t* seg, int n, int* idx) {
    int first_turn = 1;
    for (int i = 0; i < n && first_turn; i++) first_turn = seg[i] != SEG_ASSISTANT;
    char* task = first_turn ? last_message_text(a, ids, seg, n, SEG_USER) : NULL;
    char* result = first_turn ? NULL : last_message_text(a, ids, seg, n, SEG_TOOL);
    char* q = agent_history_query(a, ids, seg, n);
    int k = selector_pick(sel, q, task, result, idx);
    free(q);
    free(task);
    free(result);
    return k;
}

static void note_fallback(Agent* a, const char* reply, const char* why) {
    a->st.llm_fallbacks++;
    if (a->first_fallback[0]) return;
    snprintf(a->first_fallback, sizeof(a->first_fallback), "reply '%.80s': %s", reply, why);
    for (char* c = a->first_fallback; *c; c++) // one log line
        if ((unsigned char)*c < 0x20) *c = ' ';
}

void agent_select_items(Agent* a, const ExpSelector* sel, int nb, const int* sel_slots, const int* const* ids,
                        const uint8_t* const* seg, const int* n, int* const* idx, int* n_idx) {
    double t0 = agent_now();
    if (a->o.selector != SELECTOR_LLM) {
        for (int i = 0; i < nb; i++) n_idx[i] = agent_select_bm25(a, sel, ids[i], seg[i], n[i], idx[i]);
        a->st.t_select += agent_now() - t0;
        return;
    }
    const int max_new = AGENT_LLM_SELECT_TOKENS(a->o.select.max);
    char* request = selector_llm_request(sel);
    const ChatPart part = {request, SEG_USER};
    TokenBuf suffix = {0};
    agent_render_message(a, CHAT_USER, &part, 1, 0, 1, &suffix);
    free(request);

    // the prompts that fit: the state, the request, the generation prompt
    TokenBuf* prompt = callocCheck((size_t)nb, sizeof(TokenBuf));
    int* slots = mallocCheck(sizeof(int) * (size_t)(nb + 1));
    int* which = mallocCheck(sizeof(int) * (size_t)(nb + 1));
    const int** tokens = mallocCheck(sizeof(int*) * (size_t)(nb + 1));
    int* lens = mallocCheck(sizeof(int) * (size_t)(nb + 1));
    int nf = 0;
    for (int i = 0; i < nb; i++) {
        n_idx[i] = -1;
        if (n[i] + suffix.n + max_new > decoder_max_len(a->dec)) {
            note_fallback(a, "", "the history and the request do not fit in rollout.max_context");
            continue;
        }
        for (int j = 0; j < n[i]; j++) tokenbuf_push(&prompt[i], ids[i][j]);
        for (int j = 0; j < suffix.n; j++) tokenbuf_push(&prompt[i], suffix.ids[j]);
        slots[nf] = sel_slots[i];
        which[nf] = i;
        tokens[nf] = prompt[i].ids;
        lens[nf++] = prompt[i].n;
    }
    if (nf > 0) {
        decoder_assign(a->dec, nf, slots, tokens, lens);
        const SamplingParams greedy = {.temperature = 0.0f, .top_p = 1.0f, .top_k = 0, .record_topk = 0};
        Rng rng;
        rng_seed(&rng, 0); // greedy draws nothing; the decoder wants a stream all the same
        Rng** rngs = mallocCheck(sizeof(Rng*) * (size_t)nf);
        for (int f = 0; f < nf; f++) rngs[f] = &rng;
        GenResult* out = callocCheck((size_t)nf, sizeof(GenResult));
        decoder_generate(a->dec, nf, slots, &greedy, rngs, max_new, a->stop_ids, a->n_stop, NULL, NULL, out);
        for (int f = 0; f < nf; f++) {
            const int i = which[f];
            int m = out[f].n;
            int* gen = mallocCheck(sizeof(int) * (size_t)(m + 1));
            for (int j = 0; j < m; j++) gen[j] = out[f].tokens[j].id;
            int stopped = m > 0 && (gen[m - 1] == a->stop_ids[0] || (a->n_stop > 1 && gen[m - 1] == a->stop_ids[1]));
            char* reply = tokenizer_decode_alloc(a->tok, gen, stopped ? m - 1 : m, NULL);
            char why[160];
            a->st.llm_selections++;
            if (!stopped) {
                note_fallback(a, reply, "no end of turn within the token limit");
            } else {
                n_idx[i] = selector_llm_parse(sel, reply, idx[i], why, sizeof(why));
                if (n_idx[i] < 0) note_fallback(a, reply, why);
            }
            free(reply);
            free(gen);
            gen_result_free(&out[f]);
        }
        free(out);
        free(rngs);
    }
    for (int i = 0; i < nb; i++) {
        if (n_idx[i] < 0) n_idx[i] = agent_select_bm25(a, sel, ids[i], seg[i], n[i], idx[i]);
        tokenbuf_free(&prompt[i]);
    }
    free(prompt);
    free(slots);
    free(which);
    free(tokens);
    free(lens);
    tokenbuf_free(&suffix);
    a->st.t_select += agent_now() - t0;
}
