// Reports over many runs (see report.h): finding the runs, reading their metrics and configs,
// grouping them into cells, and the statistics over seeds. Output is in report_write.c.
#include "mpi/report.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/check.h"
#include "common/log.h"
#include "io/json_util.h"

const char* const report_metric_keys[REPORT_NMETRICS] = {
    "student_success", "teacher_success", "mean_turns",   "premature_rate", "tokens_per_episode",
    "pool_size",       "train_loss",      "teacher_won", "teacher_lost",   "teacher_lead"};

// ----------------------------------------------------------------------------
// statistics

// scipy.stats.t.ppf(0.975, df) for df = 1..30
static const double t975_table[30] = {
    12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581837, 2.446911849, 2.364624251, 2.306004135,
    2.262157163,  2.228138852, 2.200985160, 2.178812830, 2.160368656, 2.144786688, 2.131449546, 2.119905299,
    2.109815578,  2.100922040, 2.093024054, 2.085963447, 2.079613845, 2.073873068, 2.068657610, 2.063898562,
    2.059538553,  2.055529439, 2.051830516, 2.048407142, 2.045229642, 2.042272456};

double report_t975(int df) {
    if (df < 1) return NAN;
    if (df <= 30) return t975_table[df - 1];
    // Cornish-Fisher expansion around the normal quantile; within 3e-8 of the exact value past df = 30
    const double z = 1.959963984540054, d = df;
    double z3 = z * z * z, z5 = z3 * z * z, z7 = z5 * z * z, z9 = z7 * z * z;
    return z + (z3 + z) / (4 * d) + (5 * z5 + 16 * z3 + 3 * z) / (96 * d * d) +
           (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * d * d * d) +
           (79 * z9 + 776 * z7 + 1482 * z5 - 1920 * z3 - 945 * z) / (92160 * d * d * d * d);
}

double report_sign_test(int64_t won, int64_t lost) {
    const int64_t n = won + lost, hi = won > lost ? won : lost;
    if (n == 0) return 1.0;
    // P(X = i) = C(n, i) / 2^n in logs: 2^-n underflows past n = 1074
    const double log_all = lgamma((double)n + 1.0) - (double)n * log(2.0);
    double tail = 0.0;
    for (int64_t i = hi; i <= n; i++) tail += exp(log_all - lgamma((double)i + 1.0) - lgamma((double)(n - i) + 1.0));
    return tail * 2.0 < 1.0 ? tail * 2.0 : 1.0;
}

ReportStat report_stats(const double* x, int n) {
    ReportStat s = {0, NAN, NAN};
    double sum = 0;
    for (int i = 0; i < n; i++) {
        if (!isnan(x[i])) sum += x[i], s.n++;
    }
    if (s.n == 0) return s;
    s.mean = sum / s.n;
    if (s.n < 2) return s;
    double ss = 0;
    for (int i = 0; i < n; i++) {
        if (!isnan(x[i])) ss += (x[i] - s.mean) * (x[i] - s.mean);
    }
    s.ci95 = report_t975(s.n - 1) * sqrt(ss / (s.n - 1)) / sqrt((double)s.n);
    return s;
}

ReportStat report_cell_stat(const Report* r, int cell, int iteration, int metric) {
    double* x = mallocCheck(sizeof(double) * (size_t)(r->n_runs + 1));
    int n = 0;
    for (int i = 0; i < r->n_runs; i++) {
        const ReportRun* run = &r->runs[i];
        if (run->cell != cell) continue;
        for (int j = 0; j < run->n_points; j++) {
            if (run->points[j].iteration == iteration) x[n++] = run->points[j].v[metric];
        }
    }
    ReportStat s = report_stats(x, n);
    free(x);
    return s;
}

// ----------------------------------------------------------------------------
// metrics.jsonl

static int point_cmp(const void* a, const void* b) {
    return ((const ReportPoint*)a)->iteration - ((const ReportPoint*)b)->iteration;
}

static int read_record(json_t* rec, const char* path, int line, ReportPoint* p, ConfigError* err) {
    json_t* it = json_object_get(rec, "iteration");
    if (!json_is_integer(it) || json_integer_value(it) < 0 || json_integer_value(it) > 100000000) {
        return config_error(err, "%s:%d: iteration: expected an integer >= 0, got %s", path, line, json_kind(it));
    }
    p->iteration = (int)json_integer_value(it);
    for (int m = 0; m < REPORT_NREAD; m++) {
        json_t* v = json_object_get(rec, report_metric_keys[m]);
        if (!v || json_is_null(v)) {
            p->v[m] = NAN;
        } else if (json_is_number(v)) {
            p->v[m] = json_number_value(v);
        } else {
            return config_error(err, "%s:%d: %s: expected a number, got %s", path, line, report_metric_keys[m],
                                json_kind(v));
        }
    }
    p->v[REPORT_LEAD] = p->v[REPORT_TEACHER] - p->v[REPORT_STUDENT]; // NAN when either is missing
    return 0;
}

