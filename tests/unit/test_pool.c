// Unit tests of the experience pool: the four operations and their checks, the audit log, ids
// never reused, statistics from trajectories, utility, pruning, the cap, the views, and the JSON
// form (exact round trip, and errors that name the JSON path).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "distill/pool.h"

static char err[512];

static Pool* small_pool(void) {
    PoolParams prm = pool_default_params();
    return pool_create(prm);
}

// an episode of `iteration` whose steps showed the given items (one step per entry, -1 = no item)
static Trajectory* episode(int32_t task, int32_t sample, int32_t iteration, const int32_t* shown, int n, float reward,
                           uint32_t flags) {
    Trajectory* t = traj_create(0);
    t->task_id = task;
    t->sample = sample;
    t->iteration = iteration;
    t->flags = flags;
    t->final_reward = reward;
    for (int i = 0; i < n; i++) {
        traj_begin_step(t, &shown[i], shown[i] >= 0 ? 1 : 0);
        traj_push_agent(t, 5, -0.1f, NULL, NULL, 0.0f);
    }
    return t;
}

// ----------------------------------------------------------------------------
// operations

static void test_operations(void** state) {
    (void)state;
    Pool* p = small_pool();
    TrajRef ev[] = {{3, 0}, {3, 1}, {7, 2}};
    int a = pool_add(p, 0, ITEM_PRINCIPLE, "Out of stock", "When a product is out of stock, search for an alternative.",
                     "", ev, 3, "mined", err, sizeof(err));
    int b = pool_add(p, 0, ITEM_PRINCIPLE, "Verify", "Visit the page before answering.", "k1", ev, 1, "why", err,
                     sizeof(err));
    assert_int_equal(a, 1);
    assert_int_equal(b, 2);
    assert_int_equal(pool_size(p), 2);
    const PoolItem* it = pool_find(p, 1);
    assert_non_null(it);
    assert_string_equal(it->name, "Out of stock");
    assert_int_equal(it->n_tasks, 2); // 3 and 7
    assert_int_equal(it->tasks[0], 3);
    assert_int_equal(it->tasks[1], 7);
    assert_int_equal(it->n_trajs, 3);
    assert_int_equal(it->last_used, -1);
    char* r = pool_item_render(it);
    assert_string_equal(r, "Out of stock: When a product is out of stock, search for an alternative.");
    free(r);

    // update: new text, provenance extended, key unchanged
    TrajRef ev2 = {9, 4};
    assert_int_equal(pool_update(p, 1, 2, NULL, "Visit the page and check the date before answering.", NULL, &ev2, 1,
                                 "critique", err, sizeof(err)),
                     0);
    it = pool_find(p, 2);
    assert_string_equal(it->name, "Verify");
    assert_string_equal(it->key, "k1");
    assert_int_equal(it->updated, 1);
    assert_int_equal(it->created, 0);
    assert_int_equal(it->n_tasks, 2);
    // delete, then a new item never reuses the id
    assert_int_equal(pool_delete(p, 1, 2, NULL, 0, "contradicted", err, sizeof(err)), 0);
    assert_null(pool_find(p, 2));
    pool_none(p, 1, ev, 2, "nothing new");
    int c = pool_add(p, 1, ITEM_INSTANCE, "Task find", "Task: find x. Calls: search(x).", "task|4", NULL, 0, "inst",
                     err, sizeof(err));
    assert_int_equal(c, 3);
    assert_int_equal(p->next_id, 4);

    // the audit log, in order
    assert_int_equal(p->n_audit, 6);
    int ops[] = {POOL_ADD, POOL_ADD, POOL_UPDATE, POOL_DELETE, POOL_NONE, POOL_ADD};
    int ids[] = {1, 2, 2, 2, -1, 3};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(p->audit[i].op, ops[i]);
        assert_int_equal(p->audit[i].item_id, ids[i]);
    }
    assert_string_equal(p->audit[2].reason, "critique");
    assert_string_equal(p->audit[2].before, "Verify: Visit the page before answering.");
    assert_string_equal(p->audit[2].after, "Verify: Visit the page and check the date before answering.");
    assert_null(p->audit[3].after);
    assert_int_equal(p->audit[4].n_evidence, 2);
    assert_int_equal(p->audit[4].evidence[1].sample, 1);
    pool_free(p);
}

