// Unit tests of the contrastive principle miner: it recovers a rule planted in synthetic
// trajectories and ranks it first, renders it within the word limit, is deterministic, merges
// with existing items instead of duplicating them, stays quiet when nothing separates success
// from failure, weighs evidence by tasks rather than copies, and keeps the broader of two rules
// on the same steps, and (with a limit on the action's share) drops a rule that restates the agent's habit.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distill/extract.h"
#include "model/rng.h"

static char err[512];

// ----------------------------------------------------------------------------
// synthetic shop episodes. The planted rule: a step whose last tool result says "<product> is out of
// stock today" leads to success only when the next action is search_alternative (90%); any other
// action there fails. Elsewhere success is a coin flip (60%), and a distractor ("ships soon" then
// buy) has no effect. `plant` is the share of out-of-stock steps where the agent already takes
// search_alternative; 0: no rule planted (no step is out of stock).

static const char* const products[] = {"kettle", "lamp", "chair", "blender", "toaster", "mirror", "rug", "clock"};
static const char* const others[] = {"buy", "view", "answer"};

static EpisodeText* shop(int tasks, int group, uint64_t seed, double plant, int* n) {
    Rng r;
    rng_seed(&r, seed);
    EpisodeText* eps = calloc((size_t)(tasks * group), sizeof(EpisodeText));
    char task[128], obs[128];
    for (int t = 0; t < tasks; t++) {
        const char* prod = products[t % 8];
        snprintf(task, sizeof(task), "Buy a %s for the customer and confirm the order.", prod);
        for (int g = 0; g < group; g++) {
            EpisodeText* e = &eps[t * group + g];
            episode_init(e, 100 + t, g, 0, task);
            episode_add_step(e, task, 1, "", "search", prod);
            snprintf(obs, sizeof(obs), "Found 3 results for %s: %s deluxe, %s basic.", prod, prod, prod);
            episode_add_step(e, obs, 0, "", "view", prod);
            int oos = rng_uniform(&r) < 0.5;
            int success;
            if (oos && plant > 0.0) {
                snprintf(obs, sizeof(obs), "The %s is out of stock today.", prod);
                int alt = rng_uniform(&r) < plant;
                const char* tool = alt ? "search_alternative" : others[rng_below(&r, 3)];
                episode_add_step(e, obs, 0, "", tool, prod);
                success = alt && rng_uniform(&r) < 0.9;
            } else {
                snprintf(obs, sizeof(obs), "The %s costs %d dollars and ships soon.", prod, 10 + (int)rng_below(&r, 50));
                episode_add_step(e, obs, 0, "", rng_uniform(&r) < 0.7 ? "buy" : "view", prod);
                success = rng_uniform(&r) < 0.6;
            }
            episode_add_step(e, "Order placed.", 0, "", "answer", "done");
            e->success = success;
            e->reward = (float)success;
        }
    }
    *n = tasks * group;
    return eps;
}

static void free_eps(EpisodeText* e, int n) {
    for (int i = 0; i < n; i++) episode_free(&e[i]);
    free(e);
}

// ----------------------------------------------------------------------------

static void test_planted_rule_first(void** state) {
    (void)state;
    int n;
    EpisodeText* e = shop(16, 5, 7, 0.5, &n);
    ExtractParams prm = extract_default_params();
    Rule* rules;
    int m = contrastive_mine(e, n, &prm, &rules);
    assert_true(m >= 1);
    for (int i = 0; i < m && i < 5; i++) {
        printf("rule %d: [%s] \"%s\" -> %s  %d/%d vs %d/%d lift %.3f score %.3f tasks %d\n", i,
               rules[i].source == RULE_FROM_TASK ? "task" : "result", rules[i].phrase, rules[i].tool, rules[i].s_with,
               rules[i].n_with, rules[i].s_other, rules[i].n_other, rules[i].lift, rules[i].score, rules[i].n_tasks);
    }
    assert_int_equal(rules[0].source, RULE_FROM_RESULT);
    assert_string_equal(rules[0].phrase, "out of stock");
    assert_string_equal(rules[0].tool, "search_alternative");
    assert_true(rules[0].lift > 0.5);
    assert_true(rules[0].args_from_obs);
    assert_null(rules[0].args); // the product differs between tasks
    // no restatement of the same rule ("stock", "today", "stock today") follows it
    for (int i = 1; i < m; i++) {
        assert_false(strcmp(rules[i].tool, "search_alternative") == 0 && strstr("out of stock today", rules[i].phrase));
    }
    char *name, *text, *key;
    contrastive_render(&rules[0], &name, &text, &key);
    assert_string_equal(name, "Out of stock");
    assert_string_equal(text, "When the last tool result mentions \"out of stock\", call search_alternative with a "
                              "value taken from it.");
    assert_string_equal(key, "rule|result|out of stock|search_alternative");
    free(name);
    free(text);
    free(key);
    contrastive_rules_free(rules, m);
    free(rules);
    free_eps(e, n);
}

