// The experience pool E_k: items (principles or instances) with provenance and usage statistics,
// the four operations ADD / UPDATE / DELETE / NONE recorded in an audit log, utility tracking and
// pruning, the size cap, and an exact JSON form (jansson) for checkpoints and MPI. Everything here
// is deterministic: no randomness, every order is by item id. docs/EXPERIENCE.md has the JSON
// schema and the rules.
#pragma once
#include <stdint.h>
#include <stdio.h>

#include "rollout/trajectory.h"

#define POOL_JSON_VERSION 1
#define POOL_MAX_NAME_WORDS 8    // the "Name" before the colon of an item
#define POOL_MAX_PROVENANCE 64   // task ids and trajectory refs kept per item (the most recent)

typedef enum { ITEM_PRINCIPLE = 0, ITEM_INSTANCE } ItemKind;
typedef enum { POOL_ADD = 0, POOL_UPDATE, POOL_DELETE, POOL_NONE } PoolOpKind;

// one trajectory: a task and the sample index within its group
typedef struct {
    int32_t task_id, sample;
} TrajRef;

typedef struct {
    int32_t id;        // unique within a run, never reused
    int kind;          // ItemKind
    char* name;        // short name (<= POOL_MAX_NAME_WORDS words)
    char* text;        // the body; shown as "name: text"
    char* key;         // machine key of the extractor that made it ("" when none), used to merge:
                       // "rule|<source>|<phrase>|<tool>" (contrastive), "task|<id>" (instance)
    // provenance
    int32_t created, updated;        // iterations
    int32_t n_tasks, n_trajs;
    int32_t* tasks;                  // (n_tasks) task ids, most recent last
    TrajRef* trajs;                  // (n_trajs) evidence trajectories, most recent last
    // statistics over judged, non-held-out episodes that ran while the item was in the pool
    int64_t times_shown;             // steps it was injected at
    int64_t shown_episodes, shown_successes;
    int64_t unshown_episodes, unshown_successes;
    int32_t last_used;               // last iteration it was shown (-1: never)
} PoolItem;

typedef struct {
    int32_t iteration;
    int op;          // PoolOpKind
    int32_t item_id; // -1 for NONE
    char* reason;    // why
    char* before;    // "name: text" before the op (UPDATE, DELETE), else NULL
    char* after;     // "name: text" after the op (ADD, UPDATE), else NULL
    int32_t n_evidence;
    TrajRef* evidence; // (n_evidence) the trajectories the decision came from
} PoolAudit;

typedef struct {
    int max_size;            // experience.max_pool_size
    int max_item_words;      // experience.max_item_words: principles, "name: text" in words
    int max_instance_words;  // instances, "name: text" in words
    double prune_threshold;  // experience.prune_threshold
    int min_exposures;       // shown and unshown episodes before an item may be pruned
    double prior;            // Laplace smoothing of both success rates (pseudo-successes and -failures)
} PoolParams;

typedef struct {
    PoolParams params;
    int32_t next_id;
    int n_items, cap_items;
    PoolItem* items;   // (n_items) ascending id
    int n_audit, cap_audit;
    PoolAudit* audit;  // (n_audit) in the order the operations happened
} Pool;

// defaults: 50 items, 32 words (principles), 96 words (instances), threshold -0.2, 5 exposures, prior 1
PoolParams pool_default_params(void);

// ----------------------------------------------------------------------------
// lifetime and lookup

Pool* pool_create(PoolParams params);
void pool_free(Pool* p);
int pool_size(const Pool* p);
const PoolItem* pool_find(const Pool* p, int32_t id);
// the item with this machine key, NULL when none (or key is empty)
const PoolItem* pool_find_key(const Pool* p, const char* key);
// "name: text", malloc'd
char* pool_item_render(const PoolItem* it);

// ----------------------------------------------------------------------------
// operations: each is checked, applied and audited; 0 (or the new id for ADD) on success, -1 with
// err naming the problem (nothing changes then). Evidence may be NULL with n_ev 0.