int report_read_metrics(const char* path, ReportPoint** points, int* n_points, ConfigError* err) {
    *points = NULL;
    *n_points = 0;
    FILE* f = fopen(path, "rb");
    if (!f) return config_error(err, "%s: cannot open: %s", path, strerror(errno));
    char* line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, f)) > 0) {
        lineno++;
        int complete = line[len - 1] == '\n';
        if (strspn(line, " \t\r\n") == (size_t)len) continue;
        json_error_t jerr;
        json_t* rec = json_loads(line, 0, &jerr);
        if (!rec) {
            if (!complete) break; // the run is still writing its last line
            rc = config_error(err, "%s:%d: not a JSON line: %s (column %d)", path, lineno, jerr.text, jerr.column);
        } else if (!json_is_object(rec)) {
            rc = config_error(err, "%s:%d: expected a JSON object, got %s", path, lineno, json_kind(rec));
        } else if (json_is_string(json_object_get(rec, "type")) &&
                   strcmp(json_string_value(json_object_get(rec, "type")), "iteration") == 0) {
            ReportPoint p;
            rc = read_record(rec, path, lineno, &p, err);
            int at = *n_points;
            for (int i = 0; i < *n_points; i++) {
                if ((*points)[i].iteration == p.iteration) at = i; // a repeated iteration: the last record wins
            }
            if (rc == 0 && at == *n_points) {
                *points = reallocCheck(*points, sizeof(ReportPoint) * (size_t)(++*n_points));
            }
            if (rc == 0) (*points)[at] = p;
        }
        json_decref(rec);
    }
    free(line);
    fclose(f);
    if (rc != 0) {
        free(*points);
        *points = NULL;
        *n_points = 0;
        return rc;
    }
    if (*n_points > 1) qsort(*points, (size_t)*n_points, sizeof(ReportPoint), point_cmp);
    return 0;
}

// ----------------------------------------------------------------------------
// configs and cells

// a key's value as text (shortest round-trip text for floats, as the config writer does)
static void value_text(const Config* c, const ConfigKey* k, char* buf, size_t n) {
    const char* field = (const char*)c + k->offset;
    switch (k->type) {
    case CFG_INT: snprintf(buf, n, "%d", *(const int*)field); break;
    case CFG_INT64: snprintf(buf, n, "%lld", *(const long long*)field); break;
    case CFG_BOOL: snprintf(buf, n, "%s", *(const int*)field ? "true" : "false"); break;
    case CFG_STRING: snprintf(buf, n, "%s", field); break;
    case CFG_ENUM: snprintf(buf, n, "%s", k->choices[*(const int*)field]); break;
    case CFG_FLOAT: {
        double v = *(const double*)field;
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, n, "%.*g", prec, v);
            if (strtod(buf, NULL) == v) break;
        }
        break;
    }
    }
}

// Keys that say where or how fast, not what: run.*, and where the base model is cached and how many
// threads build it. Runs that differ only there are samples of one recipe (the base models of two
// caches, built on other CPUs or thread counts, differ by rounding as seeds do).
static int is_sample_key(const char* key) {
    return strncmp(key, "run.", 4) == 0 || strcmp(key, "bootstrap.cache_dir") == 0 ||
           strcmp(key, "bootstrap.threads") == 0;
}

static char* cell_key(const Config* c) {
    size_t cap = 4096, len = 0;
    char* key = mallocCheck(cap);
    key[0] = '\0';
    for (int i = 0; i < config_nkeys; i++) {
        if (is_sample_key(config_keys[i].key)) continue;
        char value[CONFIG_PATH + 32];
        value_text(c, &config_keys[i], value, sizeof(value));
        size_t need = strlen(config_keys[i].key) + strlen(value) + 3;
        if (len + need >= cap) key = reallocCheck(key, cap = (cap + need) * 2);
        len += (size_t)snprintf(key + len, cap - len, "%s=%s\n", config_keys[i].key, value);
    }
    return key;
}

// the value of `key` in a cell key ("a.b=v\n" lines) into buf
static void key_value(const char* cell, const char* key, char* buf, size_t n) {
    size_t klen = strlen(key);
    for (const char* p = cell; *p; p = strchr(p, '\n') + 1) {
        if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
            size_t vlen = strcspn(p + klen + 1, "\n");
            snprintf(buf, n, "%.*s", (int)vlen, p + klen + 1);
            return;
        }
    }
    buf[0] = '\0';
}

