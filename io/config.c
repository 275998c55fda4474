// YAML config loading (libyaml document API, for line numbers), `--set` overrides,
// cross-key validation, and writing the effective config back as YAML.
#include "io/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "common/check.h"
#include "common/log.h"
#include "common/strbuf.h"

// libyaml calls return 1 on success, 0 on failure
#define yamlCheck(call, emitter) yaml_check((call), (emitter), #call, __FILE__, __LINE__)

static int yaml_check(int ok, yaml_emitter_t* e, const char* call, const char* file, int line) {
    if (!ok) {
        log_error("libyaml call failed: %s: %s (at %s:%d)\n  hint: the config holds a value libyaml cannot write",
                  call, e && e->problem ? e->problem : "unknown problem", file, line);
    }
    return ok;
}

int config_error(ConfigError* err, const char* fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return -1;
}

// ----------------------------------------------------------------------------
// parsing one scalar into a key's field

static const char* type_expectation(const ConfigKey* k, char* buf, size_t n) {
    switch (k->type) {
    case CFG_INT:
    case CFG_INT64: return "an integer";
    case CFG_FLOAT: return "a number";
    case CFG_BOOL: return "true or false";
    case CFG_STRING: return "a string";
    case CFG_ENUM: {
        size_t used = (size_t)snprintf(buf, n, "one of:");
        for (int i = 0; k->choices[i] && used < n; i++) {
            used += (size_t)snprintf(buf + used, n - used, "%s %s", i ? "," : "", k->choices[i]);
        }
        return buf;
    }
    }
    return "?";
}

static int parse_bool(const char* s, int* out) {
    static const char* const yes[] = {"true", "yes", "on"};
    static const char* const no[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = 1, 0;
        if (strcasecmp(s, no[i]) == 0) return *out = 0, 0;
    }
    return -1;
}

// Parse text into c's field for key k. On failure fills reason (without location).
static int parse_value(Config* c, const ConfigKey* k, const char* text, char* reason, size_t n) {
    char* field = (char*)c + k->offset;
    char expect[256];
    if (k->type != CFG_STRING && text[0] == '\0') {
        snprintf(reason, n, "missing value, expected %s", type_expectation(k, expect, sizeof(expect)));
        return -1;
    }
    switch (k->type) {
    case CFG_INT:
    case CFG_INT64: {
        errno = 0;
        char* end = NULL;
        long long v = strtoll(text, &end, 10);
        if (errno || end == text || *end != '\0') {
            snprintf(reason, n, "expected an integer, got '%s'", text);
            return -1;
        }
        if ((double)v < k->min || (double)v > k->max) {
            snprintf(reason, n, "%lld is out of range [%.15g, %.15g]", v, k->min, k->max);
            return -1;
        }
        if (k->type == CFG_INT) *(int*)field = (int)v;
        else *(long long*)field = v;
        return 0;
    }
    case CFG_FLOAT: {
        errno = 0;
        char* end = NULL;
        double v = strtod(text, &end);
        if (errno == ERANGE || end == text || *end != '\0' || !isfinite(v)) {
            snprintf(reason, n, "expected a finite number, got '%s'", text);
            return -1;
        }
        if (v < k->min || v > k->max) {
            snprintf(reason, n, "%g is out of range [%g, %g]", v, k->min, k->max);
            return -1;
        }
        *(double*)field = v;
        return 0;
    }
    case CFG_BOOL: {
        int v;
        if (parse_bool(text, &v) != 0) {
            snprintf(reason, n, "expected true or false, got '%s'", text);
            return -1;
        }
        *(int*)field = v;
        return 0;
    }
    case CFG_STRING: {
        size_t len = strlen(text);
        if (len >= k->size) {
            snprintf(reason, n, "value is %zu characters long, at most %zu allowed", len, k->size - 1);
            return -1;
        }
        memset(field, 0, k->size); // no stale bytes after the terminator (configs are compared and stored)
        memcpy(field, text, len);
        return 0;
    }
    case CFG_ENUM: {
        for (int i = 0; k->choices[i]; i++) {
            if (strcmp(text, k->choices[i]) == 0) {
                *(int*)field = i;
                return 0;
            }
        }
        snprintf(reason, n, "expected %s; got '%s'", type_expectation(k, expect, sizeof(expect)), text);
        return -1;
    }
    }
    snprintf(reason, n, "internal error: unknown type");
    return -1;
}