// Checks an item's text: no newline, name 1..POOL_MAX_NAME_WORDS words, text non-empty, "name: text"
// within the kind's word limit. 0 when fine, else -1 with err.
int pool_check_text(const Pool* p, int kind, const char* name, const char* text, char* err, size_t errlen);
// splits "Name: sentence" at the first colon into malloc'd name and text (both trimmed); -1 with err
// when there is no colon or either side is empty
int pool_split_text(const char* full, char** name, char** text, char* err, size_t errlen);

int pool_add(Pool* p, int32_t iteration, int kind, const char* name, const char* text, const char* key,
             const TrajRef* ev, int n_ev, const char* reason, char* err, size_t errlen);
// name NULL keeps the name, key NULL keeps the key
int pool_update(Pool* p, int32_t iteration, int32_t id, const char* name, const char* text, const char* key,
                const TrajRef* ev, int n_ev, const char* reason, char* err, size_t errlen);
int pool_delete(Pool* p, int32_t iteration, int32_t id, const TrajRef* ev, int n_ev, const char* reason, char* err,
                size_t errlen);
void pool_none(Pool* p, int32_t iteration, const TrajRef* ev, int n_ev, const char* reason);

// ----------------------------------------------------------------------------
// utility, pruning and the cap

// fold judged episodes into the statistics. An episode counts for the items that were in the pool
// while it ran (created before its iteration): "shown" when any of its steps injected the item,
// else "not shown". Held-out episodes (TRAJ_FLAG_HELDOUT) are skipped. success: (n) 0/1.
void pool_observe(Pool* p, Trajectory* const* trajs, const uint8_t* success, int n);
// smoothed success rate when shown minus when not shown, in (-1, 1)
double pool_utility(const Pool* p, const PoolItem* it);
// DELETE every item with shown_episodes and unshown_episodes >= min_exposures and utility <
// prune_threshold; returns the number deleted
int pool_prune(Pool* p, int32_t iteration);
// DELETE the lowest-utility items until the pool fits max_size (ties: the newer item, higher id,
// goes first, so incumbents keep their place); returns the number deleted
int pool_enforce_cap(Pool* p, int32_t iteration);

// ----------------------------------------------------------------------------
// views

// what the injection side needs: ids and "name: text" strings, ascending id (rollout/ cannot see
// this header, so the driver hands it these plain arrays)
typedef struct {
    int n;
    int32_t* ids;  // (n)
    char** texts;  // (n) "name: text"
} PoolListing;

void pool_listing(const Pool* p, PoolListing* out);
void pool_listing_free(PoolListing* l);
// the items of one kind best matching query by BM25 over "name: text", best first (ties by id);
// returns how many ids were written (kind -1: any kind)
int pool_retrieve(const Pool* p, const char* query, int kind, int k, int32_t* ids, double* scores);
// the audit entries of one iteration as a readable diff (added, updated, deleted, none), malloc'd
char* pool_diff_text(const Pool* p, int32_t iteration);
// a table of every item with its statistics and utility (for `ingrain inspect`)
void pool_print(const Pool* p, FILE* out);

// ----------------------------------------------------------------------------
// files

// the seed pool E_0 from YAML (experience.seed_pool; format in pool_seed.c and docs/EXPERIENCE.md):
// items are added at iteration -1; -1 with err "FILE:LINE: seed pool: ..." and the pool unchanged
int pool_load_seed(Pool* p, const char* path, char* err, size_t errlen);
int pool_load_seed_string(Pool* p, const char* yaml, const char* label, char* err, size_t errlen);
// DIR/pool_diff_iter_NNNN.txt (pool_diff_text) and DIR/pool_iter_NNNN.json (pool_to_json), each
// written to a temporary name and renamed; -1 with err naming the file
int pool_write_iteration(const Pool* p, int32_t iteration, const char* dir, char* err, size_t errlen);

// ----------------------------------------------------------------------------
// JSON (exact round trip: every field is an integer or a string)

// malloc'd compact JSON text of the whole pool (items, statistics, provenance, audit, next id)
char* pool_to_json(const Pool* p);
// a new pool from JSON text; NULL with err naming the JSON path (e.g. "$.items[2].stats.shown")
// and the problem, or the line and column of a syntax error
Pool* pool_from_json(const char* json, size_t len, PoolParams params, char* err, size_t errlen);
