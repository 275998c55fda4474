// Report output (see report.h): CSV tables, the Markdown page, the plots through
// tools/plot_report.py, and the `ingrain report` command.
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "mpi/report.h"
#include "mpi/subproc.h"

// the summary columns: student and teacher success, the teacher's lead, turns, premature answers
enum { N_SUMMARY = 5 };
static const int summary_metrics[N_SUMMARY] = {REPORT_STUDENT, REPORT_TEACHER, REPORT_LEAD, REPORT_TURNS,
                                               REPORT_PREMATURE};
static const char* const summary_names[N_SUMMARY] = {"student", "teacher", "lead", "turns", "premature"};

// highest iteration of any run of the cell, -1 if none; runs of the cell that reached `it`
static int cell_max_iteration(const Report* r, int cell) {
    int max = -1;
    for (int i = 0; i < r->n_runs; i++) {
        const ReportRun* run = &r->runs[i];
        if (run->cell == cell && run->n_points > 0 && run->points[run->n_points - 1].iteration > max)
            max = run->points[run->n_points - 1].iteration;
    }
    return max;
}

static int cell_runs_at(const Report* r, int cell, int it) {
    int n = 0;
    for (int i = 0; i < r->n_runs; i++) {
        if (r->runs[i].cell != cell) continue;
        for (int j = 0; j < r->runs[i].n_points; j++) n += r->runs[i].points[j].iteration == it;
    }
    return n;
}

// ----------------------------------------------------------------------------
// CSV (RFC 4180 quoting)

static void csv_text(FILE* f, const char* s, const char* end) {
    if (strpbrk(s, ",\"\n\r")) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"') fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else {
        fputs(s, f);
    }
    fputs(end, f);
}

static void csv_num(FILE* f, double v, const char* end) {
    if (!isnan(v)) fprintf(f, "%.6g", v);
    fputs(end, f);
}

static FILE* open_out(const char* dir, const char* name, char* path, size_t n, ConfigError* err) {
    snprintf(path, n, "%s/%s.tmp", dir, name);
    FILE* f = fopen(path, "w");
    if (!f) config_error(err, "cannot write '%s': %s", path, strerror(errno));
    return f;
}

// close and move NAME.tmp to NAME, so a reader never sees half a table
static int close_out(FILE* f, const char* tmp, ConfigError* err) {
    char final[PATH_MAX];
    snprintf(final, sizeof(final), "%.*s", (int)(strlen(tmp) - 4), tmp);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, final) != 0) {
        return config_error(err, "cannot write '%s': %s", final, strerror(errno));
    }
    return 0;
}

int report_write_csv(const Report* r, const char* out_dir, ConfigError* err) {
    char tmp[PATH_MAX];
    FILE* f = open_out(out_dir, "runs.csv", tmp, sizeof(tmp), err);
    if (!f) return -1;
    fprintf(f, "cell_id,cell,seed,iteration");
    for (int m = 0; m < REPORT_NMETRICS; m++) fprintf(f, ",%s", report_metric_keys[m]);
    fprintf(f, ",finished,run_dir\n");
    for (int i = 0; i < r->n_runs; i++) {
        const ReportRun* run = &r->runs[i];
        for (int j = 0; j < run->n_points; j++) {
            fprintf(f, "%d,", run->cell + 1);
            csv_text(f, r->cells[run->cell].label, ",");
            fprintf(f, "%lld,%d,", run->seed, run->points[j].iteration);
            for (int m = 0; m < REPORT_NMETRICS; m++) csv_num(f, run->points[j].v[m], ",");
            fprintf(f, "%s,", run->done ? "yes" : "no");
            csv_text(f, run->dir, "\n");
        }
    }
    if (close_out(f, tmp, err) != 0) return -1;

    f = open_out(out_dir, "summary.csv", tmp, sizeof(tmp), err);
    if (!f) return -1;
    fprintf(f, "cell_id,cell,iteration,seeds");
    for (int m = 0; m < N_SUMMARY; m++) fprintf(f, ",%s_mean,%s_ci95", summary_names[m], summary_names[m]);
    fprintf(f, "\n");
    for (int c = 0; c < r->n_cells; c++) {
        int max = cell_max_iteration(r, c);
        for (int it = 0; it <= max; it++) {
            int n = cell_runs_at(r, c, it);
            if (n == 0) continue;
            fprintf(f, "%d,", c + 1);
            csv_text(f, r->cells[c].label, ",");
            fprintf(f, "%d,%d,", it, n);
            for (int m = 0; m < N_SUMMARY; m++) {
                ReportStat s = report_cell_stat(r, c, it, summary_metrics[m]);
                csv_num(f, s.mean, ",");
                csv_num(f, s.ci95, m + 1 < N_SUMMARY ? "," : "");
            }
            fputc('\n', f);
        }
    }
    return close_out(f, tmp, err);
}

