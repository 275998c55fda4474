// Experience injection, the rollout side: the experience list the driver fills from the pool, its
// rendering as prompt text, and the step-wise selectors (BM25 over the recent history, and the
// request/parse halves of the LLM selector whose generation runs in agent.c). docs/AGENT.md
// describes where the text goes in each injection mode.
//
// Rendered experience (tagged SEG_EXPERIENCE by the agent, so the student view removes it whole):
//
//   global     "\n\n" heading "\n- name: text\n- name: text"      after the system text
//   step-wise  heading "\n- name: text\n- name: text\n\n"          before the last message's text
//
// Step-wise items go before the observation, not after it: the reply then still follows the
// observation it copies names from (with items after it, the bootstrapped tiny model copied words
// of the items instead, docs/BOOTSTRAP.md).
//
// BM25 selection: every item is scored against the query (bm25.h); items are ranked by score,
// ties by list index; the first `min` ranked items are always taken, the next ones while they
// score above zero and at least `cut` times the best score, up to `max`.
//
// Triggered items (experience.select_triggers): an item whose text states its own condition in the
// contrastive miner's words, 'NAME: When|If the task|the last tool result mentions "PHRASE", ...',
// is shown exactly at the steps where that condition holds, as the miner counted it: the phrase's
// words in a row in the task before the first call, or in the last tool result after it. Such
// items come first (by score), and BM25 then picks among the items without a condition as above
// (`min` counts every item shown). A rule is then shown where it speaks, not wherever its words
// resemble the history, and following it needs no check of its condition (docs/AGENT.md).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "model/chat.h"
#include "rollout/bm25.h"

#define INJECT_GLOBAL_HEADING "Experience from earlier episodes:"
#define INJECT_STEP_HEADING "Experience that may help now:"
#define INJECT_CUT_DEFAULT 0.5

// ----------------------------------------------------------------------------
// the experience list (pool_listing's ids and "name: text" strings, in pool id order)

typedef struct {
    int n, cap;
    int32_t* ids; // (n) pool item ids
    char** texts; // (n) "name: text", owned
} ExpList;

void exp_list_init(ExpList* l);
void exp_list_add(ExpList* l, int32_t id, const char* text);
void exp_list_free(ExpList* l);

// the global text of every item, malloc'd
char* inject_render_global(const ExpList* l);
// the step-wise text of items idx[0..n) in that order, malloc'd
char* inject_render_step(const ExpList* l, const int* idx, int n);
// The parts of a message of segment `seg` whose text is `text`, with rendered experience `exp`
// where the agent puts it: after a system text (global), before any other text (step-wise).
// Returns the number of parts: 1 when exp is NULL (the text alone), else 2.
int inject_message_parts(const char* text, Segment seg, const char* exp, ChatPart parts[2]);

// ----------------------------------------------------------------------------
// step-wise selection

typedef struct {
    int min, max; // items per step (experience.select_min/max; capped by the list size)
    double cut;   // relative score cut, in [0, 1]
    int triggers; // items that state a condition are shown only where it holds
} SelectParams;

typedef enum { TRIGGER_NONE = -1, TRIGGER_TASK = 0, TRIGGER_RESULT = 1 } TriggerSource;

// the condition an item's "name: text" states, in the miner's words (above): its source, and its
// phrase in *phrase (malloc'd; NULL for TRIGGER_NONE)
TriggerSource exp_item_trigger(const char* item, char** phrase);
// whether a condition holds at a step: `task` is the task before the first call (else NULL),
// `result` the last tool result after it (else NULL); TRIGGER_NONE always holds
int exp_trigger_holds(TriggerSource src, const char* phrase, const char* task, const char* result);

typedef struct ExpSelector ExpSelector;

// a BM25 index over the list's texts; the list must outlive the selector
ExpSelector* selector_create(const ExpList* l, const SelectParams* p);
void selector_free(ExpSelector* s);
// the pick for a step (above): list indices into idx (room for p.max), best first; returns how
// many. query is the BM25 query; task and result as for exp_trigger_holds.
int selector_pick(const ExpSelector* s, const char* query, const char* task, const char* result, int* idx);

// The LLM selector's request, the user message the model answers (malloc'd):
//   Choose the experience items that help most with your next step.
//   1. name: text
//   2. ...
//   Reply with MIN to MAX item numbers separated by commas (for example: 2, 5), nothing else.
char* selector_llm_request(const ExpSelector* s);
// Strict parse of the model's reply: optional whitespace, numbers 1..n separated by commas
// (whitespace around them allowed), nothing else; no repeats; between min and max of them.
// Returns the count with list indices in idx (in the reply's order), or -1 with err saying why.
int selector_llm_parse(const ExpSelector* s, const char* reply, int* idx, char* err, size_t errlen);
