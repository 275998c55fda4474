// `ingrain inspect FILE [--json]` and `ingrain export CKPT --hf DIR` (see inspect.h). inspect
// reads a checkpoint independently (no MPI) and falls back to a plain HDF5 listing for other files.
#include "mpi/inspect.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/check.h"
#include "common/log.h"
#include "distill/bootstrap.h"
#include "distill/pool.h"
#include "io/ckpt.h"
#include "io/config.h"
#include "io/h5inspect.h"
#include "model/hf.h"
#include "model/model.h"
#include "model/tokenizer.h"

// ----------------------------------------------------------------------------
// reading the pieces

static long long attr_i64(CkptFile* f, const char* obj, const char* name) {
    long long v = -1;
    char err[256];
    ckpt_get_attr_i64(f, obj, name, &v, err, sizeof(err));
    return v;
}

static double attr_f64(CkptFile* f, const char* obj, const char* name) {
    double v = 0;
    char err[256];
    ckpt_get_attr_f64(f, obj, name, &v, err, sizeof(err));
    return v;
}

static char* text(CkptFile* f, const char* path) {
    char* t = NULL;
    char err[1024];
    if (ckpt_get_text(f, path, &t, err, sizeof(err)) != 0) {
        log_warn("%s", err);
        return strdupCheck("");
    }
    return t;
}

// the base and iteration records of the metrics log, as a JSON array
static json_t* iteration_records(const char* metrics) {
    json_t* rows = json_array();
    const char* line = metrics;
    while (line && *line) {
        const char* end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        json_t* o = json_loadb(line, n, 0, NULL);
        const char* type = o && json_is_object(o) ? json_string_value(json_object_get(o, "type")) : NULL;
        if (type && (strcmp(type, "iteration") == 0 || strcmp(type, "base") == 0)) json_array_append(rows, o);
        json_decref(o);
        line = end ? end + 1 : NULL;
    }
    return rows;
}

static double num(const json_t* o, const char* key) { return json_number_value(json_object_get(o, key)); }

void inspect_metrics_table(const char* metrics, FILE* out) {
    json_t* rows = iteration_records(metrics);
    fprintf(out, "metrics (held-out success without / with experience):\n");
    fprintf(out, "  %4s  %8s  %8s  %9s  %6s  %9s  %5s  %10s\n", "iter", "student", "teacher", "won/lost", "turns",
            "premature", "pool", "train_loss");
    for (size_t i = 0; i < json_array_size(rows); i++) {
        const json_t* r = json_array_get(rows, i);
        char label[24], loss[24], won_lost[48] = "-";
        const int base = strcmp(json_string_value(json_object_get(r, "type")), "base") == 0;
        // "-": no training (the base row, or an iteration with nothing to distil)
        if (base) snprintf(label, sizeof label, "base");
        else snprintf(label, sizeof label, "%lld", (long long)json_integer_value(json_object_get(r, "iteration")));
        if (base || json_integer_value(json_object_get(r, "train_steps")) == 0) snprintf(loss, sizeof loss, "-");
        else snprintf(loss, sizeof loss, "%.4f", num(r, "train_loss"));
        // the held-out tasks only the teacher solved / only the student solved (older runs: "-")
        const json_t *won = json_object_get(r, "teacher_won"), *lost = json_object_get(r, "teacher_lost");
        if (won && lost)
            snprintf(won_lost, sizeof won_lost, "%lld/%lld", (long long)json_integer_value(won),
                     (long long)json_integer_value(lost));
        fprintf(out, "  %4s  %8.3f  %8.3f  %9s  %6.2f  %9.2f  %5lld  %10s\n", label, num(r, "student_success"),
                num(r, "teacher_success"), won_lost, num(r, "mean_turns"), num(r, "premature_rate"),
                (long long)json_integer_value(json_object_get(r, "pool_size")), loss);
    }
    json_decref(rows);
}

// ----------------------------------------------------------------------------
// inspect

static const char* usage_inspect =
    "usage: ingrain inspect FILE [--json] [--items N]\n"
    "\n"
    "For a checkpoint: format version, iteration, config summary, model shape and parameter count,\n"
    "the experience pool with its statistics (the first N items, default 10), and the metrics per\n"
    "iteration; --json prints the same as one JSON object. Other HDF5 files are listed as they are.\n";

