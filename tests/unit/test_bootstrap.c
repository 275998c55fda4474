// Tests of the bootstrap of a built-in base model (distill/bootstrap.h): the principle bank, the
// demonstrations (well-formed ChatML whose supervised turns parse back to the environment's tool
// calls, segment tags, experience only where intended and in the agent's format), the cache key,
// the learned tokenizer, the training step, and the cache round trip.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "distill/bootstrap.h"
#include "model/chat.h"
#include "model/model_config.h"
#include "model/tokenizer_byte_vocab.h"
#include "rollout/inject.h"

#define SEED 1234

// ----------------------------------------------------------------------------
// fixtures: a small config, a model and agent for the demonstrations

static Config small_config(void) {
    Config c;
    config_defaults(&c);
    snprintf(c.model.name, sizeof(c.model.name), "tiny");
    c.bootstrap.threads = 1;
    c.model.max_seq_len = 2048;
    c.rollout.max_context = 2048;
    c.env.max_turns = 12;
    c.bootstrap.episodes = 40;
    c.bootstrap.mine_batches = 2;
    c.bootstrap.copy_steps = 20; // these tests check the pipeline, not what a full warm-up learns
    c.run.seed = SEED;
    return c;
}

typedef struct {
    Config c;
    Backend* be;
    Model* m;
    Tokenizer* tok;
    Agent* agent;
} Fixture;

static void fixture_open(Fixture* f) {
    f->c = small_config();
    ModelConfig mc;
    assert_int_equal(model_builtin_config("tiny", &mc), 0);
    f->be = backend_cpu_create(1);
    f->m = model_create(&mc, f->be, 2, 1024);
    model_init_random(f->m, 7);
    f->tok = tokenizer_byte();
    AgentOptions o;
    agent_options_from_config(&f->c, &o);
    o.group_size = o.max_episodes = 1;
    o.max_context = 512;
    char err[256];
    f->agent = agent_create(f->m, f->tok, &o, err, sizeof(err));
    assert_non_null(f->agent);
}

static void fixture_close(Fixture* f) {
    agent_free(f->agent);
    model_free(f->m);
    backend_destroy(f->be);
    tokenizer_free(f->tok);
}

static int count_substr(const char* s, const char* sub) {
    int n = 0;
    for (const char* p = s; (p = strstr(p, sub)); p += strlen(sub)) n++;
    return n;
}

// ----------------------------------------------------------------------------
// the bank

static void test_bank(void** state) {
    (void)state;
    char err[512];
    Bank a, b;
    assert_int_equal(bank_build(&a, "wikisearch", SEED, 0, 3, 0, err, sizeof(err)), 0);
    assert_int_equal(bank_build(&b, "wikisearch", SEED, 0, 3, 0, err, sizeof(err)), 0);
    assert_int_equal(a.n, b.n); // deterministic
    int rules = 0, mined = 0, foreign = 0;
    for (int i = 0; i < a.n; i++) {
        const BankItem* it = &a.items[i];
        assert_string_equal(it->text, b.items[i].text);
        assert_true(it->rules == b.items[i].rules);
        assert_non_null(strstr(it->text, ": ")); // "Name: text", as the pool lists items
        for (int j = 0; j < i; j++) assert_string_not_equal(it->text, a.items[j].text);
        rules += it->source == BANK_RULE;
        mined += it->source == BANK_MINED;
        foreign += it->source == BANK_FOREIGN;
        if (it->source == BANK_RULE) assert_null(it->phrase);
        if (it->source == BANK_MINED) { // rendered as the contrastive extractor renders its rules
            assert_non_null(it->phrase);
            assert_true(it->rules != 0);
            assert_non_null(strstr(it->text, ": When the last tool result mentions \""));
        }
    }
    // the environment's three rules, in order, each conveying itself
    assert_int_equal(rules, 3);
    assert_string_equal(a.items[0].text, "Pick kind: When search results share a name, visit the one whose snippet shows "
                                         "the kind of entity you need (person, city, company), not simply the first hit.");
    assert_true(a.items[0].rules == 1u && a.items[1].rules == 2u && a.items[2].rules == 4u);
    assert_true(mined > 0);
    assert_true(foreign >= 7); // textcraft's 3 and retail's 4 rules at least
    bank_free(&a);
    bank_free(&b);
    assert_int_equal(bank_build(&a, "external", SEED, 0, 1, 0, err, sizeof(err)), -1);
}

