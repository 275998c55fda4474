// Unit tests of the model-as-writer parts with a scripted GenerateFn (canned replies, no model):
// prompt templates, the LLM judge's verdict parser, the strict parser of the model's pool
// operations against a battery of malformed replies, and the Training-Free-GRPO pipeline
// (summaries, critiques, consolidation) end to end, twice for determinism.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "distill/extract.h"
#include "distill/judge.h"

static char err[512];

// ----------------------------------------------------------------------------
// the scripted model: replies in order; "!FAIL" makes that call fail

typedef struct {
    const char* const* replies;
    int n, next;
    char* prompts[32];
} Script;

static int scripted(void* ctx, const char* prompt, char* out, size_t cap) {
    Script* s = ctx;
    if (s->next < 32) s->prompts[s->next] = strdup(prompt);
    const char* r = s->next < s->n ? s->replies[s->next] : "";
    s->next++;
    if (strcmp(r, "!FAIL") == 0) return 3;
    snprintf(out, cap, "%s", r);
    return 0;
}

static void script_free(Script* s) {
    for (int i = 0; i < s->next && i < 32; i++) free(s->prompts[i]);
}

// ----------------------------------------------------------------------------
// templates

static void test_templates(void** state) {
    (void)state;
    PromptVar v[] = {{"task", "T"}, {"answer", "{{task}}"}};
    char* s = prompt_render("Q: {{task}}\nA: {{answer}} {x} }}", "t.txt", v, 2, err, sizeof(err));
    assert_string_equal(s, "Q: T\nA: {{task}} {x} }}"); // values are not re-expanded
    free(s);
    assert_null(prompt_render("a\nb {{tsak}}", "t.txt", v, 2, err, sizeof(err)));
    assert_string_equal(err, "t.txt line 2: unknown placeholder {{tsak}} (known: {{task}}, {{answer}})");
    assert_null(prompt_render("{{ task }}", "t.txt", v, 2, err, sizeof(err)));
    assert_non_null(strstr(err, "t.txt line 1: '{{' does not open a placeholder"));
    // the shipped templates load and render with the variables the code gives them
    const char* files[] = {"judge.txt", "summary.txt", "critique.txt", "consolidate.txt"};
    PromptVar all[] = {{"task", "x"}, {"answer", "x"}, {"trajectory", "x"}, {"outcome", "x"}, {"attempts", "x"},
                       {"experiences", "x"}, {"max_words", "x"}, {"proposals", "x"}, {"max_items", "x"}};
    for (int i = 0; i < 4; i++) {
        char* t = prompt_load(prompt_default_dir(), files[i], err, sizeof(err));
        if (!t) fail_msg("%s", err);
        assert_true(t[0] != '#'); // the comment header is gone
        char* r = prompt_render(t, files[i], all, 9, err, sizeof(err));
        if (!r) fail_msg("%s", err);
        free(r);
        free(t);
    }
    assert_null(prompt_load("/nonexistent", "judge.txt", err, sizeof(err)));
    assert_non_null(strstr(err, "prompt template /nonexistent/judge.txt: No such file"));
}

// ----------------------------------------------------------------------------
// judge

