// Stand-alone driver of the decoding benchmark (`ingrain_bench_decode [options]`, the same options
// as `ingrain bench decode`), for tools/bench_pytorch_decode.py and for profiling without MPI.
#include "model/bench_decode.h"

int main(int argc, char** argv) { return bench_decode(argc - 1, argv + 1); }