// with choices the bank also holds rules that say which result to visit, and those that convey
// pick_kind (visit the line of the kind needed, where the novice visits the first hit) say visit
static void test_bank_choices(void** state) {
    (void)state;
    char err[512];
    Bank a;
    assert_int_equal(bank_build(&a, "wikisearch", SEED, 0, 3, 1, err, sizeof(err)), 0);
    int choice_items = 0, pick_kind = 0;
    for (int i = 0; i < a.n; i++) {
        const BankItem* it = &a.items[i];
        if (!strstr(it->text, "on the result marked \"")) continue;
        choice_items++;
        if (it->rules & 1u) {
            pick_kind++;
            assert_non_null(strstr(it->text, "call visit on the result marked"));
        }
    }
    printf("bank with choices: %d items, %d name a result, %d of them convey pick_kind\n", a.n, choice_items,
           pick_kind);
    assert_true(pick_kind > 0);
    bank_free(&a);
}

// an item that names a result directs exactly the calls of its tool on the line it names
static void test_item_directs(void** state) {
    (void)state;
    BankItem it = {.text = "Ship: When the last tool result mentions \"ship\", call visit on the result marked "
                           "\"company\".",
                   .rules = 1, .source = BANK_MINED, .phrase = "ship", .tool = "visit", .choice = "company"};
    const char* results = "Results for 'Rokfen Labs':\n1. Rokfen Labs (3) - ship\n2. Rokfen Labs - company, bank";
    assert_true(bank_item_directs(&it, results, "visit", "{\"title\": \"Rokfen Labs\"}"));
    assert_false(bank_item_directs(&it, results, "visit", "{\"title\": \"Rokfen Labs (3)\"}"));
    assert_false(bank_item_directs(&it, results, "search", "{\"query\": \"Rokfen Labs\"}"));
    BankItem plain = {.text = "Ship: When the last tool result mentions \"ship\", call search next.", .rules = 2,
                      .source = BANK_MINED, .phrase = "ship"};
    assert_true(bank_item_directs(&plain, results, "visit", "{\"title\": \"Rokfen Labs (3)\"}"));
}

static void test_item_applies(void** state) {
    (void)state;
    BankItem mined = {.text = "Citizen: When the last tool result mentions \"citizen of\", call search next.",
                      .rules = 4, .source = BANK_MINED, .phrase = "citizen of", .from_task = 0};
    assert_true(bank_item_applies(&mined, "Ana Bel: a person, pilot. Born in Tarvik. Citizen of Pilzestan.", 0));
    assert_false(bank_item_applies(&mined, "Ana Bel: a person, pilot. A citizen.", 0)); // the whole phrase
    assert_false(bank_item_applies(&mined, "Tarvik: a city in Pilzestan.", 0));
    assert_false(bank_item_applies(&mined, "Who is a citizen of Pilzestan?", 1)); // a task, not a tool result
    BankItem rule = {.text = "Pick kind: When ...", .rules = 1, .source = BANK_RULE};
    assert_true(bank_item_applies(&rule, "anything", 0));
}

// ----------------------------------------------------------------------------
// demonstrations

// the text of tokens [from, to), special tokens as their text
static char* text_of(const Tokenizer* tok, const Demo* d, int from, int to) {
    return tokenizer_decode_alloc(tok, d->ids + from, to - from, NULL);
}