// ----------------------------------------------------------------------------
// suggestions for misspelled keys (Levenshtein distance)

static int edit_distance(const char* a, const char* b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(int) * (lb + 1));
    }
    return prev[lb];
}

static void unknown_key_hint(const char* key, char* buf, size_t n) {
    int best = 99;
    const char* best_key = NULL;
    for (int i = 0; i < config_nkeys; i++) {
        int d = edit_distance(key, config_keys[i].key);
        if (d < best) best = d, best_key = config_keys[i].key;
    }
    if (best_key && best <= 3) snprintf(buf, n, " (did you mean '%s'?)", best_key);
    else snprintf(buf, n, " (see docs/CONFIG.md for every key)");
}

// is `prefix` a section, i.e. some key starts with "prefix."?
static int is_section(const char* prefix) {
    size_t n = strlen(prefix);
    for (int i = 0; i < config_nkeys; i++) {
        if (strncmp(config_keys[i].key, prefix, n) == 0 && config_keys[i].key[n] == '.') return 1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// walking the YAML document

typedef struct {
    Config* c;
    const char* file;
    yaml_document_t* doc;
    ConfigError* err;
    unsigned char seen[CONFIG_MAX_KEYS]; // duplicate detection within one file
} Walk;

static int node_line(const yaml_node_t* node) { return (int)node->start_mark.line + 1; }

static const char* node_kind(const yaml_node_t* node) {
    switch (node->type) {
    case YAML_MAPPING_NODE: return "a mapping";
    case YAML_SEQUENCE_NODE: return "a list";
    default: return "a scalar";
    }
}

static int walk_mapping(Walk* w, yaml_node_t* map, const char* prefix) {
    for (yaml_node_pair_t* p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t* kn = yaml_document_get_node(w->doc, p->key);
        yaml_node_t* vn = yaml_document_get_node(w->doc, p->value);
        if (!kn || !vn) return config_error(w->err, "%s: malformed YAML document", w->file);
        if (kn->type != YAML_SCALAR_NODE) {
            return config_error(w->err, "%s:%d: keys must be plain names, got %s", w->file, node_line(kn),
                                node_kind(kn));
        }
        char path[512];
        const char* name = (const char*)kn->data.scalar.value;
        int written = prefix[0] ? snprintf(path, sizeof(path), "%s.%s", prefix, name)
                                : snprintf(path, sizeof(path), "%s", name);
        if (written < 0 || (size_t)written >= sizeof(path)) {
            return config_error(w->err, "%s:%d: key is too long", w->file, node_line(kn));
        }
        int idx = config_key_index(path);
        if (idx < 0) {
            if (is_section(path)) {
                if (vn->type != YAML_MAPPING_NODE) {
                    return config_error(w->err, "%s:%d: '%s' is a section and must be a mapping of keys, got %s",
                                        w->file, node_line(vn), path, node_kind(vn));
                }
                if (walk_mapping(w, vn, path) != 0) return -1;
                continue;
            }
            char hint[160];
            unknown_key_hint(path, hint, sizeof(hint));
            return config_error(w->err, "%s:%d: unknown key '%s'%s", w->file, node_line(kn), path, hint);
        }
        const ConfigKey* k = &config_keys[idx];
        if (w->seen[idx]) {
            return config_error(w->err, "%s:%d: key '%s' is given twice (first at line %d)", w->file, node_line(kn),
                                path, w->c->source_line[idx]);
        }
        w->seen[idx] = 1;
        if (vn->type != YAML_SCALAR_NODE) {
            char expect[256];
            return config_error(w->err, "%s:%d: %s: expected %s, got %s", w->file, node_line(vn), path,
                                type_expectation(k, expect, sizeof(expect)), node_kind(vn));
        }
        const char* text = (const char*)vn->data.scalar.value;
        // an empty plain scalar (`key:` with nothing after it) is YAML null
        int is_null = vn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                      (text[0] == '\0' || strcmp(text, "~") == 0 || strcmp(text, "null") == 0);
        if (is_null && k->type != CFG_STRING) text = "";
        char reason[512];
        if (parse_value(w->c, k, text, reason, sizeof(reason)) != 0) {
            return config_error(w->err, "%s:%d: %s: %s", w->file, node_line(vn), path, reason);
        }
        w->c->source_line[idx] = node_line(vn);
    }
    return 0;
}

static int load_document(Config* c, yaml_parser_t* parser, const char* label, ConfigError* err) {
    yaml_document_t doc;
    if (!yaml_parser_load(parser, &doc)) {
        int line = (int)parser->problem_mark.line + 1;
        if (parser->context) {
            return config_error(err, "%s:%d: YAML syntax error: %s %s (from line %d)", label, line, parser->problem,
                                parser->context, (int)parser->context_mark.line + 1);
        }
        return config_error(err, "%s:%d: YAML syntax error: %s", label, line,
                            parser->problem ? parser->problem : "unknown problem");
    }
    int rc = 0;
    yaml_node_t* root = yaml_document_get_root_node(&doc);
    if (root && root->type == YAML_MAPPING_NODE) {
        Walk w = {.c = c, .file = label, .doc = &doc, .err = err};
        snprintf(c->source_file, sizeof(c->source_file), "%s", label);
        rc = walk_mapping(&w, root, "");
    } else if (root) {
        rc = config_error(err, "%s:%d: the config must be a mapping of sections (run:, model:, ...), got %s", label,
                          node_line(root), node_kind(root));
    }
    // an empty document is a valid config: all defaults
    yaml_document_delete(&doc);
    return rc;
}

int config_load_string(Config* c, const char* yaml, const char* label, ConfigError* err) {
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return config_error(err, "%s: cannot initialise the YAML parser", label);
    yaml_parser_set_input_string(&parser, (const unsigned char*)yaml, strlen(yaml));
    int rc = load_document(c, &parser, label, err);
    yaml_parser_delete(&parser);
    return rc;
}

int config_load_file(Config* c, const char* path, ConfigError* err) {
    FILE* f = fopen(path, "rb");
    if (!f) return config_error(err, "%s: cannot open config file: %s", path, strerror(errno));
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return config_error(err, "%s: cannot initialise the YAML parser", path);
    }
    yaml_parser_set_input_file(&parser, f);
    int rc = load_document(c, &parser, path, err);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

// ----------------------------------------------------------------------------
// defaults and --set

void config_defaults(Config* c) {
    memset(c, 0, sizeof(*c));
    for (int i = 0; i < config_nkeys; i++) {
        char reason[512];
        if (parse_value(c, &config_keys[i], config_keys[i].def, reason, sizeof(reason)) != 0) {
            fatal("internal error: default of config key '%s' is invalid: %s", config_keys[i].key, reason);
        }
    }
}

int config_set(Config* c, const char* assignment, ConfigError* err) {
    const char* eq = strchr(assignment, '=');
    if (!eq || eq == assignment) {
        return config_error(err, "--set %s: expected KEY=VALUE, for example --set distill.lr=2e-5", assignment);
    }
    char key[256];
    size_t klen = (size_t)(eq - assignment);
    if (klen >= sizeof(key)) return config_error(err, "--set: key is too long");
    memcpy(key, assignment, klen);
    key[klen] = '\0';
    int idx = config_key_index(key);
    if (idx < 0) {
        char hint[160];
        unknown_key_hint(key, hint, sizeof(hint));
        return config_error(err, "--set %s: unknown key '%s'%s", assignment, key, hint);
    }
    char reason[512];
    if (parse_value(c, &config_keys[idx], eq + 1, reason, sizeof(reason)) != 0) {
        return config_error(err, "--set %s: %s: %s", assignment, key, reason);
    }
    c->source_line[idx] = -1;
    return 0;
}

const char* config_origin(const Config* c, const char* key, char* buf, size_t n) {
    int idx = config_key_index(key);
    int line = idx < 0 ? 0 : c->source_line[idx];
    if (line > 0) snprintf(buf, n, "%s:%d", c->source_file, line);
    else if (line < 0) snprintf(buf, n, "--set %s", key);
    else snprintf(buf, n, "%s%s(default of %s)", c->source_file, c->source_file[0] ? ": " : "", key);
    return buf;
}

// ----------------------------------------------------------------------------
// cross-key validation

int config_validate(const Config* c, ConfigError* err) {
    char a[CONFIG_PATH + 64], b[CONFIG_PATH + 64];
    if (c->experience.select_min > c->experience.select_max) {
        return config_error(err, "%s: experience.select_min (%d) is larger than experience.select_max (%d, %s)",
                            config_origin(c, "experience.select_min", a, sizeof(a)), c->experience.select_min,
                            c->experience.select_max, config_origin(c, "experience.select_max", b, sizeof(b)));
    }
    int off = c->distill.regime == REGIME_OFF_POLICY;
    int loss_off = c->distill.loss == LOSS_FORWARD_KL || c->distill.loss == LOSS_SFT;
    if (off != loss_off) {
        return config_error(
            err,
            "%s: distill.loss '%s' does not fit distill.regime '%s' (%s); off_policy takes "
            "forward_kl or sft, on_policy takes reverse_kl, reverse_kl_sampled or jsd",
            config_origin(c, "distill.loss", a, sizeof(a)), config_enum_name("distill.loss", c->distill.loss),
            config_enum_name("distill.regime", c->distill.regime), config_origin(c, "distill.regime", b, sizeof(b)));
    }
    if (c->env.name == ENV_EXTERNAL && c->env.command[0] == '\0') {
        return config_error(err, "%s: env.name is 'external' but env.command is empty; give the command that starts "
                            "the environment process", config_origin(c, "env.name", a, sizeof(a)));
    }
    if (c->env.name != ENV_EXTERNAL && c->env.command[0] != '\0') {
        return config_error(err, "%s: env.command is set but env.name is '%s' (%s); the command is used only with "
                            "env.name: external", config_origin(c, "env.command", a, sizeof(a)),
                            config_enum_name("env.name", c->env.name), config_origin(c, "env.name", b, sizeof(b)));
    }
    if (c->env.name != ENV_WIKISEARCH && c->env.trap_rate != ENV_TRAP_RATE_DEFAULT) {
        return config_error(err,
                            "%s: env.trap_rate is %g but env.name is '%s' (%s); the trap rate applies to wikisearch "
                            "only (leave it at %g)",
                            config_origin(c, "env.trap_rate", a, sizeof(a)), c->env.trap_rate,
                            config_enum_name("env.name", c->env.name), config_origin(c, "env.name", b, sizeof(b)),
                            ENV_TRAP_RATE_DEFAULT);
    }
    if (c->experience.extractor == EXTRACTOR_CONTRASTIVE && c->experience.granularity == GRANULARITY_PRINCIPLE &&
        c->rollout.group_size < 2) {
        return config_error(err, "%s: rollout.group_size is %d, but the contrastive principle extractor compares "
                            "attempts of the same task and needs at least 2",
                            config_origin(c, "rollout.group_size", a, sizeof(a)), c->rollout.group_size);
    }
    if (c->eval.tasks > c->env.heldout_tasks) {
        return config_error(err, "%s: eval.tasks (%d) exceeds the held-out split, env.heldout_tasks (%d, %s)",
                            config_origin(c, "eval.tasks", a, sizeof(a)), c->eval.tasks, c->env.heldout_tasks,
                            config_origin(c, "env.heldout_tasks", b, sizeof(b)));
    }
    if (c->distill.micro_batch_tokens > c->distill.batch_tokens) {
        return config_error(err, "%s: distill.micro_batch_tokens (%d) is larger than distill.batch_tokens (%d, %s)",
                            config_origin(c, "distill.micro_batch_tokens", a, sizeof(a)), c->distill.micro_batch_tokens,
                            c->distill.batch_tokens, config_origin(c, "distill.batch_tokens", b, sizeof(b)));
    }
    if (c->rollout.max_context > c->model.max_seq_len) {
        return config_error(err, "%s: rollout.max_context (%d) is longer than model.max_seq_len (%d, %s)",
                            config_origin(c, "rollout.max_context", a, sizeof(a)), c->rollout.max_context,
                            c->model.max_seq_len, config_origin(c, "model.max_seq_len", b, sizeof(b)));
    }
    if (c->run.dir[0] == '\0') {
        return config_error(err, "%s: run.dir must not be empty", config_origin(c, "run.dir", a, sizeof(a)));
    }
    return 0;
}

int config_check_world(const Config* c, int world_size, ConfigError* err) {
    if (c->ranks.colocate || world_size == 1) return 0;
    char a[CONFIG_PATH + 64];
    long fixed = (long)c->ranks.trainer + c->ranks.aggregator;
    long total = fixed + c->ranks.rollout;
    if (c->ranks.rollout == 0 && fixed >= world_size) {
        return config_error(err, "%s: ranks.trainer (%d) + ranks.aggregator (%d) leave no rollout rank in a job of %d "
                            "MPI ranks; start more ranks, shrink the groups, or set ranks.colocate: true",
                            config_origin(c, "ranks.trainer", a, sizeof(a)), c->ranks.trainer, c->ranks.aggregator,
                            world_size);
    }
    if (c->ranks.rollout > 0 && total != world_size) {
        return config_error(err, "%s: ranks.trainer (%d) + ranks.aggregator (%d) + ranks.rollout (%d) = %ld, but the "
                            "job has %d MPI ranks; make them add up, set ranks.rollout: 0 (the rest), or set "
                            "ranks.colocate: true", config_origin(c, "ranks.rollout", a, sizeof(a)), c->ranks.trainer,
                            c->ranks.aggregator, c->ranks.rollout, total, world_size);
    }
    return 0;
}

// ----------------------------------------------------------------------------
// writing YAML (libyaml emitter, so strings are quoted correctly)

static void format_value(const Config* c, const ConfigKey* k, char* buf, size_t n) {
    const char* field = (const char*)c + k->offset;
    switch (k->type) {
    case CFG_INT: snprintf(buf, n, "%d", *(const int*)field); break;
    case CFG_INT64: snprintf(buf, n, "%lld", *(const long long*)field); break;
    case CFG_FLOAT: snprintf(buf, n, "%.17g", *(const double*)field); break;
    case CFG_BOOL: snprintf(buf, n, "%s", *(const int*)field ? "true" : "false"); break;
    case CFG_STRING: snprintf(buf, n, "%s", field); break;
    case CFG_ENUM: snprintf(buf, n, "%s", k->choices[*(const int*)field]); break;
    }
    // shortest text that reads back to the same double
    if (k->type == CFG_FLOAT) {
        double v = *(const double*)field;
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, n, "%.*g", prec, v);
            if (strtod(buf, NULL) == v) break;
        }
        if (!strpbrk(buf, ".eEn")) strncat(buf, ".0", n - strlen(buf) - 1);
    }
}

