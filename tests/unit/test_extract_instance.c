// Unit tests of the instance extractor (excerpts of the best successful attempt, UPDATE of the same
// task's instance, the word limit), BM25 retrieval of the similar task's instance, the episode text
// built from a trajectory record, and the whole iteration (experience_update: observe, prune,
// extract, cap).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distill/extract.h"
#include "distill/text.h"
#include "io/config.h"

static char err[512];

static void add(EpisodeText* e, const char* obs, const char* tool, const char* args) {
    char action[256];
    snprintf(action, sizeof(action), "%s(%s)", tool, args);
    episode_add_step(e, obs, e->n_steps == 0, action, tool, args);
}

// task 7, three attempts: a long success, a short success, a failure
static void capital_group(EpisodeText* e, int32_t task, const char* country, const char* city) {
    char t[128], o[256];
    snprintf(t, sizeof(t), "What is the capital of %s? Answer with the city.", country);
    for (int g = 0; g < 3; g++) episode_init(&e[g], task, g, g < 2, t);
    snprintf(o, sizeof(o), "1. %s (country) 2. %s history", country, country);
    // sample 0: detours, a failing call, then the answer
    add(&e[0], t, "search", country);
    add(&e[0], o, "visit", "Atlantis");
    add(&e[0], "Error: no page 'Atlantis'", "visit", country);
    snprintf(o, sizeof(o), "%s: a country. Its capital is %s.", country, city);
    add(&e[0], o, "search", country);
    add(&e[0], "1. again", "answer", city);
    e[0].reward = 1.0f;
    // sample 1: straight to it
    snprintf(o, sizeof(o), "1. %s (country) 2. %s history", country, country);
    add(&e[1], t, "search", country);
    add(&e[1], o, "visit", country);
    snprintf(o, sizeof(o), "%s: a country. Its capital is %s.", country, city);
    add(&e[1], o, "answer", city);
    e[1].reward = 1.0f;
    // sample 2: guessed
    add(&e[2], t, "answer", "Paris");
    e[2].reward = 0.0f;
}

static void free_eps(EpisodeText* e, int n) {
    for (int i = 0; i < n; i++) episode_free(&e[i]);
}

// ----------------------------------------------------------------------------

static void test_excerpt(void** state) {
    (void)state;
    EpisodeText e[3];
    capital_group(e, 7, "Norway", "Oslo");
    Pool* p = pool_create(pool_default_params());
    ExtractParams prm = extract_default_params();
    extract_instances(p, e, 3, 0, &prm);
    assert_int_equal(pool_size(p), 1);
    const PoolItem* it = &p->items[0];
    assert_int_equal(it->kind, ITEM_INSTANCE);
    assert_string_equal(it->key, "task|7");
    assert_string_equal(it->name, "Task What is the capital of");
    assert_string_equal(it->text, "Task: What is the capital of Norway? Answer with the city. Calls: search(Norway); "
                                  "visit(Norway); answer(Oslo). Found: Norway; Oslo.");
    assert_int_equal(it->n_trajs, 1);
    assert_int_equal(it->trajs[0].sample, 1); // the shorter of the two successes
    assert_non_null(strstr(p->audit[0].reason, "instance: best of 3 attempts at task 7 (reward 1, 3 steps)"));
    // the same evidence again: NONE; a different best attempt: UPDATE of the same item
    extract_instances(p, e, 3, 1, &prm);
    assert_int_equal(p->audit[p->n_audit - 1].op, POOL_NONE);
    e[1].success = 0;
    extract_instances(p, e, 3, 2, &prm);
    assert_int_equal(pool_size(p), 1);
    const PoolAudit* a = &p->audit[p->n_audit - 1];
    assert_int_equal(a->op, POOL_UPDATE);
    assert_int_equal(a->item_id, 1);
    // sample 0: the call answered by an error is gone, the repeated search kept once
    assert_string_equal(p->items[0].text, "Task: What is the capital of Norway? Answer with the city. Calls: "
                                          "search(Norway); visit(Norway); answer(Oslo). Found: Norway.");
    // a task without success adds nothing
    e[0].success = 0;
    int before = pool_size(p);
    extract_instances(p, e, 3, 3, &prm);
    assert_int_equal(pool_size(p), before);
    assert_non_null(strstr(p->audit[p->n_audit - 1].reason, "1 of the tasks had no successful attempt"));
    pool_free(p);
    free_eps(e, 3);
}

