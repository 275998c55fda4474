// Sweeps (see sweep.h): the cells of a grid, each a validated config; the files that make the
// sweep a Slurm job array (cells index, array script); and the `ingrain sweep` command.
#define _XOPEN_SOURCE 700 // realpath
#include "mpi/sweep.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/check.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "mpi/subproc.h"

// ----------------------------------------------------------------------------
// run directories

static int path_exists(const char* dir, const char* name) {
    char path[CONFIG_PATH + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static int has_iter_file(const char* dir) { // iter_NNNN.h5
    DIR* d = opendir(dir);
    if (!d) return 0;
    int found = 0;
    for (struct dirent* e; !found && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        found = strncmp(e->d_name, "iter_", 5) == 0 && len > 8 && strcmp(e->d_name + len - 3, ".h5") == 0;
    }
    closedir(d);
    return found;
}

static int has_checkpoint(const char* dir) { // the driver's checkpoints: RUN_DIR/ckpt/ (or RUN_DIR/)
    char ckpt[CONFIG_PATH + 8];
    snprintf(ckpt, sizeof(ckpt), "%s/ckpt", dir);
    return has_iter_file(ckpt) || has_iter_file(dir);
}

static SweepStatus run_status(const char* dir) {
    if (path_exists(dir, "DONE")) return SWEEP_DONE;
    return has_checkpoint(dir) ? SWEEP_RESUME : SWEEP_NEW;
}

static int run_started(const char* dir) {
    return path_exists(dir, "DONE") || has_checkpoint(dir) || path_exists(dir, "metrics.jsonl") ||
           path_exists(dir, "config.yaml");
}

const char* sweep_status_name(SweepStatus s) {
    return s == SWEEP_DONE ? "done" : s == SWEEP_RESUME ? "resume" : "new";
}

// ----------------------------------------------------------------------------
// one cell's config: base, then `set:`, then the axis values, then --set

// keys the sweep sets for every cell (from seeds:, out: and the cell name)
static int is_managed(const char* key) {
    static const char* const managed[] = {"run.seed", "run.dir", "run.name", "run.resume"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(key, managed[i]) == 0) return 1;
    }
    return 0;
}

// config_set reports "--set KEY=VALUE: ..."; a grid override says where it comes from instead
static int apply_override(Config* c, const SweepGrid* g, const SweepOverride* o, ConfigError* err) {
    if (is_managed(o->key)) {
        return config_error(err, "%s:%d: %s is set by the sweep for every cell (from seeds:, out: and the cell name); "
                            "remove it from the grid", g->path, o->line, o->key);
    }
    char assignment[CONFIG_PATH + 300];
    snprintf(assignment, sizeof(assignment), "%s=%s", o->key, o->value);
    ConfigError e;
    if (config_set(c, assignment, &e) == 0) return 0;
    size_t skip = strlen("--set ") + strlen(assignment) + strlen(": ");
    const char* why = strncmp(e.msg, "--set ", 6) == 0 && strlen(e.msg) > skip ? e.msg + skip : e.msg;
    return config_error(err, "%s:%d: %s", g->path, o->line, why);
}

// config_validate names a key's origin "--set KEY"; for keys the grid set, say "GRID:LINE"
static void name_grid_origins(const char* msg, const SweepGrid* g, const int* grid_line, char* out, size_t n) {
    size_t used = 0;
    while (*msg && used + 1 < n) {
        if (strncmp(msg, "--set ", 6) == 0) {
            size_t klen = strspn(msg + 6, "abcdefghijklmnopqrstuvwxyz0123456789_.");
            char key[128];
            snprintf(key, sizeof(key), "%.*s", (int)(klen < 127 ? klen : 127), msg + 6);
            int idx = config_key_index(key);
            if (idx >= 0 && grid_line[idx] > 0) {
                used += (size_t)snprintf(out + used, n - used, "%s:%d", g->path, grid_line[idx]);
                msg += 6 + klen;
                continue;
            }
        }
        out[used++] = *msg++;
    }
    out[used < n ? used : n - 1] = '\0';
}

static int build_cell(SweepCell* cell, const Config* base, const SweepGrid* g, const int* value_of_axis,
                      const char* const* sets, int n_sets, ConfigError* err) {
    Config* c = &cell->config;
    *c = *base;
    int grid_line[CONFIG_MAX_KEYS] = {0}, axis_of_key[CONFIG_MAX_KEYS];
    for (int i = 0; i < CONFIG_MAX_KEYS; i++) axis_of_key[i] = -1;
    for (int i = 0; i < g->set_count; i++) {
        const SweepOverride* o = &g->overrides[g->set_first + i];
        if (apply_override(c, g, o, err) != 0) return -1;
        grid_line[config_key_index(o->key)] = o->line;
    }
    for (int a = 0; a < g->n_axes; a++) {
        const SweepValue* v = &g->values[g->axes[a].first + value_of_axis[a]];
        for (int i = 0; i < v->count; i++) {
            const SweepOverride* o = &g->overrides[v->first + i];
            if (apply_override(c, g, o, err) != 0) return -1;
            int idx = config_key_index(o->key);
            if (axis_of_key[idx] >= 0 && axis_of_key[idx] != a) {
                return config_error(err,
                                    "%s:%d: %s is set by axis '%s' and by axis '%s' (line %d); a key may vary along "
                                    "one axis only",
                                    g->path, o->line, o->key, g->axes[a].name, g->axes[axis_of_key[idx]].name,
                                    grid_line[idx]);
            }
            axis_of_key[idx] = a;
            grid_line[idx] = o->line;
        }
    }
    for (int i = 0; i < n_sets; i++) {
        if (config_set(c, sets[i], err) != 0) return -1;
        const char* eq = strchr(sets[i], '=');
        char key[128];
        snprintf(key, sizeof(key), "%.*s", (int)(eq - sets[i]), sets[i]);
        if (is_managed(key)) {
            return config_error(err, "--set %s: %s is set by the sweep for every cell (use --seeds, --out)", sets[i],
                                key);
        }
        grid_line[config_key_index(key)] = 0;
    }
    c->run.seed = cell->seed;
    c->run.resume = RESUME_AUTO;
    snprintf(c->run.dir, sizeof(c->run.dir), "%s", cell->run_dir);
    if (snprintf(c->run.name, sizeof(c->run.name), "%s-%s-seed%lld", g->name, cell->name, cell->seed) < 0) {
        return config_error(err, "cell %s: cannot format run.name", cell->name);
    }
    ConfigError e;
    if (config_validate(c, &e) != 0) {
        char named[sizeof(e.msg)];
        name_grid_origins(e.msg, g, grid_line, named, sizeof(named));
        return config_error(err, "cell %s, seed %lld: %s", cell->name, cell->seed, named);
    }
    return 0;
}

// ----------------------------------------------------------------------------
// expansion

static void cell_name(const SweepGrid* g, const int* value_of_axis, char* out, size_t n) {
    size_t used = 0;
    out[0] = '\0';
    for (int a = 0; a < g->n_axes && used + 1 < n; a++) {
        const char* label = g->values[g->axes[a].first + value_of_axis[a]].label;
        if (a > 0) out[used++] = '-';
        // labels become folder names: keep [A-Za-z0-9._+=-], replace the rest
        for (const char* s = label; *s && used + 1 < n; s++) {
            int keep = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                       strchr("._+=-", *s);
            out[used++] = keep ? *s : '_';
        }
        out[used] = '\0';
    }
    if (g->n_axes == 0) snprintf(out, n, "base");
}

int sweep_expand(const SweepGrid* g, const char* const* sets, int n_sets, SweepCell** cells, int* n_cells,
                 ConfigError* err) {
    *cells = NULL;
    *n_cells = 0;
    long long combos = 1;
    for (int a = 0; a < g->n_axes && combos <= SWEEP_MAX_RUNS; a++) combos *= g->axes[a].count;
    if (combos * g->n_seeds > SWEEP_MAX_RUNS) {
        return config_error(err, "%s: %lld cells x %d seeds is more than %d runs", g->path, combos, g->n_seeds,
                            SWEEP_MAX_RUNS);
    }
    Config base;
    config_defaults(&base);
    ConfigError e;
    if (config_load_file(&base, g->base, &e) != 0) {
        return config_error(err, "%s:%d: base config: %s", g->path, g->base_line, e.msg);
    }
    int value_of_axis[64] = {0};
    if (g->n_axes > 64) return config_error(err, "%s: more than 64 axes", g->path);
    int n = (int)combos * g->n_seeds;
    SweepCell* out = callocCheck((size_t)n, sizeof(SweepCell));
    for (long long k = 0; k < combos; k++) {
        char name[CONFIG_STR];
        cell_name(g, value_of_axis, name, sizeof(name));
        for (long long j = 0; j < k * g->n_seeds; j += g->n_seeds) {
            if (strcmp(out[j].name, name) == 0) {
                free(out);
                return config_error(err, "%s: two cells are both named '%s' (labels differ only in characters that "
                                    "cannot be in folder names); rename a value", g->path, name);
            }
        }
        for (int s = 0; s < g->n_seeds; s++) {
            SweepCell* cell = &out[k * g->n_seeds + s];
            cell->index = (int)(k * g->n_seeds + s);
            cell->seed = g->seeds[s];
            snprintf(cell->name, sizeof(cell->name), "%s", name);
            int len = snprintf(cell->run_dir, sizeof(cell->run_dir), "%s/%s/seed%lld", g->out_abs, name, cell->seed);
            if (len < 0 || (size_t)len + 16 >= sizeof(cell->run_dir)) {
                free(out);
                return config_error(err, "%s: the run directory of cell %s is too long", g->path, name);
            }
            if (snprintf(cell->config_path, sizeof(cell->config_path), "%s/cell.yaml", cell->run_dir) < 0) {
                free(out);
                return config_error(err, "%s: cannot format the path of cell %s", g->path, name);
            }
            cell->status = run_status(cell->run_dir);
            if (build_cell(cell, &base, g, value_of_axis, sets, n_sets, err) != 0) {
                free(out);
                return -1;
            }
        }
        for (int a = g->n_axes - 1; a >= 0; a--) { // odometer: the last axis turns fastest
            if (++value_of_axis[a] < g->axes[a].count) break;
            value_of_axis[a] = 0;
        }
    }
    *cells = out;
    *n_cells = n;
    return 0;
}

void sweep_array_spec(const SweepCell* cells, int n, char* buf, size_t len) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < len; i++) {
        if (cells[i].status == SWEEP_DONE) continue;
        int j = i;
        while (j + 1 < n && cells[j + 1].status != SWEEP_DONE) j++;
        const char* sep = used ? "," : "";
        if (j > i) used += (size_t)snprintf(buf + used, len - used, "%s%d-%d", sep, cells[i].index, cells[j].index);
        else used += (size_t)snprintf(buf + used, len - used, "%s%d", sep, cells[i].index);
        i = j;
    }
}

