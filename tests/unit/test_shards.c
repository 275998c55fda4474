// Unit tests of the distillation shards: selection per regime (rejection sampling of teacher
// trajectories off-policy, the student's own on-policy, never held-out ones), the student view as
// a record aligned with the teacher's top-k rows, balance over trainer ranks (heaviest minus
// lightest <= the longest sequence), determinism, and the wire round trip.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distill/shards.h"
#include "io/config.h"
#include "model/rng.h"

#define TOPK 4

// a trajectory with global experience in the system prompt (teacher) or none (student), `turns`
// assistant turns of `len` tokens each, item ids per step
static Trajectory* make(Rng* r, int32_t task, int32_t sample, uint32_t flags, float reward, int turns, int len) {
    Trajectory* t = traj_create(TOPK);
    t->task_id = task;
    t->sample = sample;
    t->iteration = 3;
    t->flags = flags;
    t->seed = 1000u + (uint64_t)task;
    t->final_reward = reward;
    int32_t ids[16];
    for (int i = 0; i < 16; i++) ids[i] = 10 + (int32_t)rng_below(r, 100);
    traj_push_context(t, ids, 3, TRAJ_SEG_SYSTEM);
    if (flags & TRAJ_FLAG_TEACHER) traj_push_context(t, ids + 3, 5, TRAJ_SEG_EXPERIENCE);
    traj_push_context(t, ids + 8, 4, TRAJ_SEG_USER);
    for (int s = 0; s < turns; s++) {
        int32_t items[2] = {s + 1, s + 7};
        traj_begin_step(t, items, (flags & TRAJ_FLAG_TEACHER) ? 2 : 0);
        for (int i = 0; i < len; i++) {
            int32_t k_ids[TOPK];
            float k_lp[TOPK];
            for (int j = 0; j < TOPK; j++) k_ids[j] = (int32_t)rng_below(r, 1000), k_lp[j] = -0.1f * (float)(j + 1 + i);
            traj_push_agent(t, k_ids[0], -0.2f, k_ids, k_lp, 0.05f);
        }
        traj_set_step_reward(t, (float)s);
        traj_push_context(t, ids + 12, 2, TRAJ_SEG_TOOL);
        if (flags & TRAJ_FLAG_TEACHER) traj_push_context(t, ids + 3, 1, TRAJ_SEG_EXPERIENCE); // mid-history experience
    }
    return t;
}

// ----------------------------------------------------------------------------

static void test_student_record(void** state) {
    (void)state;
    Rng r;
    rng_seed(&r, 1);
    Trajectory* t = make(&r, 5, 2, TRAJ_FLAG_TEACHER, 1.0f, 3, 4);
    Trajectory* s = shards_student_record(t);
    StudentView v;
    traj_student_view(t, &v);
    assert_int_equal(s->n_tokens, v.n_tokens);
    // without the experience (5 + 3 x 1) and the tool result after the last turn (2): it carries
    // no loss, and a context-capped episode's last observation may not fit max_seq
    assert_int_equal(s->n_tokens, t->n_tokens - 5 - 3 - 2);
    assert_true(s->agent_mask[s->n_tokens - 1]);
    assert_memory_equal(s->tokens, v.tokens, sizeof(int32_t) * (size_t)v.n_tokens);
    assert_memory_equal(s->agent_mask, v.agent_mask, (size_t)v.n_tokens);
    assert_int_equal(s->n_agent, t->n_agent);
    for (int i = 0; i < s->n_tokens; i++) {
        assert_int_not_equal(s->segment[i], TRAJ_SEG_EXPERIENCE);
        assert_int_equal(s->segment[i], t->segment[v.src_index[i]]);
        assert_true(s->logprob[i] == t->logprob[v.src_index[i]]);
    }
    // the agent rows are the teacher's rows, in order
    int row = 0;
    for (int i = 0; i < v.n_tokens; i++) {
        if (v.topk_row[i] < 0) continue;
        assert_memory_equal(s->topk_ids + row * TOPK, t->topk_ids + v.topk_row[i] * TOPK, sizeof(int32_t) * TOPK);
        assert_memory_equal(s->topk_lp + row * TOPK, t->topk_lp + v.topk_row[i] * TOPK, sizeof(float) * TOPK);
        assert_true(s->tail_mass[row] == t->tail_mass[v.topk_row[i]]);
        row++;
    }
    // steps open at the same agent token, with their items and rewards
    assert_int_equal(s->n_steps, 3);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(v.src_index[s->step_start[k]], t->step_start[k]);
        assert_true(s->step_reward[k] == (float)k);
        assert_int_equal(s->item_offset[k + 1] - s->item_offset[k], 2);
        assert_int_equal(s->items[s->item_offset[k]], k + 1);
    }
    assert_int_equal(s->task_id, 5);
    assert_int_equal(s->sample, 2);
    assert_true(s->seed == t->seed);
    student_view_free(&v);
    traj_free(s);
    traj_free(t);
}

// 30 teacher trajectories (reward 1 for every third sample... see below), 30 student ones, 4 held-out
static Trajectory** batch(int* n) {
    Rng r;
    rng_seed(&r, 42);
    Trajectory** list = malloc(sizeof(Trajectory*) * 64);
    int m = 0;
    for (int i = 0; i < 30; i++) {
        float reward = (i % 3 == 0) ? 0.0f : (i % 3 == 1 ? 0.5f : 1.0f);
        list[m++] = make(&r, i / 5, i % 5, TRAJ_FLAG_TEACHER, reward, 1 + (int)rng_below(&r, 6), 2 + (int)rng_below(&r, 30));
        list[m++] = make(&r, i / 5, i % 5, 0, reward, 1 + (int)rng_below(&r, 6), 2 + (int)rng_below(&r, 30));
    }
    for (int i = 0; i < 4; i++) {
        list[m++] = make(&r, 100 + i, 0, TRAJ_FLAG_TEACHER | TRAJ_FLAG_HELDOUT, 1.0f, 2, 5);
    }
    *n = m;
    return list;
}

