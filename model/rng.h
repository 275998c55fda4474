// A small deterministic random number generator shared by every module: xoshiro256** seeded
// through splitmix64. The whole state is four 64-bit words (Rng.s), so checkpoints store it as is
// and a resumed job continues the exact same stream.
#pragma once
#include <stdint.h>

#define RNG_STATE_WORDS 4

typedef struct {
    uint64_t s[RNG_STATE_WORDS];
} Rng;

// ----------------------------------------------------------------------------
// seeding and streams

// seed the state from one 64-bit seed (splitmix64 expansion, never the all-zero state)
void rng_seed(Rng* r, uint64_t seed);
// independent stream `stream` of `seed` (e.g. one per rank or role): seeds from a mix of both
void rng_seed_stream(Rng* r, uint64_t seed, uint64_t stream);
// advance by 2^128 draws: the standard xoshiro256 jump, for non-overlapping sub-sequences
void rng_jump(Rng* r);

// ----------------------------------------------------------------------------
// draws

uint64_t rng_next(Rng* r);
uint32_t rng_u32(Rng* r);
// uniform integer in [0, n), unbiased (Lemire's multiply-and-reject); n > 0
uint64_t rng_below(Rng* r, uint64_t n);
// uniform double in [0, 1) with 53 random bits
double rng_uniform(Rng* r);
// uniform float in [0, 1) with 24 random bits
float rng_uniformf(Rng* r);
// standard normal (Box-Muller on two fresh uniforms; no cached value, so the state stays 4 words)
double rng_normal(Rng* r);
