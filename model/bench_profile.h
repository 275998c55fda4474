// The model benchmark's per-op profile (`ingrain bench model --profile`): interposed on every op
// of a Backend, it synchronises the backend before and after each call and charges the time to
// the op (matmuls also to their shape), so one profiled step says where a training step's time
// goes. Synchronising every op adds launch latency to each, so the profile ranks ops; the step
// time the benchmark reports comes from unprofiled steps. One profiler per process.
#pragma once
#include <stdio.h>

#include "model/ops.h"

void bench_profile_install(Backend* be); // starts from empty totals
void bench_profile_uninstall(Backend* be);
// The table of the calls made while installed, per op and per matmul shape, divided by `steps`:
// calls, ms per step, share of the profiled time, and TFLOP/s for matmul shapes.
void bench_profile_print(FILE* f, int steps);
double bench_profile_seconds(void); // the time of the calls made while installed, in total
long bench_profile_calls(void);     // the number of those calls
