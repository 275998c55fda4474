// `ingrain bench rollout`: episodes/s and generated tokens/s of the agent loop on a built-in
// environment, and where its time goes (decoder, environment, step-wise selector, the rest:
// rendering, parsing, records). The named baseline, measured in the same run, is the decoder
// alone: the same slots generating the same number of tokens from the same prompt, with no
// environment, parsing or injection, so the ratio is the agent loop's overhead.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "model/hf.h"
#include "model/ops.h"
#include "model/tokenizer_byte_vocab.h"
#include "rollout/agent_impl.h"

static const char* usage =
    "usage: ingrain bench rollout [options]\n"
    "  --env NAME          wikisearch, textcraft or retail (default wikisearch)\n"
    "  --tasks N           tasks decoded in one batch (default 4)\n"
    "  --group G           samples per task (default 5)\n"
    "  --injection MODE    none (the student), global or stepwise (default stepwise)\n"
    "  --selector S        bm25 or llm (default bm25)\n"
    "  --pool N            experience items: the environment's rules, then filler (default 6)\n"
    "  --model NAME        built-in model, random weights (default tiny)\n"
    "  --model-dir DIR     an HF model directory instead (e.g. a bootstrapped tiny model from\n"
    "                      bootstrap.cache_dir); byte tokenizer unless DIR has tokenizer.json\n"
    "  --max-new T         tokens per turn (default 96)\n"
    "  --turns T           turns per episode (default 16)\n"
    "  --context T         context tokens per episode (default 2048)\n"
    "  --repeat R          timed batches, each a new iteration, after one untimed warm-up batch (default 3)\n"
    "  --threads N         OpenMP threads, 0 = all cores (default 0)\n";

