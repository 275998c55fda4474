// Wall-clock seconds from a monotonic clock, for benchmarks and per-phase timings (differences
// only: the origin is arbitrary).
#pragma once

double timer_now(void);