// the rule is found across seeds, not by luck of one draw
static void test_planted_rule_seeds(void** state) {
    (void)state;
    for (uint64_t seed = 1; seed <= 10; seed++) {
        int n;
        EpisodeText* e = shop(12, 5, seed, 0.5, &n);
        ExtractParams prm = extract_default_params();
        Rule* rules;
        int m = contrastive_mine(e, n, &prm, &rules);
        if (m < 1 || strcmp(rules[0].phrase, "out of stock") != 0 || strcmp(rules[0].tool, "search_alternative") != 0) {
            fail_msg("seed %llu: first rule is '%s' -> %s", (unsigned long long)seed, m ? rules[0].phrase : "(none)",
                     m ? rules[0].tool : "");
        }
        contrastive_rules_free(rules, m);
        free(rules);
        free_eps(e, n);
    }
}

// the score of the rule phrase -> tool (any phrase when NULL) among the rules mined with prm, or -1
// when it was not mined
static double mined_score(const EpisodeText* e, int n, const ExtractParams* prm, const char* phrase,
                          const char* tool) {
    Rule* rules;
    int m = contrastive_mine(e, n, prm, &rules);
    double score = -1.0;
    for (int i = 0; i < m; i++) {
        if ((!phrase || strcmp(rules[i].phrase, phrase) == 0) && strcmp(rules[i].tool, tool) == 0)
            score = rules[i].score;
    }
    contrastive_rules_free(rules, m);
    free(rules);
    return score;
}

// Evidence counts tasks, not copies: the planted rule seen in 2 tasks of 40 samples each scores
// below the same rule seen in 40 tasks of 2 samples (the same number of episodes).
static void test_tasks_are_the_evidence(void** state) {
    (void)state;
    int n_few, n_many;
    EpisodeText* few = shop(2, 40, 5, 0.5, &n_few);
    EpisodeText* many = shop(40, 2, 5, 0.5, &n_many);
    const ExtractParams prm = extract_default_params();
    const double s_few = mined_score(few, n_few, &prm, "out of stock", "search_alternative");
    const double s_many = mined_score(many, n_many, &prm, "out of stock", "search_alternative");
    printf("score from 2 tasks x 40: %.3f, from 40 tasks x 2: %.3f\n", s_few, s_many);
    assert_true(s_many > 0.0);
    assert_true(s_few < s_many);
    free_eps(few, n_few);
    free_eps(many, n_many);
}

