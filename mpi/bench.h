// Benchmarks run by `ingrain bench NAME`: each prints our figure beside a named baseline measured
// in the same run. Every function takes the arguments after NAME and returns an exit code.
#pragma once

// `ingrain bench ckpt`: checkpoint write/read of a model's weights + AdamW state vs a dd-style
// sequential write/read of the same bytes on the same disk (collective over MPI_COMM_WORLD)
int bench_ckpt(int argc, char** argv);