// ----------------------------------------------------------------------------
// writing the sweep folder

static int make_dirs(const char* path, ConfigError* err) {
    char buf[CONFIG_PATH];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char* p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
                return config_error(err, "cannot create '%s': %s", buf, strerror(errno));
            }
            *p = saved;
            if (!saved) return 0;
        }
    }
}

// write text to path through a temporary name, so a reader never sees half a file
static int write_atomic(const char* path, const char* text, ConfigError* err) {
    char tmp[CONFIG_PATH + 16];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE* f = fopen(tmp, "w");
    if (!f) return config_error(err, "cannot write '%s': %s", tmp, strerror(errno));
    int ok = fputs(text, f) >= 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) return config_error(err, "cannot write '%s': %s", path, strerror(errno));
    return 0;
}

static char* read_text(const char* path) { // NULL if missing
    FILE* f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char* buf = mallocCheck(cap);
    for (size_t got; (got = fread(buf + len, 1, cap - len - 1, f)) > 0;) {
        len += got;
        if (len + 1 == cap) buf = reallocCheck(buf, cap *= 2);
    }
    buf[len] = '\0';
    fclose(f);
    return buf;
}

void sweep_paths(const SweepGrid* g, char* script, char* index, size_t n) {
    snprintf(script, n, "%s/sweep.sbatch", g->out_abs);
    snprintf(index, n, "%s/cells.tsv", g->out_abs);
}

