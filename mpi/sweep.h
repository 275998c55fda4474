// Sweeps (docs/SLURM.md): a grid file names a base config, seeds and named axes whose values
// are sets of `key: value` overrides. `ingrain sweep` expands the cells (axes product x seeds)
// into one validated config each, a cells index and one Slurm job-array script; cells that are
// finished (RUN_DIR/DONE) are skipped, unfinished ones resume from their checkpoints.
#pragma once
#include <stdio.h>

#include "io/config.h"

#define SWEEP_MAX_RUNS 100000 // cells x seeds of one sweep

// ----------------------------------------------------------------------------
// the grid file

typedef struct {
    char* key;   // dotted config key, or an sbatch long option in SweepGrid.slurm
    char* value; // YAML scalar text; "" for an sbatch flag
    int line;    // in the grid file
} SweepOverride;

typedef struct {
    char* label; // names the value in cell names, e.g. "off_policy"
    int line;
    int first, count; // its overrides: SweepGrid.overrides[first .. first + count)
} SweepValue;

typedef struct {
    char* name;
    int line;
    int first, count; // its values: SweepGrid.values[first .. first + count)
} SweepAxis;

typedef struct {
    char path[CONFIG_PATH]; // the grid file, as given
    char name[CONFIG_STR];  // job name and default folder name (default: the file's base name)
    char base[CONFIG_PATH]; // base config, resolved against the grid file's folder
    int base_line;
    char out[CONFIG_PATH];  // sweep folder (default: runs/NAME), as given
    char out_abs[CONFIG_PATH]; // the same, absolute (against the current directory)
    long long* seeds;
    int n_seeds;
    SweepOverride* overrides; // of `set:` and of every axis value
    int n_overrides;
    int set_first, set_count; // the `set:` overrides
    SweepValue* values;
    int n_values;
    SweepAxis* axes;
    int n_axes;
    SweepOverride* slurm; // `slurm:` options of the job array; value "" = a flag, NULL = drop it
    int n_slurm;
    int max_parallel; // array tasks running at once; 0 = no limit
} SweepGrid;

// Parse a grid file; 0 on success, else -1 with err naming the file, line and key.
int sweep_load(SweepGrid* g, const char* path, ConfigError* err);
// same from a string; label is the file name used in messages and for resolving `base`
int sweep_load_string(SweepGrid* g, const char* yaml, const char* label, ConfigError* err);
// seeds 1..n instead of the file's (`--seeds N`)
void sweep_set_seeds(SweepGrid* g, int n);
// another sweep folder (`--out DIR`); 0 on success
int sweep_set_out(SweepGrid* g, const char* out, ConfigError* err);
void sweep_free(SweepGrid* g);

// ----------------------------------------------------------------------------
// cells

typedef enum { SWEEP_NEW = 0, SWEEP_RESUME, SWEEP_DONE } SweepStatus;

typedef struct {
    int index;              // the job-array index: cell-major, seeds inner
    char name[CONFIG_STR];  // the axis labels joined by '-', "base" without axes
    long long seed;
    char run_dir[CONFIG_PATH];     // absolute
    char config_path[CONFIG_PATH]; // RUN_DIR/cell.yaml
    SweepStatus status;            // from the run directory: DONE, a checkpoint, or nothing
    Config config;                 // the cell's effective config
} SweepCell;

// Expand the grid: for every axes combination and seed, the base config, then `set:`, then the
// axis values, then the command-line assignments `sets` (KEY=VALUE), validated; run.seed,
// run.dir (OUT/CELL/seedS, absolute), run.name and run.resume: auto are set by the sweep.
// *cells is malloc'd; 0 on success, else -1 with err naming the cell and the grid line.
int sweep_expand(const SweepGrid* g, const char* const* sets, int n_sets, SweepCell** cells, int* n_cells,
                 ConfigError* err);
const char* sweep_status_name(SweepStatus s);
// the indices of the unfinished cells as a Slurm --array list ("0-3,5,7"); "" when none
void sweep_array_spec(const SweepCell* cells, int n, char* buf, size_t len);

// Write every cell's RUN_DIR/cell.yaml, OUT/cells.tsv and, when some cell is unfinished,
// OUT/sweep.sbatch (task i runs cell i through `sbatch_script` with `ingrain`). A cell whose
// existing cell.yaml differs from the grid's config while its run has started is an error.
// 0 on success, else -1 with err.
int sweep_write(const SweepGrid* g, const SweepCell* cells, int n, const char* sbatch_script, const char* ingrain,
                ConfigError* err);
// OUT/sweep.sbatch and OUT/cells.tsv
void sweep_paths(const SweepGrid* g, char* script, char* index, size_t n);

// `ingrain sweep GRID [--seeds N] [--out DIR] [--set K=V]... [--dry-run] [--submit]`
int cli_sweep(int argc, char** argv);
