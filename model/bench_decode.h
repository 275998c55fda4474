// `ingrain bench decode`: decoding throughput (prefill, then batched token-by-token generation
// with the KV cache) beside the backend's matmuls of the same decode step replayed alone.
#pragma once

// argv[0] is the benchmark name ("decode"); options are listed by --help. Returns an exit code.
int bench_decode(int argc, char** argv);
