// `ingrain bench model`: training throughput of the transformer (forward + backward + AdamW)
// beside the sgemm throughput of the same matmul shapes, measured in the same run.
#pragma once

// argv[0] is the benchmark name ("model"); options are listed by --help. Returns an exit code.
int model_bench(int argc, char** argv);