static void check_demo(const Fixture* f, const Env* env, const Demo* d, const char* system) {
    const Tokenizer* tok = f->tok;
    char* all = text_of(tok, d, 0, d->n);
    // the agent's system text opens every sequence; a window opens with the task
    char* head = malloc(strlen(system) + 32);
    sprintf(head, "<|im_start|>%s%s", d->window ? "user\n" : "system\n", d->window ? "" : system);
    assert_memory_equal(all, head, strlen(head));
    free(head);
    if (d->window) assert_int_equal(count_substr(all, "<|im_start|>system"), 0);
    // targets: assistant tokens only, in runs that each hold one well-formed tool call of env's
    int turns = 0;
    for (int t = 0; t < d->n;) {
        if (!d->target[t]) {
            t++;
            continue;
        }
        int e = t;
        while (e < d->n && d->target[e]) {
            assert_int_equal(d->seg[e], SEG_ASSISTANT);
            e++;
        }
        char* reply = text_of(tok, d, t, e);
        assert_int_equal(strncmp(reply, "<tool_call>\n{\"name\": ", 21), 0);
        char *name, *args, err[256];
        assert_int_equal(chat_parse_tool_call(reply, &name, &args, err, sizeof(err)), 1);
        int known = 0;
        for (int i = 0; i < env->ntools; i++) known |= strcmp(env->tools[i].name, name) == 0;
        assert_true(known);
        assert_true(args[0] == '{');
        // the reply ends the turn, and what precedes it is the assistant's generation prompt
        assert_int_equal(d->ids[e - 1], tokenizer_special_id(tok, "<|im_end|>"));
        char* before = text_of(tok, d, t - 22 > 0 ? t - 22 : 0, t);
        assert_non_null(strstr(before, "<|im_start|>assistant\n"));
        free(before);
        free(name);
        free(args);
        free(reply);
        turns++;
        t = e;
    }
    assert_true(turns >= 1);
    if (d->window) { // one supervised turn, the last
        assert_int_equal(turns, 1);
        assert_true(d->target[d->n - 1]);
    }
    // experience: tagged SEG_EXPERIENCE, wrapped in <experience> tokens, in the agent's format
    int n_exp = 0, first_exp = -1;
    for (int t = 0; t < d->n; t++)
        if (d->seg[t] == SEG_EXPERIENCE) n_exp++, first_exp = first_exp < 0 ? t : first_exp;
    int blocks = count_substr(all, "<experience>");
    // whole sequences show experience unless they are students'; windows only in step-wise
    // episodes (the turn's own items; the global pool lives in the system message windows lack)
    const int shows = d->has_exp;
    if (d->mode == DEMO_STUDENT || (d->window && d->mode == DEMO_GLOBAL)) assert_false(shows);
    if (!d->window && d->mode == DEMO_GLOBAL) assert_true(shows);
    if (!shows) {
        assert_int_equal(n_exp, 0);
        assert_int_equal(blocks, 0);
    } else {
        assert_int_equal(blocks, 1);
        char* exp = text_of(tok, d, first_exp, first_exp + n_exp);
        const int global = d->mode == DEMO_GLOBAL;
        char* want = malloc(strlen(INJECT_GLOBAL_HEADING) + 64);
        sprintf(want, "<experience>%s%s\n- ", global ? "\n\n" : "", global ? INJECT_GLOBAL_HEADING : INJECT_STEP_HEADING);
        assert_memory_equal(exp, want, strlen(want));
        assert_int_equal(strcmp(exp + strlen(exp) - strlen("</experience>"), "</experience>"), 0);
        free(want);
        free(exp);
        char* before = text_of(tok, d, 0, first_exp);
        if (d->mode == DEMO_GLOBAL && !d->window) { // inside the system message
            assert_int_equal(count_substr(before, "<|im_start|>"), 1);
        } else { // in the last user/tool message, right before the sequence's last turn, a target
            char* after = text_of(tok, d, first_exp + n_exp, d->n);
            assert_int_equal(count_substr(after, "<|im_start|>assistant"), 1);
            assert_true(d->target[d->n - 1]);
            free(after);
        }
        free(before);
    }
    free(all);
}

