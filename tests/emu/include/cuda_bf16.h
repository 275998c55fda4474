// Host stand-in for CUDA's cuda_bf16.h in the emulated build: the bf16 types and conversions are
// in tests/emu/cuda_emu.h.
#pragma once
#include "tests/emu/cuda_emu.h"