static int emit_scalar(yaml_emitter_t* e, const char* text, int quoted) {
    yaml_event_t ev;
    return yamlCheck(yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t*)text, (int)strlen(text), !quoted, 1,
                                                  quoted ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE),
                     e) &&
           yamlCheck(yaml_emitter_emit(e, &ev), e);
}

static int emit_event(yaml_emitter_t* e, yaml_event_t* ev) { return yamlCheck(yaml_emitter_emit(e, ev), e); }

static int emit_config(const Config* c, yaml_emitter_t* e) {
    yaml_event_t ev;
    if (!(yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) && emit_event(e, &ev))) return -1;
    if (!(yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) && emit_event(e, &ev))) return -1;
    if (!(yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) && emit_event(e, &ev)))
        return -1;
    char section[64] = "";
    for (int i = 0; i < config_nkeys; i++) {
        const ConfigKey* k = &config_keys[i];
        const char* dot = strchr(k->key, '.');
        size_t slen = (size_t)(dot - k->key);
        if (strlen(section) != slen || strncmp(section, k->key, slen) != 0) {
            if (section[0] && !(yaml_mapping_end_event_initialize(&ev) && emit_event(e, &ev))) return -1;
            memcpy(section, k->key, slen);
            section[slen] = '\0';
            if (!emit_scalar(e, section, 0)) return -1;
            if (!(yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) &&
                  emit_event(e, &ev)))
                return -1;
        }
        char value[CONFIG_PATH + 32];
        format_value(c, k, value, sizeof(value));
        if (!emit_scalar(e, dot + 1, 0) || !emit_scalar(e, value, k->type == CFG_STRING)) return -1;
    }
    if (section[0] && !(yaml_mapping_end_event_initialize(&ev) && emit_event(e, &ev))) return -1;
    if (!(yaml_mapping_end_event_initialize(&ev) && emit_event(e, &ev))) return -1;
    if (!(yaml_document_end_event_initialize(&ev, 1) && emit_event(e, &ev))) return -1;
    if (!(yaml_stream_end_event_initialize(&ev) && emit_event(e, &ev))) return -1;
    return 0;
}