static void test_demos(void** state) {
    (void)state;
    Fixture f;
    fixture_open(&f);
    char err[512];
    Bank bank;
    assert_int_equal(bank_build(&bank, "wikisearch", SEED, 0, 2, 0, err, sizeof(err)), 0);
    DemoParams p = demo_params_from_config(&f.c);
    p.max_context = 4096;
    DemoSet set, win;
    assert_int_equal(demos_build(&set, &win, "wikisearch", &bank, f.agent, &p, err, sizeof(err)), 0);
    EnvOptions eo = {.name = "wikisearch", .seed = SEED, .train_tasks = 4, .heldout_tasks = 1};
    EnvError ee;
    Env* env = env_create(&eo, &ee);
    char* system = agent_system_text(f.agent, env);
    int modes[DEMO_MODES] = {0}, followed = 0;
    for (int i = 0; i < set.n; i++) {
        check_demo(&f, env, &set.d[i], system);
        modes[set.d[i].mode]++;
        followed += set.d[i].n_followed;
    }
    for (int m = 0; m < DEMO_MODES; m++) assert_true(modes[m] > 0);
    assert_true(followed > 0); // some supervised turns follow an injected principle
    // windows: short, one turn each; the global pool is never shown in one (it lives in the system
    // message), so no window of a global episode holds a turn the pool changed
    int win_followed = 0;
    for (int i = 0; i < win.n; i++) {
        const Demo* d = &win.d[i];
        assert_true(d->window);
        check_demo(&f, env, d, system);
        assert_true(d->n_turns == 1 || d->n_turns == 2); // the previous call and the turn
        if (d->mode == DEMO_GLOBAL) assert_int_equal(d->n_followed, 0);
        win_followed += d->n_followed;
    }
    assert_true(win.n > set.n);
    assert_true(win_followed > 0);
    demos_free(&win);
    // bootstrap.contrast: each window whose turn the items changed has a counterpart without the
    // items: the same context and the call the policy makes without them, so that the windows
    // without experience show the policy as it plays unshown, not only the turns that rules
    // known anyway decide
    DemoParams pc = p;
    pc.contrast = 1;
    DemoSet cset;
    assert_int_equal(demos_build(&cset, &win, "wikisearch", &bank, f.agent, &pc, err, sizeof(err)), 0);
    demos_free(&cset);
    for (int i = 0; i < win.n; i++) {
        const Demo* d = &win.d[i];
        if (d->n_followed == 0) continue;
        int found = 0;
        for (int j = 0; j < win.n && !found; j++) {
            const Demo* u = &win.d[j];
            if (u->has_exp || u->task != d->task || u->world != d->world) continue;
            int a = 0, b = 0; // the contexts before the turn, d's without its experience
            for (;; a++, b++) {
                while (a < d->n && d->seg[a] == SEG_EXPERIENCE) a++;
                if (a == d->n || b == u->n || d->target[a] || u->target[b] || d->ids[a] != u->ids[b]) break;
            }
            if (a == d->n || b == u->n || !d->target[a] || !u->target[b]) continue;
            found = d->n - a != u->n - b || memcmp(d->ids + a, u->ids + b, sizeof(int) * (size_t)(d->n - a)) != 0;
        }
        assert_true(found);
    }
    // the items drawn for a rule include one whose condition holds where the rule bites, so
    // place_page is shown at a mayor's city page too, not only at a citizen's page
    int at_city = 0, at_person = 0;
    for (int i = 0; i < win.n; i++) {
        const Demo* d = &win.d[i];
        if (!d->has_exp || !(d->shown & 4u)) continue; // place_page is the third rule
        char* all = text_of(f.tok, d, 0, d->n);
        at_city += strstr(all, "Mayor:") != NULL;
        at_person += strstr(all, "Citizen of") != NULL;
        free(all);
    }
    print_message("place_page shown in windows at a mayor's city: %d, at a citizen's page: %d\n", at_city, at_person);
    assert_true(at_city > 0 && at_person > 0);
    demos_free(&win);
    // the same parameters give the same sequences
    DemoSet again;
    assert_int_equal(demos_build(&again, NULL, "wikisearch", &bank, f.agent, &p, err, sizeof(err)), 0);
    assert_int_equal(again.n, set.n);
    for (int i = 0; i < set.n; i++) {
        assert_int_equal(again.d[i].n, set.d[i].n);
        assert_memory_equal(again.d[i].ids, set.d[i].ids, sizeof(int) * (size_t)set.d[i].n);
    }
    // a context cap cuts sequences, and none is left without a target
    p.max_context = 700;
    DemoSet cut;
    assert_int_equal(demos_build(&cut, NULL, "wikisearch", &bank, f.agent, &p, err, sizeof(err)), 0);
    for (int i = 0; i < cut.n; i++) {
        assert_true(cut.d[i].n <= 700);
        int k = 0;
        for (int t = 0; t < cut.d[i].n; t++) k += cut.d[i].target[t];
        assert_true(k > 0);
    }
    demos_free(&cut);
    demos_free(&again);
    demos_free(&set);
    free(system);
    env_destroy(env);
    bank_free(&bank);
    fixture_close(&f);
}

