// xoshiro256** by Blackman and Vigna (public domain reference at prng.di.unimi.it), seeded
// with splitmix64. See rng.h.
#include "model/rng.h"

#include <math.h>

// ----------------------------------------------------------------------------
// seeding

static uint64_t splitmix64(uint64_t* x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void rng_seed(Rng* r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < RNG_STATE_WORDS; i++) r->s[i] = splitmix64(&x);
    // splitmix64 is a bijection of distinct inputs, so four zero outputs cannot happen in
    // practice; guard anyway since the all-zero state is a fixed point of xoshiro
    if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0) r->s[0] = 1;
}

void rng_seed_stream(Rng* r, uint64_t seed, uint64_t stream) {
    uint64_t x = stream;
    rng_seed(r, seed ^ splitmix64(&x));
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// ----------------------------------------------------------------------------
// draws

uint64_t rng_next(Rng* r) {
    uint64_t* s = r->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void rng_jump(Rng* r) {
    static const uint64_t jump[] = {0x180ec6d33cfd0abaULL, 0xd5a61266f0c9392cULL, 0xa9582618e03fc9aaULL,
                                    0x39abdc4529b1661cULL};
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int i = 0; i < 4; i++) {
        for (int b = 0; b < 64; b++) {
            if (jump[i] & (1ULL << b)) {
                s0 ^= r->s[0];
                s1 ^= r->s[1];
                s2 ^= r->s[2];
                s3 ^= r->s[3];
            }
            rng_next(r);
        }
    }
    r->s[0] = s0;
    r->s[1] = s1;
    r->s[2] = s2;
    r->s[3] = s3;
}

uint32_t rng_u32(Rng* r) { return (uint32_t)(rng_next(r) >> 32); }

uint64_t rng_below(Rng* r, uint64_t n) {
    // 128-bit product: the high word is uniform in [0, n) once the low word clears the threshold
    uint64_t x = rng_next(r);
    unsigned __int128 m = (unsigned __int128)x * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t threshold = (0 - n) % n;
        while (low < threshold) {
            x = rng_next(r);
            m = (unsigned __int128)x * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

double rng_uniform(Rng* r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

float rng_uniformf(Rng* r) { return (float)(rng_next(r) >> 40) * 0x1.0p-24f; }

double rng_normal(Rng* r) {
    // 1 - u keeps the log argument in (0, 1]
    double u1 = 1.0 - rng_uniform(r);
    double u2 = rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