static void check_balance(const ShardSet* s, int expect_kept) {
    int64_t total = 0, hi = 0, lo = INT64_MAX, longest = 0;
    int seqs = 0;
    for (int r = 0; r < s->n_ranks; r++) {
        const Shard* sh = &s->shards[r];
        int64_t sum = 0;
        for (int i = 0; i < sh->n; i++) {
            sum += sh->seqs[i]->n_tokens;
            if (sh->seqs[i]->n_tokens > longest) longest = sh->seqs[i]->n_tokens;
            // within a shard, the greedy assignment order is by decreasing length
            if (i > 0) assert_true(sh->seqs[i]->n_tokens <= sh->seqs[i - 1]->n_tokens);
        }
        assert_true(sum == sh->tokens);
        total += sum;
        seqs += sh->n;
        if (sum > hi) hi = sum;
        if (sum < lo) lo = sum;
    }
    assert_int_equal(seqs, expect_kept);
    assert_int_equal(s->n_kept, expect_kept);
    // the stated tolerance: heaviest - lightest <= the longest sequence
    assert_true(hi - lo <= longest);
    assert_true(hi * s->n_ranks <= total + (int64_t)s->n_ranks * longest);
}

static void test_regimes_and_balance(void** state) {
    (void)state;
    int n;
    Trajectory** list = batch(&n);
    for (int ranks = 1; ranks <= 4; ranks++) {
        ShardSet s;
        shards_build(list, n, REGIME_OFF_POLICY, 1.0, ranks, &s);
        check_balance(&s, 10); // the 10 teacher trajectories with reward 1 (held-out ones excluded)
        for (int r = 0; r < ranks; r++) {
            for (int i = 0; i < s.shards[r].n; i++) {
                const Trajectory* t = s.shards[r].seqs[i];
                assert_true(t->flags & TRAJ_FLAG_TEACHER);
                assert_false(t->flags & TRAJ_FLAG_HELDOUT);
                assert_true(t->final_reward >= 1.0f);
                for (int k = 0; k < t->n_tokens; k++) assert_int_not_equal(t->segment[k], TRAJ_SEG_EXPERIENCE);
            }
        }
        shards_free(&s);
        shards_build(list, n, REGIME_OFF_POLICY, 0.5, ranks, &s);
        check_balance(&s, 20);
        shards_free(&s);
        shards_build(list, n, REGIME_ON_POLICY, 1.0, ranks, &s);
        check_balance(&s, 30); // every student trajectory, whatever its reward
        for (int r = 0; r < ranks; r++) {
            for (int i = 0; i < s.shards[r].n; i++) assert_false(s.shards[r].seqs[i]->flags & TRAJ_FLAG_TEACHER);
        }
        shards_free(&s);
    }
    // more ranks than sequences: some shards are empty, none is NULL
    ShardSet s;
    shards_build(list, n, REGIME_OFF_POLICY, 1.0, 16, &s);
    check_balance(&s, 10);
    int empty = 0;
    for (int r = 0; r < 16; r++) empty += s.shards[r].n == 0;
    assert_int_equal(empty, 6);
    shards_free(&s);
    for (int i = 0; i < n; i++) traj_free(list[i]);
    free(list);
}

static void test_deterministic_and_wire(void** state) {
    (void)state;
    int n;
    Trajectory** list = batch(&n);
    ShardSet a, b;
    shards_build(list, n, REGIME_OFF_POLICY, 0.5, 3, &a);
    shards_build(list, n, REGIME_OFF_POLICY, 0.5, 3, &b);
    char err[512];
    for (int r = 0; r < 3; r++) {
        TrajBuf ba = {0}, bb = {0};
        shard_encode(&a.shards[r], &ba);
        shard_encode(&b.shards[r], &bb);
        assert_int_equal(ba.len, bb.len);
        assert_memory_equal(ba.data, bb.data, ba.len);
        // round trip
        Shard d;
        assert_int_equal(shard_decode(ba.data, ba.len, &d, err, sizeof(err)), 0);
        assert_int_equal(d.n, a.shards[r].n);
        assert_true(d.tokens == a.shards[r].tokens);
        assert_true(d.agent_tokens == a.shards[r].agent_tokens);
        for (int i = 0; i < d.n; i++) {
            const Trajectory *x = d.seqs[i], *y = a.shards[r].seqs[i];
            assert_int_equal(x->n_tokens, y->n_tokens);
            assert_memory_equal(x->tokens, y->tokens, sizeof(int32_t) * (size_t)x->n_tokens);
            assert_memory_equal(x->topk_ids, y->topk_ids, sizeof(int32_t) * (size_t)x->n_agent * TOPK);
        }
        shard_free(&d);
        // a truncated message is an error, not a crash
        assert_int_equal(shard_decode(ba.data, ba.len - 3, &d, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "record"));
        traj_buf_free(&ba);
        traj_buf_free(&bb);
    }
    shards_free(&a);
    shards_free(&b);
    for (int i = 0; i < n; i++) traj_free(list[i]);
    free(list);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_student_record),
        cmocka_unit_test(test_regimes_and_balance),
        cmocka_unit_test(test_deterministic_and_wire),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