// ----------------------------------------------------------------------------
// Markdown

static void md_text(FILE* f, const char* s) { // a table cell: '|' would end it
    for (; *s; s++) {
        if (*s == '|') fputc('\\', f);
        fputc(*s == '\n' ? ' ' : *s, f);
    }
}

// mean ± ci95 with `decimals` places; `sign` writes a + before a non-negative mean (a difference)
static void md_stat(FILE* f, ReportStat s, int decimals, int sign) {
    fputs(" | ", f);
    if (isnan(s.mean)) {
        fputs("-", f);
        return;
    }
    fprintf(f, sign ? "%+.*f" : "%.*f", decimals, s.mean);
    if (!isnan(s.ci95)) fprintf(f, " ± %.*f", decimals, s.ci95);
}

int report_write_markdown(const Report* r, const char* runs_dir, const char* out_dir, int plots, const char* why,
                          ConfigError* err) {
    char tmp[PATH_MAX];
    FILE* f = open_out(out_dir, "report.md", tmp, sizeof(tmp), err);
    if (!f) return -1;
    int unfinished = 0;
    for (int i = 0; i < r->n_runs; i++) unfinished += !r->runs[i].done;
    fprintf(f, "# ingrain report: %s\n\n", runs_dir);
    fprintf(f, "%d run%s in %d cell%s (a cell: runs whose configs agree on every key but `run.*`, "
            "`bootstrap.cache_dir` and `bootstrap.threads`)", r->n_runs,
            r->n_runs == 1 ? "" : "s", r->n_cells, r->n_cells == 1 ? "" : "s");
    fprintf(f, "; %d unfinished; %d skipped as unreadable.\n", unfinished, r->n_skipped);
    fprintf(f, "Values are the mean over the runs (seeds) ± the half width of the 95%% confidence interval "
               "(Student t, n-1 degrees of freedom); one run has no interval. Success is the held-out "
               "success rate; the teacher's lead is teacher minus student success within each run, so its "
               "interval is the paired one; premature is the share of answers given without a tool call.\n\n");
    fprintf(f, "## Cells\n\n| id | cell | runs | seeds | finished |\n|---|---|---|---|---|\n");
    for (int c = 0; c < r->n_cells; c++) {
        fprintf(f, "| %d | ", c + 1);
        md_text(f, r->cells[c].label);
        fprintf(f, " | %d | ", r->cells[c].n_runs);
        int done = 0, first = 1;
        for (int i = 0; i < r->n_runs; i++) {
            if (r->runs[i].cell != c) continue;
            done += r->runs[i].done;
            fprintf(f, "%s%lld", first ? "" : ", ", r->runs[i].seed);
            first = 0;
        }
        fprintf(f, " | %d/%d |\n", done, r->cells[c].n_runs);
    }
    fprintf(f, "\n## Held-out results per iteration\n\n"
               "| id | iteration | seeds | student success | teacher success | teacher's lead | mean turns | "
               "premature answers |\n"
               "|---|---|---|---|---|---|---|---|\n");
    for (int c = 0; c < r->n_cells; c++) {
        int max = cell_max_iteration(r, c);
        for (int it = 0; it <= max; it++) {
            int n = cell_runs_at(r, c, it);
            if (n == 0) continue;
            fprintf(f, "| %d | %d | %d", c + 1, it, n);
            for (int m = 0; m < N_SUMMARY; m++) {
                const int k = summary_metrics[m];
                md_stat(f, report_cell_stat(r, c, it, k), k == REPORT_TURNS ? 2 : 3, k == REPORT_LEAD);
            }
            fprintf(f, " |\n");
        }
    }
    fprintf(f, "\n## Plots\n\n");
    if (plots) {
        fprintf(f, "![student success over iterations, every cell](student_success.png)\n\n");
        for (int c = 0; c < r->n_cells; c++) fprintf(f, "![cell %d](cell_%d.png)\n", c + 1, c + 1);
    } else {
        fprintf(f, "No plots: %s.\n", why);
    }
    fprintf(f, "\nEvery run and iteration: `runs.csv`; the table above: `summary.csv`.\n");
    return close_out(f, tmp, err);
}