// ----------------------------------------------------------------------------
// the learned tokenizer

// 1 when the ids of needle occur in a row in hay
static int has_run(const TokenBuf* hay, const TokenBuf* needle) {
    for (int i = 0; i + needle->n <= hay->n; i++)
        if (memcmp(hay->ids + i, needle->ids, sizeof(int) * (size_t)needle->n) == 0) return 1;
    return 0;
}

static void test_bpe(void** state) {
    (void)state;
    Fixture f;
    fixture_open(&f);
    char err[512], tmpl[] = "/tmp/ingrain_bpe_XXXXXX", path[256];
    assert_non_null(mkdtemp(tmpl));
    snprintf(path, sizeof(path), "%s/tokenizer.json", tmpl);
    Bank bank;
    assert_int_equal(bank_build(&bank, "wikisearch", SEED, 0, 1, 0, err, sizeof(err)), 0);
    DemoParams p = demo_params_from_config(&f.c);
    p.max_context = 4096;
    DemoSet set;
    assert_int_equal(demos_build(&set, NULL, "wikisearch", &bank, f.agent, &p, err, sizeof(err)), 0);
    assert_int_equal(bpe_train(&set, BYTE_VOCAB_SIZE, path, err, sizeof(err)), -1); // no room for merges
    assert_non_null(strstr(err, "bootstrap.vocab_size"));
    assert_int_equal(bpe_train(&set, 600, path, err, sizeof(err)), 0);
    Tokenizer* tok = tokenizer_load_hf(path, err, sizeof(err));
    if (!tok) fail_msg("%s", err);
    assert_true(tokenizer_vocab_size(tok) > BYTE_VOCAB_SIZE && tokenizer_vocab_size(tok) <= 600);
    // the byte tokenizer's specials keep their ids
    assert_int_equal(tokenizer_special_id(tok, "<|im_start|>"), BYTE_TOKEN_IM_START);
    assert_int_equal(tokenizer_special_id(tok, "<tool_call>"), BYTE_TOKEN_TOOL_CALL);
    assert_int_equal(tokenizer_special_id(tok, "</experience>"), BYTE_TOKEN_EXP_END);
    // every demonstration's text round-trips, in under half as many tokens as bytes
    long bytes = 0, tokens = 0;
    for (int i = 0; i < set.n; i++) {
        char* text = tokenizer_decode_alloc(f.tok, set.d[i].ids, set.d[i].n, NULL);
        TokenBuf b = {0};
        tokenizer_encode(tok, text, strlen(text), 1, &b);
        char* back = tokenizer_decode_alloc(tok, b.ids, b.n, NULL);
        assert_string_equal(back, text);
        bytes += set.d[i].n, tokens += b.n;
        free(back);
        free(text);
        tokenbuf_free(&b);
    }
    assert_true(2 * tokens < bytes);
    // a name is the same tokens in a question, a page, a results line and a tool call's JSON, also
    // where a space follows it, except that its first piece carries the space where one precedes it
    static const char* const contexts[][2] = {
        {" Brill Works", "Who founded Brill Works?"},
        {" Brill Works", "founded by Brill Works based?"},
        {" Brill Works", "1. Brill Works - company, bank"},
        {" Brill Works (2", "1. Brill Works (2) - ship"},
        {"Brill Works", "Brill Works: a company, bank."},
        {"Brill Works", "{\"query\": \"Brill Works\"}"},
        {"Brill Works (2", "{\"title\": \"Brill Works (2)\"}"},
        {" Zulvek Tharnim", "Mayor: Zulvek Tharnim."},
        {" Zulvek Tharnim", "1. Zulvek Tharnim - person, poet"},
        {"Zulvek Tharnim", "{\"query\": \"Zulvek Tharnim\"}"}};
    for (int i = 0; i < 10; i++) {
        TokenBuf name = {0}, b = {0};
        tokenizer_encode(tok, contexts[i][0], strlen(contexts[i][0]), 0, &name);
        tokenizer_encode(tok, contexts[i][1], strlen(contexts[i][1]), 0, &b);
        if (!has_run(&b, &name)) fail_msg("the tokens of '%s' are not in those of %s", contexts[i][0], contexts[i][1]);
        tokenbuf_free(&name);
        tokenbuf_free(&b);
    }
    static const char* const names[] = {"Brill Works", "Zulvek Tharnim", "Nemgas Zulfar (3)"};
    for (int i = 0; i < 3; i++) {
        char spaced[64];
        snprintf(spaced, sizeof(spaced), " %s", names[i]);
        TokenBuf bare = {0}, sp = {0};
        tokenizer_encode(tok, names[i], strlen(names[i]), 0, &bare);
        tokenizer_encode(tok, spaced, strlen(spaced), 0, &sp);
        assert_true(sp.n == bare.n || sp.n == bare.n + 1); // " Zul" is one token or " " and "Zul"
        assert_memory_equal(sp.ids + sp.n - (bare.n - 1), bare.ids + 1, sizeof(int) * (size_t)(bare.n - 1));
        tokenbuf_free(&bare);
        tokenbuf_free(&sp);
    }
    tokenizer_free(tok);
    demos_free(&set);
    bank_free(&bank);
    fixture_close(&f);
    unlink(path);
    rmdir(tmpl);
}

