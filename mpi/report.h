// Reports over many runs (docs/SLURM.md): every run directory under RUNS_DIR (one holding
// metrics.jsonl and config.yaml) gives rows of one table; runs whose configs agree on every key
// but run.*, bootstrap.cache_dir and bootstrap.threads form a cell, and per cell and iteration
// the runs (seeds) are summarised by their mean and 95% confidence interval. Written as CSV and
// Markdown; tools/plot_report.py draws student success over iterations per cell.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "io/config.h"

// ----------------------------------------------------------------------------
// the table

// metrics of the driver's `"type": "iteration"` records, in this order, then the teacher's lead
// (teacher_success - student_success of the same run), derived: a difference within each run, so
// its interval over seeds is the paired one, narrower than the two successes' when they move together
enum { REPORT_STUDENT = 0, REPORT_TEACHER, REPORT_TURNS, REPORT_PREMATURE, REPORT_TOKENS, REPORT_POOL, REPORT_LOSS,
       REPORT_WON, REPORT_LOST, REPORT_NREAD, REPORT_LEAD = REPORT_NREAD, REPORT_NMETRICS };
extern const char* const report_metric_keys[REPORT_NMETRICS]; // "student_success", ..., "teacher_lead"

typedef struct {
    int iteration;
    double v[REPORT_NMETRICS]; // NAN where the record lacks the key
} ReportPoint;

typedef struct {
    char* dir; // RUNS_DIR/...
    long long seed;
    int cell;
    int done;            // RUN_DIR/DONE exists
    ReportPoint* points; // one per iteration, ascending
    int n_points;
} ReportRun;

typedef struct {
    char* key;   // the config minus run.* and the bootstrap's cache and threads, as "section.key=value" lines
    char* label; // the keys in which cells differ, e.g. "regime=on_policy, loss=reverse_kl"; "all runs" if none
    int n_runs;
} ReportCell;

typedef struct {
    ReportRun* runs; // sorted by directory
    int n_runs;
    ReportCell* cells; // in the order of their first run
    int n_cells;
    int n_skipped; // run directories that could not be read (each warned about on stderr)
} Report;

typedef struct {
    int n;
    double mean;
    double ci95; // half width of the 95% confidence interval (Student t); NAN when n < 2
} ReportStat;

// Find every run under runs_dir and read it; unreadable runs are warned about and skipped.
// 0 on success, -1 with err when runs_dir cannot be read or holds no readable run.
int report_collect(Report* r, const char* runs_dir, ConfigError* err);
// Read one run's metrics.jsonl into points; 0, or -1 with err naming the file and line.
int report_read_metrics(const char* path, ReportPoint** points, int* n_points, ConfigError* err);
void report_free(Report* r);

// ----------------------------------------------------------------------------
// statistics

// the 0.975 quantile of Student's t with df degrees of freedom (df >= 1)
double report_t975(int df);
// Two-sided exact sign test (McNemar's exact test) of paired outcomes: won and lost are the tasks
// only the one side or only the other solved; the probability of a split at least this uneven if
// each were equally likely to win each (1 when none differs)
double report_sign_test(int64_t won, int64_t lost);
// mean and 95% CI half width of x[0..n), NAN entries skipped
ReportStat report_stats(const double* x, int n);
// metric m over the runs of cell c at iteration it
ReportStat report_cell_stat(const Report* r, int cell, int iteration, int metric);

// ----------------------------------------------------------------------------
// output

// OUT/runs.csv (every run x iteration) and OUT/summary.csv (cell x iteration); 0 or -1 with err
int report_write_csv(const Report* r, const char* out_dir, ConfigError* err);
// OUT/report.md; `plots` says what tools/plot_report.py made (NULL: no plots, with `why`)
int report_write_markdown(const Report* r, const char* runs_dir, const char* out_dir, int plots, const char* why,
                          ConfigError* err);

// `ingrain report RUNS_DIR [--out DIR]`
int cli_report(int argc, char** argv);
