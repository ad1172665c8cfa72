#include "runtime/backend.h"

#include <algorithm>
#include <vector>

namespace qwenmux::runtime {

std::string_view DeviceName(Device d) { return d == Device::kCuda ? "cuda" : "cpu"; }

Result<DeviceChoice> ParseDeviceChoice(std::string_view s) {
  if (s == "cpu") return DeviceChoice::kCpu;
  if (s == "cuda") return DeviceChoice::kCuda;
  if (s == "auto") return DeviceChoice::kAuto;
  return Error(StatusCode::kInvalidArgument, "device: '{}' is not one of cpu, cuda, auto", s);
}

void SelectTopLogits(std::span<const float> row, int32_t k, TopLogit* out) {
  // A short sorted list filled in one pass: k <= 64, and most logits fall below its last entry.
  int32_t n = 0;
  for (int32_t i = 0; i < static_cast<int32_t>(row.size()); ++i) {
    const float v = row[i];
    if (n == k && !(v > out[k - 1].logit)) continue;  // equal: the earlier (smaller) id stays
    int32_t j = n < k ? n++ : k - 1;
    while (j > 0 && out[j - 1].logit < v) {
      out[j] = out[j - 1];
      --j;
    }
    out[j] = {v, i};
  }
}

Status Backend::RunTop(std::span<const BatchEntry> batch, int32_t k, TopLogit* out_top) {
  const int32_t vocab = n_vocab();
  if (k < 1 || k > kMaxTopLogits || k > vocab) {
    return Error(StatusCode::kInvalidArgument, "backend: top list of {} logits (1..{})", k, std::min(kMaxTopLogits, vocab));
  }
  const size_t n_out = static_cast<size_t>(std::count_if(batch.begin(), batch.end(), [](const BatchEntry& e) { return e.output; }));
  std::vector<float> logits(n_out * static_cast<size_t>(vocab));  // [n_out, n_vocab]
  QM_RETURN_IF_ERROR(Run(batch, logits.data(), nullptr));
  for (size_t r = 0; r < n_out; ++r) {
    SelectTopLogits(std::span<const float>(logits.data() + r * vocab, static_cast<size_t>(vocab)), k, out_top + r * k);
  }
  return Status::Ok();
}

}  // namespace qwenmux::runtime