static void test_word_limit(void** state) {
    (void)state;
    EpisodeText e;
    episode_init(&e, 3, 0, 1, "Please find out, for the quarterly report that is due next week, which of the "
                              "twelve regional offices shipped the most orders in March and by how much.");
    char args[64];
    for (int i = 0; i < 14; i++) {
        snprintf(args, sizeof(args), "office %d orders march with many extra words here", i);
        add(&e, "Result: 12 orders", "lookup", args);
    }
    add(&e, "done", "answer", "office 7 by 40 orders");
    e.reward = 1.0f;
    PoolParams pp = pool_default_params();
    pp.max_instance_words = 60;
    Pool* p = pool_create(pp);
    ExtractParams prm = extract_default_params();
    extract_instances(p, &e, 1, 0, &prm);
    assert_int_equal(pool_size(p), 1);
    char* full = pool_item_render(&p->items[0]);
    assert_true(text_count_words(full) <= 60);
    assert_non_null(strstr(full, "lookup(office 0 orders march with many extra words ...); ...;"));
    assert_non_null(strstr(full, "answer(office 7 by 40 orders)."));
    free(full);
    pool_free(p);
    episode_free(&e);
}

static void test_retrieval(void** state) {
    (void)state;
    EpisodeText e[9];
    capital_group(e, 1, "Norway", "Oslo");
    capital_group(e + 3, 2, "Spain", "Madrid");
    episode_init(&e[6], 3, 0, 1, "Return order 17 for customer Alice Smith.");
    add(&e[6], e[6].task, "find_order", "17");
    add(&e[6], "order 17: blender, delivered", "return_order", "17");
    episode_init(&e[7], 4, 0, 1, "Craft a wooden table from planks.");
    add(&e[7], e[7].task, "get", "planks");
    add(&e[7], "got 4 planks", "craft", "table using planks");
    episode_init(&e[8], 5, 0, 0, "Unsolved task about capitals of countries.");
    for (int i = 6; i < 9; i++) e[i].reward = (float)e[i].success;
    Pool* p = pool_create(pool_default_params());
    pool_add(p, 0, ITEM_PRINCIPLE, "Capitals", "When asked for a capital, visit the country page.", "", NULL, 0, "",
             err, sizeof(err));
    ExtractParams prm = extract_default_params();
    extract_instances(p, e, 9, 0, &prm);
    assert_int_equal(pool_size(p), 5); // 1 principle + 4 instances (task 5 failed)
    int32_t ids[4];
    double sc[4];
    int m = pool_retrieve(p, "What is the capital of Spain?", ITEM_INSTANCE, 4, ids, sc);
    assert_int_equal(m, 2); // the two capital tasks share words; the others share none
    assert_string_equal(pool_find(p, ids[0])->key, "task|2");
    assert_string_equal(pool_find(p, ids[1])->key, "task|1");
    assert_true(sc[0] > sc[1]);
    m = pool_retrieve(p, "customer wants to return a blender, order 17", ITEM_INSTANCE, 1, ids, sc);
    assert_int_equal(m, 1);
    assert_string_equal(pool_find(p, ids[0])->key, "task|3");
    m = pool_retrieve(p, "capital", -1, 4, ids, NULL); // any kind: the principle competes too
    assert_int_equal(m, 3);
    pool_free(p);
    free_eps(e, 9);
}

// ----------------------------------------------------------------------------
// episode text from a record: a byte "tokenizer" and a tool(args) parser