// the #SBATCH value of option `opt`: the grid's slurm: entry if any, else the default
static void sbatch_line(StrBuf* t, const SweepGrid* g, const char* opt, const char* def) {
    const char* v = def;
    for (int i = 0; i < g->n_slurm; i++) {
        if (strcmp(g->slurm[i].key, opt) == 0) v = g->slurm[i].value;
    }
    if (!v) return;
    if (v[0]) strbuf_printf(t, "#SBATCH --%s=%s\n", opt, v);
    else strbuf_printf(t, "#SBATCH --%s\n", opt);
}

static char* array_script(const SweepGrid* g, const SweepCell* cells, int n, const char* sbatch_script,
                          const char* ingrain) {
    char spec[8192], script[CONFIG_PATH + 32], index[CONFIG_PATH + 32], cwd[PATH_MAX] = ".";
    sweep_array_spec(cells, n, spec, sizeof(spec));
    sweep_paths(g, script, index, sizeof(script));
    if (!getcwd(cwd, sizeof(cwd))) snprintf(cwd, sizeof(cwd), ".");
    StrBuf t = {0};
    strbuf_printf(&t,
                  "#!/usr/bin/env bash\n"
                  "# Job array of the sweep '%s', written by `ingrain sweep` from the grid\n"
                  "#   %s\n"
                  "# Re-running the sweep rewrites it with the cells still unfinished. Task i runs cell i of\n"
                  "# cells.tsv through slurm/ingrain.sbatch (checkpoint on the time-limit warning, requeue, resume).\n",
                  g->name, g->path);
    static const char* const ours[] = {"job-name", "output", "open-mode", "signal", "requeue", "chdir"};
    char output[CONFIG_PATH + 32];
    snprintf(output, sizeof(output), "%s/logs/%%A_%%a.out", g->out_abs);
    const char* defaults[] = {g->name, output, "append", "B:USR1@120", "", cwd};
    if (g->max_parallel > 0) strbuf_printf(&t, "#SBATCH --array=%s%%%d\n", spec, g->max_parallel);
    else strbuf_printf(&t, "#SBATCH --array=%s\n", spec);
    for (int i = 0; i < 6; i++) sbatch_line(&t, g, ours[i], defaults[i]);
    for (int i = 0; i < g->n_slurm; i++) {
        int is_ours = 0;
        for (int j = 0; j < 6; j++) is_ours |= strcmp(g->slurm[i].key, ours[j]) == 0;
        if (!is_ours) sbatch_line(&t, g, g->slurm[i].key, NULL);
    }
    strbuf_printf(&t,
                  "set -euo pipefail\n"
                  "cells=%s\n"
                  "line=$(awk -F'\\t' -v i=\"$SLURM_ARRAY_TASK_ID\" '$1 == i' \"$cells\")\n"
                  "[ -n \"$line\" ] || { echo \"sweep: no cell $SLURM_ARRAY_TASK_ID in $cells\" >&2; exit 2; }\n"
                  "IFS=$'\\t' read -r index cell seed status run_dir config <<<\"$line\"\n"
                  "echo \"sweep %s: task $index: cell $cell, seed $seed ($status when the array was written)\"\n"
                  "export INGRAIN=${INGRAIN:-%s}\n"
                  "export INGRAIN_RUN_DIR=$run_dir\n"
                  "exec bash %s \"$config\"\n",
                  index, g->name, ingrain, sbatch_script);
    return strbuf_take(&t);
}

