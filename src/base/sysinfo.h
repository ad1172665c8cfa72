// Process and machine figures for benchmarks and the memory manager.
#pragma once

#include <cstddef>
#include <cstdint>

namespace qwenmux {

uint64_t PeakRssBytes();     // getrusage maxrss
uint64_t CurrentRssBytes();  // /proc/self/statm (0 where unavailable)

// Streaming read bandwidth in bytes/s over a buffer of `bytes` (larger than the caches), read by
// `threads` threads, best of `reps` passes.
double MeasureReadBandwidth(size_t bytes, size_t threads, int reps = 5);

}  // namespace qwenmux