// Of two rules on the same steps, the one whose condition spans more tasks stays. Every person
// page says "citizen"; two tasks' pages name the country "gunmol", and there searching on always
// succeeds and answering the citizenship always fails (elsewhere 75% / 25%). "gunmol" -> search
// ranks first on its cleaner evidence, but a phrase every task shares is the rule kept.
static void test_broader_restatement_wins(void** state) {
    (void)state;
    static const char* const countries[] = {"gunmol", "rugoum", "neidouk", "keikdouk", "vussil",
                                            "tokzouk", "nirzeik", "droukdrun", "brelsim"};
    static const char* const names[] = {"kelda", "orrin", "tamsin", "wystan", "ysolde",
                                        "bram", "eluned", "fenwick", "galen", "hesper"};
    const int tasks = 10, group = 6;
    EpisodeText* eps = calloc((size_t)(tasks * group), sizeof(EpisodeText));
    Rng r;
    rng_seed(&r, 11);
    char task[128], obs[128];
    for (int t = 0; t < tasks; t++) {
        const char* country = countries[t < 2 ? 0 : t - 1];
        snprintf(task, sizeof(task), "In which country was the founder of company %d born?", t);
        for (int g = 0; g < group; g++) {
            EpisodeText* e = &eps[t * group + g];
            episode_init(e, 200 + t, g, 0, task);
            episode_add_step(e, task, 1, "", "search", "company");
            snprintf(obs, sizeof(obs), "%s: a person, painter. Citizen of %s.", names[t], country);
            const int search = g % 2 == 0; // half the samples search on, half answer the citizenship
            episode_add_step(e, obs, 0, "", search ? "search" : "answer", search ? "born city" : country);
            e->success = t < 2 ? search : rng_uniform(&r) < (search ? 0.75 : 0.25);
            e->reward = (float)e->success;
        }
    }
    ExtractParams prm = extract_default_params();
    Rule* rules;
    int m = contrastive_mine(eps, tasks * group, &prm, &rules);
    int broad = 0;
    for (int i = 0; i < m; i++) {
        printf("rule %d: \"%s\" -> %s, %d tasks, score %.3f\n", i, rules[i].phrase, rules[i].tool, rules[i].n_tasks,
               rules[i].score);
        assert_false(strcmp(rules[i].phrase, "gunmol") == 0);
        broad += strcmp(rules[i].tool, "search") == 0 && rules[i].n_tasks >= 8;
    }
    assert_int_equal(broad, 1);
    contrastive_rules_free(rules, m);
    free(rules);
    free_eps(eps, tasks * group);
}

// A contrast needs evidence on both sides. Three tasks' city pages name "krouvoubur"; after them
// the agent answers in 11 steps that all succeed and does something else in k steps that fail
// (the quickstart's "city in krouvoubur" -> answer, 11/11 against 0/1). With k = 1, p_other is
// mostly its prior and no rule on the name is mined; with k = min_support (3) one is.
static double one_sided_score(int k) {
    const int n = 11 + k;
    EpisodeText* eps = calloc((size_t)n, sizeof(EpisodeText));
    for (int i = 0; i < n; i++) {
        EpisodeText* e = &eps[i];
        episode_init(e, 300 + i % 3, i / 3, 0, "In which country was the mayor of Tarvik born?");
        episode_add_step(e, "In which country was the mayor of Tarvik born?", 1, "", "search", "tarvik");
        const int answer = i < 11;
        episode_add_step(e, "nekror: a city in krouvoubur.", 0, "", answer ? "answer" : "search",
                         answer ? "krouvoubur" : "nekror");
        e->success = answer;
        e->reward = (float)e->success;
    }
    ExtractParams prm = extract_default_params();
    Rule* rules;
    const int m = contrastive_mine(eps, n, &prm, &rules);
    double score = -1.0;
    for (int i = 0; i < m; i++) {
        printf("rule \"%s\" -> %s, %d/%d vs %d/%d, score %.3f\n", rules[i].phrase, rules[i].tool, rules[i].s_with,
               rules[i].n_with, rules[i].s_other, rules[i].n_other, rules[i].score);
        if (strstr(rules[i].phrase, "krouvoubur") && strcmp(rules[i].tool, "answer") == 0) score = rules[i].score;
    }
    contrastive_rules_free(rules, m);
    free(rules);
    free_eps(eps, n);
    return score;
}

static void test_contrast_needs_support(void** state) {
    (void)state;
    const double one = one_sided_score(1), three = one_sided_score(3);
    printf("krouvoubur -> answer: score %.3f with 1 other step, %.3f with 3\n", one, three);
    assert_true(one == -1.0);
    assert_true(three > 0.0);
}