int cli_inspect(int argc, char** argv) {
    const char* path = NULL;
    int as_json = 0, items = 10;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) as_json = 1;
        else if (strcmp(argv[i], "--items") == 0 && i + 1 < argc) items = atoi(argv[++i]);
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return fputs(usage_inspect, stdout), 0;
        else if (argv[i][0] == '-' || path) return fprintf(stderr, "ingrain: bad argument '%s'\n\n%s", argv[i], usage_inspect), 2;
        else path = argv[i];
    }
    if (!path) return fprintf(stderr, "ingrain: expected FILE\n\n%s", usage_inspect), INGRAIN_EXIT_USAGE;
    char err[1200];
    CkptFile* f = ckpt_open(path, err, sizeof(err));
    if (!f) {
        // not an ingrain checkpoint (or not readable as one): list it as plain HDF5 when possible
        if (!as_json && h5_inspect(path, stdout, err, sizeof(err)) == 0) return 0;
        log_error("%s", err);
        return INGRAIN_EXIT_USAGE;
    }
    char* config = text(f, "/config");
    char* pool_json = text(f, "/experience/pool");
    char* metrics = text(f, "/metrics");
    Config c;
    ConfigError cerr;
    config_defaults(&c);
    if (config_load_string(&c, config, path, &cerr) != 0) log_warn("the checkpoint's config: %s", cerr.msg);
    Pool* pool = pool_json[0] ? pool_from_json(pool_json, strlen(pool_json), pool_default_params(), err, sizeof(err)) : NULL;
    if (pool_json[0] && !pool) log_warn("the checkpoint's pool: %s", err);
    static const char* const dims[] = {"vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "hidden_dim"};

    if (as_json) {
        json_t* o = json_object();
        json_object_set_new(o, "file", json_string(path));
        json_object_set_new(o, "format_version", json_integer(attr_i64(f, "/", "format_version")));
        json_object_set_new(o, "iteration", json_integer(ckpt_iteration(f)));
        json_object_set_new(o, "granularity", json_string(config_enum_name("experience.granularity", c.experience.granularity)));
        json_object_set_new(o, "injection", json_string(config_enum_name("experience.injection", c.experience.injection)));
        json_object_set_new(o, "regime", json_string(config_enum_name("distill.regime", c.distill.regime)));
        json_object_set_new(o, "seed", json_integer(c.run.seed));
        json_t* m = json_object();
        for (size_t i = 0; i < sizeof(dims) / sizeof(dims[0]); i++) json_object_set_new(m, dims[i], json_integer(attr_i64(f, "/model", dims[i])));
        json_object_set_new(m, "n_params", json_integer(attr_i64(f, "/model", "n_params")));
        json_object_set_new(o, "model", m);
        json_object_set_new(o, "optimizer_steps", json_integer(attr_i64(f, "/optim", "steps")));
        json_object_set_new(o, "pool_size", json_integer(pool ? pool_size(pool) : 0));
        json_t* pool_doc = pool_json[0] ? json_loads(pool_json, 0, NULL) : json_null();
        json_object_set_new(o, "pool", pool_doc ? pool_doc : json_null());
        json_object_set_new(o, "metrics", iteration_records(metrics));
        char* s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(s);
        free(s);
        json_decref(o);
    } else {
        printf("%s: ingrain checkpoint, format version %lld, after iteration %d of %d\n", path,
               attr_i64(f, "/", "format_version"), ckpt_iteration(f), c.run.iterations);
        printf("run       %s, seed %lld, %s / %s / %s, env %s\n", c.run.name, c.run.seed,
               config_enum_name("experience.granularity", c.experience.granularity),
               config_enum_name("experience.injection", c.experience.injection),
               config_enum_name("distill.regime", c.distill.regime), config_enum_name("env.name", c.env.name));
        printf("world     %lld ranks (%s)\n", attr_i64(f, "/world", "world_size"),
               attr_i64(f, "/world", "colocated") ? "colocated" : "rank groups");
        printf("model     %s%s: %lld layers, dim %lld, %lld heads (%lld kv), head_dim %lld, mlp %lld, vocab %lld, "
               "rope_theta %g: %lld parameters\n",
               c.model.path[0] ? c.model.path : c.model.name, c.model.path[0] ? "" : " (built-in)",
               attr_i64(f, "/model", "n_layers"), attr_i64(f, "/model", "dim"), attr_i64(f, "/model", "n_heads"),
               attr_i64(f, "/model", "n_kv_heads"), attr_i64(f, "/model", "head_dim"),
               attr_i64(f, "/model", "hidden_dim"), attr_i64(f, "/model", "vocab_size"),
               attr_f64(f, "/model", "rope_theta"), attr_i64(f, "/model", "n_params"));
        printf("optimizer AdamW, %lld steps, moments sharded over trainers\n", attr_i64(f, "/optim", "steps"));
        printf("\nexperience pool: %d items\n", pool ? pool_size(pool) : 0);
        if (pool) {
            int shown = 0;
            for (int i = 0; i < pool->n_items && shown < items; i++, shown++) {
                const PoolItem* it = &pool->items[i];
                printf("  #%-4d utility %+.2f  %s: %s\n", it->id, pool_utility(pool, it), it->name, it->text);
            }
            if (pool->n_items > shown) printf("  ... %d more (--items N, or --json)\n", pool->n_items - shown);
        }
        printf("\n");
        inspect_metrics_table(metrics, stdout);
    }
    pool_free(pool);
    free(config);
    free(pool_json);
    free(metrics);
    ckpt_close(f);
    return 0;
}