static int parse_int(const char* opt, const char* s, int lo, int* out) {
    char* end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > 1000000) {
        fprintf(stderr, "ingrain bench rollout: %s expects an integer >= %d, got '%s'\n", opt, lo, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

// the pool: each rule of the environment as "id: principle", then generic filler items
static void bench_pool(const Env* env, int n, ExpList* l) {
    static const char* const filler[] = {
        "Check the result: When a tool result looks incomplete, call the tool again with a narrower argument.",
        "Read before acting: When an observation lists several options, compare all of them before choosing.",
        "Stop early: When the task is done, give the answer at once instead of exploring further.",
        "Keep names exact: When a tool needs a name, copy it exactly as an earlier observation wrote it.",
    };
    char text[512];
    for (int i = 0; i < n; i++) {
        if (i < env->nrules)
            snprintf(text, sizeof(text), "%s: %s", env->rules[i].id, env->rules[i].principle);
        else
            snprintf(text, sizeof(text), "%s (%d)", filler[(i - env->nrules) % 4], i);
        exp_list_add(l, i + 1, text);
    }
}

// the baseline: every slot holds prompt and generates `per_slot` tokens with no stop
static double decoder_alone(Agent* a, const int* prompt, int n_prompt, int slots, long tokens) {
    int* sl = mallocCheck(sizeof(int) * (size_t)slots);
    const int** tk = mallocCheck(sizeof(int*) * (size_t)slots);
    int* ln = mallocCheck(sizeof(int) * (size_t)slots);
    Rng* rng = mallocCheck(sizeof(Rng) * (size_t)slots);
    Rng** rp = mallocCheck(sizeof(Rng*) * (size_t)slots);
    GenResult* out = callocCheck((size_t)slots, sizeof(GenResult));
    for (int i = 0; i < slots; i++) {
        sl[i] = i;
        tk[i] = prompt;
        ln[i] = n_prompt;
        rng_seed(&rng[i], 1000 + (uint64_t)i);
        rp[i] = &rng[i];
    }
    const int room = a->o.max_context - n_prompt;
    double t0 = agent_now();
    long done = 0;
    while (done < tokens) {
        decoder_assign(a->dec, slots, sl, tk, ln);
        int max_new = (int)((tokens - done + slots - 1) / slots);
        if (max_new > room) max_new = room;
        decoder_generate(a->dec, slots, sl, &a->o.sampling, rp, max_new, NULL, 0, NULL, NULL, out);
        for (int i = 0; i < slots; i++) {
            done += out[i].n;
            gen_result_free(&out[i]);
        }
    }
    double t = agent_now() - t0;
    free(sl);
    free(tk);
    free(ln);
    free(rng);
    free(rp);
    free(out);
    return (double)done / t;
}

// the model of --model-dir with its tokenizer and chat format; -1 with err (nothing allocated)
static int load_model_dir(const char* dir, Backend* be, Model** m, Tokenizer** tok, ChatFormat* fmt, char* err,
                          size_t errlen) {
    ModelConfig mc;
    if (hf_load_config(dir, &mc, err, errlen) != 0) return -1;
    char path[1200];
    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    FILE* f = fopen(path, "rb");
    if (f) {
        fclose(f);
        *tok = tokenizer_load_hf(path, err, errlen);
        if (!*tok) return -1;
        if (tokenizer_vocab_size(*tok) > mc.vocab_size) {
            snprintf(err, errlen, "%.900s has %d ids, more than the model's vocabulary (%d)", path,
                     tokenizer_vocab_size(*tok), mc.vocab_size);
            tokenizer_free(*tok);
            return -1;
        }
    } else if (mc.vocab_size == BYTE_VOCAB_SIZE) {
        *tok = tokenizer_byte();
    } else {
        snprintf(err, errlen, "%s has no tokenizer.json and its vocabulary (%d) is not the byte tokenizer's", dir,
                 mc.vocab_size);
        return -1;
    }
    *fmt = tokenizer_special_id(*tok, "<|im_start|>") >= 0 ? CHAT_CHATML : CHAT_LLAMA3;
    *m = model_create(&mc, be, 1, 1);
    const size_t n = model_num_params(*m);
    float* host = mallocCheck(sizeof(float) * n);
    int rc = hf_load_weights(dir, &mc, host, n, err, errlen);
    if (rc == 0) model_params_upload(*m, host);
    free(host);
    if (rc != 0) {
        model_free(*m);
        tokenizer_free(*tok);
    }
    return rc;
}

int bench_rollout(int argc, char** argv) {
    const char* env_name = "wikisearch";
    const char* model_name = "tiny";
    const char* model_dir = NULL;
    const char* injection = "stepwise";
    const char* selector = "bm25";
    int tasks = 4, G = 5, pool = 6, max_new = 96, turns = 16, context = 2048, repeat = 3, threads = 0;
    const struct {
        const char* name;
        const char** val;
    } str_opts[] = {{"--env", &env_name},
                    {"--model", &model_name},
                    {"--model-dir", &model_dir},
                    {"--injection", &injection},
                    {"--selector", &selector}};
    const struct {
        const char* name;
        int* val;
        int lo;
    } int_opts[] = {{"--tasks", &tasks, 1},     {"--group", &G, 1},        {"--pool", &pool, 0},
                    {"--max-new", &max_new, 1}, {"--turns", &turns, 1},    {"--context", &context, 64},
                    {"--repeat", &repeat, 1},   {"--threads", &threads, 0}};
    for (int i = 0; i < argc; i++) {
        const char* o = argv[i];
        if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) return fputs(usage, stdout), INGRAIN_EXIT_OK;
        int known = 0, bad = 0;
        for (size_t k = 0; k < sizeof(str_opts) / sizeof(str_opts[0]) && i + 1 < argc; k++)
            if (strcmp(o, str_opts[k].name) == 0) *str_opts[k].val = argv[i + 1], known = 1;
        for (size_t k = 0; k < sizeof(int_opts) / sizeof(int_opts[0]) && i + 1 < argc; k++)
            if (strcmp(o, int_opts[k].name) == 0)
                bad = parse_int(o, argv[i + 1], int_opts[k].lo, int_opts[k].val), known = 1;
        if (!known)
            return fprintf(stderr, "ingrain bench rollout: unknown or incomplete option '%s'\n%s", o, usage),
                   INGRAIN_EXIT_USAGE;
        if (bad) return INGRAIN_EXIT_USAGE;
        i++;
    }
    const int none = strcmp(injection, "none") == 0;
    if (!none && strcmp(injection, "global") != 0 && strcmp(injection, "stepwise") != 0)
        return fprintf(stderr, "ingrain bench rollout: --injection is none, global or stepwise, got '%s'\n", injection),
               INGRAIN_EXIT_USAGE;
    if (strcmp(selector, "bm25") != 0 && strcmp(selector, "llm") != 0)
        return fprintf(stderr, "ingrain bench rollout: --selector is bm25 or llm, got '%s'\n", selector),
               INGRAIN_EXIT_USAGE;
    ModelConfig mc;
    if (!model_dir && (model_builtin_config(model_name, &mc) != 0 || mc.vocab_size != BYTE_VOCAB_SIZE))
        return fprintf(stderr,
                       "ingrain bench rollout: --model is a built-in byte-tokenizer model (tiny, small), got '%s'\n",
                       model_name),
               INGRAIN_EXIT_USAGE;

    const int ne = tasks * G;
    EnvError eerr;
    EnvOptions eo = {.name = env_name, .seed = 7, .train_tasks = tasks * repeat, .heldout_tasks = 1, .timeout_s = 30};
    Env** envs = callocCheck((size_t)ne, sizeof(Env*));
    for (int i = 0; i < ne; i++) {
        envs[i] = env_create(&eo, &eerr);
        if (!envs[i] || strcmp(envs[i]->name, "external") == 0) {
            fprintf(stderr, "ingrain bench rollout: --env: %s\n",
                    envs[i] ? "a built-in environment, please" : eerr.msg);
            for (int j = 0; j <= i; j++) env_destroy(envs[j]);
            free(envs);
            return INGRAIN_EXIT_USAGE;
        }
    }
    Backend* be = backend_cpu_create(threads);
    Model* m;
    Tokenizer* tok;
    ChatFormat fmt = CHAT_CHATML;
    char err[1024];
    if (model_dir) {
        if (load_model_dir(model_dir, be, &m, &tok, &fmt, err, sizeof(err)) != 0) {
            fprintf(stderr, "ingrain bench rollout: --model-dir: %s\n", err);
            for (int i = 0; i < ne; i++) env_destroy(envs[i]);
            free(envs);
            backend_destroy(be);
            return INGRAIN_EXIT_USAGE;
        }
    } else {
        m = model_create(&mc, be, 1, 1);
        model_init_random(m, 1);
        tok = tokenizer_byte();
    }
    Config cfg;
    config_defaults(&cfg);
    AgentOptions ao;
    agent_options_from_config(&cfg, &ao);
    ao.injection = strcmp(injection, "global") == 0 ? INJECTION_GLOBAL : INJECTION_STEPWISE;
    ao.selector = strcmp(selector, "llm") == 0 ? SELECTOR_LLM : SELECTOR_BM25;
    ao.group_size = G;
    ao.max_episodes = ne;
    ao.max_new_tokens = max_new;
    ao.max_turns = turns;
    ao.max_context = context;
    ao.format = fmt;
    Agent* a = agent_create(m, tok, &ao, err, sizeof(err));
    if (!a) fatal("bench rollout: %s", err);
    ExpList exp;
    exp_list_init(&exp);
    bench_pool(envs[0], pool, &exp);

    AgentTask* at = mallocCheck(sizeof(AgentTask) * (size_t)tasks);
    Trajectory** out = callocCheck((size_t)ne, sizeof(Trajectory*));
    long turns_done = 0, premature = 0, truncated = 0, steps_items = 0, n_items = 0;
    int first_agent = 0;
    int* prompt = NULL;
    for (int k = 0; k < tasks; k++) at[k] = (AgentTask){ENV_SPLIT_TRAIN, k};
    if (agent_run(a, envs, at, tasks, -1, none ? NULL : &exp, out, err, sizeof(err)) != 0) // warm-up
        fatal("bench rollout: %s", err);
    for (int i = 0; i < ne; i++) traj_free(out[i]);
    agent_stats_reset(a);
    for (int r = 0; r < repeat; r++) {
        for (int k = 0; k < tasks; k++) at[k] = (AgentTask){ENV_SPLIT_TRAIN, r * tasks + k};
        if (agent_run(a, envs, at, tasks, r, none ? NULL : &exp, out, err, sizeof(err)) != 0)
            fatal("bench rollout: %s", err);
        for (int i = 0; i < ne; i++) {
            const Trajectory* t = out[i];
            turns_done += t->n_steps;
            premature += (t->flags & TRAJ_FLAG_PREMATURE) != 0;
            truncated += (t->flags & TRAJ_FLAG_TRUNCATED) != 0;
            steps_items += t->n_steps;
            n_items += t->item_offset[t->n_steps];
            if (r == 0 && i == 0) { // the baseline's prompt: the first episode's context before its first reply
                first_agent = t->n_steps > 0 ? t->step_start[0] : t->n_tokens;
                prompt = mallocCheck(sizeof(int) * (size_t)(first_agent + 1));
                memcpy(prompt, t->tokens, sizeof(int) * (size_t)first_agent);
            }
            traj_free(out[i]);
        }
    }
    const AgentStats s = *agent_stats(a);
    const double base_tps = decoder_alone(a, prompt, first_agent, ne, s.gen_tokens);
    const double T = s.t_total, model = s.t_prefill + s.t_generate, other = T - model - s.t_env - s.t_select;

    printf("bench rollout: env %s, model %s (%s, %zu parameters), %d tasks x G=%d per batch, %d batches,\n", env_name,
           model_dir ? model_dir : model_name, model_dir ? "loaded" : "random weights", model_num_params(m), tasks, G,
           repeat);
    printf("  injection %s%s%s, pool %d items, max %d turns x %d new tokens, context cap %d, %d threads\n", injection,
           none ? "" : ", selector ", none ? "" : selector, none ? 0 : pool, turns, max_new, context, be->threads);
    printf("  episodes %ld, turns %ld (%.1f per episode), generated tokens %ld, premature %ld, truncated %ld, "
           "items shown per turn %.1f\n",
           s.episodes, turns_done, (double)turns_done / (double)s.episodes, s.gen_tokens, premature, truncated,
           steps_items ? (double)n_items / (double)steps_items : 0.0);
    printf("  context tokens fed %ld, kept from the cache or copied from a sibling %ld", s.prefill_tokens,
           s.reused_tokens);
    if (ao.selector == SELECTOR_LLM && !none)
        printf(", LLM-selector replies %ld, BM25 fallbacks %ld", s.llm_selections, s.llm_fallbacks);
    printf("\n");
    printf("\n  %-40s %12s %12s\n", "", "episodes/s", "gen tok/s");
    printf("  %-40s %12.2f %12.1f\n", "ingrain agent loop", (double)s.episodes / T, (double)s.gen_tokens / T);
    printf("  %-40s %12s %12.1f\n", "baseline: decoder alone (same slots)", "-", base_tps);
    printf("  %-40s %12s %12.2f\n", "ratio (agent / decoder alone)", "", (double)s.gen_tokens / T / base_tps);
    printf("\n  %-40s %10s %8s\n", "time share", "seconds", "share");
    printf("  %-40s %10.3f %7.1f%%\n", "model: prefill of turn contexts", s.t_prefill, 100 * s.t_prefill / T);
    printf("  %-40s %10.3f %7.1f%%\n", "model: generation", s.t_generate, 100 * s.t_generate / T);
    printf("  %-40s %10.3f %7.1f%%\n", "environment (reset + step)", s.t_env, 100 * s.t_env / T);
    printf("  %-40s %10.3f %7.1f%%\n", "selector (step-wise items)", s.t_select, 100 * s.t_select / T);
    printf("  %-40s %10.3f %7.1f%%\n", "other (rendering, parsing, records)", other, 100 * other / T);
    printf("  %-40s %10.3f %7.1f%%\n", "total", T, 100.0);
    printf("RESULT env=%s injection=%s selector=%s tasks=%d group=%d episodes_per_s=%.3f gen_tok_per_s=%.1f "
           "decoder_alone_tok_per_s=%.1f model_share=%.3f env_share=%.3f selector_share=%.3f\n",
           env_name, injection, selector, tasks, G, (double)s.episodes / T, (double)s.gen_tokens / T, base_tps,
           model / T, s.t_env / T, s.t_select / T);

    free(prompt);
    free(out);
    free(at);
    exp_list_free(&exp);
    agent_free(a);
    tokenizer_free(tok);
    model_free(m);
    backend_destroy(be);
    for (int i = 0; i < ne; i++) env_destroy(envs[i]);
    free(envs);
    return INGRAIN_EXIT_OK;
}