int sweep_write(const SweepGrid* g, const SweepCell* cells, int n, const char* sbatch_script, const char* ingrain,
                ConfigError* err) {
    char logs[CONFIG_PATH + 16], script[CONFIG_PATH + 32], index[CONFIG_PATH + 32];
    snprintf(logs, sizeof(logs), "%s/logs", g->out_abs);
    if (make_dirs(logs, err) != 0) return -1;
    // check every cell before writing any, so a refused sweep changes nothing
    char** yaml = callocCheck((size_t)n + 1, sizeof(char*));
    int pending = 0, rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const SweepCell* c = &cells[i];
        pending += c->status != SWEEP_DONE;
        yaml[i] = config_to_yaml(&c->config, err);
        if (!yaml[i]) {
            rc = -1;
            break;
        }
        char* old = read_text(c->config_path);
        if (old && strcmp(old, yaml[i]) != 0 && run_started(c->run_dir)) {
            rc = config_error(err, "cell %s, seed %lld: %s differs from what the grid gives now, and the run has "
                              "started; the grid or its base changed since. Use another out: folder, or remove %s "
                              "to start this cell afresh", c->name, c->seed, c->config_path, c->run_dir);
        }
        free(old);
    }
    for (int i = 0; i < n && rc == 0; i++) {
        char* old = read_text(cells[i].config_path);
        rc = make_dirs(cells[i].run_dir, err);
        if (rc == 0 && (!old || strcmp(old, yaml[i]) != 0)) rc = write_atomic(cells[i].config_path, yaml[i], err);
        free(old);
    }
    for (int i = 0; i < n; i++) free(yaml[i]);
    free(yaml);
    if (rc != 0) return -1;
    StrBuf tsv = {0};
    strbuf_printf(&tsv, "# index\tcell\tseed\tstatus\trun_dir\tconfig\n");
    for (int i = 0; i < n; i++) {
        strbuf_printf(&tsv, "%d\t%s\t%lld\t%s\t%s\t%s\n", cells[i].index, cells[i].name, cells[i].seed,
                 sweep_status_name(cells[i].status), cells[i].run_dir, cells[i].config_path);
    }
    sweep_paths(g, script, index, sizeof(script));
    rc = write_atomic(index, tsv.s, err); // the header line at least
    strbuf_free(&tsv);
    if (rc != 0) return -1;
    if (!pending) { // a stale array would only rerun finished cells
        if (unlink(script) != 0 && errno != ENOENT) {
            return config_error(err, "cannot remove '%s': %s", script, strerror(errno));
        }
        return 0;
    }
    char* text = array_script(g, cells, n, sbatch_script, ingrain);
    rc = write_atomic(script, text, err);
    free(text);
    if (rc == 0 && chmod(script, 0755) != 0) return config_error(err, "cannot chmod '%s': %s", script, strerror(errno));
    return rc;
}