static void test_rejections(void** state) {
    (void)state;
    Pool* p = small_pool();
    struct {
        const char *name, *text, *want;
    } cases[] = {
        {"Long", "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
                 "seventeen eighteen nineteen twenty twentyone twentytwo twentythree twentyfour twentyfive twentysix "
                 "twentyseven twentyeight twentynine thirty thirtyone thirtytwo", "principle has 33 words, at most 32"},
        {"", "Text.", "name is empty"},
        {"Name", "   ", "text is empty"},
        {"Name", "Two\nlines.", "newline"},
        {"A: B", "Text.", "contains a colon"},
        {"one two three four five six seven eight nine", "Text.", "name has 9 words"},
        {"Bad", "caf\xc3 bytes", "not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(pool_add(p, 0, ITEM_PRINCIPLE, cases[i].name, cases[i].text, "", NULL, 0, "", err,
                                  sizeof(err)),
                         -1);
        if (!strstr(err, cases[i].want)) fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].want);
    }
    // 32 words exactly is fine: 1 name word + 31 text words
    assert_int_equal(pool_add(p, 0, ITEM_PRINCIPLE, "Long",
                              "two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                              "sixteen seventeen eighteen nineteen twenty twentyone twentytwo twentythree twentyfour "
                              "twentyfive twentysix twentyseven twentyeight twentynine thirty thirtyone thirtytwo",
                              "", NULL, 0, "", err, sizeof(err)),
                     1);
    // keys are unique; unknown ids fail; nothing was audited for the failures
    assert_int_equal(pool_add(p, 0, ITEM_PRINCIPLE, "A", "b.", "k", NULL, 0, "", err, sizeof(err)), 2);
    assert_int_equal(pool_add(p, 0, ITEM_PRINCIPLE, "C", "d.", "k", NULL, 0, "", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "key 'k' exists already (id 2)"));
    assert_int_equal(pool_update(p, 0, 99, NULL, "x.", NULL, NULL, 0, "", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no item with id 99"));
    assert_int_equal(pool_delete(p, 0, 99, NULL, 0, "", err, sizeof(err)), -1);
    assert_int_equal(pool_update(p, 0, 1, NULL, "bad\ttab", NULL, NULL, 0, "", err, sizeof(err)), -1);
    assert_int_equal(p->n_audit, 2);
    assert_int_equal(pool_size(p), 2);
    // split
    char *n, *t;
    assert_int_equal(pool_split_text("  Check dates :  Always check the date. ", &n, &t, err, sizeof(err)), 0);
    assert_string_equal(n, "Check dates");
    assert_string_equal(t, "Always check the date.");
    free(n);
    free(t);
    assert_int_equal(pool_split_text("no colon here", &n, &t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no colon"));
    assert_int_equal(pool_split_text("Name:   ", &n, &t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "empty sentence"));
    pool_free(p);
}

// ----------------------------------------------------------------------------
// statistics, utility, pruning, cap

static void test_observe_and_prune(void** state) {
    (void)state;
    Pool* p = small_pool();
    pool_add(p, 0, ITEM_PRINCIPLE, "Good", "helps.", "", NULL, 0, "", err, sizeof(err));  // id 1
    pool_add(p, 0, ITEM_PRINCIPLE, "Bad", "hurts.", "", NULL, 0, "", err, sizeof(err));   // id 2
    pool_add(p, 1, ITEM_PRINCIPLE, "New", "later.", "", NULL, 0, "", err, sizeof(err));   // id 3, made at iteration 1
    // iteration 1: 6 episodes showing item 1 (5 succeed, item 1 shown twice in each), 6 showing item 2
    // (1 succeeds), plus a held-out episode that must not count
    Trajectory* t[13];
    uint8_t ok[13];
    int32_t s1[] = {1, 1}, s2[] = {2, -1};
    for (int i = 0; i < 6; i++) {
        t[i] = episode(10 + i, 0, 1, s1, 2, 1.0f, TRAJ_FLAG_TEACHER);
        ok[i] = i < 5;
        t[6 + i] = episode(20 + i, 0, 1, s2, 2, 0.0f, TRAJ_FLAG_TEACHER);
        ok[6 + i] = i < 1;
    }
    t[12] = episode(99, 0, 1, s2, 2, 0.0f, TRAJ_FLAG_HELDOUT);
    ok[12] = 0;
    pool_observe(p, t, ok, 13);
    const PoolItem* g = pool_find(p, 1);
    const PoolItem* b = pool_find(p, 2);
    const PoolItem* nw = pool_find(p, 3);
    assert_int_equal(g->times_shown, 12);
    assert_int_equal(g->shown_episodes, 6);
    assert_int_equal(g->shown_successes, 5);
    assert_int_equal(g->unshown_episodes, 6);
    assert_int_equal(g->unshown_successes, 1);
    assert_int_equal(g->last_used, 1);
    assert_int_equal(b->shown_episodes, 6);
    assert_int_equal(b->shown_successes, 1);
    assert_int_equal(nw->shown_episodes + nw->unshown_episodes, 0); // not in the pool while they ran
    // utility with prior 1: (5+1)/(6+2) - (1+1)/(6+2) = 0.5; item 2: -0.5
    assert_true(fabs(pool_utility(p, g) - 0.5) < 1e-12);
    assert_true(fabs(pool_utility(p, b) + 0.5) < 1e-12);
    assert_true(fabs(pool_utility(p, nw)) < 1e-12);
    // prune: item 2 (6 exposures >= 5, -0.5 < -0.2) goes, with the numbers in the audit reason
    assert_int_equal(pool_prune(p, 1), 1);
    assert_null(pool_find(p, 2));
    const PoolAudit* a = &p->audit[p->n_audit - 1];
    assert_int_equal(a->op, POOL_DELETE);
    assert_int_equal(a->item_id, 2);
    assert_non_null(strstr(a->reason, "utility -0.500; success 1/6 shown, 5/6 not shown"));
    for (int i = 0; i < 13; i++) traj_free(t[i]);

    // too few exposures: no pruning however bad
    Pool* q = small_pool();
    pool_add(q, 0, ITEM_PRINCIPLE, "Bad", "hurts.", "", NULL, 0, "", err, sizeof(err));
    Trajectory* u[8];
    uint8_t uk[8];
    int32_t sh[] = {1}, none[] = {-1};
    for (int i = 0; i < 4; i++) {
        u[i] = episode(i, 0, 1, sh, 1, 0.0f, 0), uk[i] = 0;
        u[4 + i] = episode(i, 1, 1, none, 1, 1.0f, 0), uk[4 + i] = 1;
    }
    pool_observe(q, u, uk, 8);
    assert_int_equal(pool_prune(q, 1), 0);
    assert_int_equal(pool_size(q), 1);
    for (int i = 0; i < 8; i++) traj_free(u[i]);
    pool_free(q);

    // shown in every episode, all failing: nothing to compare with, so no pruning
    Pool* all = small_pool();
    pool_add(all, 0, ITEM_PRINCIPLE, "Everywhere", "always shown.", "", NULL, 0, "", err, sizeof(err));
    for (int i = 0; i < 8; i++) u[i] = episode(i, 0, 1, sh, 1, 0.0f, 0), uk[i] = 0;
    pool_observe(all, u, uk, 8);
    assert_int_equal(pool_find(all, 1)->unshown_episodes, 0);
    assert_true(pool_utility(all, pool_find(all, 1)) < -0.2);
    assert_int_equal(pool_prune(all, 1), 0);
    for (int i = 0; i < 8; i++) traj_free(u[i]);
    pool_free(all);
    pool_free(p);
}

static void test_cap(void** state) {
    (void)state;
    PoolParams prm = pool_default_params();
    prm.max_size = 3;
    Pool* p = pool_create(prm);
    char name[16];
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof(name), "Item %d", i + 1);
        pool_add(p, 0, ITEM_PRINCIPLE, name, "text.", "", NULL, 0, "", err, sizeof(err));
    }
    // utilities: item 1 +, item 2 -, items 3..6 no data (0); item 5 slightly negative
    p->items[0].shown_episodes = 4, p->items[0].shown_successes = 4;
    p->items[1].shown_episodes = 4, p->items[1].shown_successes = 0, p->items[1].unshown_episodes = 4,
    p->items[1].unshown_successes = 4;
    p->items[4].shown_episodes = 1;
    assert_int_equal(pool_enforce_cap(p, 2), 3);
    // deleted: 2 (lowest), 5 (next), then a tie at 0 between 3, 4, 6: the newest (6) goes
    assert_int_equal(pool_size(p), 3);
    assert_non_null(pool_find(p, 1));
    assert_non_null(pool_find(p, 3));
    assert_non_null(pool_find(p, 4));
    int order[] = {2, 5, 6};
    for (int i = 0; i < 3; i++) {
        const PoolAudit* a = &p->audit[6 + i];
        assert_int_equal(a->op, POOL_DELETE);
        assert_int_equal(a->item_id, order[i]);
        assert_non_null(strstr(a->reason, "over the cap of 3 items"));
    }
    assert_int_equal(pool_enforce_cap(p, 2), 0);
    pool_free(p);
}

// ----------------------------------------------------------------------------
// views

static void test_views(void** state) {
    (void)state;
    Pool* p = small_pool();
    TrajRef ev[] = {{4, 0}, {4, 2}};
    pool_add(p, 2, ITEM_PRINCIPLE, "Alpha", "first.", "", ev, 2, "seen twice", err, sizeof(err));
    pool_add(p, 2, ITEM_PRINCIPLE, "Beta", "second.", "", NULL, 0, "", err, sizeof(err));
    pool_update(p, 3, 1, "Alpha", "first, refined.", NULL, NULL, 0, "refined", err, sizeof(err));
    pool_delete(p, 3, 2, NULL, 0, "unused", err, sizeof(err));
    pool_add(p, 3, ITEM_PRINCIPLE, "Gamma", "third.", "", ev, 1, "new", err, sizeof(err));
    pool_none(p, 3, NULL, 0, "quiet");
    char* d = pool_diff_text(p, 3);
    assert_string_equal(d, "iteration 3: 1 added, 1 updated, 1 deleted, 1 none; 2 items in the pool\n"
                           "~ #1 Alpha: first.\n    -> Alpha: first, refined. [refined]\n"
                           "- #2 Beta: second. [unused]\n"
                           "+ #3 Gamma: third. [new; evidence 4/0]\n"
                           "= none [quiet]\n");
    free(d);
    d = pool_diff_text(p, 2);
    assert_non_null(strstr(d, "+ #1 Alpha: first. [seen twice; evidence 4/0 4/2]"));
    free(d);
    PoolListing l;
    pool_listing(p, &l);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.ids[0], 1);
    assert_int_equal(l.ids[1], 3);
    assert_string_equal(l.texts[0], "Alpha: first, refined.");
    assert_string_equal(l.texts[1], "Gamma: third.");
    pool_listing_free(&l);
    char* buf = NULL;
    size_t len = 0;
    FILE* f = open_memstream(&buf, &len);
    pool_print(p, f);
    fclose(f);
    assert_non_null(strstr(buf, "experience pool: 2 items (cap 50), next id 4"));
    assert_non_null(strstr(buf, "Gamma: third."));
    free(buf);
    pool_free(p);
}