// ----------------------------------------------------------------------------
// the cache key

static void test_hash(void** state) {
    (void)state;
    char err[512], base[BOOTSTRAP_HASH_HEX + 1], again[BOOTSTRAP_HASH_HEX + 1], h[BOOTSTRAP_HASH_HEX + 1];
    Config c = small_config();
    assert_int_equal(bootstrap_hash(&c, base, err, sizeof(err)), 0);
    assert_int_equal((int)strlen(base), BOOTSTRAP_HASH_HEX);
    assert_int_equal(bootstrap_hash(&c, again, err, sizeof(err)), 0);
    assert_string_equal(base, again);
    // keys that do not change the weights
    ConfigError ce;
    static const char* const same[] = {"bootstrap.cache_dir=/elsewhere", "bootstrap.threads=2", "model.threads=2", "run.name=other",
                                       "run.iterations=7", "distill.lr=0.5", NULL};
    for (int i = 0; same[i]; i++) {
        Config d = c;
        assert_int_equal(config_set(&d, same[i], &ce), 0);
        assert_int_equal(bootstrap_hash(&d, h, err, sizeof(err)), 0);
        if (strcmp(h, base) != 0) fail_msg("%s changed the hash", same[i]);
    }
    // keys that do
    static const char* const differ[] = {"bootstrap.episodes=41", "bootstrap.epochs=3", "bootstrap.lr=1e-3",
                                         "bootstrap.expert_rate=0.3", "bootstrap.mine_batches=3", "run.seed=5",
                                         "env.name=textcraft", "env.max_turns=11", "rollout.max_context=1024",
                                         "experience.select_max=7", "model.name=small",
                                         "bootstrap.vocab_size=512", "model.device=cuda", "model.dtype=bf16",
                                         "bootstrap.contrast=true", NULL};
    for (int i = 0; differ[i]; i++) {
        Config d = c;
        assert_int_equal(config_set(&d, differ[i], &ce), 0);
        assert_int_equal(bootstrap_hash(&d, h, err, sizeof(err)), 0);
        if (strcmp(h, base) == 0) fail_msg("%s did not change the hash", differ[i]);
    }
    Config bad = c;
    snprintf(bad.model.name, sizeof(bad.model.name), "nope");
    assert_int_equal(bootstrap_hash(&bad, h, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "'nope'"));
}

