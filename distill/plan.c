// The training plan of one iteration (see plan.h): canonical order, seeded epoch shuffles,
// optimizer steps by token budget and micro-batch packing. No MPI: every trainer computes the
// same plan from the same gathered metadata.
#include "distill/plan.h"

#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "model/rng.h"

// ----------------------------------------------------------------------------
// canonical order

static int cmp_i64(int64_t a, int64_t b) { return a < b ? -1 : a > b; }

static int cmp_meta(const void* pa, const void* pb) {
    const DistillSeqMeta* a = pa;
    const DistillSeqMeta* b = pb;
    int c;
    if ((c = cmp_i64(a->task, b->task))) return c;
    if ((c = cmp_i64(a->sample, b->sample))) return c;
    if ((c = cmp_i64(a->seed, b->seed))) return c;
    if ((c = cmp_i64(a->iteration, b->iteration))) return c;
    if (a->hash != b->hash) return a->hash < b->hash ? -1 : 1;
    if ((c = cmp_i64(a->tokens, b->tokens))) return c;
    // identical content from here on: any order gives the same numbers; keep it total anyway
    if ((c = cmp_i64(a->owner, b->owner))) return c;
    return cmp_i64(a->local, b->local);
}

void distill_meta_sort(DistillSeqMeta* meta, int n) {
    if (n > 1) qsort(meta, (size_t)n, sizeof(DistillSeqMeta), cmp_meta);
}

// ----------------------------------------------------------------------------
// building

// the stream of epoch e of iteration `iteration`: its own sub-sequence of the run's seed
static void epoch_rng(Rng* r, uint64_t seed, int iteration, int epoch) {
    const uint64_t domain = 0x64697374696c6cULL; // "distill": apart from every other stream of the seed
    rng_seed_stream(r, seed ^ domain, ((uint64_t)(uint32_t)iteration << 32) | (uint32_t)epoch);
}

typedef struct {
    const DistillSeqMeta* meta;
    DistillPlan* p;
    int cap_steps, cap_micro;
} Builder;

// room for `need` entries of the step arrays (step_micro holds n_steps + 1)
static void reserve_steps(Builder* b, int need) {
    if (need <= b->cap_steps) return;
    DistillPlan* p = b->p;
    b->cap_steps = 2 * need;
    p->step_epoch = reallocCheck(p->step_epoch, sizeof(int) * (size_t)b->cap_steps);
    p->step_micro = reallocCheck(p->step_micro, sizeof(int) * (size_t)b->cap_steps);
    p->step_tokens = reallocCheck(p->step_tokens, sizeof(int64_t) * (size_t)b->cap_steps);
    p->step_loss_tokens = reallocCheck(p->step_loss_tokens, sizeof(int64_t) * (size_t)b->cap_steps);
}

static void reserve_micro(Builder* b, int need) {
    if (need <= b->cap_micro) return;
    DistillPlan* p = b->p;
    b->cap_micro = 2 * need;
    p->micro_seq = reallocCheck(p->micro_seq, sizeof(int) * (size_t)b->cap_micro);
    p->micro_T = reallocCheck(p->micro_T, sizeof(int) * (size_t)b->cap_micro);
}

typedef struct {
    int64_t tokens;
    int index;
} Longest;

// longest first, ties by canonical index
static int cmp_longest(const void* pa, const void* pb) {
    const Longest* a = pa;
    const Longest* b = pb;
    if (a->tokens != b->tokens) return a->tokens > b->tokens ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

// pack the step's sequences seqs[0..n) (a slice of the plan's seqs array) into micro-batches
static void pack_step(Builder* b, int* seqs, int n, const DistillPlanParams* pp) {
    Longest* l = mallocCheck(sizeof(Longest) * (size_t)n);
    for (int i = 0; i < n; i++) l[i] = (Longest){b->meta[seqs[i]].tokens, seqs[i]};
    qsort(l, (size_t)n, sizeof(Longest), cmp_longest);
    for (int i = 0; i < n; i++) seqs[i] = l[i].index;
    free(l);
    DistillPlan* p = b->p;
    const int base = (int)(seqs - p->seqs);
    for (int i = 0; i < n;) {
        const int T = (int)b->meta[seqs[i]].tokens;
        int B = 1;
        while (i + B < n && B + 1 <= pp->max_batch && (int64_t)(B + 1) * T <= pp->micro_batch_tokens) B++;
        reserve_micro(b, p->n_micro + 2);
        p->micro_seq[p->n_micro] = base + i;
        p->micro_T[p->n_micro++] = T;
        i += B;
    }
    p->micro_seq[p->n_micro] = base + n;
}

void distill_plan_build(const DistillSeqMeta* meta, int n, const DistillPlanParams* pp, uint64_t seed, int iteration,
                        DistillPlan* out) {
    memset(out, 0, sizeof(*out));
    Builder b = {.meta = meta, .p = out};
    reserve_steps(&b, 1);
    reserve_micro(&b, 1);
    out->step_micro[0] = 0;
    out->micro_seq[0] = 0;
    int* used = mallocCheck(sizeof(int) * (size_t)(n ? n : 1));
    int n_used = 0;
    for (int i = 0; i < n; i++) {
        if (meta[i].loss_tokens > 0) used[n_used++] = i;
    }
    out->n_used = n_used;
    out->seqs = mallocCheck(sizeof(int) * (size_t)(n_used ? n_used : 1) * (size_t)pp->epochs);
    int* order = mallocCheck(sizeof(int) * (size_t)(n_used ? n_used : 1));
    int filled = 0; // entries of out->seqs so far
    for (int e = 0; e < pp->epochs; e++) {
        memcpy(order, used, sizeof(int) * (size_t)n_used);
        Rng r;
        epoch_rng(&r, seed, iteration, e);
        for (int i = n_used - 1; i > 0; i--) {
            int j = (int)rng_below(&r, (uint64_t)i + 1);
            int tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
        for (int i = 0; i < n_used;) {
            // one optimizer step: at least one sequence, then more while the budget holds
            reserve_steps(&b, out->n_steps + 2);
            const int s = out->n_steps++, first = filled;
            out->step_epoch[s] = e;
            out->step_loss_tokens[s] = 0;
            int64_t tokens = 0;
            do {
                const DistillSeqMeta* m = &meta[order[i]];
                tokens += m->tokens;
                out->step_loss_tokens[s] += m->loss_tokens;
                out->seqs[filled++] = order[i++];
            } while (i < n_used && tokens + meta[order[i]].tokens <= pp->batch_tokens);
            out->step_tokens[s] = tokens;
            pack_step(&b, out->seqs + first, filled - first, pp);
            out->step_micro[s + 1] = out->n_micro;
        }
    }
    free(order);
    free(used);
}

void distill_plan_free(DistillPlan* p) {
    free(p->step_epoch);
    free(p->step_micro);
    free(p->step_tokens);
    free(p->step_loss_tokens);
    free(p->micro_seq);
    free(p->micro_T);
    free(p->seqs);
    memset(p, 0, sizeof(*p));
}
