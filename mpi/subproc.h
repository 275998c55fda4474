// Small process helpers for the commands that drive other programs (`ingrain sweep` runs sbatch,
// `ingrain report` runs the plot script): find a file shipped beside the binary, run a child.
#pragma once
#include <stddef.h>

// Absolute path of the running binary into out; 0 on success.
int subproc_self_path(char* out, size_t n);
// Find `rel` (e.g. "slurm/ingrain.sbatch") in the source tree the binary was built from
// (its folder's parent, then its folder: build/ingrain -> ./slurm/...), then under the current
// directory. Absolute path into out; 0 if found, -1 if not.
int subproc_find_beside(const char* rel, char* out, size_t n);
// Run argv[0] (searched in PATH) with argv and wait. With `capture`, its stdout goes to capture
// (NUL-terminated, truncated to n - 1). Returns the exit code, 128 + signal, or -1 with errno
// set when it could not start (127 is returned when the program does not exist).
int subproc_run(char* const argv[], char* capture, size_t n);