// ----------------------------------------------------------------------------
// training

static void test_train_reduces_loss(void** state) {
    (void)state;
    Fixture f;
    fixture_open(&f);
    char err[512];
    Bank bank;
    assert_int_equal(bank_build(&bank, "wikisearch", SEED, 0, 1, 0, err, sizeof(err)), 0);
    DemoParams p = demo_params_from_config(&f.c);
    p.episodes = 6;
    p.worlds = 1; // names that recur, so that a dozen passes can memorise the calls
    p.max_context = 1024;
    DemoSet set;
    assert_int_equal(demos_build(&set, NULL, "wikisearch", &bank, f.agent, &p, err, sizeof(err)), 0);
    TrainParams tp = {.epochs = 12, .lr = 3e-3, .batch_tokens = 2048, .warmup_steps = 2, .max_batch = 2,
                      .max_seq = 1024, .seed = 1};
    TrainReport r;
    bootstrap_train(f.m, &set, &tp, &r);
    assert_true(r.steps >= 8);
    assert_true(r.target_tokens > 0 && r.tokens >= r.target_tokens);
    // a random byte-level model starts near ln(288) = 5.66 nats per token; memorising six
    // sequences' tool calls brings it well under half of that
    if (r.first_loss <= 4.0 || r.last_loss >= 0.5 * r.first_loss)
        fail_msg("loss %.3f -> %.3f: expected from above 4 to under half of that", r.first_loss, r.last_loss);
    demos_free(&set);
    bank_free(&bank);
    fixture_close(&f);
}

// ----------------------------------------------------------------------------
// the cache

static void test_cache_round_trip(void** state) {
    (void)state;
    char tmpl[] = "/tmp/ingrain_bootstrap_XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    Config c = small_config();
    c.bootstrap.episodes = 3;
    c.bootstrap.epochs = 1;
    c.bootstrap.mine_batches = 1;
    c.bootstrap.batch_tokens = 2048;
    c.rollout.max_context = 1024;
    snprintf(c.bootstrap.cache_dir, sizeof(c.bootstrap.cache_dir), "%s/cache", tmpl);
    char dir[2048], dir2[2048], err[1024], path[2200];
    assert_int_equal(bootstrap_ensure(&c, dir, sizeof(dir), err, sizeof(err)), 0);
    char hash[BOOTSTRAP_HASH_HEX + 1];
    assert_int_equal(bootstrap_hash(&c, hash, err, sizeof(err)), 0);
    assert_non_null(strstr(dir, hash));
    struct stat st, st2;
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    assert_int_equal(stat(path, &st), 0);
    snprintf(path, sizeof(path), "%s/bootstrap.json", dir);
    assert_int_equal(stat(path, &st), 0);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    assert_int_equal(stat(path, &st), 0);
    // a second call finds the cache and writes nothing
    assert_int_equal(bootstrap_ensure(&c, dir2, sizeof(dir2), err, sizeof(err)), 0);
    assert_string_equal(dir, dir2);
    assert_int_equal(stat(path, &st2), 0);
    assert_true(st.st_mtim.tv_sec == st2.st_mtim.tv_sec && st.st_mtim.tv_nsec == st2.st_mtim.tv_nsec);
    // the weights load into a model of the same config, and into no other
    ModelConfig mc;
    assert_int_equal(model_builtin_config("tiny", &mc), 0);
    Backend* be = backend_cpu_create(1);
    Model* m = model_create(&mc, be, 1, 16);
    assert_int_equal(bootstrap_load(m, dir, err, sizeof(err)), 0);
    ModelConfig sc;
    assert_int_equal(model_builtin_config("small", &sc), 0);
    Model* other = model_create(&sc, be, 1, 16);
    assert_int_equal(bootstrap_load(other, dir, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "does not match"));
    model_free(other);
    model_free(m);
    // with a learned tokenizer: saved beside the weights, the model's vocabulary bootstrap.vocab_size
    c.bootstrap.vocab_size = 400;
    assert_int_equal(bootstrap_ensure(&c, dir2, sizeof(dir2), err, sizeof(err)), 0);
    assert_string_not_equal(dir, dir2);
    int vocab = mc.vocab_size;
    Tokenizer* tok = bootstrap_tokenizer(&c, dir2, &vocab, err, sizeof(err));
    if (!tok) fail_msg("%s", err);
    assert_int_equal(vocab, 400);
    assert_true(tokenizer_vocab_size(tok) <= 400);
    assert_int_equal(tokenizer_special_id(tok, "<|im_end|>"), BYTE_TOKEN_IM_END);
    // the copy warm-up's rows: 128 bytes, as before they were sized; a BPE's are a multiple of 16
    // and no longer (this few-merge BPE barely shortens the made-up words; the quickstart's, 80-96)
    Tokenizer* bytes = tokenizer_byte();
    assert_int_equal(bootstrap_copy_rows(bytes, 1234), 128);
    tokenizer_free(bytes);
    const int rows = bootstrap_copy_rows(tok, 1234);
    printf("copy warm-up rows: %d BPE tokens\n", rows);
    assert_true(rows <= 128 && rows % 16 == 0);
    tokenizer_free(tok);
    mc.vocab_size = vocab;
    m = model_create(&mc, be, 1, 16);
    assert_int_equal(bootstrap_load(m, dir2, err, sizeof(err)), 0);
    model_free(m);
    backend_destroy(be);
    // a real model (model.path) needs no bootstrap
    snprintf(c.model.path, sizeof(c.model.path), "/some/hf/dir");
    assert_int_equal(bootstrap_ensure(&c, dir, sizeof(dir), err, sizeof(err)), 0);
    assert_string_equal(dir, "");
    char cmd[2200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl);
    assert_int_equal(system(cmd), 0);
}