// the planted rule as the agent's habit (it already searches for an alternative at 80% of the
// out-of-stock steps): found with no limit on the action's share, dropped with mine_max_share 0.5
static int mines_planted(double max_share) {
    int n;
    EpisodeText* e = shop(16, 5, 7, 0.8, &n);
    ExtractParams prm = extract_default_params();
    prm.max_share = max_share;
    const int found = mined_score(e, n, &prm, NULL, "search_alternative") != -1.0;
    free_eps(e, n);
    return found;
}

static void test_habit_is_no_rule(void** state) {
    (void)state;
    assert_true(mines_planted(1.0));
    assert_false(mines_planted(0.5));
}

static char* extract_json(const EpisodeText* e, int n) {
    Pool* p = pool_create(pool_default_params());
    ExtractParams prm = extract_default_params();
    extract_contrastive(p, e, n, 0, &prm);
    char* js = pool_to_json(p);
    pool_free(p);
    return js;
}

static void test_deterministic_and_merge(void** state) {
    (void)state;
    int n;
    EpisodeText* e = shop(16, 5, 7, 0.5, &n);
    char* a = extract_json(e, n);
    char* b = extract_json(e, n);
    assert_string_equal(a, b);
    // the episodes' order does not matter either (they are read sorted by task and sample)
    EpisodeText tmp = e[0];
    e[0] = e[n - 1];
    e[n - 1] = tmp;
    char* c = extract_json(e, n);
    assert_string_equal(a, c);
    free(b);
    free(c);

    // merge: the next iteration on the same evidence confirms (NONE) instead of adding duplicates
    Pool* p = pool_from_json(a, strlen(a), pool_default_params(), err, sizeof(err));
    assert_non_null(p);
    int before = pool_size(p), audits = p->n_audit;
    assert_true(before >= 1 && before <= 5);
    ExtractParams prm = extract_default_params();
    extract_contrastive(p, e, n, 1, &prm);
    assert_int_equal(pool_size(p), before);
    for (int i = audits; i < p->n_audit; i++) {
        assert_int_equal(p->audit[i].op, POOL_NONE);
        assert_non_null(strstr(p->audit[i].reason, "confirmed"));
    }
    pool_free(p);

    // an item written by someone else (no key) about the same condition and action is UPDATEd
    p = pool_create(pool_default_params());
    pool_add(p, 0, ITEM_PRINCIPLE, "Stock", "If the item is out of stock, try search_alternative.", "", NULL, 0,
             "seed", err, sizeof(err));
    extract_contrastive(p, e, n, 1, &prm);
    const PoolItem* it = pool_find(p, 1);
    assert_string_equal(it->key, "rule|result|out of stock|search_alternative");
    assert_string_equal(it->name, "Out of stock");
    assert_int_equal(p->audit[1].op, POOL_UPDATE);
    assert_int_equal(p->audit[1].item_id, 1);
    assert_non_null(strstr(p->audit[1].reason, "mined: after \"out of stock\" in a tool result, search_alternative "
                                                "succeeded"));
    assert_true(p->audit[1].n_evidence > 0);
    pool_free(p);
    // a rule on a nested condition ("stock" inside "out of stock") with the same action is UPDATEd
    p = pool_create(pool_default_params());
    pool_add(p, 0, ITEM_PRINCIPLE, "Stock", "When it says stock, call search_alternative.",
             "rule|result|stock|search_alternative", NULL, 0, "older", err, sizeof(err));
    extract_contrastive(p, e, n, 1, &prm);
    assert_string_equal(pool_find(p, 1)->key, "rule|result|out of stock|search_alternative");
    assert_int_equal(p->audit[1].op, POOL_UPDATE);
    pool_free(p);
    free(a);
    free_eps(e, n);
}

static void test_no_signal(void** state) {
    (void)state;
    int n;
    EpisodeText* e = shop(12, 5, 3, 0.0, &n);
    for (int i = 0; i < n; i++) e[i].success = 1; // every attempt succeeds: nothing to contrast
    Pool* p = pool_create(pool_default_params());
    ExtractParams prm = extract_default_params();
    extract_contrastive(p, e, n, 0, &prm);
    assert_int_equal(pool_size(p), 0);
    assert_int_equal(p->n_audit, 1);
    assert_int_equal(p->audit[0].op, POOL_NONE);
    assert_non_null(strstr(p->audit[0].reason, "no condition separates successful from failed steps (60 episodes, 240 "
                                               "steps"));
    pool_free(p);
    // a rule seen in one task only is not general enough (min_tasks 2)
    free_eps(e, n);
    e = shop(1, 40, 5, 0.5, &n);
    Rule* rules;
    int m = contrastive_mine(e, n, &prm, &rules);
    for (int i = 0; i < m; i++) assert_true(rules[i].n_tasks >= 2);
    assert_int_equal(m, 0);
    free(rules);
    free_eps(e, n);
}

