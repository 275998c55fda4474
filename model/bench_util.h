// What the model benchmarks (bench.c, bench_decode.c) share besides the matmul recorder and the
// profiler: option parsing and the line that names the model measured.
#pragma once
#include "model/model.h"

// *out = s as an integer in [lo, 1000000]; otherwise prints "ingrain bench BENCH: OPT expects
// ..." and returns -1
int bench_parse_int(const char* bench, const char* opt, const char* s, int lo, int* out);

// "ingrain bench BENCH: config NAME (V=.. D=.. ...), N.NNM parameters"
void bench_print_model(const char* bench, const char* name, const Model* m);
