// Stand-alone driver of the model benchmark (`ingrain_bench_model [options]`, the same options
// as `ingrain bench model`), for tools/bench_pytorch.py and for profiling without MPI.
#include "model/bench.h"

int main(int argc, char** argv) {
    argv[0] = "model";
    return model_bench(argc, argv);
}