// a tight word limit: the rule is rendered in a shorter form rather than dropped
static void test_short_form(void** state) {
    (void)state;
    int n;
    EpisodeText* e = shop(16, 5, 7, 0.5, &n);
    PoolParams pp = pool_default_params();
    pp.max_item_words = 14; // the full form has 20 words, the one without detail 15
    Pool* p = pool_create(pp);
    ExtractParams prm = extract_default_params();
    prm.max_rules = 1;
    extract_contrastive(p, e, n, 0, &prm);
    assert_int_equal(pool_size(p), 1);
    assert_string_equal(p->items[0].text, "If the last tool result mentions \"out of stock\", call search_alternative.");
    pool_free(p);
    free_eps(e, n);
}

// ----------------------------------------------------------------------------
// choices: which line of a result list a call took

static void test_choice_of_line(void** state) {
    (void)state;
    const char* results = "Results for 'Thusheil Foods':\n1. Thusheil Foods (2) - company, brewer\n"
                          "2. Thusheil Foods (3) - film\n3. Thusheil Foods - band";
    const struct {
        const char *args, *want;
    } cases[] = {
        {"{\"title\":\"Thusheil Foods\"}", "band"}, // the bare name heads only the last line
        {"{\"title\":\"Thusheil Foods (2)\"}", "company"},
        {"Thusheil Foods (3)", "film"},               // a bare value, not JSON
        {"{\"title\":\"Thusheil\"}", NULL},          // a prefix of a title is not a line's head
        {"{\"title\":\"Nobody\"}", NULL},
        {"{\"a\":\"Thusheil Foods\",\"b\":\"x\"}", NULL}, // two values: no single argument
        {"{\"n\":3}", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char* c = contrastive_choice(results, cases[i].args);
        if (cases[i].want) {
            assert_non_null(c);
            assert_string_equal(c, cases[i].want);
        } else {
            assert_null(c);
        }
        free(c);
    }
    // a page headed by its title: the first content word after it ("a" is a stopword)
    char* c = contrastive_choice("Paiskroum: a city in Gunmol.", "{\"title\":\"Paiskroum\"}");
    assert_string_equal(c, "city");
    free(c);
    assert_null(contrastive_choice("", "{\"title\":\"Paiskroum\"}"));
}

// Result lists where two same-name entries differ by kind: visiting the "person" line leads to
// success (90%), the "river" line fails. Every step at the list is a visit, so only the choice of
// line separates them: the plain miner finds no rule there, the miner with choices the planted one.
static EpisodeText* lists(int tasks, int group, uint64_t seed, int* n) {
    static const char* const first[] = {"Kelda", "Tavi", "Orun", "Lima", "Pol", "Ada", "Sef", "Runa"};
    static const char* const last[] = {"Moor", "Rel", "Vesk", "Task"};
    Rng r;
    rng_seed(&r, seed);
    EpisodeText* eps = calloc((size_t)(tasks * group), sizeof(EpisodeText));
    char name[32], task[64], obs[320], args[128], title[2][40];
    for (int t = 0; t < tasks; t++) {
        snprintf(name, sizeof(name), "%s %s", first[t % 8], last[(t / 8) % 4]); // one name per task
        snprintf(task, sizeof(task), "Where was %s born?", name);
        // the person's line comes first in half the tasks, and has the bare name in half
        const int person_first = t % 2, person_bare = (t / 2) % 2;
        snprintf(title[0], sizeof(title[0]), "%s%s", name, person_bare ? "" : " (2)"); // the person's
        snprintf(title[1], sizeof(title[1]), "%s%s", name, person_bare ? " (2)" : ""); // the river's
        for (int g = 0; g < group; g++) {
            EpisodeText* e = &eps[t * group + g];
            episode_init(e, 100 + t, g, 0, task);
            snprintf(args, sizeof(args), "{\"query\":\"%s\"}", name);
            episode_add_step(e, task, 1, "", "search", args);
            snprintf(obs, sizeof(obs), "Results for '%s':\n1. %s - %s\n2. %s - %s", name,
                     title[person_first ? 0 : 1], person_first ? "person, baker" : "river", title[person_first ? 1 : 0],
                     person_first ? "river" : "person, baker");
            const int pick_person = rng_uniform(&r) < 0.5;
            snprintf(args, sizeof(args), "{\"title\":\"%s\"}", title[pick_person ? 0 : 1]);
            episode_add_step(e, obs, 0, "", "visit", args);
            const int success = pick_person && rng_uniform(&r) < 0.9;
            episode_add_step(e, success ? "A baker born in Rugoum." : "A river.", 0, "", "answer", "{\"text\":\"x\"}");
            e->success = success;
            e->reward = (float)success;
        }
    }
    *n = tasks * group;
    return eps;
}

static void test_choice_rule(void** state) {
    (void)state;
    int n;
    EpisodeText* e = lists(16, 5, 11, &n);
    ExtractParams prm = extract_default_params();
    Rule* rules;
    int m = contrastive_mine(e, n, &prm, &rules);
    for (int i = 0; i < m; i++) { // every list step is a visit: the tool alone does not separate them
        assert_null(rules[i].choice);
        assert_false(strcmp(rules[i].tool, "visit") == 0 && rules[i].lift > 0.5);
    }
    contrastive_rules_free(rules, m);
    free(rules);

    prm.choices = 1;
    m = contrastive_mine(e, n, &prm, &rules);
    assert_true(m >= 1);
    for (int i = 0; i < m; i++) {
        printf("rule %d: \"%s\" -> %s on %s  %d/%d vs %d/%d lift %.3f score %.3f\n", i, rules[i].phrase, rules[i].tool,
               rules[i].choice ? rules[i].choice : "-", rules[i].s_with, rules[i].n_with, rules[i].s_other,
               rules[i].n_other, rules[i].lift, rules[i].score);
    }
    assert_int_equal(rules[0].source, RULE_FROM_RESULT);
    assert_string_equal(rules[0].tool, "visit");
    assert_non_null(rules[0].choice);
    assert_string_equal(rules[0].choice, "person");
    assert_null(rules[0].args);
    assert_true(rules[0].lift > 0.5);
    char *name, *text, *key;
    contrastive_render(&rules[0], &name, &text, &key);
    char want[160];
    snprintf(want, sizeof(want),
             "When the last tool result mentions \"%s\", call visit on the result marked \"person\".", rules[0].phrase);
    assert_string_equal(text, want);
    snprintf(want, sizeof(want), "rule|result|%s|visit:person", rules[0].phrase);
    assert_string_equal(key, want);
    free(name);
    free(text);
    free(key);

    // into a pool, and mined again from the same episodes: confirmed, not added twice
    Pool* p = pool_create(pool_default_params());
    extract_contrastive(p, e, n, 0, &prm);
    const int size = pool_size(p);
    assert_true(size >= 1);
    extract_contrastive(p, e, n, 1, &prm);
    assert_int_equal(pool_size(p), size);
    pool_free(p);
    contrastive_rules_free(rules, m);
    free(rules);
    free_eps(e, n);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_planted_rule_first), cmocka_unit_test(test_planted_rule_seeds),
        cmocka_unit_test(test_deterministic_and_merge), cmocka_unit_test(test_no_signal),
        cmocka_unit_test(test_short_form),      cmocka_unit_test(test_tasks_are_the_evidence),
        cmocka_unit_test(test_broader_restatement_wins), cmocka_unit_test(test_contrast_needs_support),
        cmocka_unit_test(test_habit_is_no_rule),
        cmocka_unit_test(test_choice_of_line),  cmocka_unit_test(test_choice_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
