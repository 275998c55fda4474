// Unit tests of reports (mpi/report.h) on synthetic run folders: runs found and grouped into
// cells by their configs, labels from the keys that differ, metrics records read (other record
// types, unknown keys, a half-written last line, repeated iterations), unreadable runs skipped
// with a message naming file and line, and the statistics against SciPy
// (reference numbers from `/usr/bin/python3 tools/report_reference.py`).
#define _XOPEN_SOURCE 700 // nftw, mkdtemp
#include <ftw.h>
#include <math.h>
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

#include "mpi/report.h"

// ----------------------------------------------------------------------------
// reference numbers (tools/report_reference.py)

// df, t_0.975 (scipy.stats.t.ppf)
static const double t_ref[][2] = {{1, 12.706204736432},  {2, 4.302652729911},  {3, 3.182446305284},
                                  {10, 2.228138851965},  {29, 2.045229642133}, {30, 2.042272456301},
                                  {31, 2.039513446396},  {45, 2.014103384833}, {100, 1.983971518450},
                                  {1000, 1.962339080826}};
// name: mean, 95% CI half width = t(n-1) * sd / sqrt(n)
static const double a_it0_ref[2] = {0.400000000000, 0.496827542369};
static const double a_it1_ref[2] = {0.650000000000, 0.541405262388};
static const double a_teacher_it0_ref[2] = {0.750000000000, 0.124206885592};
static const double b_it0_ref[2] = {0.200000000000, 1.270620473643};
static const double a_lead_it0_ref[2] = {0.350000000000, 0.447834294768};

// ----------------------------------------------------------------------------
// synthetic runs

static char g_dir[256];

