// SplitMix64: a small deterministic generator (same sequence on every platform), for adapter
// initialisation, dropout masks and data shuffles that must repeat exactly on resume.
#pragma once

#include <cstdint>

namespace qwenmux::finetune {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 24 bits.
  float Uniform() { return static_cast<float>(Next() >> 40) * (1.0f / 16777216.0f); }

 private:
  uint64_t s_;
};

// Mixes several values into one seed.
inline uint64_t MixSeed(uint64_t a, uint64_t b) { return SplitMix64(a * 0x9E3779B97F4A7C15ull ^ b).Next(); }

}  // namespace qwenmux::finetune