// labels from the keys in which cells differ; a key's short name unless two differ in the same one
static void label_cells(Report* r) {
    int differs[CONFIG_MAX_KEYS] = {0};
    char a[CONFIG_PATH + 32], b[CONFIG_PATH + 32];
    for (int k = 0; k < config_nkeys; k++) {
        for (int c = 1; c < r->n_cells && !differs[k]; c++) {
            key_value(r->cells[0].key, config_keys[k].key, a, sizeof(a));
            key_value(r->cells[c].key, config_keys[k].key, b, sizeof(b));
            differs[k] = strcmp(a, b) != 0;
        }
    }
    for (int c = 0; c < r->n_cells; c++) {
        size_t cap = 256, len = 0;
        char* label = mallocCheck(cap);
        label[0] = '\0';
        for (int k = 0; k < config_nkeys; k++) {
            if (!differs[k]) continue;
            const char* full = config_keys[k].key;
            const char* name = strchr(full, '.') + 1;
            for (int j = 0; j < config_nkeys; j++) {
                if (j != k && differs[j] && strcmp(strchr(config_keys[j].key, '.') + 1, name) == 0) name = full;
            }
            key_value(r->cells[c].key, full, a, sizeof(a));
            size_t need = strlen(name) + strlen(a) + 4;
            if (len + need >= cap) label = reallocCheck(label, cap = (cap + need) * 2);
            len += (size_t)snprintf(label + len, cap - len, "%s%s=%s", len ? ", " : "", name, a);
        }
        r->cells[c].label = len ? label : (free(label), strdupCheck("all runs"));
    }
}

// ----------------------------------------------------------------------------
// finding runs

static void add_run(Report* r, const char* dir) {
    ConfigError err;
    char path[CONFIG_PATH + 32];
    Config c;
    config_defaults(&c);
    snprintf(path, sizeof(path), "%s/config.yaml", dir);
    ReportRun run = {0};
    if (config_load_file(&c, path, &err) != 0 ||
        (snprintf(path, sizeof(path), "%s/metrics.jsonl", dir),
         report_read_metrics(path, &run.points, &run.n_points, &err) != 0)) {
        log_warn("skipping the run in %s: %s", dir, err.msg);
        r->n_skipped++;
        return;
    }
    run.dir = strdupCheck(dir);
    run.seed = c.run.seed;
    snprintf(path, sizeof(path), "%s/DONE", dir);
    struct stat st;
    run.done = stat(path, &st) == 0;
    char* key = cell_key(&c);
    run.cell = -1;
    for (int i = 0; i < r->n_cells; i++) {
        if (strcmp(r->cells[i].key, key) == 0) run.cell = i;
    }
    if (run.cell < 0) {
        r->cells = reallocCheck(r->cells, sizeof(ReportCell) * (size_t)(r->n_cells + 1));
        r->cells[r->n_cells] = (ReportCell){key, NULL, 0};
        run.cell = r->n_cells++;
    } else {
        free(key);
    }
    r->cells[run.cell].n_runs++;
    r->runs = reallocCheck(r->runs, sizeof(ReportRun) * (size_t)(r->n_runs + 1));
    r->runs[r->n_runs++] = run;
}

static int name_cmp(const void* a, const void* b) { return strcmp(*(char* const*)a, *(char* const*)b); }

// depth-first in name order, so the table's order does not depend on the file system
static int walk(Report* r, const char* dir, int depth, ConfigError* err) {
    DIR* d = opendir(dir);
    if (!d) return config_error(err, "%s: cannot read the folder: %s", dir, strerror(errno));
    char** names = NULL;
    int n = 0, is_run = 0;
    for (struct dirent* e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (strcmp(e->d_name, "metrics.jsonl") == 0) is_run = 1;
        names = reallocCheck(names, sizeof(char*) * (size_t)(n + 1));
        names[n++] = strdupCheck(e->d_name);
    }
    closedir(d);
    if (is_run) {
        add_run(r, dir);
    } else if (depth < 32) {
        qsort(names, (size_t)n, sizeof(char*), name_cmp);
        for (int i = 0; i < n; i++) {
            char path[CONFIG_PATH];
            struct stat st;
            if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= sizeof(path)) continue;
            if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && walk(r, path, depth + 1, err) != 0) {
                log_warn("%s", err->msg);
            }
        }
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return 0;
}

int report_collect(Report* r, const char* runs_dir, ConfigError* err) {
    memset(r, 0, sizeof(*r));
    struct stat st;
    if (stat(runs_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        return config_error(err, "%s: not a folder of runs (%s)", runs_dir, errno ? strerror(errno) : "not a folder");
    }
    if (walk(r, runs_dir, 0, err) != 0) return -1;
    if (r->n_runs == 0) {
        return config_error(err, "%s: no readable run found (a run is a folder with metrics.jsonl and config.yaml)%s",
                            runs_dir, r->n_skipped ? "; see the warnings above" : "");
    }
    label_cells(r);
    return 0;
}

void report_free(Report* r) {
    for (int i = 0; i < r->n_runs; i++) free(r->runs[i].dir), free(r->runs[i].points);
    for (int i = 0; i < r->n_cells; i++) free(r->cells[i].key), free(r->cells[i].label);
    free(r->runs);
    free(r->cells);
    memset(r, 0, sizeof(*r));
}