// ----------------------------------------------------------------------------
// JSON

static Pool* rich_pool(void) {
    Pool* p = small_pool();
    TrajRef ev[] = {{3, 0}, {-1, 4}};
    pool_add(p, -1, ITEM_PRINCIPLE, "Seed", "From the \"seed\" file \\ with caf\xc3\xa9.", "", NULL, 0, "seed pool", err,
             sizeof(err));
    pool_add(p, 0, ITEM_INSTANCE, "Task find the river", "Task: find the river. Calls: search(river).", "task|3", ev,
             2, "instance", err, sizeof(err));
    pool_add(p, 0, ITEM_PRINCIPLE, "Gone", "soon deleted.", "rule|result|x|y", NULL, 0, "", err, sizeof(err));
    pool_delete(p, 1, 3, ev, 1, "pruned", err, sizeof(err));
    pool_none(p, 1, ev, 2, "nothing \xe2\x9c\x93");
    PoolItem* it = &p->items[1];
    it->times_shown = 7;
    it->shown_episodes = 5;
    it->shown_successes = 4;
    it->unshown_episodes = 3000000000ll; // beyond 32 bits
    it->unshown_successes = 12;
    it->last_used = 1;
    return p;
}

static void test_json_roundtrip(void** state) {
    (void)state;
    Pool* p = rich_pool();
    char* js = pool_to_json(p);
    Pool* q = pool_from_json(js, strlen(js), pool_default_params(), err, sizeof(err));
    if (!q) fail_msg("%s", err);
    char* js2 = pool_to_json(q);
    assert_string_equal(js, js2);
    assert_int_equal(q->next_id, 4);
    assert_int_equal(q->n_items, 2);
    assert_int_equal(q->n_audit, 5);
    const PoolItem* it = pool_find(q, 2);
    assert_string_equal(it->key, "task|3");
    assert_int_equal(it->kind, ITEM_INSTANCE);
    assert_true(it->unshown_episodes == 3000000000ll);
    assert_int_equal(it->trajs[1].task_id, -1);
    assert_string_equal(pool_find(q, 1)->text, "From the \"seed\" file \\ with caf\xc3\xa9.");
    assert_int_equal(pool_find(q, 1)->created, -1);
    assert_null(q->audit[3].after);
    assert_string_equal(q->audit[3].before, "Gone: soon deleted.");
    // the restored pool keeps going with fresh ids
    assert_int_equal(pool_add(q, 2, ITEM_PRINCIPLE, "Next", "one.", "", NULL, 0, "", err, sizeof(err)), 4);
    free(js2);
    free(js);
    pool_free(q);
    pool_free(p);
    // the empty pool
    Pool* e = small_pool();
    js = pool_to_json(e);
    assert_string_equal(js, "{\"version\":1,\"next_id\":1,\"items\":[],\"audit\":[]}");
    q = pool_from_json(js, strlen(js), pool_default_params(), err, sizeof(err));
    assert_non_null(q);
    free(js);
    pool_free(q);
    pool_free(e);
}

