// `ingrain bench decode`: decoding throughput (prefill, then batched token-by-token generation
// with the KV cache) beside the backend's matmuls of the same decode step replayed alone.
#pragma once

// argv holds the options only (argv[0] is the first, as `ingrain bench` passes them); they are
// listed by --help. Returns an exit code.
int bench_decode(int argc, char** argv);
