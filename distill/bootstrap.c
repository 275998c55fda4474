// The bootstrap of a built-in tiny base model (see bootstrap.h, docs/BOOTSTRAP.md): training on
// the demonstrations, the cache keyed by a hash of what determines the weights, the driver's
// entry (bootstrap_ensure) and the `ingrain bootstrap` command.
#include "distill/bootstrap.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/check.h"
#include "common/log.h"
#include "model/backend_select.h"
#include "model/hf.h"
#include "model/model_config.h"
#include "model/rng.h"
#include "model/timer.h"
#include "model/tokenizer.h"
#include "rollout/agent.h"
#include "rollout/inject.h"

// room for a directory under bootstrap.cache_dir and a file name in it
#define BOOT_PATH (CONFIG_PATH + 256)

__attribute__((format(printf, 3, 4))) static int fail(char* err, size_t errlen, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

// ----------------------------------------------------------------------------
// the session: a model of the built-in config, the byte tokenizer, and an agent (its system text
// and step-wise query are what the demonstrations must reproduce)

typedef struct {
    ModelConfig mc;
    Backend* be;
    Model* m;
    Tokenizer* tok;
    Agent* agent;
    char* system;    // the agent's system text for the run's environment
    int max_batch, max_seq;
} Session;

// the bootstrap runs alone (other ranks wait), so by default it takes every core of the node
static int threads_of(const Config* c) {
    if (c->bootstrap.threads > 0) return c->bootstrap.threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void session_free(Session* s) {
    agent_free(s->agent);
    free(s->system);
    if (s->m) model_free(s->m);
    if (s->be) backend_destroy(s->be);
    if (s->tok) tokenizer_free(s->tok);
    memset(s, 0, sizeof(*s));
}

// tok_dir: a directory with the learned tokenizer (bootstrap_tokenizer); NULL: the byte tokenizer.
// compute: the backend of model.device / model.dtype (training, evaluation); else the CPU (the
// session only gives the cache key, which must not need a GPU)
static int session_open(Session* s, const Config* c, int max_batch, const char* tok_dir, int compute, char* err,
                        size_t errlen) {
    memset(s, 0, sizeof(*s));
    if (model_builtin_config(c->model.name, &s->mc) != 0)
        return fail(err, errlen, "bootstrap: model.name '%s' is not a built-in config", c->model.name);
    if (!tok_dir) s->tok = tokenizer_byte();
    else if (!(s->tok = bootstrap_tokenizer(c, tok_dir, &s->mc.vocab_size, err, errlen))) return -1;
    s->max_batch = max_batch;
    s->max_seq = c->rollout.max_context < s->mc.max_seq_len ? c->rollout.max_context : s->mc.max_seq_len;
    if (compute) {
        char msg[768];
        if (!(s->be = model_backend_create(c, threads_of(c), 0, msg, sizeof(msg)))) {
            session_free(s);
            return fail(err, errlen, "bootstrap: %s", msg);
        }
    } else {
        s->be = backend_cpu_create(1);
    }
    s->m = model_create(&s->mc, s->be, s->max_batch, s->max_seq);
    model_init_random(s->m, (uint64_t)c->run.seed);
    AgentOptions o;
    agent_options_from_config(c, &o);
    o.group_size = o.max_episodes = 1;
    o.max_context = s->max_seq;
    char msg[512];
    s->agent = agent_create(s->m, s->tok, &o, msg, sizeof(msg));
    if (!s->agent) {
        session_free(s);
        return fail(err, errlen, "bootstrap: %s", msg);
    }
    EnvError e = {{0}};
    EnvOptions eo = env_options_from_config(c);
    eo.train_tasks = eo.heldout_tasks = 1;
    eo.command = NULL; // the bootstrap learns from built-in environments only: an external one is not started
    Env* env = env_create(&eo, &e);
    if (!env) {
        session_free(s);
        return fail(err, errlen, "bootstrap: %s", e.msg);
    }
    s->system = agent_system_text(s->agent, env);
    env_destroy(env);
    return 0;
}

// ----------------------------------------------------------------------------
// the cache

static void hash_add(uint64_t* h, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static void hash_add(uint64_t* h, const char* fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    for (const char* p = buf; *p; p++) *h = (*h ^ (unsigned char)*p) * 1099511628211ull; // FNV-1a
    *h = (*h ^ '\n') * 1099511628211ull;
}

// every key and constant that determines the weights (not the cache directory, threads or logging)
static void hash_of(const Config* c, const ModelConfig* mc, const char* system, char out[BOOTSTRAP_HASH_HEX + 1]) {
    uint64_t h = 1469598103934665603ull;
    hash_add(&h, "ingrain bootstrap format %d", BOOTSTRAP_FORMAT);
    hash_add(&h, "model %s %d %d %d %d %d %d %d %d %.9g %.9g %d %d %d", c->model.name, mc->vocab_size, mc->dim,
             mc->n_layers, mc->n_heads, mc->n_kv_heads, mc->head_dim, mc->hidden_dim, mc->max_seq_len,
             (double)mc->rope_theta, (double)mc->norm_eps, mc->tied_embeddings, mc->qkv_bias, mc->qk_norm);
    hash_add(&h, "env %s %d %d", config_enum_name("env.name", c->env.name), c->env.train_tasks, c->env.max_turns);
    hash_add(&h, "seed %lld context %d select %d %d %d", c->run.seed, c->rollout.max_context, c->experience.select_min,
             c->experience.select_max, c->experience.select_triggers);
    hash_add(&h, "copy %d vocab %d", c->bootstrap.copy_steps, c->bootstrap.vocab_size);
    if (c->bootstrap.vocab_size > 0) { // the byte caches stay valid
        hash_add(&h, "copy rows sized to the examples");
        hash_add(&h, "bpe: the merges with a space ranked last");
    }
    hash_add(&h, "bootstrap %d %d %d %d %.17g %d %.17g %.17g %.17g %d %d", c->bootstrap.episodes,
             c->bootstrap.worlds, c->bootstrap.window_epochs, c->bootstrap.epochs, c->bootstrap.lr, c->bootstrap.batch_tokens, c->bootstrap.expert_rate,
             c->bootstrap.share_global, c->bootstrap.share_stepwise, c->bootstrap.max_pool, c->bootstrap.mine_batches);
    if (c->bootstrap.contrast) hash_add(&h, "contrast"); // only when set: the caches of the default stay valid
    if (c->env.trap_rate != ENV_TRAP_RATE_DEFAULT) hash_add(&h, "trap rate %.17g", c->env.trap_rate); // likewise
    if (c->experience.mine_choices) hash_add(&h, "choices, shown where followed"); // the bank's items, the demos
    hash_add(&h, "device %s dtype %s", config_enum_name("model.device", c->model.device),
             config_enum_name("model.dtype", c->model.dtype));
    hash_add(&h, "system %s", system);
    hash_add(&h, "inject %s|%s|%.17g", INJECT_GLOBAL_HEADING, INJECT_STEP_HEADING, INJECT_CUT_DEFAULT);
    snprintf(out, BOOTSTRAP_HASH_HEX + 1, "%016llx", (unsigned long long)h);
}

int bootstrap_hash(const Config* c, char out[BOOTSTRAP_HASH_HEX + 1], char* err, size_t errlen) {
    Session s;
    if (session_open(&s, c, 1, NULL, 0, err, errlen) != 0) return -1;
    hash_of(c, &s.mc, s.system, out);
    session_free(&s);
    return 0;
}

static void cache_path(const Config* c, const char* hash, char* out, size_t n) {
    int w = snprintf(out, n, "%s/%s-%s-%s", c->bootstrap.cache_dir, c->model.name,
                     config_enum_name("env.name", c->env.name), hash);
    if (w < 0 || (size_t)w >= n) fatal("bootstrap.cache_dir '%s' is too long for a path", c->bootstrap.cache_dir);
}

int bootstrap_dir(const Config* c, char* dir, size_t dirlen, char* err, size_t errlen) {
    char hash[BOOTSTRAP_HASH_HEX + 1];
    if (bootstrap_hash(c, hash, err, errlen) != 0) return -1;
    cache_path(c, hash, dir, dirlen);
    return 0;
}

static int is_complete(const char* dir) {
    char path[BOOT_PATH + 32];
    snprintf(path, sizeof(path), "%s/config.json", dir);
    struct stat st;
    return stat(path, &st) == 0;
}

Tokenizer* bootstrap_tokenizer(const Config* c, const char* dir, int* vocab_size, char* err, size_t errlen) {
    if (c->bootstrap.vocab_size == 0) return tokenizer_byte();
    char path[BOOT_PATH + 32];
    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    Tokenizer* tok = tokenizer_load_hf(path, err, errlen);
    if (tok && tokenizer_vocab_size(tok) > c->bootstrap.vocab_size) {
        fail(err, errlen, "bootstrap: %s has %d ids, more than bootstrap.vocab_size (%d)", path,
             tokenizer_vocab_size(tok), c->bootstrap.vocab_size);
        tokenizer_free(tok);
        return NULL;
    }
    *vocab_size = c->bootstrap.vocab_size;
    return tok;
}

int bootstrap_load(Model* m, const char* dir, char* err, size_t errlen) {
    ModelConfig hc;
    if (hf_load_config(dir, &hc, err, errlen) != 0) return -1;
    const ModelConfig* mc = model_config(m);
    if (hc.vocab_size != mc->vocab_size || hc.dim != mc->dim || hc.n_layers != mc->n_layers ||
        hc.n_heads != mc->n_heads || hc.n_kv_heads != mc->n_kv_heads || hc.head_dim != mc->head_dim ||
        hc.hidden_dim != mc->hidden_dim || hc.tied_embeddings != mc->tied_embeddings)
        return fail(err, errlen,
                    "%s/config.json: the bootstrapped model (vocab %d, hidden %d, %d layers) does not match the "
                    "configured one (vocab %d, hidden %d, %d layers)",
                    dir, hc.vocab_size, hc.dim, hc.n_layers, mc->vocab_size, mc->dim, mc->n_layers);
    size_t n = model_num_params(m);
    float* host = mallocCheck(sizeof(float) * n);
    int rc = hf_load_weights(dir, mc, host, n, err, errlen);
    if (rc == 0) model_params_upload(m, host);
    free(host);
    return rc;
}

// mkdir -p, with the error returned
static int make_dirs(const char* path, char* err, size_t errlen) {
    char buf[BOOT_PATH];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char* p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return fail(err, errlen, "bootstrap: cannot create directory %s: %s", buf, strerror(errno));
        *p = c;
        if (c == '\0') return 0;
    }
}

// removes a directory with the files hf_save and this module write (no subdirectories)
static void remove_dir(const char* dir) {
    static const char* const files[] = {"model.safetensors", "config.json", "bootstrap.json", "tokenizer.json", NULL};
    char path[BOOT_PATH + 32];
    for (int i = 0; files[i]; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

// bootstrap.json: what the weights came from, for people and for `ingrain bootstrap`
static int write_meta(const char* dir, const char* hash, const Config* c, const DemoSet* set, const Bank* bank,
                      const TrainReport* r, double t_total, char* err, size_t errlen) {
    char path[BOOT_PATH + 32];
    snprintf(path, sizeof(path), "%s/bootstrap.json", dir);
    FILE* f = fopen(path, "w");
    if (!f) return fail(err, errlen, "bootstrap: cannot write %s: %s", path, strerror(errno));
    int counts[DEMO_MODES] = {0}, followed = 0;
    long tokens = 0;
    for (int i = 0; i < set->n; i++) {
        counts[set->d[i].mode]++;
        followed += set->d[i].n_followed;
        tokens += set->d[i].n;
    }
    fprintf(f, "{\"format\": %d, \"hash\": \"%s\", \"model\": \"%s\", \"env\": \"%s\", \"seed\": %lld,\n", BOOTSTRAP_FORMAT,
            hash, c->model.name, config_enum_name("env.name", c->env.name), c->run.seed);
    fprintf(f, " \"sequences\": {\"student\": %d, \"global\": %d, \"stepwise\": %d, \"tokens\": %ld, \"followed_turns\": %d},\n",
            counts[DEMO_STUDENT], counts[DEMO_GLOBAL], counts[DEMO_STEPWISE], tokens, followed);
    fprintf(f, " \"bank\": [");
    for (int i = 0; i < bank->n; i++) {
        fprintf(f, "%s\n   {\"rules\": %u, \"source\": %d, \"text\": \"", i ? "," : "", bank->items[i].rules,
                bank->items[i].source);
        for (const char* p = bank->items[i].text; *p; p++) {
            if (*p == '"' || *p == '\\') fputc('\\', f);
            fputc(*p, f);
        }
        fputs("\"}", f);
    }
    fprintf(f, "],\n \"train\": {\"steps\": %ld, \"tokens\": %ld, \"target_tokens\": %ld, \"seconds\": %.1f, "
               "\"first_loss\": %.4f, \"last_loss\": %.4f},\n \"seconds\": %.1f}\n",
            r->steps, r->tokens, r->target_tokens, r->seconds, r->first_loss, r->last_loss, t_total);
    if (fclose(f) != 0) return fail(err, errlen, "bootstrap: cannot write %s: %s", path, strerror(errno));
    return 0;
}

// appends a demonstration whose arrays stay owned by another set
static void set_add_shared(DemoSet* set, const Demo* d) {
    if (set->n == set->cap) {
        set->cap = set->cap ? 2 * set->cap : 256;
        set->d = reallocCheck(set->d, sizeof(Demo) * (size_t)set->cap);
    }
    set->d[set->n++] = *d;
}

// builds the weights into s->m and saves them to dir (through a temporary directory, renamed)
static int build(Session* s, const Config* c, const char* hash, const char* dir, char* err, size_t errlen) {
    const double t0 = timer_now();
    const char* env_name = config_enum_name("env.name", c->env.name);
    if (c->bootstrap.share_global + c->bootstrap.share_stepwise > 1.0)
        return fail(err, errlen, "bootstrap: bootstrap.share_global (%g) + bootstrap.share_stepwise (%g) exceed 1",
                    c->bootstrap.share_global, c->bootstrap.share_stepwise);
    Bank bank;
    if (bank_build_config(&bank, c, err, errlen) != 0) return -1;
    int n_rel = 0;
    for (int i = 0; i < bank.n; i++) n_rel += bank.items[i].rules != 0;
    log_info("bootstrap: %d principle texts (%d convey rules of %s, %d distractors)", bank.n, n_rel, env_name,
             bank.n - n_rel);
    DemoSet set, win;
    DemoParams dp = demo_params_from_config(c);
    dp.max_context = s->max_seq;
    char tmp[BOOT_PATH];
    snprintf(tmp, sizeof(tmp), "%s.tmp%ld", dir, (long)getpid());
    if (make_dirs(tmp, err, errlen) != 0) return bank_free(&bank), -1;
    if (c->bootstrap.vocab_size > 0) { // the tokenizer first, from the byte-level text of the demonstrations
        char tok_path[BOOT_PATH + 32];
        snprintf(tok_path, sizeof(tok_path), "%s/tokenizer.json", tmp);
        const int max_batch = s->max_batch;
        int rc = demos_build(&set, NULL, env_name, &bank, s->agent, &dp, err, errlen);
        if (rc == 0) {
            rc = bpe_train(&set, c->bootstrap.vocab_size, tok_path, err, errlen);
            demos_free(&set);
        }
        if (rc == 0) {
            session_free(s);
            rc = session_open(s, c, max_batch, tmp, 1, err, errlen);
        }
        if (rc != 0) return bank_free(&bank), remove_dir(tmp), -1;
        log_info("bootstrap: learned a tokenizer of %d ids (%.1f s)", tokenizer_vocab_size(s->tok), timer_now() - t0);
    }
    if (demos_build(&set, &win, env_name, &bank, s->agent, &dp, err, errlen) != 0) {
        bank_free(&bank);
        remove_dir(tmp);
        return -1;
    }
    long tokens = 0;
    int cut = 0;
    for (int i = 0; i < set.n; i++) {
        tokens += set.d[i].n;
        cut += set.d[i].n == dp.max_context;
    }
    log_info("bootstrap: %d demonstration sequences from %d episodes, %ld tokens (%.1f s)", set.n, dp.episodes, tokens,
             timer_now() - t0);
    if (set.n == 0) {
        demos_free(&set);
        bank_free(&bank);
        remove_dir(tmp);
        return fail(err, errlen,
                    "bootstrap: no demonstration of %s has an assistant turn within rollout.max_context (%d tokens); "
                    "raise rollout.max_context (and model.max_seq_len) to 2048",
                    env_name, dp.max_context);
    }
    if (5 * cut > set.n)
        log_warn("bootstrap: %d of %d demonstrations are cut at rollout.max_context (%d tokens): episodes of %s need "
                 "more, and the agent will cut them off too; set rollout.max_context and model.max_seq_len to 2048",
                 cut, set.n, dp.max_context, env_name);
    TrainParams tp = bootstrap_train_params(c);
    tp.max_batch = s->max_batch;
    tp.max_seq = s->max_seq;
    TrainReport tr;
    bootstrap_copy_warmup(s->m, s->tok, c->bootstrap.copy_steps, c->bootstrap.lr, (uint64_t)c->run.seed, &tr);
    if (tr.steps > 0)
        log_info("bootstrap: copy warm-up: %ld steps in %.1f s (%.0f tokens/s); loss %.3f -> %.3f", tr.steps,
                 tr.seconds, (double)tr.tokens / tr.seconds, tr.first_loss, tr.last_loss);
    // windows: without experience first (copying in clean contexts), then all of them, the
    // step-wise ones with their items
    DemoSet plain = {0};
    for (int i = 0; i < win.n; i++)
        if (!win.d[i].has_exp) set_add_shared(&plain, &win.d[i]);
    for (int e = 0; e < c->bootstrap.window_epochs; e++) {
        const int last = 2 * e >= c->bootstrap.window_epochs; // the second half of the passes
        const DemoSet* ws = last ? &win : &plain;
        TrainParams wp = tp;
        char phase[64];
        snprintf(phase, sizeof phase, "windows pass %d of %d", e + 1, c->bootstrap.window_epochs);
        wp.epochs = 1;
        wp.seed = tp.seed + (uint64_t)e;
        wp.phase = phase;
        bootstrap_train(s->m, ws, &wp, &tr);
        log_info("bootstrap: windows pass %d (%d %s): %ld steps on %ld tokens in %.1f s (%.0f tokens/s); loss %.3f -> "
                 "%.3f", e + 1, ws->n, last ? "with experience" : "without experience", tr.steps, tr.tokens,
                 tr.seconds, (double)tr.tokens / tr.seconds, tr.first_loss, tr.last_loss);
    }
    free(plain.d); // shares the sequences of win
    demos_free(&win);
    bootstrap_train(s->m, &set, &tp, &tr);
    log_info("bootstrap: trained %ld steps on %ld tokens in %.1f s (%.0f tokens/s); loss %.3f -> %.3f", tr.steps,
             tr.tokens, tr.seconds, (double)tr.tokens / tr.seconds, tr.first_loss, tr.last_loss);

    size_t n = model_num_params(s->m);
    float* host = mallocCheck(sizeof(float) * n);
    model_params_download(s->m, host);
    int rc = write_meta(tmp, hash, c, &set, &bank, &tr, timer_now() - t0, err, errlen);
    if (rc == 0) rc = hf_save(tmp, &s->mc, host, n, ST_F32, NULL, err, errlen);
    free(host);
    if (rc == 0 && rename(tmp, dir) != 0) {
        if (is_complete(dir)) { // another process finished the same build first
            remove_dir(tmp);
        } else {
            rc = fail(err, errlen, "bootstrap: cannot rename %s to %s: %s", tmp, dir, strerror(errno));
        }
    }
    if (rc != 0) remove_dir(tmp);
    demos_free(&set);
    bank_free(&bank);
    return rc;
}

// ----------------------------------------------------------------------------
// the driver's entry

static int ensure(const Config* c, int force, char* dir, size_t dirlen, char* err, size_t errlen) {
    dir[0] = '\0';
    if (c->model.path[0]) return 0; // a real model: nothing to bootstrap
    Session s;
    if (session_open(&s, c, c->bootstrap.batch_tokens / 256 > 1 ? c->bootstrap.batch_tokens / 256 : 1, NULL, 1, err,
                     errlen) != 0)
        return -1;
    char hash[BOOTSTRAP_HASH_HEX + 1];
    hash_of(c, &s.mc, s.system, hash);
    cache_path(c, hash, dir, dirlen);
    int rc = 0;
    if (is_complete(dir) && !force) {
        log_info("bootstrap: using the cached base model %s", dir);
    } else {
        if (force && is_complete(dir)) remove_dir(dir);
        log_info("bootstrap: no cached base model for this config (hash %s); training one (%s, %s, %d episodes, %d "
                 "epochs)", hash, c->model.name, config_enum_name("env.name", c->env.name), c->bootstrap.episodes,
                 c->bootstrap.epochs);
        char be[256];
        backend_describe(s.be, c->model.dtype == DTYPE_BF16, 0, be, sizeof(be));
        log_info("bootstrap: backend %s", be);
        rc = make_dirs(c->bootstrap.cache_dir, err, errlen);
        if (rc == 0) rc = build(&s, c, hash, dir, err, errlen);
        if (rc == 0) log_info("bootstrap: saved %s", dir);
    }
    session_free(&s);
    if (rc != 0) dir[0] = '\0';
    return rc;
}

int bootstrap_ensure(const Config* c, char* dir, size_t dirlen, char* err, size_t errlen) {
    return ensure(c, 0, dir, dirlen, err, errlen);
}

// ----------------------------------------------------------------------------
// `ingrain bootstrap`

static const char* usage_bootstrap =
    "usage: ingrain bootstrap CONFIG [--set KEY=VALUE]... [--force] [--eval N] [--where]\n"
    "\n"
    "Trains the built-in model of CONFIG (model.name) on scripted demonstrations of its environment\n"
    "(docs/BOOTSTRAP.md) and caches it under bootstrap.cache_dir; a cached model is reused. `ingrain run`\n"
    "does the same when no bootstrapped model is cached.\n"
    "\n"
    "  --set KEY=VALUE  override a config key (repeatable)\n"
    "  --force          train again even when a cached model exists\n"
    "  --eval N         then evaluate on N held-out tasks: success without experience, with the rule\n"
    "                   texts, and with a pool mined from the model's own rollouts; and teacher-forced\n"
    "                   accuracy on demonstration windows (own and from unseen worlds)\n"
    "  --where          print the cache directory of CONFIG's base model (where it is or would be\n"
    "                   saved) and exit, training nothing: to copy a base model between machines\n"
    "  -h, --help       this text\n";

int cli_bootstrap(int argc, char** argv) {
    const char* path = NULL;
    int force = 0, eval_tasks = 0, where = 0;
    Config c;
    config_defaults(&c);
    ConfigError cerr;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return fputs(usage_bootstrap, stdout), 0;
        if (strcmp(argv[i], "--set") == 0 || strcmp(argv[i], "--eval") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ingrain: %s needs a value\n\n%s", argv[i], usage_bootstrap);
                return INGRAIN_EXIT_USAGE;
            }
            i++;
        } else if (strcmp(argv[i], "--force") == 0) {
            force = 1;
        } else if (strcmp(argv[i], "--where") == 0) {
            where = 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "ingrain: unknown option '%s'\n\n%s", argv[i], usage_bootstrap);
            return INGRAIN_EXIT_USAGE;
        } else if (path) {
            fprintf(stderr, "ingrain: more than one config file given ('%s')\n\n%s", argv[i], usage_bootstrap);
            return INGRAIN_EXIT_USAGE;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        fprintf(stderr, "ingrain: missing CONFIG (for example configs/quickstart.yaml)\n\n%s", usage_bootstrap);
        return INGRAIN_EXIT_USAGE;
    }
    if (config_load_file(&c, path, &cerr) != 0) goto bad_config;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && config_set(&c, argv[++i], &cerr) != 0) goto bad_config;
        if (strcmp(argv[i], "--eval") == 0) {
            char* end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > 100000) {
                fprintf(stderr, "ingrain: --eval needs a task count in 0..100000, got '%s'\n", argv[i]);
                return INGRAIN_EXIT_USAGE;
            }
            eval_tasks = (int)v;
        }
    }
    if (config_validate(&c, &cerr) != 0) goto bad_config;
    log_set_level((LogLevel)c.run.log_level);
    if (c.model.path[0]) {
        log_info("bootstrap: model.path is set (%s): a real model needs no bootstrap", c.model.path);
        return INGRAIN_EXIT_OK;
    }

    char dir[BOOT_PATH], err[1024];
    if (where) {
        if (bootstrap_dir(&c, dir, sizeof(dir), err, sizeof(err)) != 0) {
            log_error("%s", err);
            return INGRAIN_EXIT_FAILURE;
        }
        printf("%s\n", dir);
        return INGRAIN_EXIT_OK;
    }
    const double t0 = timer_now();
    if (ensure(&c, force, dir, sizeof(dir), err, sizeof(err)) != 0) {
        log_error("%s", err);
        return INGRAIN_EXIT_FAILURE;
    }
    printf("bootstrap: base model %s ready in %.1f s\n", dir, timer_now() - t0);
    if (eval_tasks == 0) return INGRAIN_EXIT_OK;

    Session s;
    if (session_open(&s, &c, 1, dir, 1, err, sizeof(err)) != 0 ||
        bootstrap_load(s.m, dir, err, sizeof(err)) != 0) {
        log_error("%s", err);
        return INGRAIN_EXIT_FAILURE;
    }
    BootstrapEval ev;
    int rc = bootstrap_evaluate(s.m, s.tok, &c, eval_tasks, &ev, err, sizeof(err));
    session_free(&s);
    if (rc != 0) {
        log_error("%s", err);
        return INGRAIN_EXIT_FAILURE;
    }
    bootstrap_eval_print(&ev, stdout);
    return INGRAIN_EXIT_OK;

bad_config:
    log_error("invalid configuration\n  %s", cerr.msg);
    return INGRAIN_EXIT_USAGE;
}