// libyaml's output handler: the emitted bytes into a StrBuf
static int yaml_to_strbuf(void* data, unsigned char* bytes, size_t size) {
    strbuf_append(data, bytes, size);
    return 1;
}

char* config_to_yaml(const Config* c, ConfigError* err) {
    yaml_emitter_t e;
    if (!yaml_emitter_initialize(&e)) return config_error(err, "cannot initialise the YAML emitter"), NULL;
    StrBuf s = {0};
    yaml_emitter_set_output(&e, yaml_to_strbuf, &s);
    yaml_emitter_set_unicode(&e, 1);
    int rc = emit_config(c, &e);
    yaml_emitter_delete(&e);
    if (rc != 0) {
        strbuf_free(&s);
        config_error(err, "writing the effective config as YAML failed");
        return NULL;
    }
    return strbuf_take(&s);
}

int config_write_yaml(const Config* c, FILE* out, ConfigError* err) {
    char* yaml = config_to_yaml(c, err);
    if (!yaml) return -1;
    const int bad = fputs(yaml, out) == EOF;
    free(yaml);
    return bad ? config_error(err, "writing the effective config failed: %s", strerror(errno)) : 0;
}

// ----------------------------------------------------------------------------
// docs/CONFIG.md

static const char* type_name(const ConfigKey* k) {
    switch (k->type) {
    case CFG_INT: return "int";
    case CFG_INT64: return "int64";
    case CFG_FLOAT: return "float";
    case CFG_BOOL: return "bool";
    case CFG_STRING: return "string";
    case CFG_ENUM: return "enum";
    }
    return "?";
}