static int remove_entry(const char* path, const struct stat* st, int flag, struct FTW* ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown(void** state) {
    (void)state;
    return nftw(g_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void assert_contains(const char* haystack, const char* needle) {
    if (!strstr(haystack, needle)) fail_msg("text\n  \"%s\"\ndoes not contain\n  \"%s\"", haystack, needle);
}

static void write_file(const char* dir, const char* name, const char* text) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE* f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char* read_file(const char* path) {
    static char buf[1 << 16];
    FILE* f = fopen(path, "r");
    if (!f) return NULL;
    buf[fread(buf, 1, sizeof(buf) - 1, f)] = '\0';
    fclose(f);
    return buf;
}

// RUNS/rel with the effective config of (seed, regime) and the given metrics lines
static void make_run(const char* rel, long long seed, int on_policy, const char* metrics, int done) {
    char dir[512], cmd[600];
    snprintf(dir, sizeof(dir), "%s/runs/%s", g_dir, rel);
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", dir);
    assert_int_equal(system(cmd), 0);
    Config c;
    ConfigError err;
    config_defaults(&c);
    c.run.seed = seed;
    snprintf(c.run.dir, sizeof(c.run.dir), "%s", dir);
    snprintf(c.run.name, sizeof(c.run.name), "%s", rel); // run.* differ per run: not part of the cell
    // nor where the base model is cached and with how many threads it was built: other base models
    snprintf(c.bootstrap.cache_dir, sizeof(c.bootstrap.cache_dir), "caches/%lld", seed);
    c.bootstrap.threads = (int)seed;
    c.distill.regime = on_policy ? REGIME_ON_POLICY : REGIME_OFF_POLICY;
    c.distill.loss = on_policy ? LOSS_REVERSE_KL : LOSS_FORWARD_KL;
    char* yaml = config_to_yaml(&c, &err);
    write_file(dir, "config.yaml", yaml);
    free(yaml);
    write_file(dir, "metrics.jsonl", metrics);
    if (done) write_file(dir, "DONE", "");
}

static const char* line(int it, double student, double teacher) {
    static char buf[8][512];
    static int k = 0;
    char* b = buf[k++ % 8];
    snprintf(b, 512,
             "{\"type\": \"iteration\", \"iteration\": %d, \"student_success\": %.17g, \"teacher_success\": %.17g, "
             "\"mean_turns\": %d, \"premature_rate\": 0.25, \"tokens_per_episode\": 120, \"pool_size\": 5, "
             "\"train_loss\": 0.5, \"seconds\": 1.5, \"future_key\": [1, 2]}\n",
             it, student, teacher, 4 + it);
    return b;
}

static char* cat(const char* a, const char* b, const char* c) {
    static char buf[4][2048];
    static int k = 0;
    char* out = buf[k++ % 4];
    snprintf(out, 2048, "%s%s%s", a, b, c ? c : "");
    return out;
}

static int setup(void** state) {
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "%s/ingrain_report_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_dir)) return -1;
    const char* step = "{\"type\": \"step\", \"step\": 3, \"loss\": 1.0}\n";
    // cell A (off-policy): three seeds, two iterations; seed 2 repeats iteration 1 (the last record counts)
    make_run("off/seed1", 1, 0, cat(line(0, 0.2, 0.7), step, line(1, 0.5, 0.8)), 1);
    make_run("off/seed2", 2, 0, cat(line(0, 0.4, 0.8), line(1, 0.1, 0.1), line(1, 0.55, 0.8)), 1);
    make_run("off/seed3", 3, 0, cat(line(0, 0.6, 0.75), line(1, 0.9, 0.8), "{\"type\": \"iteration\", \"itera"), 0);
    // cell B (on-policy): two seeds, the second unfinished after iteration 0
    make_run("on/seed1", 1, 1, cat(line(0, 0.1, 0.5), line(1, 0.05, 0.4), NULL), 1);
    char counted[600]; // this version's records also carry the tasks only the teacher / only the student solved
    snprintf(counted, sizeof(counted), "%.*s, \"teacher_won\": 3, \"teacher_lost\": 1}\n",
             (int)strlen(line(0, 0.3, 0.6)) - 2, line(0, 0.3, 0.6));
    make_run("on/seed2", 2, 1, counted, 0);
    // unreadable: a broken line, a wrong type, no config
    make_run("broken/seed1", 1, 0, cat(line(0, 0.1, 0.1), "{\"type\": \"iteration\", oops}\n", NULL), 0);
    make_run("broken/seed2", 2, 0, "{\"type\": \"iteration\", \"iteration\": 0, \"student_success\": \"high\"}\n", 0);
    make_run("broken/seed3", 3, 0, line(0, 0.1, 0.1), 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/runs/broken/seed3/config.yaml", g_dir);
    remove(path);
    return 0;
}

// ----------------------------------------------------------------------------
// tests

// exact values (Python's integer binomials; scipy.stats.binomtest agrees to 1e-15)
static void test_sign_test(void** state) {
    (void)state;
    const struct {
        int64_t won, lost;
        double p;
    } ref[] = {{4, 0, 0.125},     {0, 4, 0.125},   {7, 3, 0.34375},
               {10, 0, 0.001953125}, {0, 0, 1.0},  {5, 5, 1.0},
               {30, 10, 0.0022214337732293643}, {200, 150, 0.008720036530555949}};
    for (size_t i = 0; i < sizeof(ref) / sizeof(ref[0]); i++) {
        double p = report_sign_test(ref[i].won, ref[i].lost);
        if (fabs(p - ref[i].p) > 1e-12 * (1.0 + ref[i].p))
            fail_msg("sign test %lld/%lld: %.17g, want %.17g", (long long)ref[i].won, (long long)ref[i].lost, p,
                     ref[i].p);
    }
    // past 2^-1074, where C(n, i) / 2^n no longer fits a double: 1.3325871648376252e-23 exactly
    double p = report_sign_test(1500, 1000);
    assert_true(fabs(p - 1.3325871648376252e-23) < 1e-9 * 1.3325871648376252e-23);
}

static void test_t_quantiles(void** state) {
    (void)state;
    for (size_t i = 0; i < sizeof(t_ref) / sizeof(t_ref[0]); i++) {
        assert_true(fabs(report_t975((int)t_ref[i][0]) - t_ref[i][1]) < 1e-7);
    }
    assert_true(isnan(report_t975(0)));
    double one[] = {0.5};
    ReportStat s = report_stats(one, 1);
    assert_int_equal(s.n, 1);
    assert_true(s.mean == 0.5 && isnan(s.ci95));
    double with_nan[] = {0.1, NAN, 0.3};
    s = report_stats(with_nan, 3);
    assert_int_equal(s.n, 2);
    assert_true(fabs(s.mean - b_it0_ref[0]) < 1e-12 && fabs(s.ci95 - b_it0_ref[1]) < 1e-9);
}

static void test_metrics_errors(void** state) {
    (void)state;
    ReportPoint* p;
    int n;
    ConfigError err;
    char path[512];
    snprintf(path, sizeof(path), "%s/runs/broken/seed1/metrics.jsonl", g_dir);
    assert_int_equal(report_read_metrics(path, &p, &n, &err), -1);
    assert_contains(err.msg, "broken/seed1/metrics.jsonl:2: not a JSON line");
    snprintf(path, sizeof(path), "%s/runs/broken/seed2/metrics.jsonl", g_dir);
    assert_int_equal(report_read_metrics(path, &p, &n, &err), -1);
    assert_contains(err.msg, "broken/seed2/metrics.jsonl:1: student_success: expected a number, got a string");
    // a half-written last line is the run still writing: ignored
    snprintf(path, sizeof(path), "%s/runs/off/seed3/metrics.jsonl", g_dir);
    assert_int_equal(report_read_metrics(path, &p, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_true(p[1].iteration == 1 && p[1].v[REPORT_STUDENT] == 0.9 && p[1].v[REPORT_TURNS] == 5);
    free(p);
}

static void test_collect(void** state) {
    (void)state;
    char runs[512];
    snprintf(runs, sizeof(runs), "%s/runs", g_dir);
    Report r;
    ConfigError err;
    if (report_collect(&r, runs, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(r.n_runs, 5);
    assert_int_equal(r.n_skipped, 3);
    assert_int_equal(r.n_cells, 2);
    // runs in folder order: off/seed1..3 then on/seed1..2; cells in the order of their first run
    assert_contains(r.runs[0].dir, "runs/off/seed1");
    assert_int_equal(r.runs[4].seed, 2);
    assert_int_equal(r.runs[0].cell, 0);
    assert_int_equal(r.runs[3].cell, 1);
    assert_true(r.runs[0].done && !r.runs[2].done && !r.runs[4].done);
    assert_string_equal(r.cells[0].label, "regime=off_policy, loss=forward_kl");
    assert_string_equal(r.cells[1].label, "regime=on_policy, loss=reverse_kl");
    assert_int_equal(r.cells[0].n_runs, 3);

    ReportStat s = report_cell_stat(&r, 0, 0, REPORT_STUDENT);
    assert_int_equal(s.n, 3);
    assert_true(fabs(s.mean - a_it0_ref[0]) < 1e-12 && fabs(s.ci95 - a_it0_ref[1]) < 1e-9);
    s = report_cell_stat(&r, 0, 1, REPORT_STUDENT); // seed 2's repeated iteration 1: 0.55, not 0.1
    assert_true(fabs(s.mean - a_it1_ref[0]) < 1e-12 && fabs(s.ci95 - a_it1_ref[1]) < 1e-9);
    s = report_cell_stat(&r, 0, 0, REPORT_TEACHER);
    assert_true(fabs(s.mean - a_teacher_it0_ref[0]) < 1e-12 && fabs(s.ci95 - a_teacher_it0_ref[1]) < 1e-9);
    s = report_cell_stat(&r, 0, 0, REPORT_LEAD); // over the per-run differences, not of the two means' intervals
    assert_true(fabs(s.mean - a_lead_it0_ref[0]) < 1e-12 && fabs(s.ci95 - a_lead_it0_ref[1]) < 1e-9);
    s = report_cell_stat(&r, 1, 0, REPORT_STUDENT);
    assert_true(fabs(s.mean - b_it0_ref[0]) < 1e-12 && fabs(s.ci95 - b_it0_ref[1]) < 1e-9);
    s = report_cell_stat(&r, 1, 1, REPORT_STUDENT); // one seed got there: no interval
    assert_int_equal(s.n, 1);
    assert_true(s.mean == 0.05 && isnan(s.ci95));

    // CSV and Markdown
    char out[600];
    snprintf(out, sizeof(out), "%s/report", g_dir);
    assert_int_equal(mkdir(out, 0777), 0);
    if (report_write_csv(&r, out, &err) != 0) fail_msg("%s", err.msg);
    if (report_write_markdown(&r, runs, out, 0, "matplotlib missing", &err) != 0) fail_msg("%s", err.msg);
    char path[700];
    snprintf(path, sizeof(path), "%s/summary.csv", out);
    const char* csv = read_file(path);
    assert_non_null(csv);
    assert_contains(csv, "cell_id,cell,iteration,seeds,student_mean,student_ci95,teacher_mean,teacher_ci95,"
                         "lead_mean,lead_ci95,turns_mean,turns_ci95,premature_mean,premature_ci95\n");
    assert_contains(csv, "1,\"regime=off_policy, loss=forward_kl\",0,3,0.4,0.496828,0.75,0.124207,0.35,0.447834,4,0,"
                         "0.25,0\n");
    assert_contains(csv, "2,\"regime=on_policy, loss=reverse_kl\",1,1,0.05,,0.4,,0.35,,5,,0.25,\n");
    snprintf(path, sizeof(path), "%s/runs.csv", out);
    csv = read_file(path);
    assert_contains(csv, "cell_id,cell,seed,iteration,student_success,teacher_success,mean_turns,premature_rate,"
                         "tokens_per_episode,pool_size,train_loss,teacher_won,teacher_lost,teacher_lead,finished,"
                         "run_dir\n");
    assert_contains(csv, "2,\"regime=on_policy, loss=reverse_kl\",2,0,0.3,0.6,4,0.25,120,5,0.5,3,1,0.3,no,");
    assert_contains(csv, "1,\"regime=off_policy, loss=forward_kl\",1,0,0.2,0.7,4,0.25,120,5,0.5,,,0.5,yes,");
    int rows = 0;
    for (const char* p = csv; (p = strchr(p, '\n')); p++) rows++;
    assert_int_equal(rows, 1 + 2 + 2 + 2 + 2 + 1);
    snprintf(path, sizeof(path), "%s/report.md", out);
    const char* md = read_file(path);
    assert_contains(md, "5 runs in 2 cells");
    assert_contains(md, "; 2 unfinished; 3 skipped as unreadable.");
    assert_contains(md, "| 1 | regime=off_policy, loss=forward_kl | 3 | 1, 2, 3 | 2/3 |\n");
    assert_contains(md, "| 1 | 0 | 3 | 0.400 ± 0.497 | 0.750 ± 0.124 | +0.350 ± 0.448 | 4.00 ± 0.00 | "
                        "0.250 ± 0.000 |\n");
    assert_contains(md, "| 2 | 1 | 1 | 0.050 | 0.400 | +0.350 | 5.00 | 0.250 |\n");
    assert_contains(md, "No plots: matplotlib missing.");
    report_free(&r);
}

static void test_no_runs(void** state) {
    (void)state;
    Report r;
    ConfigError err;
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/runs/broken", g_dir);
    assert_int_equal(report_collect(&r, dir, &err), -1);
    assert_contains(err.msg, "runs/broken: no readable run found");
    report_free(&r);
    snprintf(dir, sizeof(dir), "%s/none", g_dir);
    assert_int_equal(report_collect(&r, dir, &err), -1);
    assert_contains(err.msg, "/none: not a folder of runs");
    report_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_t_quantiles), cmocka_unit_test(test_sign_test),
        cmocka_unit_test_setup_teardown(test_metrics_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_runs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