static void test_verdicts(void** state) {
    (void)state;
    struct {
        const char* reply;
        int rc, correct;
        const char* want;
    } cases[] = {
        {"The answer matches.\nVERDICT: correct", 0, 1, NULL},
        {"verdict: INCORRECT.\n", 0, 0, NULL},
        {"  VERDICT:incorrect  ", 0, 0, NULL},
        {"VERDICT: correct\nso VERDICT: correct", 0, 1, NULL}, // the second is not a verdict line
        {"VERDICT: correct\nVERDICT: correct", 0, 1, NULL},
        {"", -1, 0, "no 'VERDICT: correct' or 'VERDICT: incorrect' line"},
        {"It is correct.", -1, 0, "no 'VERDICT"},
        {"VERDICT: maybe", -1, 0, "line 1: 'VERDICT: maybe' is not"},
        {"ok\nVERDICT: correct!", -1, 0, "line 2"},
        {"VERDICT correct", -1, 0, "line 1"},
        {"VERDICT: correct\nVERDICT: incorrect", -1, 0, "conflicting verdicts on lines 1 and 2"},
        {"**VERDICT: correct**", -1, 0, "no 'VERDICT"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int c = -1;
        int rc = judge_parse_verdict(cases[i].reply, &c, err, sizeof(err));
        if (rc != cases[i].rc) fail_msg("case %zu: rc %d (%s)", i, rc, err);
        if (rc == 0 && c != cases[i].correct) fail_msg("case %zu: verdict %d", i, c);
        if (rc != 0 && !strstr(err, cases[i].want)) fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].want);
    }
    // judge_llm: the shipped template, a scripted reply
    char* tmpl = prompt_load(prompt_default_dir(), JUDGE_TEMPLATE, err, sizeof(err));
    assert_non_null(tmpl);
    const char* replies[] = {"Matches the task.\nVERDICT: correct", "!FAIL", "VERDICT: unsure"};
    Script s = {replies, 3, 0, {0}};
    int c = -1;
    assert_int_equal(judge_llm(scripted, &s, tmpl, "Who wrote X?", "Alice", &c, err, sizeof(err)), 0);
    assert_int_equal(c, 1);
    assert_non_null(strstr(s.prompts[0], "Who wrote X?"));
    assert_non_null(strstr(s.prompts[0], "Alice"));
    assert_int_equal(judge_llm(scripted, &s, tmpl, "t", "a", &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "text generation failed (code 3)"));
    assert_int_equal(judge_llm(scripted, &s, tmpl, "t", "a", &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not 'VERDICT: correct'"));
    script_free(&s);
    free(tmpl);
    // the environment judge
    Trajectory* t = traj_create(0);
    t->final_reward = 0.5f;
    assert_int_equal(judge_env(t, 0.5), 1);
    assert_int_equal(judge_env(t, 1.0), 0);
    traj_free(t);
}

// ----------------------------------------------------------------------------
// the operations parser: a battery of malformed replies

static Pool* two_items(void) {
    Pool* p = pool_create(pool_default_params());
    pool_add(p, 0, ITEM_PRINCIPLE, "Verify", "Visit the page before answering.", "", NULL, 0, "", err, sizeof(err));
    pool_add(p, 0, ITEM_PRINCIPLE, "Dates", "Prefer the newest date.", "", NULL, 0, "", err, sizeof(err));
    return p;
}

typedef struct {
    const char* reply;
    int rc;          // llm_parse_ops' return
    int n_ops;       // accepted
    int n_msgs;      // rejected (one message each)
    const char* msg; // a substring of the first message (NULL: none expected)
} OpsCase;

static const OpsCase ops_cases[] = {
    // whole-reply failures
    {"", -1, 0, 1, "reply: no JSON array of operations found"},
    {"I think the pool is fine as it is.", -1, 0, 1, "no JSON array"},
    {"[{\"op\": \"ADD\", \"text\": \"A: b\"}", -1, 0, 1, "no JSON array"},            // cut off
    {"[{\"op\": \"ADD\", \"text\": \"A: b\",}]", -1, 0, 1, "reply: invalid JSON at line 1"}, // trailing comma
    {"{\"op\": \"ADD\", \"text\": \"A: b\"}", -1, 0, 1, "expected a JSON array of operations, got an object"},
    {"{\"ops\": [{\"op\": \"NONE\"}]}", -1, 0, 1, "got an object"},
    {"```json\n{\"op\": \"NONE\"}\n```", -1, 0, 1, "expected a JSON array of operations, got an object"},
    {"[{\"op\": \"NONE\", \"op\": \"ADD\"}]", -1, 0, 1, "duplicate object key"},
    {"[{\"op\": \"ADD\", \"text\": \"A: caf\xc3\"}]", -1, 0, 1, "invalid JSON"},         // invalid UTF-8
    {"[{'op': 'NONE'}]", -1, 0, 1, "invalid JSON"},                                    // single quotes
    // per-operation failures (the others in the reply still count)
    {"[\"ADD\", 3, [ ], {\"op\": \"NONE\"}]", 0, 1, 3, "op 1: expected an object, got a string"},
    {"[{\"text\": \"A: b\"}]", 0, 0, 1, "op 1: missing key 'op'"},
    {"[{\"op\": \"MERGE\", \"id\": 1}]", 0, 0, 1, "op 1: unknown op 'MERGE'"},
    {"[{\"op\": 1}]", 0, 0, 1, "op 1: 'op' must be a string, got an integer"},
    {"[{\"op\": \"ADD\"}]", 0, 0, 1, "op 1: ADD needs a 'text'"},
    {"[{\"op\": \"ADD\", \"text\": 42}]", 0, 0, 1, "op 1: 'text' must be a string, got an integer"},
    {"[{\"op\": \"ADD\", \"text\": \"no colon in this one\"}]", 0, 0, 1, "op 1: ADD text rejected: text is not of the form"},
    {"[{\"op\": \"ADD\", \"text\": \"Long: a b c d e f g h i j k l m n o p q r s t u v w x y z aa bb cc dd ee ff\"}]", 0, 0,
     1, "op 1: ADD text rejected: principle has 33 words, at most 32"},
    {"[{\"op\": \"ADD\", \"text\": \"Two: lines\\nof text\"}]", 0, 0, 1, "newline"},
    {"[{\"op\": \"ADD\", \"id\": 4, \"text\": \"A: b\"}]", 0, 0, 1, "op 1: ADD takes no 'id'"},
    {"[{\"op\": \"ADD\", \"text\": \"A: b\", \"name\": \"A\"}]", 0, 0, 1, "op 1: unknown key 'name'"},
    {"[{\"op\": \"ADD\", \"text\": \"A: b\", \"reason\": 5}]", 0, 0, 1, "op 1: 'reason' must be a string"},
    {"[{\"op\": \"ADD\", \"text\": \"verify:   visit the page BEFORE answering.\"}]", 0, 0, 1, "duplicates item 1"},
    {"[{\"op\": \"ADD\", \"text\": \"New: x.\"}, {\"op\": \"ADD\", \"text\": \"New: x.\"}]", 0, 1, 1,
     "op 2: ADD duplicates an earlier ADD"},
    {"[{\"op\": \"UPDATE\", \"id\": 99, \"text\": \"A: b\"}]", 0, 0, 1, "op 1: UPDATE of unknown id 99"},
    {"[{\"op\": \"UPDATE\", \"id\": \"1\", \"text\": \"A: b\"}]", 0, 0, 1, "op 1: 'id' must be an integer, got a string"},
    {"[{\"op\": \"UPDATE\", \"id\": 1.0, \"text\": \"A: b\"}]", 0, 0, 1, "got a real number"},
    {"[{\"op\": \"UPDATE\", \"id\": 1}]", 0, 0, 1, "op 1: UPDATE needs a 'text'"},
    {"[{\"op\": \"UPDATE\", \"id\": 2, \"text\": \"Dates: Prefer the newest date.\"}]", 0, 0, 1,
     "UPDATE leaves item 2 unchanged"},
    {"[{\"op\": \"DELETE\"}]", 0, 0, 1, "op 1: DELETE needs an 'id'"},
    {"[{\"op\": \"DELETE\", \"id\": -3}]", 0, 0, 1, "DELETE of unknown id -3"},
    {"[{\"op\": \"DELETE\", \"id\": 4294967297}]", 0, 0, 1, "unknown id 4294967297"},
    {"[{\"op\": \"DELETE\", \"id\": 1}, {\"op\": \"UPDATE\", \"id\": 1, \"text\": \"A: b\"}]", 0, 1, 1,
     "op 2: UPDATE of id 1, already changed by op 1"},
    {"[[[[[[[[[[]]]]]]]]]]", 0, 0, 1, "op 1: expected an object, got a list"},
    // accepted forms
    {"[]", 0, 0, 0, NULL},
    {"Here you go:\n```json\n[{\"op\": \"none\"}, {\"op\": \"Delete\", \"id\": 2, \"text\": \"ignored\"}]\n```\nDone.",
     0, 2, 0, NULL},
    {"Thoughts [draft] ... final: [{\"op\": \"ADD\", \"text\": \"A: b\"}]", -1, 0, 1, "invalid JSON"},
    {"[{\"op\": \"ADD\", \"text\": \"  Check dates :  When pages disagree, prefer the newer one. \", \"reason\": \"r\"},"
     " {\"op\": \"UPDATE\", \"id\": 1, \"text\": \"Verify: Visit the page and read it.\"}]",
     0, 2, 0, NULL},
};

static void test_ops_battery(void** state) {
    (void)state;
    Pool* p = two_items();
    size_t n = sizeof(ops_cases) / sizeof(ops_cases[0]);
    assert_true(n >= 30);
    for (size_t i = 0; i < n; i++) {
        const OpsCase* c = &ops_cases[i];
        LlmOps ops;
        int rc = llm_parse_ops(c->reply, p, 32, &ops);
        if (rc != c->rc || ops.n_ops != c->n_ops || ops.n_msgs != c->n_msgs) {
            fail_msg("case %zu: rc %d ops %d msgs %d (%s)", i, rc, ops.n_ops, ops.n_msgs,
                     ops.n_msgs ? ops.msgs[0] : "");
        }
        if (c->msg && !strstr(ops.msgs[0], c->msg)) fail_msg("case %zu: '%s' lacks '%s'", i, ops.msgs[0], c->msg);
        llm_ops_free(&ops);
    }
    // the accepted operations carry their parts
    LlmOps ops;
    llm_parse_ops(ops_cases[n - 1].reply, p, 32, &ops);
    assert_int_equal(ops.ops[0].op, POOL_ADD);
    assert_string_equal(ops.ops[0].name, "Check dates");
    assert_string_equal(ops.ops[0].text, "When pages disagree, prefer the newer one.");
    assert_string_equal(ops.ops[0].reason, "r");
    assert_int_equal(ops.ops[1].op, POOL_UPDATE);
    assert_int_equal(ops.ops[1].id, 1);
    llm_ops_free(&ops);
    // the per-reply limit
    llm_parse_ops("[{\"op\": \"NONE\"}, {\"op\": \"NONE\"}, {\"op\": \"NONE\"}]", p, 2, &ops);
    assert_int_equal(ops.n_ops, 2);
    assert_int_equal(ops.n_msgs, 1);
    assert_non_null(strstr(ops.msgs[0], "op 3: over the limit of 2 operations"));
    llm_ops_free(&ops);
    // nothing changed the pool
    assert_int_equal(pool_size(p), 2);
    assert_int_equal(p->n_audit, 2);
    pool_free(p);
}

// ----------------------------------------------------------------------------
// the pipeline

// task 1: attempts 0 (correct) and 1 (incorrect); task 2: the same; task 3: both correct (skipped)
static EpisodeText* episodes(int* n) {
    EpisodeText* e = calloc(6, sizeof(EpisodeText));
    for (int i = 0; i < 6; i++) {
        int task = 1 + i / 2, sample = i % 2;
        episode_init(&e[i], task, sample, task == 3 || sample == 0, task == 1 ? "Who founded X?" : "When did Y open?");
        episode_add_step(&e[i], e[i].task, 1, "search", "search", "X founder");
        episode_add_step(&e[i], "1. X (company) ...", 0, "answer", "answer", sample ? "Bob" : "Alice");
    }
    *n = 6;
    return e;
}

static const char* const pipeline_replies[] = {
    "Searched and answered Alice.", "Searched and answered Bob without visiting.",
    // critique of task 1: one good op, one bad
    "[{\"op\": \"ADD\", \"text\": \"Visit first: When a search lists a page, visit it before answering.\"},"
    " {\"op\": \"UPDATE\", \"id\": 99, \"text\": \"X: y\"}]",
    "Opened the page.", "!FAIL", // task 2: one summary fails, the critique still runs
    "Sure.\n```json\n[{\"op\": \"DELETE\", \"id\": 1, \"reason\": \"wrong\"}]\n```",
    // consolidation
    "[{\"op\": \"ADD\", \"text\": \"Visit first: When a search lists a page, visit it before answering.\"},"
    " {\"op\": \"DELETE\", \"id\": 1, \"reason\": \"contradicted\"}, {\"op\": \"NONE\"}, {\"op\": \"ADD\", \"text\": \"bad\"}]",
};

static Pool* seeded(void) {
    Pool* p = pool_create(pool_default_params());
    pool_add(p, -1, ITEM_PRINCIPLE, "Guess", "Answer at once when you are sure.", "", NULL, 0, "seed", err, sizeof(err));
    return p;
}

static char* run_pipeline(Script* s) {
    int n;
    EpisodeText* e = episodes(&n);
    Pool* p = seeded();
    ExtractParams prm = extract_default_params();
    prm.gen = scripted;
    prm.gen_ctx = s;
    int rejected = 0;
    assert_int_equal(extract_llm(p, e, n, 0, &prm, &rejected, err, sizeof(err)), 0);
    assert_int_equal(rejected, 2);
    char* js = pool_to_json(p);
    pool_free(p);
    for (int i = 0; i < n; i++) episode_free(&e[i]);
    free(e);
    return js;
}

static void test_pipeline(void** state) {
    (void)state;
    Script s = {pipeline_replies, 7, 0, {0}};
    char* js = run_pipeline(&s);
    assert_int_equal(s.next, 7); // 4 summaries + 2 critiques + 1 consolidation (task 3 skipped)
    // what the model was shown
    assert_non_null(strstr(s.prompts[0], "Who founded X?"));
    assert_non_null(strstr(s.prompts[0], "Step 1. Saw: Who founded X?\n  Did: search(X founder)"));
    assert_non_null(strstr(s.prompts[0], "judged correct"));
    assert_non_null(strstr(s.prompts[1], "judged incorrect"));
    assert_non_null(strstr(s.prompts[2], "Attempt 1 (correct): Searched and answered Alice."));
    assert_non_null(strstr(s.prompts[2], "Attempt 2 (incorrect): Searched and answered Bob without visiting."));
    assert_non_null(strstr(s.prompts[2], "[1] Guess: Answer at once when you are sure."));
    assert_non_null(strstr(s.prompts[2], "at most 32 words"));
    assert_non_null(strstr(s.prompts[5], "Attempt 2 (incorrect): (no summary: generation failed)"));
    assert_non_null(strstr(s.prompts[6], "task 1: {\"op\":\"ADD\",\"text\":\"Visit first: When a search lists a page, "
                                         "visit it before answering.\"}\ntask 2: {\"op\":\"DELETE\",\"id\":1,\"reason\":\"wrong\"}"));
    // the result: item 1 deleted, item 2 added, the rejections audited
    Pool* p = pool_from_json(js, strlen(js), pool_default_params(), err, sizeof(err));
    assert_non_null(p);
    assert_int_equal(pool_size(p), 1);
    assert_string_equal(p->items[0].name, "Visit first");
    assert_int_equal(p->items[0].id, 2);
    assert_int_equal(p->items[0].n_trajs, 4); // the four attempts of the two critiqued tasks
    int rejected_entries = 0;
    for (int i = 0; i < p->n_audit; i++) {
        rejected_entries += strstr(p->audit[i].reason, "rejected model op") != NULL;
    }
    assert_int_equal(rejected_entries, 2);
    char* diff = pool_diff_text(p, 0);
    assert_non_null(strstr(diff, "1 added, 0 updated, 1 deleted, 3 none"));
    assert_non_null(strstr(diff, "critique.txt (task 1)): op 2: UPDATE of unknown id 99"));
    assert_non_null(strstr(diff, "consolidate.txt): op 4: ADD text rejected"));
    assert_non_null(strstr(diff, "- #1 Guess: Answer at once when you are sure. [llm consolidation: contradicted"));
    free(diff);
    pool_free(p);
    script_free(&s);
    // the same replies give the same pool, byte for byte
    Script s2 = {pipeline_replies, 7, 0, {0}};
    char* js2 = run_pipeline(&s2);
    assert_string_equal(js, js2);
    script_free(&s2);
    free(js);
    free(js2);
}

static void test_pipeline_failures(void** state) {
    (void)state;
    int n;
    EpisodeText* e = episodes(&n);
    ExtractParams prm = extract_default_params();
    Pool* p = seeded();
    int rejected;
    // no model
    assert_int_equal(extract_llm(p, e, n, 0, &prm, &rejected, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no GenerateFn"));
    // every call fails: nothing changes, no crash
    const char* fails[] = {"!FAIL", "!FAIL", "!FAIL", "!FAIL", "!FAIL", "!FAIL", "!FAIL"};
    Script s = {fails, 7, 0, {0}};
    prm.gen = scripted;
    prm.gen_ctx = &s;
    assert_int_equal(extract_llm(p, e, n, 0, &prm, &rejected, err, sizeof(err)), 0);
    assert_int_equal(pool_size(p), 1);
    assert_non_null(strstr(p->audit[p->n_audit - 1].reason, "llm: no proposals (2 tasks with mixed outcomes, 1 with"));
    script_free(&s);
    // a broken template is a setup error naming the file and placeholder
    char dir[] = "/tmp/ingrain_prompts_XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char* files[] = {"summary.txt", "critique.txt", "consolidate.txt"};
    char path[256];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        FILE* f = fopen(path, "w");
        fputs(i == 0 ? "# header\nSummarise {{task}} {{trajectroy}}\n" : "x", f);
        fclose(f);
    }
    Script s3 = {fails, 0, 0, {0}};
    prm.gen_ctx = &s3;
    prm.prompt_dir = dir;
    assert_int_equal(extract_llm(p, e, n, 0, &prm, &rejected, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "summary.txt (task 1, sample 0) line 1: unknown placeholder {{trajectroy}}"));
    assert_int_equal(s3.next, 0);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    pool_free(p);
    for (int i = 0; i < n; i++) episode_free(&e[i]);
    free(e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_templates),  cmocka_unit_test(test_verdicts),          cmocka_unit_test(test_ops_battery),
        cmocka_unit_test(test_pipeline),   cmocka_unit_test(test_pipeline_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
