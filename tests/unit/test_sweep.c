// Unit tests of sweeps (mpi/sweep.h): grid parsing and its error messages (file, line, key),
// expansion of the 2x2x2 ablation x seeds into validated configs, the files of the sweep folder,
// and re-running: finished cells skipped, unfinished ones kept in the array, a changed grid refused.
#define _XOPEN_SOURCE 700 // nftw, mkdtemp
#include <ftw.h>
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

#include "mpi/sweep.h"

// ----------------------------------------------------------------------------
// helpers

static char g_dir[256]; // a fresh temporary folder per test

static int remove_entry(const char* path, const struct stat* st, int flag, struct FTW* ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

// the base config of every grid: g_dir/base.yaml (distill.loss on line 10)
static const char* base_yaml = "run:\n"
                               "  iterations: 3\n"
                               "ranks:\n"
                               "  colocate: true\n"
                               "rollout:\n"
                               "  group_size: 5\n"
                               "distill:\n"
                               "  regime: off_policy\n"
                               "  lr: 1e-3\n"
                               "  loss: forward_kl\n";

static int setup(void** state) {
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "%s/ingrain_sweep_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_dir)) return -1;
    char path[300];
    snprintf(path, sizeof(path), "%s/base.yaml", g_dir);
    FILE* f = fopen(path, "w");
    if (!f) return -1;
    fputs(base_yaml, f);
    return fclose(f);
}

// "base: g_dir/base.yaml" then body: the grid's line 2 is the body's first line
static const char* with_base(const char* body) {
    static char yaml[4096];
    snprintf(yaml, sizeof(yaml), "base: %s/base.yaml\n%s", g_dir, body);
    return yaml;
}

static int teardown(void** state) {
    (void)state;
    return nftw(g_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void assert_contains(const char* haystack, const char* needle) {
    if (!strstr(haystack, needle)) fail_msg("text\n  \"%s\"\ndoes not contain\n  \"%s\"", haystack, needle);
}

static char* slurp(const char* path) {
    FILE* f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void touch(const char* dir, const char* name) {
    char path[2048];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE* f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
}

// run directory of cell i (as the sweep names it)
static const char* cells_dir(const SweepGrid* g, int i) {
    static char dir[1100];
    SweepCell* cells;
    int n;
    ConfigError err;
    assert_int_equal(sweep_expand(g, NULL, 0, &cells, &n, &err), 0);
    snprintf(dir, sizeof(dir), "%s", cells[i].run_dir);
    free(cells);
    return dir;
}

static const char* ablation =
    "name: abl\n"
    "seeds: 3\n"
    "set:\n"
    "  run.iterations: 2\n"
    "  eval: {tasks: 8}\n"
    "axes:\n"
    "  granularity:\n"
    "    principle: {experience.granularity: principle}\n"
    "    instance: {experience.granularity: instance}\n"
    "  injection:\n"
    "    stepwise: {experience.injection: stepwise}\n"
    "    global: {experience.injection: global}\n"
    "  regime:\n"
    "    off_policy: {distill.regime: off_policy, distill.loss: forward_kl}\n"
    "    on_policy: {distill.regime: on_policy, distill.loss: reverse_kl}\n"
    "slurm:\n"
    "  ntasks: 4\n"
    "  time: \"01:00:00\"\n"
    "  exclusive: true\n"
    "  max_parallel: 5\n";

// parse `yaml` as grid.yaml in g_dir with out = g_dir/out
static void load_grid(SweepGrid* g, const char* yaml) {
    ConfigError err;
    char label[512], out[512];
    snprintf(label, sizeof(label), "%s/grid.yaml", g_dir);
    snprintf(out, sizeof(out), "%s/out", g_dir);
    if (sweep_load_string(g, with_base(yaml), label, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(sweep_set_out(g, out, &err), 0);
}

// ----------------------------------------------------------------------------
// expansion

static void test_expand_ablation(void** state) {
    (void)state;
    SweepGrid g;
    load_grid(&g, ablation);
    assert_string_equal(g.name, "abl");
    assert_int_equal(g.n_axes, 3);
    assert_int_equal(g.n_seeds, 3);
    assert_int_equal(g.max_parallel, 5);
    SweepCell* cells;
    int n;
    ConfigError err;
    const char* sets[] = {"rollout.group_size=4"};
    if (sweep_expand(&g, sets, 1, &cells, &n, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(n, 24);
    // cell-major, seeds inner; the last axis turns fastest
    static const char* const names[8] = {"principle-stepwise-off_policy", "principle-stepwise-on_policy",
                                          "principle-global-off_policy",   "principle-global-on_policy",
                                          "instance-stepwise-off_policy",  "instance-stepwise-on_policy",
                                          "instance-global-off_policy",    "instance-global-on_policy"};
    for (int i = 0; i < n; i++) {
        const SweepCell* c = &cells[i];
        const Config* cfg = &c->config;
        assert_int_equal(c->index, i);
        assert_string_equal(c->name, names[i / 3]);
        assert_int_equal(c->seed, i % 3 + 1);
        assert_int_equal(c->status, SWEEP_NEW);
        char dir[1024];
        snprintf(dir, sizeof(dir), "%s/out/%s/seed%d", g_dir, names[i / 3], i % 3 + 1);
        assert_string_equal(c->run_dir, dir);
        assert_string_equal(cfg->run.dir, dir);
        assert_int_equal(cfg->run.seed, i % 3 + 1);
        assert_int_equal(cfg->run.resume, RESUME_AUTO);
        assert_int_equal(cfg->experience.granularity, i / 12 == 0 ? GRANULARITY_PRINCIPLE : GRANULARITY_INSTANCE);
        assert_int_equal(cfg->experience.injection, (i / 6) % 2 == 0 ? INJECTION_STEPWISE : INJECTION_GLOBAL);
        int on = (i / 3) % 2;
        assert_int_equal(cfg->distill.regime, on ? REGIME_ON_POLICY : REGIME_OFF_POLICY);
        assert_int_equal(cfg->distill.loss, on ? LOSS_REVERSE_KL : LOSS_FORWARD_KL);
        // set: and --set reach every cell; the base's other keys stay
        assert_int_equal(cfg->run.iterations, 2);
        assert_int_equal(cfg->eval.tasks, 8);
        assert_int_equal(cfg->rollout.group_size, 4);
        assert_true(cfg->distill.lr == 1e-3);
        ConfigError verr;
        assert_int_equal(config_validate(cfg, &verr), 0);
    }
    char spec[256];
    sweep_array_spec(cells, n, spec, sizeof(spec));
    assert_string_equal(spec, "0-23");
    free(cells);
    sweep_free(&g);
}

static void test_list_axis_and_seed_list(void** state) {
    (void)state;
    SweepGrid g;
    load_grid(&g, "seeds: [7, 42]\naxes:\n  distill.lr: [0.001, 3e-3]\n");
    assert_string_equal(g.name, "grid"); // from the file name
    SweepCell* cells;
    int n;
    ConfigError err;
    if (sweep_expand(&g, NULL, 0, &cells, &n, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(n, 4);
    assert_string_equal(cells[0].name, "0.001");
    assert_string_equal(cells[3].name, "3e-3");
    assert_int_equal(cells[1].seed, 42);
    assert_true(cells[2].config.distill.lr == 3e-3);
    assert_string_equal(cells[3].config.run.name, "grid-3e-3-seed42");
    free(cells);
    sweep_set_seeds(&g, 2);
    assert_int_equal(g.seeds[0], 1);
    assert_int_equal(g.seeds[1], 2);
    sweep_free(&g);
}

// ----------------------------------------------------------------------------
// errors: each names the grid file, the line and the key

typedef struct {
    const char* yaml; // after the base: line (line 2 onwards)
    const char* expected;
} BadGrid;

static const BadGrid bad_grids[] = {
    {"axis: 1\n", "grid.yaml:2: unknown grid key 'axis'"},
    {"set:\n  distill.lrr: 1\n", "grid.yaml:3: unknown key 'distill.lrr' (did you mean 'distill.lr'?)"},
    {"set:\n  distill:\n    lr: fast\n", "grid.yaml:4: distill.lr: expected a finite number, got 'fast'"},
    {"axes:\n  r:\n    on: {distill.regime: on_policy}\n",
     "/base.yaml:10: distill.loss 'forward_kl' does not fit distill.regime 'on_policy' (grid.yaml:4); off_policy "
     "takes forward_kl or sft"},
    {"axes:\n  r:\n    on: {distill.regime: on_policy, distill.loss: forward_kl}\n",
     "grid.yaml:4: distill.loss 'forward_kl' does not fit distill.regime 'on_policy' (grid.yaml:4)"},
    {"axes:\n  a:\n    x: {distill.lr: 1}\n  b:\n    y: {distill.lr: 2}\n",
     "grid.yaml:6: distill.lr is set by axis 'b' and by axis 'a' (line 4)"},
    {"set:\n  run.seed: 5\n", "grid.yaml:3: run.seed is set by the sweep for every cell"},
    {"seeds: [1, 2, 1]\n", "grid.yaml:2: seeds: seed 1 is listed twice"},
    {"seeds: 0\n", "grid.yaml:2: seeds: expected a count"},
    {"axes:\n  r: {}\n", "grid.yaml:3: axis 'r' has no values"},
    {"axes:\n  r:\n    on: 3\n", "grid.yaml:4: axis 'r' value 'on': expected a mapping of config keys"},
    {"axes:\n  r:\n    a: {}\n    a: {}\n", "grid.yaml:5: axis 'r': value 'a' is given twice (first at line 4)"},
    {"axes:\n  r:\n    a+b: {}\n    a?b: {}\n    a/b: {}\n", "grid.yaml: two cells are both named 'a_b'"},
    {"slurm:\n  array: 0-3\n", "grid.yaml:3: slurm: array is chosen by the sweep"},
    {"slurm:\n  max_parallel: none\n", "grid.yaml:3: slurm: max_parallel: expected a positive integer"},
    {"name: a/b\n", "grid.yaml:2: name: 'a/b' must be"},
    {"set:\n  eval.tasks: [1]\n", "grid.yaml:3: set: eval.tasks: expected one value, got a list"},
    {"out: \"runs/my sweep\"\n", "out: 'runs/my sweep' must not contain whitespace"},
    {"seeds: [1\n", "grid.yaml:3: YAML syntax error"},
};

static void test_bad_grids(void** state) {
    (void)state;
    const char* label = "grid.yaml"; // messages then start with it

    for (size_t i = 0; i < sizeof(bad_grids) / sizeof(bad_grids[0]); i++) {
        const char* yaml = with_base(bad_grids[i].yaml);
        SweepGrid g;
        ConfigError err = {{0}};
        int rc = sweep_load_string(&g, yaml, label, &err);
        SweepCell* cells = NULL;
        int n = 0;
        if (rc == 0) rc = sweep_expand(&g, NULL, 0, &cells, &n, &err);
        free(cells);
        sweep_free(&g);
        if (rc == 0) fail_msg("grid %zu was accepted:\n%s", i, yaml);
        assert_contains(err.msg, bad_grids[i].expected);
    }
    // a validation error names the cell and seed, then where each key was set
    SweepGrid g;
    ConfigError err;
    SweepCell* cells;
    int n;
    assert_int_equal(sweep_load_string(&g, with_base("axes:\n  r:\n    on: {distill.regime: on_policy}\n"), label,
                                       &err), 0);
    assert_int_equal(sweep_expand(&g, NULL, 0, &cells, &n, &err), -1);
    char expected[600];
    snprintf(expected, sizeof(expected), "cell on, seed 1: %s/base.yaml:10: distill.loss", g_dir);
    assert_contains(err.msg, expected);
    sweep_free(&g);
    // no base, and a base that does not exist (relative to the grid file's folder)
    assert_int_equal(sweep_load_string(&g, "seeds: 2\n", label, &err), -1);
    assert_contains(err.msg, "grid.yaml: no base config");
    sweep_free(&g);
    assert_int_equal(sweep_load_string(&g, "seeds: 1\nbase: missing.yaml\n", label, &err), 0);
    assert_int_equal(sweep_expand(&g, NULL, 0, &cells, &n, &err), -1);
    assert_contains(err.msg, "grid.yaml:2: base config: ");
    assert_contains(err.msg, "missing.yaml: cannot open config file");
    sweep_free(&g);
    // command-line overrides: the config loader's message, and the keys the sweep owns
    load_grid(&g, ablation);
    const char* bad_set[] = {"distill.lrr=1"};
    assert_int_equal(sweep_expand(&g, bad_set, 1, &cells, &n, &err), -1);
    assert_contains(err.msg, "--set distill.lrr=1: unknown key 'distill.lrr'");
    const char* managed[] = {"run.dir=/x"};
    assert_int_equal(sweep_expand(&g, managed, 1, &cells, &n, &err), -1);
    assert_contains(err.msg, "--set run.dir=/x: run.dir is set by the sweep");
    sweep_free(&g);
}

// ----------------------------------------------------------------------------
// the sweep folder, and re-running it

static void expand_and_write(SweepGrid* g, SweepCell** cells, int* n) {
    ConfigError err;
    if (sweep_expand(g, NULL, 0, cells, n, &err) != 0) fail_msg("%s", err.msg);
    if (sweep_write(g, *cells, *n, "/opt/ingrain/slurm/ingrain.sbatch", "/opt/ingrain/build/ingrain", &err) != 0)
        fail_msg("%s", err.msg);
}

static void test_write_and_rerun(void** state) {
    (void)state;
    SweepGrid g;
    load_grid(&g, ablation);
    SweepCell* cells;
    int n;
    expand_and_write(&g, &cells, &n);
    char script[1100], index[1100];
    sweep_paths(&g, script, index, sizeof(script));

    // every cell config reloads to the same effective config
    for (int i = 0; i < n; i++) {
        Config c;
        ConfigError err;
        config_defaults(&c);
        if (config_load_file(&c, cells[i].config_path, &err) != 0) fail_msg("%s", err.msg);
        char* a = config_to_yaml(&c, &err);
        char* b = config_to_yaml(&cells[i].config, &err);
        assert_string_equal(a, b);
        free(a), free(b);
    }
    const char* tsv = slurp(index);
    assert_non_null(tsv);
    int lines = 0;
    for (const char* p = tsv; (p = strchr(p, '\n')); p++) lines++;
    assert_int_equal(lines, 25);
    char row[4096];
    snprintf(row, sizeof(row), "\n5\tprinciple-stepwise-on_policy\t3\tnew\t%s\t%s\n", cells[5].run_dir,
             cells[5].config_path);
    assert_contains(tsv, row);
    const char* text = slurp(script);
    assert_non_null(text);
    assert_contains(text, "#SBATCH --array=0-23%5\n");
    assert_contains(text, "#SBATCH --job-name=abl\n");
    assert_contains(text, "#SBATCH --signal=B:USR1@120\n#SBATCH --requeue\n");
    assert_contains(text, "#SBATCH --ntasks=4\n#SBATCH --time=01:00:00\n#SBATCH --exclusive\n");
    assert_contains(text, "/out/logs/%A_%a.out\n");
    assert_contains(text, "export INGRAIN=${INGRAIN:-/opt/ingrain/build/ingrain}\n");
    assert_contains(text, "exec bash /opt/ingrain/slurm/ingrain.sbatch \"$config\"\n");
    assert_int_equal(access(script, X_OK), 0);
    free(cells);

    // some cells finished, one checkpointed: the array covers the unfinished ones only
    SweepCell* again;
    int m;
    ConfigError err;
    assert_int_equal(sweep_expand(&g, NULL, 0, &again, &m, &err), 0);
    for (int i = 0; i < m; i++) {
        if (i < 3 || i == 7 || i == 23) touch(again[i].run_dir, "DONE");
    }
    char ckpt[1100];
    snprintf(ckpt, sizeof(ckpt), "%s/ckpt", again[10].run_dir);
    assert_int_equal(mkdir(ckpt, 0777), 0);
    touch(ckpt, "iter_0002.h5"); // the driver's RUN_DIR/ckpt/iter_NNNN.h5
    touch(again[11].run_dir, "iter_0001.h5.tmp"); // an incomplete write is no checkpoint
    free(again);
    expand_and_write(&g, &again, &m);
    assert_int_equal(again[0].status, SWEEP_DONE);
    assert_int_equal(again[10].status, SWEEP_RESUME);
    assert_int_equal(again[11].status, SWEEP_NEW);
    char spec[256];
    sweep_array_spec(again, m, spec, sizeof(spec));
    assert_string_equal(spec, "3-6,8-22");
    assert_contains(slurp(script), "#SBATCH --array=3-6,8-22%5\n");
    assert_contains(slurp(index), "\tresume\t");
    free(again);

    // a grid that changed under started runs is refused, before any file is touched
    touch(cells_dir(&g, 4), "metrics.jsonl");
    char* edited = strdup(ablation);
    char* at = strstr(edited, "run.iterations: 2");
    at[strlen("run.iterations: ")] = '5';
    SweepGrid g2;
    load_grid(&g2, edited);
    free(edited);
    assert_int_equal(sweep_expand(&g2, NULL, 0, &again, &m, &err), 0);
    char* before = strdup(slurp(again[3].config_path));
    assert_int_equal(sweep_write(&g2, again, m, "/s", "/i", &err), -1);
    assert_contains(err.msg, "cell principle-stepwise-off_policy, seed 1: "); // DONE: started
    assert_contains(err.msg, "differs from what the grid gives now, and the run has started");
    assert_string_equal(slurp(again[3].config_path), before); // a cell not started, left as it was
    free(before);
    free(again);
    sweep_free(&g2);

    // every cell finished: nothing to submit, and no stale array script
    assert_int_equal(sweep_expand(&g, NULL, 0, &again, &m, &err), 0);
    for (int i = 0; i < m; i++) touch(again[i].run_dir, "DONE");
    free(again);
    expand_and_write(&g, &again, &m);
    sweep_array_spec(again, m, spec, sizeof(spec));
    assert_string_equal(spec, "");
    assert_int_equal(access(script, F_OK), -1);
    free(again);
    sweep_free(&g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_expand_ablation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_axis_and_seed_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_grids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_and_rerun, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
