// CPU attention kernels (internal to the CPU backend, see Backend.attention_* in ops.h).
#pragma once
#include "model/ops.h"

void cpu_attention_fwd(Backend* be, float* out, float* lse, const float* q, int ldq, const float* k, const float* v,
                       int ldkv, const int* q_lens, const int* kv_lens, int B, int Tq, int Tk, int H, int KV, int hd,
                       void* work);
void cpu_attention_bwd(Backend* be, float* dq, float* dk, float* dv, const float* dout, const float* out,
                       const float* lse, const float* q, int ldq, const float* k, const float* v, int ldkv,
                       const int* q_lens, const int* kv_lens, int B, int Tq, int Tk, int H, int KV, int hd,
                       void* work);
size_t cpu_attention_work_bytes(Backend* be, int Tk);