static size_t byte_decode(void* ctx, const int32_t* ids, int n, char* out, size_t cap) {
    (void)ctx;
    for (int i = 0; i < n && (size_t)i + 1 < cap; i++) out[i] = (char)ids[i];
    if (cap) out[(size_t)n < cap ? (size_t)n : cap - 1] = '\0';
    return (size_t)n;
}

static int paren_parse(void* ctx, const char* text, char* tool, size_t tc, char* args, size_t ac) {
    (void)ctx;
    const char* open = strchr(text, '(');
    const char* close = strrchr(text, ')');
    if (!open || !close || close < open) return -1;
    snprintf(tool, tc, "%.*s", (int)(open - text), text);
    snprintf(args, ac, "%.*s", (int)(close - open - 1), open + 1);
    return 0;
}

static void push_text(Trajectory* t, const char* s, int seg) {
    for (const char* p = s; *p; p++) {
        int32_t id = (unsigned char)*p;
        if (seg == TRAJ_SEG_ASSISTANT) traj_push_agent(t, id, -0.1f, NULL, NULL, 0.0f);
        else traj_push_context(t, &id, 1, seg);
    }
}

// an assistant turn calling `action`, then the tool message `result` (NULL: none, the last turn)
static void push_turn(Trajectory* t, const char* action, const char* result) {
    traj_begin_step(t, NULL, 0);
    push_text(t, action, TRAJ_SEG_ASSISTANT);
    if (result) push_text(t, result, TRAJ_SEG_TOOL);
}

// the episode text of t, judged successful, as the driver reads it (byte decoding, tool(args) calls)
static void episode_of(EpisodeText* e, const Trajectory* t) {
    episode_from_trajectory(e, t, 1, NULL, byte_decode, NULL, paren_parse, NULL, NULL);
}

static void test_from_trajectory(void** state) {
    (void)state;
    Trajectory* t = traj_create(0);
    t->task_id = 11;
    t->sample = 2;
    t->final_reward = 1.0f;
    push_text(t, "SYS", TRAJ_SEG_SYSTEM);
    push_text(t, "[pool]", TRAJ_SEG_EXPERIENCE);
    push_text(t, "Find the river", TRAJ_SEG_USER);
    push_turn(t, "search(river)", "1. Nile");
    push_turn(t, "I think... no call", "Error: no tool call");
    push_turn(t, "answer(Nile)", NULL);
    EpisodeText e;
    episode_of(&e, t);
    assert_int_equal(e.task_id, 11);
    assert_int_equal(e.sample, 2);
    assert_string_equal(e.task, "Find the river");
    assert_int_equal(e.n_steps, 3);
    assert_string_equal(e.steps[0].observation, "Find the river");
    assert_int_equal(e.steps[0].obs_is_task, 1);
    assert_string_equal(e.steps[0].tool, "search");
    assert_string_equal(e.steps[0].args, "river");
    assert_string_equal(e.steps[1].observation, "1. Nile");
    assert_int_equal(e.steps[1].obs_is_task, 0);
    assert_string_equal(e.steps[1].action, "I think... no call");
    assert_string_equal(e.steps[1].tool, "");
    assert_string_equal(e.steps[2].observation, "Error: no tool call");
    assert_string_equal(e.answer, "Nile");
    episode_free(&e);
    traj_free(t);
}

