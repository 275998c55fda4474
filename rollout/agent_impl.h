// Internals shared by the agent loop (agent.c) and teacher scoring (score.c): the Agent struct and
// the helpers that render single messages and build the step-wise selection query, so that a
// rollout and its later scoring construct the same contexts from the same ids.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "rollout/agent.h"

// messages of history (besides the task) that the BM25 query reads, counted back from the end
#define AGENT_QUERY_MESSAGES 3
// tokens the LLM selector may write (its reply is a short list of numbers)
#define AGENT_LLM_SELECT_TOKENS(max) (8 + 4 * (max))

struct Agent {
    AgentOptions o;
    Model* m;
    const Tokenizer* tok;
    Decoder* dec;
    // one slot for teacher scoring, made on first use: a teacher's context is a student's plus the
    // experience, so it may run past rollout.max_context; it may use the model's whole length
    Decoder* score_dec;
    int V;
    ChatRender scratch; // renders single messages (agent_render_message)
    int stop_ids[2];
    int n_stop;
    int* limit; // (decoder slots) generation limit of each slot this turn
    AgentStats st;
    AgentContextFn tap;
    void* tap_ctx;
    char first_fallback[256]; // the first LLM-selector reply that did not parse since the last report
};

double agent_now(void);

// Appends to out the ids of one message (parts[0..np)) as rendered inside a conversation: after
// a previous message, or as the conversation's first message when first = 1. np < 0 renders no
// message; gen_prompt = 1 appends the assistant generation prompt after it.
void agent_render_message(Agent* a, ChatRole role, const ChatPart* parts, int np, int first, int gen_prompt,
                          TokenBuf* out);
// the text of ids with special tokens skipped (malloc'd)
char* agent_plain_text(const Agent* a, const int* ids, int n);
// The BM25 query for the state after ids[0..n) (segments seg): the first user message (the task)
// and the last AGENT_QUERY_MESSAGES messages after it, as plain text (malloc'd). A function of the
// stored ids alone, so scoring rebuilds the rollout's query exactly.
char* agent_history_query(const Agent* a, const int* ids, const uint8_t* seg, int n);
// The BM25 pick (selector_pick) for that state: agent_history_query, and for triggered items the
// task (before the first call) or the last tool result (after it). Room for select.max in idx.
int agent_select_bm25(const Agent* a, const ExpSelector* sel, const int* ids, const uint8_t* seg, int n, int* idx);
// Step-wise items for nb states at once: state i is the stored history ids[i][0..n[i]) with
// segments seg[i], ending with the message the items are appended to. BM25 over
// agent_history_query, or the LLM selector: the state + selector_llm_request + generation prompt
// in selector slot sel_slots[i], decoded greedily in one batch, BM25 for replies that do not
// parse or states that do not fit in the decoder. idx[i] (room for select.max) receives list
// indices, n_idx[i] their count.
void agent_select_items(Agent* a, const ExpSelector* sel, int nb, const int* sel_slots, const int* const* ids,
                        const uint8_t* const* seg, const int* n, int* const* idx, int* n_idx);
