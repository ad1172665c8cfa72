// Sampler chain over one row of logits: penalties (repetition, presence, frequency) over the
// recent tokens, then temperature, top-k, top-p, min-p (the order transformers uses), then a
// seeded draw. Temperature <= 0 means greedy (argmax after penalties).
//
// Thread-safety: a Sampler holds its RNG and is used by one sequence at a time.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "base/status.h"
#include "runtime/backend.h"  // TopLogit

namespace qwenmux::engine {

struct SamplerOptions {
  float temperature = 0.7f;
  int32_t top_k = 20;     // <= 0: off
  float top_p = 0.8f;     // >= 1: off
  float min_p = 0.0f;     // <= 0: off
  float repetition_penalty = 1.0f;  // 1: off (divides positive logits, multiplies negative)
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int32_t penalty_last_n = 64;  // how many recent tokens the penalties look at
  uint64_t seed = 0;

  Status Validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& options);

  // `logits` is modified in place (penalties, temperature). `history`: tokens so far (prompt and
  // generated), for the penalties.
  int32_t Sample(std::span<float> logits, std::span<const int32_t> history);

  // True when SampleTop over a row's k largest logits draws exactly what Sample over the whole
  // row would: no penalty applies to `history`, and the draw is greedy or keeps at most top_k <= k
  // candidates. (One exception: ties that temperature scaling creates between logits on both
  // sides of the k-th, which the whole row would order by token id.)
  bool CanSampleTop(int32_t k, std::span<const int32_t> history) const;
  // As Sample, from the k largest logits of the row (runtime::SelectTopLogits' order), when
  // CanSampleTop(top.size()) holds; the same seed draws the same token.
  int32_t SampleTop(std::span<const runtime::TopLogit> top);

  const SamplerOptions& options() const { return opt_; }

 private:
  bool Penalizes(std::span<const int32_t> history) const;
  // The draw from cand_ (scaled logits, top-k kept, sorted): softmax, top-p, min-p, seeded pick.
  int32_t Draw();

  SamplerOptions opt_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;
};

int32_t Argmax(std::span<const float> logits);

}  // namespace qwenmux::engine
