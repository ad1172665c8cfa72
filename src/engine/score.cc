// Teacher-forced scoring of continuations (Model::ScoreContinuations): each prompt is prefilled
// once, every continuation is fed after it, and the sequence is cut back to the prompt.
#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/engine.h"

namespace qwenmux::engine {

namespace {

double LogSoftmaxAt(const float* row, size_t n, int32_t id) {
  float mx = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < n; ++i) mx = std::max(mx, row[i]);
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(row[i] - mx));
  return static_cast<double>(row[id] - mx) - std::log(sum);
}

}  // namespace

Status Model::CheckScorePrompt(const std::vector<int32_t>& tokens, size_t extra) const {
  if (tokens.empty()) return Error(StatusCode::kInvalidArgument, "empty prompt");
  const size_t n_ctx = static_cast<size_t>(this->n_ctx());
  if (tokens.size() + extra > n_ctx) {
    return Error(StatusCode::kOutOfRange, "prompt of {} tokens (+{}) does not fit the context of {} tokens",
                 tokens.size(), extra, n_ctx);
  }
  for (int32_t t : tokens) {
    if (t < 0 || t >= static_cast<int32_t>(config_.n_vocab)) return Error(StatusCode::kInvalidArgument, "token id {} out of range", t);
  }
  return Status::Ok();
}

Status Model::RunEntries(const std::vector<runtime::BatchEntry>& entries, std::vector<float>* out) {
  const size_t V = config_.n_vocab;
  const size_t nb = static_cast<size_t>(std::max(1, options_.n_batch));
  out->clear();
  std::vector<float> rows;
  for (size_t b = 0; b < entries.size(); b += nb) {
    const size_t e = std::min(entries.size(), b + nb);
    const auto chunk = std::span(entries).subspan(b, e - b);
    const size_t n_out = static_cast<size_t>(std::count_if(chunk.begin(), chunk.end(), [](const auto& x) { return x.output; }));
    rows.resize(n_out * V);
    QM_RETURN_IF_ERROR(Forward(chunk, n_out ? rows.data() : nullptr, nullptr));
    for (const auto& x : chunk) backend_->set_length(x.seq, std::max(backend_->length(x.seq), x.pos + 1));
    out->insert(out->end(), rows.begin(), rows.end());
  }
  return Status::Ok();
}

Result<std::vector<ScoreOutput>> Model::ScoreContinuations(const std::vector<std::vector<int32_t>>& prompts,
                                                           const std::vector<std::vector<int32_t>>& continuations,
                                                           int64_t* tokens, int32_t adapter, float adapter_scale) {
  const runtime::LoraAdapter* lora = adapter >= 0 ? this->adapter(adapter) : nullptr;
  if (adapter >= 0 && lora == nullptr) return Error(StatusCode::kNotFound, "score: adapter {} is not loaded", adapter);
  // Every forward of the scoring runs with the adapter (prompts and continuations alike).
  auto run = [&](std::vector<runtime::BatchEntry>& e, std::vector<float>* rows_out) {
    for (runtime::BatchEntry& x : e) x.lora = lora, x.lora_scale = adapter_scale;
    return RunEntries(e, rows_out);
  };
  std::vector<ScoreOutput> out(prompts.size());
  size_t longest_cont = 0;
  for (const auto& c : continuations) {
    if (c.empty()) return Error(StatusCode::kInvalidArgument, "score: empty continuation");
    longest_cont = std::max(longest_cont, c.size());
  }
  std::vector<size_t> ok;
  for (size_t i = 0; i < prompts.size(); ++i) {
    out[i].status = CheckScorePrompt(prompts[i], longest_cont);
    if (out[i].status.ok()) ok.push_back(i);
    out[i].logprobs.assign(continuations.size(), 0.0);
  }
  const size_t V = config_.n_vocab;
  const size_t n_seq = static_cast<size_t>(std::max(1, this->n_seq()));
  std::vector<float> last, rows;
  std::vector<runtime::BatchEntry> entries;
  std::vector<size_t> owner;
  for (size_t g0 = 0; g0 < ok.size(); g0 += n_seq) {
    const std::vector<size_t> group(ok.begin() + g0, ok.begin() + std::min(ok.size(), g0 + n_seq));
    // Prefill the group's prompts (KV sequence k holds prompt group[k]), interleaved; keep each
    // one's last-position logits ([group.size(), V]).
    entries.clear();
    owner.clear();
    size_t longest = 0;
    for (size_t k = 0; k < group.size(); ++k) {
      ResetSequence(static_cast<int32_t>(k));
      longest = std::max(longest, prompts[group[k]].size());
    }
    for (size_t p = 0; p < longest; ++p) {
      for (size_t k = 0; k < group.size(); ++k) {
        const auto& pr = prompts[group[k]];
        if (p >= pr.size()) continue;
        const bool is_last = p + 1 == pr.size();
        entries.push_back({pr[p], static_cast<int32_t>(p), static_cast<int32_t>(k), is_last});
        if (is_last) owner.push_back(k);
      }
    }
    if (tokens) *tokens += static_cast<int64_t>(entries.size());
    QM_RETURN_IF_ERROR(run(entries, &rows));
    last.assign(group.size() * V, 0.0f);
    for (size_t i = 0; i < owner.size(); ++i) std::copy_n(rows.data() + i * V, V, last.data() + owner[i] * V);

    for (size_t c = 0; c < continuations.size(); ++c) {
      const auto& cont = continuations[c];
      for (size_t k = 0; k < group.size(); ++k) out[group[k]].logprobs[c] = LogSoftmaxAt(last.data() + k * V, V, cont[0]);
      if (cont.size() == 1) continue;
      entries.clear();
      for (size_t k = 0; k < group.size(); ++k) {
        const int32_t base = static_cast<int32_t>(prompts[group[k]].size());
        for (size_t j = 0; j + 1 < cont.size(); ++j) {
          entries.push_back({cont[j], base + static_cast<int32_t>(j), static_cast<int32_t>(k), true});
        }
      }
      if (tokens) *tokens += static_cast<int64_t>(entries.size());
      QM_RETURN_IF_ERROR(run(entries, &rows));
      for (size_t k = 0; k < group.size(); ++k) {
        for (size_t j = 0; j + 1 < cont.size(); ++j) {
          const float* row = rows.data() + (k * (cont.size() - 1) + j) * V;
          out[group[k]].logprobs[c] += LogSoftmaxAt(row, V, cont[j + 1]);
        }
        backend_->set_length(static_cast<int32_t>(k), static_cast<int32_t>(prompts[group[k]].size()));
      }
    }
    for (size_t k = 0; k < group.size(); ++k) ResetSequence(static_cast<int32_t>(k));
  }
  return out;
}

}  // namespace qwenmux::engine