// ----------------------------------------------------------------------------
// export

static const char* usage_export =
    "usage: ingrain export CKPT --hf DIR [--bf16]\n"
    "\n"
    "Writes the checkpoint's student weights as a Hugging Face model directory: config.json and\n"
    "model.safetensors (f32, or bf16 with --bf16); for a model loaded from an HF directory its tokenizer\n"
    "files are copied, and for a built-in model bootstrapped with a learned tokenizer (bootstrap.vocab_size)\n"
    "that tokenizer, from the bootstrap cache (bootstrap.cache_dir, relative to where the run started).\n"
    "`ingrain generate --model DIR` and HF transformers load the result.\n";

int cli_export(int argc, char** argv) {
    const char *ckpt = NULL, *out = NULL;
    StDtype dtype = ST_F32;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--hf") == 0 && i + 1 < argc) out = argv[++i];
        else if (strcmp(argv[i], "--bf16") == 0) dtype = ST_BF16;
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return fputs(usage_export, stdout), 0;
        else if (argv[i][0] == '-' || ckpt) return fprintf(stderr, "ingrain: bad argument '%s'\n\n%s", argv[i], usage_export), 2;
        else ckpt = argv[i];
    }
    if (!ckpt || !out) return fprintf(stderr, "ingrain: expected CKPT and --hf DIR\n\n%s", usage_export), INGRAIN_EXIT_USAGE;
    char err[1200];
    CkptFile* f = ckpt_open(ckpt, err, sizeof(err));
    if (!f) return log_error("%s", err), INGRAIN_EXIT_USAGE;
    char* config = text(f, "/config");
    Config c;
    ConfigError cerr;
    config_defaults(&c);
    int rc = INGRAIN_EXIT_OK;
    ModelConfig mc;
    if (config_load_string(&c, config, ckpt, &cerr) != 0) {
        log_error("%s: /config: %s", ckpt, cerr.msg);
        rc = INGRAIN_EXIT_USAGE;
    } else if (c.model.path[0] ? hf_load_config(c.model.path, &mc, err, sizeof(err)) != 0
                               : model_builtin_config(c.model.name, &mc) != 0) {
        log_error("%s: the model of the checkpoint's config cannot be rebuilt: %s", ckpt,
                  c.model.path[0] ? err : "unknown built-in model.name");
        rc = INGRAIN_EXIT_USAGE;
    }
    // a built-in model bootstrapped with a learned tokenizer: its vocabulary and tokenizer.json
    char tok_dir[CONFIG_PATH + 64] = "";
    if (rc == 0 && !c.model.path[0] && c.bootstrap.vocab_size > 0) {
        mc.vocab_size = (int)attr_i64(f, "/model", "vocab_size");
        char path[sizeof(tok_dir) + 16];
        if (bootstrap_dir(&c, tok_dir, sizeof(tok_dir), err, sizeof(err)) != 0) {
            log_error("%s: %s", ckpt, err);
            rc = INGRAIN_EXIT_USAGE;
        } else if (snprintf(path, sizeof(path), "%s/tokenizer.json", tok_dir) > 0 && access(path, R_OK) != 0) {
            log_error("%s: the model uses the tokenizer its bootstrap learned (bootstrap.vocab_size %d), expected at "
                      "%s: run export from the directory the run started in, or `ingrain bootstrap` its config first",
                      ckpt, c.bootstrap.vocab_size, path);
            rc = INGRAIN_EXIT_USAGE;
        }
    }
    if (rc == 0) {
        ParamInfo table[PARAM_COUNT];
        size_t n = model_param_table(&mc, table);
        float* params = mallocCheck(sizeof(float) * n);
        for (int i = 0; i < PARAM_COUNT && rc == 0; i++) {
            if (!table[i].numel) continue;
            char name[96];
            snprintf(name, sizeof(name), "/model/%s", table[i].name);
            if (ckpt_get_array(f, name, CKPT_F32, table[i].numel, params + table[i].offset, err, sizeof(err)) != 0) {
                log_error("%s", err);
                rc = INGRAIN_EXIT_USAGE;
            }
        }
        const char* src = c.model.path[0] ? c.model.path : tok_dir[0] ? tok_dir : NULL;
        if (rc == 0 && hf_save(out, &mc, params, n, dtype, src, err, sizeof(err)) != 0) {
            log_error("%s", err);
            rc = INGRAIN_EXIT_FAILURE;
        }
        if (rc == 0) printf("exported %zu parameters of %s (iteration %d) to %s\n", n, ckpt, ckpt_iteration(f), out);
        free(params);
    }
    free(config);
    ckpt_close(f);
    return rc;
}