// The miner reads a step's observation as the environment wrote it, not the chat format's markup:
// with step-wise items between a tool message's header and its wrapper, the header used to be
// part of the observation only where no item was shown, so "im start user" told the miner
// whether experience was in context
static void test_observation_without_markup(void** state) {
    (void)state;
    Trajectory* t = traj_create(0);
    push_text(t, "<|im_start|>system\nSYS<|im_end|>", TRAJ_SEG_SYSTEM);
    push_text(t, "\n<|im_start|>user\nFind the river<|im_end|>", TRAJ_SEG_USER);
    push_turn(t, "search(river)", "\n<|im_start|>user\n<tool_response>\n1. Nile\n</tool_response><|im_end|>");
    push_turn(t, "visit(Nile)", "\n<|im_start|>user\n"); // the step-wise item sits inside the tool message
    push_text(t, "<experience>Rivers: visit.</experience>", TRAJ_SEG_EXPERIENCE);
    push_text(t, "<tool_response>\nThe Nile flows north.\n</tool_response><|im_end|>", TRAJ_SEG_TOOL);
    push_turn(t, "answer(north)", NULL);
    EpisodeText e;
    episode_of(&e, t);
    assert_string_equal(e.task, "Find the river");
    assert_int_equal(e.n_steps, 3);
    assert_string_equal(e.steps[0].observation, "Find the river");
    assert_string_equal(e.steps[1].observation, "1. Nile");
    assert_string_equal(e.steps[2].observation, "The Nile flows north.");
    episode_free(&e);
    traj_free(t);
}

// ----------------------------------------------------------------------------
// one whole iteration

static void test_experience_update(void** state) {
    (void)state;
    PoolParams pp = pool_default_params();
    pp.max_size = 2;
    Pool* p = pool_create(pp);
    // a bad seed item, shown in 6 failing episodes of iteration 1 while the others succeed
    pool_add(p, -1, ITEM_PRINCIPLE, "Guess", "Answer at once.", "", NULL, 0, "seed", err, sizeof(err));
    Trajectory* t[12];
    uint8_t ok[12];
    int32_t shown = 1;
    for (int i = 0; i < 12; i++) {
        t[i] = traj_create(0);
        t[i]->iteration = 1;
        traj_begin_step(t[i], &shown, i < 6 ? 1 : 0);
        ok[i] = i >= 6;
    }
    EpisodeText e[9];
    capital_group(e, 1, "Norway", "Oslo");
    capital_group(e + 3, 2, "Spain", "Madrid");
    capital_group(e + 6, 3, "Peru", "Lima");
    ExtractParams prm = extract_default_params();
    ExtractReport rep;
    ExperienceMode mode = {GRANULARITY_INSTANCE, EXTRACTOR_CONTRASTIVE};
    assert_int_equal(experience_update(p, mode, 1, t, ok, 12, e, 9, &prm, &rep, err, sizeof(err)), 0);
    assert_int_equal(rep.pruned, 1);  // the seed item: utility 1/8 - 7/8 = -0.75 after 6 exposures
    assert_int_equal(rep.added, 3);   // three instances
    assert_int_equal(rep.capped, 1);  // cap 2: all at utility 0, the newest (task 3) goes
    assert_int_equal(rep.deleted, 2);
    assert_int_equal(pool_size(p), 2);
    assert_string_equal(p->items[0].key, "task|1");
    assert_string_equal(p->items[1].key, "task|2");
    char* diff = pool_diff_text(p, 1);
    assert_non_null(strstr(diff, "iteration 1: 3 added, 0 updated, 2 deleted, 0 none; 2 items in the pool"));
    assert_non_null(strstr(diff, "- #1 Guess: Answer at once. [pruned: utility -0.750"));
    assert_non_null(strstr(diff, "- #4 Task What is the capital of: Task: What is the capital of Peru?"));
    free(diff);
    // llm without a model is a setup error
    mode = (ExperienceMode){GRANULARITY_PRINCIPLE, EXTRACTOR_LLM};
    assert_int_equal(experience_update(p, mode, 2, NULL, NULL, 0, e, 9, &prm, &rep, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no GenerateFn"));
    for (int i = 0; i < 12; i++) traj_free(t[i]);
    free_eps(e, 9);
    pool_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_excerpt),         cmocka_unit_test(test_word_limit),
        cmocka_unit_test(test_retrieval),       cmocka_unit_test(test_from_trajectory),
        cmocka_unit_test(test_observation_without_markup), cmocka_unit_test(test_experience_update),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