// ----------------------------------------------------------------------------
// `ingrain sweep`

static const char* usage_sweep =
    "usage: ingrain sweep GRID.yaml [--seeds N] [--out DIR] [--set KEY=VALUE]... [--dry-run | --submit]\n"
    "\n"
    "Expands a grid (docs/SLURM.md) into cells: every combination of the axes' values, times the\n"
    "seeds. Each cell gets a validated config RUN_DIR/cell.yaml (RUN_DIR = OUT/CELL/seedS),\n"
    "OUT/cells.tsv lists the cells, and OUT/sweep.sbatch is one Slurm job array over the unfinished\n"
    "ones. Run again to continue: finished cells (RUN_DIR/DONE) are skipped, unfinished ones resume\n"
    "from their newest checkpoint.\n"
    "\n"
    "  --seeds N             seeds 1..N instead of the grid's seeds:\n"
    "  --out DIR             sweep folder instead of the grid's out: (default runs/NAME)\n"
    "  --set KEY=VALUE       override a config key in every cell (repeatable)\n"
    "  --dry-run             list the cells and the array; write nothing\n"
    "  --submit              submit the array with sbatch (slurm/sweep.sh does this)\n"
    "  --sbatch-script PATH  per-cell job script (default: slurm/ingrain.sbatch beside the binary's tree)\n";

