#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace qwenmux::engine {

Status SamplerOptions::Validate() const {
  auto bad = [](const char* field, double v, const char* range) {
    return Error(StatusCode::kInvalidArgument, "sampler: {} = {} is out of range ({})", field, v, range);
  };
  if (!(temperature >= 0 && temperature <= 100)) return bad("temperature", temperature, "0..100");
  if (!(top_p > 0 && top_p <= 1)) return bad("top_p", top_p, "(0, 1]");
  if (!(min_p >= 0 && min_p <= 1)) return bad("min_p", min_p, "0..1");
  if (!(repetition_penalty > 0 && repetition_penalty <= 10)) return bad("repetition_penalty", repetition_penalty, "(0, 10]");
  if (!(presence_penalty >= -2 && presence_penalty <= 2)) return bad("presence_penalty", presence_penalty, "-2..2");
  if (!(frequency_penalty >= -2 && frequency_penalty <= 2)) return bad("frequency_penalty", frequency_penalty, "-2..2");
  if (penalty_last_n < 0) return bad("penalty_last_n", penalty_last_n, ">= 0");
  return Status::Ok();
}

Sampler::Sampler(const SamplerOptions& options) : opt_(options), rng_(options.seed) {}

int32_t Argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

bool Sampler::Penalizes(std::span<const int32_t> history) const {
  const bool on = opt_.repetition_penalty != 1.0f || opt_.presence_penalty != 0.0f || opt_.frequency_penalty != 0.0f;
  return on && opt_.penalty_last_n > 0 && !history.empty();
}

bool Sampler::CanSampleTop(int32_t k, std::span<const int32_t> history) const {
  if (Penalizes(history)) return false;
  return opt_.temperature <= 0.0f || (opt_.top_k > 0 && opt_.top_k <= k);
}

namespace {
bool ByLogit(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}
}  // namespace

int32_t Sampler::Sample(std::span<float> logits, std::span<const int32_t> history) {
  const int32_t n_vocab = static_cast<int32_t>(logits.size());
  // Penalties over the last penalty_last_n tokens.
  if (Penalizes(history)) {
    const size_t start = history.size() > static_cast<size_t>(opt_.penalty_last_n) ? history.size() - opt_.penalty_last_n : 0;
    std::unordered_map<int32_t, int> counts;
    for (size_t i = start; i < history.size(); ++i) {
      if (history[i] >= 0 && history[i] < n_vocab) counts[history[i]]++;
    }
    for (const auto& [tok, cnt] : counts) {
      float& l = logits[tok];
      if (opt_.repetition_penalty != 1.0f) l = l > 0 ? l / opt_.repetition_penalty : l * opt_.repetition_penalty;
      l -= static_cast<float>(cnt) * opt_.frequency_penalty + opt_.presence_penalty;
    }
  }
  if (opt_.temperature <= 0.0f) return Argmax(logits);

  // Temperature, then top-k on the scaled logits.
  const float inv_t = 1.0f / opt_.temperature;
  size_t k = opt_.top_k > 0 ? std::min<size_t>(opt_.top_k, logits.size()) : logits.size();
  cand_.resize(logits.size());
  for (int32_t i = 0; i < n_vocab; ++i) cand_[i] = {logits[i] * inv_t, i};
  if (k < cand_.size()) {
    std::nth_element(cand_.begin(), cand_.begin() + static_cast<long>(k), cand_.end(), ByLogit);
    cand_.resize(k);
  }
  std::sort(cand_.begin(), cand_.end(), ByLogit);
  return Draw();
}

int32_t Sampler::SampleTop(std::span<const runtime::TopLogit> top) {
  if (opt_.temperature <= 0.0f) return top[0].token;
  const float inv_t = 1.0f / opt_.temperature;
  const size_t k = opt_.top_k > 0 ? std::min<size_t>(opt_.top_k, top.size()) : top.size();
  cand_.resize(top.size());
  for (size_t i = 0; i < top.size(); ++i) cand_[i] = {top[i].logit * inv_t, top[i].token};
  // Scaling keeps the order, but may make neighbours equal: those go by token id, as in Sample.
  std::sort(cand_.begin(), cand_.end(), ByLogit);
  cand_.resize(k);
  return Draw();
}

int32_t Sampler::Draw() {
  // Softmax over the survivors.
  const float mx = cand_[0].first;
  double sum = 0;
  std::vector<double> p(cand_.size());
  for (size_t i = 0; i < cand_.size(); ++i) sum += (p[i] = std::exp(static_cast<double>(cand_[i].first - mx)));
  for (double& x : p) x /= sum;
  // Top-p: keep the smallest prefix with mass >= top_p.
  size_t keep = p.size();
  if (opt_.top_p < 1.0f) {
    double cum = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      cum += p[i];
      if (cum >= opt_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  // Min-p: drop tokens below min_p * p_max.
  if (opt_.min_p > 0.0f) {
    const double floor = opt_.min_p * p[0];
    size_t m = 1;
    while (m < keep && p[m] >= floor) ++m;
    keep = m;
  }
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += p[i];
  // Own uniform draw (not std::uniform_real_distribution) so a seed gives the same tokens with
  // every standard library.
  double r = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * total;
  for (size_t i = 0; i < keep; ++i) {
    r -= p[i];
    if (r <= 0) return cand_[i].second;
  }
  // Rounding left r > 0: the last candidate with any mass (never a masked, zero-mass token).
  for (size_t i = keep; i-- > 0;) {
    if (p[i] > 0) return cand_[i].second;
  }
  return cand_[0].second;
}

}  // namespace qwenmux::engine
