// The emulated build's model/cuda/mma_ptx.cuh: the same functions (bf16, mma.sync, ldmatrix,
// cp.async, pack_bf16) as host code, from tests/emu/cuda_emu.h. This directory comes before the
// source tree on the emulated build's include path.
#pragma once
#include "tests/emu/cuda_emu.h"