static int sweep_usage(const char* fmt, const char* arg) {
    fprintf(stderr, "ingrain sweep: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n%s", usage_sweep);
    return INGRAIN_EXIT_USAGE;
}

static void print_cells(const SweepGrid* g, const SweepCell* cells, int n) {
    int counts[3] = {0};
    for (int i = 0; i < n; i++) counts[cells[i].status]++;
    long long n_cells = n / (g->n_seeds ? g->n_seeds : 1);
    printf("sweep '%s' (grid %s, base %s): %lld cell%s x %d seed%s = %d run%s in %s\n", g->name, g->path, g->base,
           n_cells, n_cells == 1 ? "" : "s", g->n_seeds, g->n_seeds == 1 ? "" : "s", n, n == 1 ? "" : "s", g->out_abs);
    printf("  %d new, %d to resume, %d finished (skipped)\n\n", counts[SWEEP_NEW], counts[SWEEP_RESUME],
           counts[SWEEP_DONE]);
    printf("  %5s  %-6s  %6s  %s\n", "index", "status", "seed", "cell");
    for (int i = 0; i < n; i++) {
        printf("  %5d  %-6s  %6lld  %s\n", cells[i].index, sweep_status_name(cells[i].status), cells[i].seed,
               cells[i].name);
    }
    printf("\n");
}

static int submit(const char* script, const char* out_dir, const char* spec) {
    char* argv[] = {"sbatch", "--parsable", (char*)script, NULL};
    char reply[256];
    int rc = subproc_run(argv, reply, sizeof(reply));
    if (rc != 0) {
        log_error("sbatch %s failed (%s %d); is Slurm reachable from here (sinfo)? The array script is written: "
                  "submit it with `sbatch %s` when it is", script,
                  rc < 0 || rc == 127 ? "could not run it, code" : "exit", rc, script);
        return INGRAIN_EXIT_FAILURE;
    }
    reply[strcspn(reply, ";\n")] = '\0';
    printf("submitted job array %s (--array=%s)\n", reply, spec);
    printf("follow:  squeue -j %s                       # pending and running tasks\n", reply);
    printf("         sacct -j %s -X --format=JobID,State,Elapsed,ExitCode   # with accounting\n", reply);
    printf("         scontrol show job %s_INDEX | grep -o 'Restarts=[0-9]*'   # requeues of one task\n", reply);
    printf("         tail -f %s/logs/%s_INDEX.out\n", out_dir, reply);
    printf("report:  ingrain report %s\n", out_dir);
    return 0;
}