// ----------------------------------------------------------------------------
// plots (tools/plot_report.py, python3-matplotlib)

#define PLOT_NO_MATPLOTLIB 3 // the script's exit code when matplotlib is missing

static int run_plots(const char* script, const char* out_dir, char* why, size_t n) {
    char summary[PATH_MAX], python[PATH_MAX];
    snprintf(summary, sizeof(summary), "%s/summary.csv", out_dir);
    const char* env = getenv("INGRAIN_PYTHON");
    // Debian's python3-matplotlib lives in /usr/bin/python3, which may not be the python3 on PATH
    const char* fallback = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
    snprintf(python, sizeof(python), "%s", env && env[0] ? env : fallback);
    char* argv[] = {python, (char*)script, summary, (char*)out_dir, NULL};
    int rc = subproc_run(argv, NULL, 0);
    if (rc == 0) return 1;
    // paths cut to 1000 characters keep the message inside `why`
    if (rc == PLOT_NO_MATPLOTLIB) {
        snprintf(why, n, "%.1000s has no matplotlib (Debian: apt-get install python3-matplotlib; or set "
                 "INGRAIN_PYTHON)", python);
    } else if (rc == 127 || rc < 0) {
        snprintf(why, n, "cannot run %.1000s (set INGRAIN_PYTHON to a Python 3 with matplotlib)", python);
    } else {
        snprintf(why, n, "%.1000s %.1000s failed (exit %d)", python, script, rc);
    }
    return 0;
}

// ----------------------------------------------------------------------------
// `ingrain report`

static const char* usage_report =
    "usage: ingrain report RUNS_DIR [--out DIR] [--no-plots] [--plot-script PATH]\n"
    "\n"
    "Collects every run under RUNS_DIR (a folder holding metrics.jsonl and config.yaml, e.g. the cells\n"
    "of a sweep) into one table. Runs whose configs agree on every key but run.*, bootstrap.cache_dir\n"
    "and bootstrap.threads (other base models of one recipe: samples, as seeds are) form a cell; per cell\n"
    "and iteration it gives the mean and 95% confidence interval over the runs (seeds) of student and\n"
    "teacher held-out success, the teacher's lead (teacher minus student within each run: the paired\n"
    "interval), mean turns and premature answers.\n"
    "Writes OUT/runs.csv, OUT/summary.csv, OUT/report.md, and PNG plots of student success over\n"
    "iterations (tools/plot_report.py with python3-matplotlib; skipped, with a note, without it).\n"
    "\n"
    "  --out DIR           where to write (default RUNS_DIR/report)\n"
    "  --no-plots          CSV and Markdown only\n"
    "  --plot-script PATH  the plot script (default tools/plot_report.py of the binary's source tree)\n";

static int report_usage(const char* fmt, const char* arg) {
    fprintf(stderr, "ingrain report: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n%s", usage_report);
    return INGRAIN_EXIT_USAGE;
}