// replace the first occurrence of `from` in the JSON of rich_pool() by `to`, expect an error with `want`
static void expect_bad(const char* from, const char* to, const char* want) {
    Pool* p = rich_pool();
    char* js = pool_to_json(p);
    pool_free(p);
    char* at = strstr(js, from);
    if (!at) fail_msg("'%s' not in %s", from, js);
    size_t n = strlen(js) - strlen(from) + strlen(to) + 1;
    char* bad = malloc(n);
    snprintf(bad, n, "%.*s%s%s", (int)(at - js), js, to, at + strlen(from));
    Pool* q = pool_from_json(bad, strlen(bad), pool_default_params(), err, sizeof(err));
    if (q) fail_msg("accepted: %s", bad);
    if (!strstr(err, want)) fail_msg("error '%s' lacks '%s'", err, want);
    free(bad);
    free(js);
}

static void test_json_malformed(void** state) {
    (void)state;
    expect_bad("\"audit\":[", "\"audit\":[,", "line 1, column");
    expect_bad("\"version\":1", "\"version\":2", "$.version: 2, this ingrain reads version 1");
    expect_bad("\"next_id\":4", "\"next_id\":\"4\"", "$.next_id: expected an integer, got a string");
    expect_bad("\"next_id\":4", "\"next_id\":4,\"extra\":1", "$: unknown key 'extra'");
    expect_bad("\"next_id\":4,", "", "$: missing key 'next_id'");
    expect_bad("\"kind\":\"instance\"", "\"kind\":\"recipe\"", "$.items[1].kind: 'recipe' is not one of: principle, instance");
    expect_bad("\"shown_successes\":4", "\"shown_successes\":6", "$.items[1].stats.shown_successes: 6 is outside [0, 5]");
    expect_bad("\"times_shown\":7", "\"times_shown\":-7", "$.items[1].stats.times_shown: -7 is outside");
    expect_bad("\"times_shown\":7", "\"times_shown\":7.0", "$.items[1].stats.times_shown: expected an integer, got a real");
    expect_bad("\"trajectories\":[[3,0]", "\"trajectories\":[[3]", "$.items[1].provenance.trajectories[0]: expected a [task_id, sample]");
    expect_bad("\"tasks\":[3", "\"tasks\":[\"3\"", "$.items[1].provenance.tasks[0]: expected a 32-bit integer");
    expect_bad("\"name\":\"Seed\"", "\"name\":\"Se: ed\"", "$.items[0].name: must be one line");
    expect_bad("\"name\":\"Seed\"", "\"name\":null", "$.items[0].name: expected a string, got null");
    expect_bad("\"id\":2", "\"id\":1", "$.items[1]: id 1 does not follow id 1");
    expect_bad("\"id\":2", "\"id\":9", "$.items[1].id: 9 is not below next_id 4");
    expect_bad("\"op\":\"NONE\",\"id\":-1", "\"op\":\"NONE\",\"id\":2", "$.audit[4].id: a NONE entry has id -1");
    expect_bad("\"op\":\"DELETE\"", "\"op\":\"REMOVE\"", "$.audit[3].op: 'REMOVE' is not one of: ADD, UPDATE, DELETE, NONE");
    expect_bad("\"op\":\"DELETE\",\"id\":3", "\"op\":\"DELETE\",\"id\":7", "$.audit[3].id: 7 is not an item id");
    expect_bad("\"after\":null", "\"after\":5", "$.audit[3].after: expected a string or null, got an integer");
    expect_bad("\"reason\":\"pruned\"", "\"reason\":\"pruned\",\"reason\":\"x\"", "line 1");
    expect_bad("\"key\":\"\"", "\"key\":\"task|3\"", "$.items[1]: key 'task|3' repeats the key of item 1");
}