int cli_sweep(int argc, char** argv) {
    const char* grid_path = NULL;
    const char* out = NULL;
    const char* sbatch_script = NULL;
    int seeds = 0, dry_run = 0, do_submit = 0, n_sets = 0;
    const char** sets = callocCheck((size_t)argc + 1, sizeof(char*));
    for (int i = 0; i < argc; i++) {
        const char* a = argv[i];
        int has_value = i + 1 < argc;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            free(sets);
            return fputs(usage_sweep, stdout), 0;
        } else if (strcmp(a, "--dry-run") == 0) {
            dry_run = 1;
        } else if (strcmp(a, "--submit") == 0) {
            do_submit = 1;
        } else if ((strcmp(a, "--set") == 0 || strcmp(a, "--seeds") == 0 || strcmp(a, "--out") == 0 ||
                    strcmp(a, "--sbatch-script") == 0) && !has_value) {
            free(sets);
            return sweep_usage("%s needs a value", a);
        } else if (strcmp(a, "--set") == 0) {
            sets[n_sets++] = argv[++i];
        } else if (strncmp(a, "--set=", 6) == 0) {
            sets[n_sets++] = a + 6;
        } else if (strcmp(a, "--seeds") == 0) {
            char* end = NULL;
            long v = strtol(argv[++i], &end, 10);
            if (*end != '\0' || v < 1 || v > SWEEP_MAX_RUNS) {
                free(sets);
                return sweep_usage("--seeds: expected a count of seeds (1 or more), got '%s'", argv[i]);
            }
            seeds = (int)v;
        } else if (strcmp(a, "--out") == 0) {
            out = argv[++i];
        } else if (strcmp(a, "--sbatch-script") == 0) {
            sbatch_script = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0') {
            free(sets);
            return sweep_usage("unknown option '%s'", a);
        } else if (grid_path) {
            free(sets);
            return sweep_usage("more than one grid file given ('%s')", a);
        } else {
            grid_path = a;
        }
    }
    if (!grid_path || (dry_run && do_submit)) {
        free(sets);
        return sweep_usage("%s", !grid_path ? "missing GRID.yaml (for example configs/ablation.yaml)"
                                            : "--dry-run and --submit exclude each other");
    }

    SweepGrid g;
    ConfigError err;
    SweepCell* cells = NULL;
    int n = 0, rc = INGRAIN_EXIT_USAGE;
    char script_path[PATH_MAX], self[PATH_MAX];
    if (sweep_load(&g, grid_path, &err) != 0 || (out && sweep_set_out(&g, out, &err) != 0)) goto bad;
    if (seeds > 0) sweep_set_seeds(&g, seeds);
    if (sweep_expand(&g, sets, n_sets, &cells, &n, &err) != 0) goto bad;
    print_cells(&g, cells, n);
    char spec[8192], script[CONFIG_PATH + 32], index[CONFIG_PATH + 32];
    sweep_array_spec(cells, n, spec, sizeof(spec));
    sweep_paths(&g, script, index, sizeof(script));
    if (dry_run) {
        printf("dry run: nothing written. The array would be --array=%s\n", spec[0] ? spec : "(none: all finished)");
        rc = 0;
        goto done;
    }
    if (sbatch_script) {
        if (!realpath(sbatch_script, script_path)) {
            snprintf(err.msg, sizeof(err.msg), "--sbatch-script %s: %s", sbatch_script, strerror(errno));
            goto bad;
        }
    } else if (subproc_find_beside("slurm/ingrain.sbatch", script_path, sizeof(script_path)) != 0) {
        snprintf(err.msg, sizeof(err.msg), "cannot find slurm/ingrain.sbatch beside the binary's source tree or under "
                 "the current directory; give --sbatch-script PATH");
        goto bad;
    }
    if (subproc_self_path(self, sizeof(self)) != 0) snprintf(self, sizeof(self), "ingrain");
    if (sweep_write(&g, cells, n, script_path, self, &err) != 0) {
        rc = INGRAIN_EXIT_FAILURE;
        goto bad;
    }
    printf("wrote %d cell configs (RUN_DIR/cell.yaml) and the index %s\n", n, index);
    if (!spec[0]) {
        printf("every run is finished: nothing to submit\nreport:  ingrain report %s\n", g.out_abs);
        rc = 0;
        goto done;
    }
    printf("job array script %s (--array=%s)\n", script, spec);
    if (do_submit) {
        rc = submit(script, g.out_abs, spec);
    } else {
        printf("submit:  sbatch %s   (or run this command again with --submit)\n", script);
        printf("then:    squeue -j JOBID; logs in %s/logs/JOBID_INDEX.out\n", g.out_abs);
        printf("report:  ingrain report %s\n", g.out_abs);
        rc = 0;
    }
    goto done;
bad:
    log_error("%s", err.msg);
done:
    free(cells);
    sweep_free(&g);
    free(sets);
    return rc;
}