static void print_summary(const Report* r) {
    printf("%-4s %-9s %-5s %-15s %-15s %-16s  cell\n", "id", "iteration", "seeds", "student", "teacher", "lead");
    for (int c = 0; c < r->n_cells; c++) {
        int max = cell_max_iteration(r, c);
        for (int it = 0; it <= max; it++) {
            int n = cell_runs_at(r, c, it);
            if (n == 0) continue;
            char cols[3][64];
            for (int m = 0; m < 3; m++) {
                ReportStat s = report_cell_stat(r, c, it, summary_metrics[m]);
                const char* sign = summary_metrics[m] == REPORT_LEAD && s.mean >= 0 ? "+" : "";
                if (isnan(s.mean)) snprintf(cols[m], sizeof(cols[m]), "-");
                else if (isnan(s.ci95)) snprintf(cols[m], sizeof(cols[m]), "%s%.3f", sign, s.mean);
                else snprintf(cols[m], sizeof(cols[m]), "%s%.3f +- %.3f", sign, s.mean, s.ci95);
            }
            const char* label = it == 0 ? r->cells[c].label : "";
            printf("%-4d %-9d %-5d %-15s %-15s %-16s  %s\n", c + 1, it, n, cols[0], cols[1], cols[2], label);
        }
    }
}

int cli_report(int argc, char** argv) {
    const char *runs_dir = NULL, *out = NULL, *script = NULL;
    int plots = 1;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return fputs(usage_report, stdout), 0;
        if (strcmp(argv[i], "--no-plots") == 0) {
            plots = 0;
        } else if (strcmp(argv[i], "--out") == 0 || strcmp(argv[i], "--plot-script") == 0) {
            if (i + 1 >= argc) return report_usage("%s needs a value", argv[i]);
            *(strcmp(argv[i], "--out") == 0 ? &out : &script) = argv[i + 1];
            i++;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return report_usage("unknown option '%s'", argv[i]);
        } else if (runs_dir) {
            return report_usage("more than one RUNS_DIR given ('%s')", argv[i]);
        } else {
            runs_dir = argv[i];
        }
    }
    if (!runs_dir) return report_usage("%s", "missing RUNS_DIR (for example runs/ablation)");

    Report r;
    ConfigError err;
    if (report_collect(&r, runs_dir, &err) != 0) {
        log_error("%s", err.msg);
        report_free(&r);
        return INGRAIN_EXIT_USAGE;
    }
    char out_dir[PATH_MAX], found[PATH_MAX], why[PATH_MAX + 256] = "--no-plots was given";
    snprintf(out_dir, sizeof(out_dir), "%s", out ? out : runs_dir);
    if (!out) strncat(out_dir, "/report", sizeof(out_dir) - strlen(out_dir) - 1);
    int rc = 0;
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) {
        log_error("cannot create '%s': %s", out_dir, strerror(errno));
        rc = INGRAIN_EXIT_FAILURE;
    } else if (report_write_csv(&r, out_dir, &err) != 0) {
        log_error("%s", err.msg);
        rc = INGRAIN_EXIT_FAILURE;
    }
    if (rc == 0 && plots) {
        if (!script && subproc_find_beside("tools/plot_report.py", found, sizeof(found)) == 0) script = found;
        if (script) {
            plots = run_plots(script, out_dir, why, sizeof(why));
        } else {
            plots = 0;
            snprintf(why, sizeof(why), "tools/plot_report.py not found beside the binary; give --plot-script");
        }
    }
    if (rc == 0 && report_write_markdown(&r, runs_dir, out_dir, plots, why, &err) != 0) {
        log_error("%s", err.msg);
        rc = INGRAIN_EXIT_FAILURE;
    }
    if (rc == 0) {
        print_summary(&r);
        printf("\n%d run%s in %d cell%s%s; wrote %s/runs.csv, summary.csv, report.md\n", r.n_runs,
               r.n_runs == 1 ? "" : "s", r.n_cells, r.n_cells == 1 ? "" : "s",
               r.n_skipped ? " (some skipped: see the warnings)" : "", out_dir);
        if (plots) printf("plots: %s/student_success.png and cell_1..%d.png\n", out_dir, r.n_cells);
        else printf("plots skipped: %s; CSV and Markdown are written\n", why);
    }
    report_free(&r);
    return rc;
}
