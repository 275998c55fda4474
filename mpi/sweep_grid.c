// Sweep grid files (see sweep.h, docs/SLURM.md): parsing with the libyaml document API so that
// every error names the grid file, the line and the key, and the expansion into cells, each a
// config built with the config loader (io/config.h) and validated by it.
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "common/check.h"
#include "mpi/sweep.h"

// ----------------------------------------------------------------------------
// YAML nodes

typedef struct {
    SweepGrid* g;
    yaml_document_t* doc;
    ConfigError* err;
} GridParse;

static int line_of(const yaml_node_t* n) { return (int)n->start_mark.line + 1; }

static const char* kind_of(const yaml_node_t* n) {
    return n->type == YAML_MAPPING_NODE ? "a mapping" : n->type == YAML_SEQUENCE_NODE ? "a list" : "a scalar";
}

// the text of a scalar node ("" for YAML null), NULL for other nodes
static const char* scalar_of(const yaml_node_t* n) {
    if (n->type != YAML_SCALAR_NODE) return NULL;
    const char* s = (const char*)n->data.scalar.value;
    int plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    return plain && (strcmp(s, "~") == 0 || strcmp(s, "null") == 0) ? "" : s;
}

static int parse_int(const char* s, long long lo, long long hi, long long* out) {
    errno = 0;
    char* end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int name_ok(const char* s) { // job names and labels end up in paths and #SBATCH lines
    if (!s[0]) return 0;
    for (const char* c = s; *c; c++) {
        if (!isalnum((unsigned char)*c) && !strchr("._-+=", *c)) return 0;
    }
    return 1;
}

static void add_override(SweepOverride** arr, int* n, const char* key, const char* value, int line) {
    *arr = reallocCheck(*arr, sizeof(**arr) * (size_t)(*n + 1));
    (*arr)[*n] = (SweepOverride){strdupCheck(key), value ? strdupCheck(value) : NULL, line};
    (*n)++;
}

// `key: value` pairs; nested sections become dotted keys (distill: {lr: 1} -> distill.lr)
static int parse_overrides(GridParse* p, yaml_node_t* map, const char* prefix, const char* where) {
    for (yaml_node_pair_t* pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
        yaml_node_t* kn = yaml_document_get_node(p->doc, pr->key);
        yaml_node_t* vn = yaml_document_get_node(p->doc, pr->value);
        const char* k = scalar_of(kn);
        if (!k || !k[0]) {
            return config_error(p->err, "%s:%d: %s: keys must be config keys such as distill.lr", p->g->path,
                                line_of(kn), where);
        }
        char key[256];
        if ((size_t)snprintf(key, sizeof(key), "%s%s%s", prefix, prefix[0] ? "." : "", k) >= sizeof(key)) {
            return config_error(p->err, "%s:%d: %s: key is too long", p->g->path, line_of(kn), where);
        }
        if (vn->type == YAML_MAPPING_NODE) {
            if (parse_overrides(p, vn, key, where) != 0) return -1;
        } else if (vn->type == YAML_SEQUENCE_NODE) {
            return config_error(p->err, "%s:%d: %s: %s: expected one value, got a list (an axis takes a list of "
                                "values under axes:)", p->g->path, line_of(vn), where, key);
        } else {
            add_override(&p->g->overrides, &p->g->n_overrides, key, scalar_of(vn), line_of(vn));
        }
    }
    return 0;
}

// ----------------------------------------------------------------------------
// sections of the grid

static int parse_seeds(GridParse* p, yaml_node_t* vn) {
    SweepGrid* g = p->g;
    long long v;
    const char* s = scalar_of(vn);
    if (s) {
        if (parse_int(s, 1, SWEEP_MAX_RUNS, &v) != 0) {
            return config_error(p->err, "%s:%d: seeds: expected a count (1 .. %d, meaning seeds 1..N) or a list of "
                                "seeds, got '%s'", g->path, line_of(vn), SWEEP_MAX_RUNS, s);
        }
        sweep_set_seeds(g, (int)v);
        return 0;
    }
    if (vn->type != YAML_SEQUENCE_NODE || vn->data.sequence.items.top == vn->data.sequence.items.start) {
        return config_error(p->err, "%s:%d: seeds: expected a count or a non-empty list of seeds, got %s", g->path,
                            line_of(vn), kind_of(vn));
    }
    g->n_seeds = 0;
    for (yaml_node_item_t* it = vn->data.sequence.items.start; it < vn->data.sequence.items.top; it++) {
        yaml_node_t* n = yaml_document_get_node(p->doc, *it);
        s = scalar_of(n);
        if (!s || parse_int(s, 0, 9007199254740991LL, &v) != 0) {
            return config_error(p->err, "%s:%d: seeds: expected an integer seed (0 .. 2^53-1), got %s", g->path,
                                line_of(n), s ? s : kind_of(n));
        }
        for (int i = 0; i < g->n_seeds; i++) {
            if (g->seeds[i] == v) {
                return config_error(p->err, "%s:%d: seeds: seed %lld is listed twice", g->path, line_of(n), v);
            }
        }
        g->seeds = reallocCheck(g->seeds, sizeof(long long) * (size_t)(g->n_seeds + 1));
        g->seeds[g->n_seeds++] = v;
    }
    return 0;
}

static int parse_axis(GridParse* p, yaml_node_t* kn, yaml_node_t* vn) {
    SweepGrid* g = p->g;
    const char* name = scalar_of(kn);
    if (!name || !name[0]) return config_error(p->err, "%s:%d: axes: an axis needs a name", g->path, line_of(kn));
    g->axes = reallocCheck(g->axes, sizeof(SweepAxis) * (size_t)(g->n_axes + 1));
    SweepAxis* a = &g->axes[g->n_axes++];
    *a = (SweepAxis){strdupCheck(name), line_of(kn), g->n_values, 0};
    int is_map = vn->type == YAML_MAPPING_NODE, is_list = vn->type == YAML_SEQUENCE_NODE;
    if (!is_map && !is_list) {
        return config_error(p->err, "%s:%d: axis '%s': expected named values ({label: {key: value, ...}, ...}) or a "
                            "list of values of the config key '%s', got %s", g->path, line_of(vn), name, name,
                            kind_of(vn));
    }
    int n = is_map ? (int)(vn->data.mapping.pairs.top - vn->data.mapping.pairs.start)
                   : (int)(vn->data.sequence.items.top - vn->data.sequence.items.start);
    if (n == 0) return config_error(p->err, "%s:%d: axis '%s' has no values", g->path, line_of(vn), name);
    for (int i = 0; i < n; i++) {
        yaml_node_t* label_node = is_map ? yaml_document_get_node(p->doc, vn->data.mapping.pairs.start[i].key)
                                         : yaml_document_get_node(p->doc, vn->data.sequence.items.start[i]);
        yaml_node_t* body = is_map ? yaml_document_get_node(p->doc, vn->data.mapping.pairs.start[i].value) : NULL;
        const char* label = scalar_of(label_node);
        if (!label || !label[0]) {
            return config_error(p->err, "%s:%d: axis '%s': value %d must be a non-empty scalar, got %s", g->path,
                                line_of(label_node), name, i + 1, label ? "an empty value" : kind_of(label_node));
        }
        for (int j = a->first; j < g->n_values; j++) {
            if (strcmp(g->values[j].label, label) == 0) {
                return config_error(p->err, "%s:%d: axis '%s': value '%s' is given twice (first at line %d)", g->path,
                                    line_of(label_node), name, label, g->values[j].line);
            }
        }
        g->values = reallocCheck(g->values, sizeof(SweepValue) * (size_t)(g->n_values + 1));
        SweepValue* v = &g->values[g->n_values++];
        *v = (SweepValue){strdupCheck(label), line_of(label_node), g->n_overrides, 0};
        if (is_list) {
            add_override(&g->overrides, &g->n_overrides, name, label, line_of(label_node));
        } else if (body->type == YAML_MAPPING_NODE) {
            char where[CONFIG_STR + 64];
            snprintf(where, sizeof(where), "axis '%s' value '%s'", name, label);
            if (parse_overrides(p, body, "", where) != 0) return -1;
        } else if (!(body->type == YAML_SCALAR_NODE && scalar_of(body)[0] == '\0')) {
            return config_error(p->err, "%s:%d: axis '%s' value '%s': expected a mapping of config keys to values, "
                                "e.g. {distill.regime: on_policy, distill.loss: reverse_kl}, got %s", g->path,
                                line_of(body), name, label, kind_of(body));
        }
        v->count = g->n_overrides - v->first;
    }
    a->count = g->n_values - a->first;
    return 0;
}

static int parse_slurm(GridParse* p, yaml_node_t* map) {
    SweepGrid* g = p->g;
    for (yaml_node_pair_t* pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
        yaml_node_t* kn = yaml_document_get_node(p->doc, pr->key);
        yaml_node_t* vn = yaml_document_get_node(p->doc, pr->value);
        const char* k = scalar_of(kn);
        const char* v = scalar_of(vn);
        char opt[64];
        size_t len = k ? strlen(k) : 0;
        if (!k || len == 0 || len >= sizeof(opt) || strspn(k, "abcdefghijklmnopqrstuvwxyz0123456789-_") != len) {
            return config_error(p->err, "%s:%d: slurm: option names are sbatch long options such as ntasks_per_node "
                                "or time", g->path, line_of(kn));
        }
        for (size_t i = 0; i <= len; i++) opt[i] = k[i] == '_' ? '-' : k[i];
        if (!v || strpbrk(v, "\n\r")) {
            return config_error(p->err, "%s:%d: slurm: %s: expected one value on one line, got %s", g->path,
                                line_of(vn), k, v ? "several lines" : kind_of(vn));
        }
        long long n;
        if (strcmp(opt, "max-parallel") == 0) {
            if (parse_int(v, 1, 1000000, &n) != 0) {
                return config_error(p->err, "%s:%d: slurm: max_parallel: expected a positive integer (array tasks "
                                    "running at once), got '%s'", g->path, line_of(vn), v);
            }
            g->max_parallel = (int)n;
            continue;
        }
        if (strcmp(opt, "array") == 0) {
            return config_error(p->err, "%s:%d: slurm: array is chosen by the sweep (the unfinished cells); use "
                                "max_parallel to limit the tasks running at once", g->path, line_of(kn));
        }
        int flag = strcmp(v, "true") == 0, drop = strcmp(v, "false") == 0;
        add_override(&g->slurm, &g->n_slurm, opt, drop ? NULL : flag ? "" : v, line_of(vn));
    }
    return 0;
}

// ----------------------------------------------------------------------------
// the grid file

static const char* const grid_keys[] = {"name", "base", "out", "seeds", "set", "axes", "slurm", NULL};

static int parse_root(GridParse* p, yaml_node_t* root) {
    SweepGrid* g = p->g;
    int seen[8] = {0};
    for (yaml_node_pair_t* pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top; pr++) {
        yaml_node_t* kn = yaml_document_get_node(p->doc, pr->key);
        yaml_node_t* vn = yaml_document_get_node(p->doc, pr->value);
        const char* k = scalar_of(kn);
        int which = -1;
        for (int i = 0; k && grid_keys[i]; i++) {
            if (strcmp(k, grid_keys[i]) == 0) which = i;
        }
        if (which < 0) {
            return config_error(p->err, "%s:%d: unknown grid key '%s' (a grid has name, base, out, seeds, set, axes, "
                                "slurm; see docs/SLURM.md)", g->path, line_of(kn), k ? k : kind_of(kn));
        }
        if (seen[which]) {
            return config_error(p->err, "%s:%d: '%s' is given twice (first at line %d)", g->path, line_of(kn), k,
                                seen[which]);
        }
        seen[which] = line_of(kn);
        const char* v = scalar_of(vn);
        int need_map = which >= 4, ok = which == 3 || (need_map ? vn->type == YAML_MAPPING_NODE : v != NULL);
        if (!ok) {
            return config_error(p->err, "%s:%d: %s: expected %s, got %s", g->path, line_of(vn), k,
                                need_map ? "a mapping" : "a scalar", kind_of(vn));
        }
        if (which == 0) {
            if (!name_ok(v) || strlen(v) >= 64) {
                return config_error(p->err, "%s:%d: name: '%s' must be 1-63 letters, digits, '.', '_', '-' (it names "
                                    "the job and the folder)", g->path, line_of(vn), v);
            }
            snprintf(g->name, sizeof(g->name), "%s", v);
        } else if (which == 1 || which == 2) {
            char* dst = which == 1 ? g->base : g->out;
            if (!v[0] || strlen(v) >= CONFIG_PATH / 2) {
                return config_error(p->err, "%s:%d: %s: expected a path, got '%s'", g->path, line_of(vn), k, v);
            }
            snprintf(dst, CONFIG_PATH, "%s", v);
            if (which == 1) g->base_line = line_of(vn);
        } else if (which == 3) {
            if (parse_seeds(p, vn) != 0) return -1;
        } else if (which == 4) {
            g->set_first = g->n_overrides;
            if (parse_overrides(p, vn, "", "set") != 0) return -1;
            g->set_count = g->n_overrides - g->set_first;
        } else if (which == 5) {
            for (yaml_node_pair_t* a = vn->data.mapping.pairs.start; a < vn->data.mapping.pairs.top; a++) {
                if (parse_axis(p, yaml_document_get_node(p->doc, a->key), yaml_document_get_node(p->doc, a->value)))
                    return -1;
            }
        } else if (parse_slurm(p, vn) != 0) {
            return -1;
        }
    }
    if (!g->base[0]) {
        return config_error(p->err, "%s: no base config; add `base: FILE` (relative to the grid file), e.g. "
                            "base: quickstart.yaml", g->path);
    }
    return 0;
}

// base relative to the grid's folder; name from the file; out runs/NAME; out_abs against the cwd
static int resolve_paths(SweepGrid* g, ConfigError* err) {
    if (g->base[0] != '/') {
        const char* slash = strrchr(g->path, '/');
        if (slash) {
            char joined[2 * CONFIG_PATH];
            snprintf(joined, sizeof(joined), "%.*s/%s", (int)(slash - g->path), g->path, g->base);
            if (strlen(joined) >= sizeof(g->base)) return config_error(err, "%s: base path is too long", g->path);
            memcpy(g->base, joined, strlen(joined) + 1);
        }
    }
    if (!g->name[0]) {
        const char* file = strrchr(g->path, '/') ? strrchr(g->path, '/') + 1 : g->path;
        size_t len = strcspn(file, ".");
        snprintf(g->name, sizeof(g->name), "%.*s", (int)(len < 63 ? len : 63), file);
        for (char* c = g->name; *c; c++) {
            if (!name_ok((char[]){*c, 0})) *c = '_';
        }
        if (!g->name[0]) snprintf(g->name, sizeof(g->name), "sweep");
    }
    if (!g->out[0]) snprintf(g->out, sizeof(g->out), "runs/%s", g->name);
    return sweep_set_out(g, g->out, err);
}

static int load_grid(SweepGrid* g, yaml_parser_t* parser, const char* label, ConfigError* err) {
    memset(g, 0, sizeof(*g));
    snprintf(g->path, sizeof(g->path), "%s", label);
    sweep_set_seeds(g, 1);
    yaml_document_t doc;
    if (!yaml_parser_load(parser, &doc)) {
        return config_error(err, "%s:%d: YAML syntax error: %s", label, (int)parser->problem_mark.line + 1,
                            parser->problem ? parser->problem : "unknown problem");
    }
    yaml_node_t* root = yaml_document_get_root_node(&doc);
    GridParse p = {g, &doc, err};
    int rc;
    if (!root || root->type != YAML_MAPPING_NODE) {
        rc = config_error(err, "%s:%d: a grid must be a mapping (base:, seeds:, axes:, ...), got %s", label,
                          root ? line_of(root) : 1, root ? kind_of(root) : "an empty file");
    } else {
        rc = parse_root(&p, root);
    }
    yaml_document_delete(&doc);
    return rc == 0 ? resolve_paths(g, err) : rc;
}

int sweep_load_string(SweepGrid* g, const char* yaml, const char* label, ConfigError* err) {
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return config_error(err, "%s: cannot initialise the YAML parser", label);
    yaml_parser_set_input_string(&parser, (const unsigned char*)yaml, strlen(yaml));
    int rc = load_grid(g, &parser, label, err);
    yaml_parser_delete(&parser);
    return rc;
}

int sweep_load(SweepGrid* g, const char* path, ConfigError* err) {
    FILE* f = fopen(path, "rb");
    if (!f) {
        memset(g, 0, sizeof(*g));
        return config_error(err, "%s: cannot open the grid file: %s", path, strerror(errno));
    }
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        memset(g, 0, sizeof(*g));
        return config_error(err, "%s: cannot initialise the YAML parser", path);
    }
    yaml_parser_set_input_file(&parser, f);
    int rc = load_grid(g, &parser, path, err);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

void sweep_set_seeds(SweepGrid* g, int n) {
    g->seeds = reallocCheck(g->seeds, sizeof(long long) * (size_t)n);
    for (int i = 0; i < n; i++) g->seeds[i] = i + 1;
    g->n_seeds = n;
}

int sweep_set_out(SweepGrid* g, const char* out, ConfigError* err) {
    if (strpbrk(out, " \t\n\r\"'\\")) {
        return config_error(err, "%s: out: '%s' must not contain whitespace, quotes or backslashes (it goes into "
                            "#SBATCH lines)", g->path, out);
    }
    char cwd[PATH_MAX] = "";
    if (out[0] != '/' && !getcwd(cwd, sizeof(cwd))) return config_error(err, "cannot read the current directory");
    char abs[2 * PATH_MAX];
    snprintf(abs, sizeof(abs), "%s%s%s", cwd, cwd[0] ? "/" : "", out);
    size_t len = strlen(abs);
    while (len > 1 && abs[len - 1] == '/') abs[--len] = '\0';
    if (len >= CONFIG_PATH / 2) return config_error(err, "%s: out: the path '%s' is too long", g->path, abs);
    if (out != g->out) snprintf(g->out, sizeof(g->out), "%s", out);
    memcpy(g->out_abs, abs, len + 1);
    return 0;
}

void sweep_free(SweepGrid* g) {
    for (int i = 0; i < g->n_overrides; i++) free(g->overrides[i].key), free(g->overrides[i].value);
    for (int i = 0; i < g->n_values; i++) free(g->values[i].label);
    for (int i = 0; i < g->n_axes; i++) free(g->axes[i].name);
    for (int i = 0; i < g->n_slurm; i++) free(g->slurm[i].key), free(g->slurm[i].value);
    free(g->overrides);
    free(g->values);
    free(g->axes);
    free(g->slurm);
    free(g->seeds);
    memset(g, 0, sizeof(*g));
}