// the evaluation runs the agent conditions and scores the demonstration windows: an untrained
// model solves no task and reproduces no whole turn, and every kind of window is counted
static void test_evaluate(void** state) {
    (void)state;
    Fixture f;
    fixture_open(&f);
    Config c = f.c;
    c.rollout.max_context = 1024; // the fixture model's length
    c.rollout.max_new_tokens = 16;
    c.rollout.tasks_per_iter = 2;
    c.rollout.group_size = 2;
    c.env.max_turns = 2;
    BootstrapEval ev;
    char err[512];
    assert_int_equal(bootstrap_evaluate(f.m, f.tok, &c, 3, &ev, err, sizeof(err)), 0);
    assert_int_equal(ev.tasks, 3);
    assert_true(ev.student == 0.0 && ev.teacher_rules == 0.0);
    for (int set = 0; set < 2; set++) {
        for (int k = 0; k < 3; k++) {
            assert_true(ev.win_n[set][k] > 0);
            assert_int_equal(ev.win_exact[set][k], 0);
            assert_int_equal(ev.win_tool[set][k], 0);
        }
        // every changed turn conveys a rule (wikisearch: pick_kind, refine_query, place_page)
        assert_int_equal(ev.n_rules, 3);
        assert_string_equal(ev.rule_ids[2], "place_page");
        int by_rule = 0;
        for (int r = 0; r < ev.n_rules; r++) {
            by_rule += ev.rule_n[set][r];
            assert_int_equal(ev.rule_tool[set][r], 0);
        }
        assert_true(by_rule >= ev.win_n[set][0]);
    }
    FILE* out = tmpfile();
    bootstrap_eval_print(&ev, out);
    assert_true(ftell(out) > 0);
    fclose(out);
    fixture_close(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bank),
        cmocka_unit_test(test_bank_choices),
        cmocka_unit_test(test_item_directs),
        cmocka_unit_test(test_item_applies),
        cmocka_unit_test(test_demos),
        cmocka_unit_test(test_bpe),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_train_reduces_loss),
        cmocka_unit_test(test_cache_round_trip),
        cmocka_unit_test(test_evaluate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