void config_write_doc(FILE* out) {
    fprintf(out, "# Configuration reference\n\n"
                 "Generated by `build/ingrain config --doc > docs/CONFIG.md` from `io/config_keys.c`; the test\n"
                 "`config_doc_in_sync` fails when this file and the code disagree.\n\n"
                 "A config is a YAML mapping of sections. Every key is optional and has the default below.\n"
                 "Unknown keys, wrong types, out-of-range values and inconsistent combinations are errors that\n"
                 "name the file, the line and the key. `--set section.key=value` (repeatable) overrides a key\n"
                 "with the same checks. The effective config is written to `RUN_DIR/config.yaml`.\n");
    char section[64] = "";
    for (int i = 0; i < config_nkeys; i++) {
        const ConfigKey* k = &config_keys[i];
        const char* dot = strchr(k->key, '.');
        size_t slen = (size_t)(dot - k->key);
        if (strlen(section) != slen || strncmp(section, k->key, slen) != 0) {
            memcpy(section, k->key, slen);
            section[slen] = '\0';
            fprintf(out, "\n## %s\n\n| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n", section);
        }
        char allowed[256] = "";
        if (k->type == CFG_ENUM) {
            size_t used = 0;
            for (int j = 0; k->choices[j]; j++) {
                used +=
                    (size_t)snprintf(allowed + used, sizeof(allowed) - used, "%s`%s`", j ? ", " : "", k->choices[j]);
            }
        } else if (k->type == CFG_INT || k->type == CFG_INT64 || k->type == CFG_FLOAT) {
            snprintf(allowed, sizeof(allowed), "%.16g .. %.16g", k->min, k->max);
        } else if (k->type == CFG_BOOL) {
            snprintf(allowed, sizeof(allowed), "`true`, `false`");
        }
        fprintf(out, "| `%s` | %s | `%s` | %s | %s |\n", k->key, type_name(k), k->def[0] ? k->def : "\"\"", allowed,
                k->doc);
    }
}
