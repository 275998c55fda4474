// The training plan of one iteration: which sequences form each micro-batch and each optimizer
// step, over all epochs. It is a pure function of the global data's metadata, the budgets and the
// seed, never of the number of trainers: that is what makes data-parallel training reproducible.
//
//   canonical order  sequences sorted by (task, sample, seed, content hash, tokens): the order
//                    does not depend on which trainer holds which sequence
//   epoch e          a Fisher-Yates shuffle of the canonical order with the stream
//                    (seed, iteration, e); sequences with no loss token are left out
//   steps            consecutive sequences of the epoch order until the next one would push the
//                    step past batch_tokens real tokens (a step holds at least one sequence)
//   micro-batches    each step's sequences, longest first (ties: canonical index), packed
//                    greedily while B x T_longest <= micro_batch_tokens and B <= max_batch
//                    (a sequence longer than the budget gets a micro-batch of its own)
//   trainers         micro-batch j of a step runs on trainer j % n_trainers
#pragma once
#include <stdint.h>

typedef struct {
    int64_t task, sample, seed, iteration;
    uint64_t hash;       // XXH3 of the tokens and agent mask
    int64_t tokens;      // n_tokens
    int64_t loss_tokens; // agent tokens at positions >= 1 (each is predicted by the position before)
    int owner, local;    // trainer holding it and its index in that trainer's shard
} DistillSeqMeta;

typedef struct {
    int epochs, micro_batch_tokens, max_batch;
    long batch_tokens;
} DistillPlanParams;

typedef struct {
    int n_steps, n_micro;
    int* step_epoch;           // (n_steps)
    int* step_micro;           // (n_steps + 1) micro-batches of step s: step_micro[s] .. step_micro[s+1]
    int64_t* step_tokens;      // (n_steps) real tokens
    int64_t* step_loss_tokens; // (n_steps)
    int* micro_seq;            // (n_micro + 1) sequences of micro-batch j: seqs[micro_seq[j] .. micro_seq[j+1]]
    int* micro_T;              // (n_micro) longest sequence (the padded length)
    int* seqs;                 // canonical indices, longest first within each micro-batch
    int n_used;                // sequences with at least one loss token (each appears once per epoch)
} DistillPlan;

// sort into the canonical order (in place)
void distill_meta_sort(DistillSeqMeta* meta, int n);
// build the plan over meta (canonical order, n entries)
void distill_plan_build(const DistillSeqMeta* meta, int n, const DistillPlanParams* p, uint64_t seed, int iteration,
                        DistillPlan* out);
void distill_plan_free(DistillPlan* p);