// ----------------------------------------------------------------------------
// files

static void test_seed_and_files(void** state) {
    (void)state;
    Pool* p = small_pool();
    const char* yaml = "items:\n"
                       "  - \"Check dates: When two pages disagree, prefer the newer one.\"\n"
                       "  - kind: instance\n"
                       "    text: \"Task river: Task: find the river. Calls: search(river); answer(Nile).\"\n";
    assert_int_equal(pool_load_seed_string(p, yaml, "seed.yaml", err, sizeof(err)), 0);
    assert_int_equal(pool_size(p), 2);
    assert_string_equal(p->items[0].name, "Check dates");
    assert_int_equal(p->items[0].created, -1);
    assert_int_equal(p->items[1].kind, ITEM_INSTANCE);
    assert_string_equal(p->audit[1].reason, "seed pool seed.yaml:3");
    struct {
        const char *yaml, *want;
    } bad[] = {
        {"items:\n  - \"ok: fine.\"\n  - \"no colon\"\n", "seed.yaml:3: seed pool: text is not of the form"},
        {"items:\n  - kind: recipe\n    text: \"a: b\"\n", "seed.yaml:2: seed pool: kind 'recipe' is not"},
        {"items:\n  - txt: \"a: b\"\n", "seed.yaml:2: seed pool: unknown key 'txt'"},
        {"items:\n  - kind: principle\n", "seed.yaml:2: seed pool: item has no 'text'"},
        {"items: \"a: b\"\n", "seed.yaml:1: seed pool: 'items' must be a list"},
        {"pool:\n  - \"a: b\"\n", "seed.yaml:1: seed pool: unknown key"},
        {"- \"a: b\"\n", "seed.yaml:1: seed pool: expected a mapping"},
        {"items: [\"a: b\"\n", "seed.yaml:2: seed pool: YAML syntax error"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (pool_load_seed_string(p, bad[i].yaml, "seed.yaml", err, sizeof(err)) != -1) fail_msg("case %zu accepted", i);
        if (!strstr(err, bad[i].want)) fail_msg("case %zu: '%s' lacks '%s'", i, err, bad[i].want);
    }
    assert_int_equal(pool_size(p), 2); // a bad file adds nothing, not even its good items
    assert_int_equal(pool_load_seed(p, "/nonexistent/seed.yaml", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent/seed.yaml: cannot open the seed pool"));

    // the run-directory files
    char dir[] = "/tmp/ingrain_pool_XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(pool_write_iteration(p, -1, dir, err, sizeof(err)), 0);
    char path[256];
    snprintf(path, sizeof(path), "%s/pool_iter_-001.json", dir);
    FILE* f = fopen(path, "rb");
    assert_non_null(f);
    char buf[4096] = {0};
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    char* js = pool_to_json(p);
    assert_int_equal(n, strlen(js));
    assert_string_equal(buf, js);
    free(js);
    unlink(path);
    snprintf(path, sizeof(path), "%s/pool_diff_iter_-001.txt", dir);
    f = fopen(path, "rb");
    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_non_null(strstr(buf, "iteration -1: 2 added"));
    unlink(path);
    rmdir(dir);
    assert_int_equal(pool_write_iteration(p, 0, "/nonexistent/run", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent/run/pool_diff_iter_0000.txt.tmp: cannot write"));
    pool_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_operations),   cmocka_unit_test(test_rejections), cmocka_unit_test(test_observe_and_prune),
        cmocka_unit_test(test_cap),          cmocka_unit_test(test_views),      cmocka_unit_test(test_json_roundtrip),
        cmocka_unit_test(test_json_malformed), cmocka_unit_test(test_seed_and_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
