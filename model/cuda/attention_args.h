// The arguments every CUDA attention kernel shares (layouts as in ops.h; scale = 1 / sqrt(hd)).
// Plain C++ without CUDA headers, so that tests/emu can build the tensor-core kernels on the host.
#pragma once

struct AttnArgs {
    const float *q, *k, *v;
    const int *q_lens, *kv_lens;
    int ldq, ldkv, Tq, Tk, H, KV, hd;
    float scale;
};
