#include "pipeline/model_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace qwenmux::pipeline {

namespace {

// Runs entries in chunks of n_batch; appends the logits of every output entry (in order) to *out.
Status RunEntries(engine::Model& model, const std::vector<runtime::BatchEntry>& entries, std::vector<float>* out) {
  const size_t V = model.config().n_vocab;
  const size_t nb = static_cast<size_t>(std::max(1, model.options().n_batch));
  out->clear();
  std::vector<float> rows;
  for (size_t b = 0; b < entries.size(); b += nb) {
    const size_t e = std::min(entries.size(), b + nb);
    const auto chunk = std::span(entries).subspan(b, e - b);
    const size_t n_out = static_cast<size_t>(std::count_if(chunk.begin(), chunk.end(), [](const auto& x) { return x.output; }));
    rows.resize(n_out * V);
    QM_RETURN_IF_ERROR(model.Forward(chunk, n_out ? rows.data() : nullptr, nullptr));
    for (const auto& x : chunk) {
      if (x.seq >= 0) model.SetLength(x.seq, std::max(model.length(x.seq), x.pos + 1));
    }
    out->insert(out->end(), rows.begin(), rows.end());
  }
  return Status::Ok();
}

Status CheckTokens(const engine::Model& model, const std::vector<int32_t>& tokens, size_t extra) {
  if (tokens.empty()) return Error(StatusCode::kInvalidArgument, "empty prompt");
  const size_t n_ctx = static_cast<size_t>(model.n_ctx());
  if (tokens.size() + extra > n_ctx) {
    return Error(StatusCode::kOutOfRange, "prompt of {} tokens (+{}) does not fit the context of {} tokens",
                 tokens.size(), extra, n_ctx);
  }
  for (int32_t t : tokens) {
    if (t < 0 || t >= static_cast<int32_t>(model.config().n_vocab)) return Error(StatusCode::kInvalidArgument, "token id {} out of range", t);
  }
  return Status::Ok();
}

// Prefills the prompts of `group` (prompt index per KV sequence 0..), interleaved; returns each
// one's last-position logits ([group.size(), V]).
Status PrefillGroup(engine::Model& model, const std::vector<std::vector<int32_t>>& prompts, const std::vector<size_t>& group,
                    std::vector<float>* last, int64_t* tokens) {
  std::vector<runtime::BatchEntry> entries;
  size_t longest = 0;
  for (size_t k = 0; k < group.size(); ++k) {
    model.ResetSequence(static_cast<int32_t>(k));
    longest = std::max(longest, prompts[group[k]].size());
  }
  // Output entries come out in entry order; remember whose each one is.
  std::vector<size_t> owner;
  for (size_t p = 0; p < longest; ++p) {
    for (size_t k = 0; k < group.size(); ++k) {
      const auto& pr = prompts[group[k]];
      if (p >= pr.size()) continue;
      const bool out = p + 1 == pr.size();
      entries.push_back({pr[p], static_cast<int32_t>(p), static_cast<int32_t>(k), out});
      if (out) owner.push_back(k);
    }
  }
  if (tokens) *tokens += static_cast<int64_t>(entries.size());
  std::vector<float> rows;
  QM_RETURN_IF_ERROR(RunEntries(model, entries, &rows));
  const size_t V = model.config().n_vocab;
  last->assign(group.size() * V, 0.0f);
  for (size_t i = 0; i < owner.size(); ++i) std::copy_n(rows.data() + i * V, V, last->data() + owner[i] * V);
  return Status::Ok();
}

}  // namespace

std::vector<double> Softmax(const std::vector<double>& scores) {
  std::vector<double> p(scores.size());
  if (scores.empty()) return p;
  const double mx = *std::max_element(scores.begin(), scores.end());
  double sum = 0;
  for (size_t i = 0; i < scores.size(); ++i) sum += (p[i] = std::exp(scores[i] - mx));
  for (double& x : p) x /= sum;
  return p;
}

Result<std::vector<ScoreOutput>> ScoreContinuations(engine::Model& model, const std::vector<std::vector<int32_t>>& prompts,
                                                    const std::vector<std::vector<int32_t>>& continuations, int64_t* tokens) {
  return model.ScoreContinuations(prompts, continuations, tokens);
}

Result<std::vector<ConstrainedOutput>> GenerateConstrained(engine::Model& model, const std::vector<std::vector<int32_t>>& prompts,
                                                           std::vector<std::unique_ptr<engine::LogitProcessor>> processors,
                                                           int32_t max_tokens, int64_t* tokens) {
  if (processors.size() != prompts.size()) return Error(StatusCode::kInvalidArgument, "generate: one processor per prompt");
  std::vector<ConstrainedOutput> out(prompts.size());
  std::vector<size_t> ok;
  for (size_t i = 0; i < prompts.size(); ++i) {
    out[i].status = CheckTokens(model, prompts[i], static_cast<size_t>(std::max(0, max_tokens)));
    if (out[i].status.ok()) ok.push_back(i);
  }
  const size_t V = model.config().n_vocab;
  const size_t n_seq = static_cast<size_t>(std::max(1, model.n_seq()));
  std::vector<float> logits;
  std::vector<runtime::BatchEntry> entries;
  for (size_t g0 = 0; g0 < ok.size(); g0 += n_seq) {
    const std::vector<size_t> group(ok.begin() + g0, ok.begin() + std::min(ok.size(), g0 + n_seq));
    QM_RETURN_IF_ERROR(PrefillGroup(model, prompts, group, &logits, tokens));
    std::vector<size_t> active(group.size());  // positions in `group`, row k of logits
    for (size_t k = 0; k < group.size(); ++k) active[k] = k;
    for (int32_t step = 0; step < max_tokens && !active.empty(); ++step) {
      entries.clear();
      std::vector<size_t> next;
      for (size_t r = 0; r < active.size(); ++r) {
        const size_t k = active[r];
        ConstrainedOutput& o = out[group[k]];
        engine::LogitProcessor& proc = *processors[group[k]];
        std::span<float> row(logits.data() + r * V, V);
        Status s = proc.Apply(row);
        int32_t tok = s.ok() ? engine::Argmax(row) : -1;
        if (s.ok() && !std::isfinite(row[tok])) s = Error(StatusCode::kInternal, "generate: no finite logit left");
        if (s.ok()) s = proc.Accept(tok);
        if (!s.ok()) {
          o.status = s;
          continue;
        }
        o.tokens.push_back(tok);
        if (proc.Done()) {
          o.complete = true;
          continue;
        }
        if (step + 1 == max_tokens) continue;
        const int32_t seq = static_cast<int32_t>(k);
        entries.push_back({tok, model.length(seq), seq, true});
        next.push_back(k);
      }
      active = std::move(next);
      if (active.empty()) break;
      if (tokens) *tokens += static_cast<int64_t>(entries.size());
      QM_RETURN_IF_ERROR(RunEntries(model, entries, &logits));
    }
    for (size_t k = 0; k < group.size(); ++k) model.ResetSequence(static_cast<int32_t>(k));
  }
  for (ConstrainedOutput& o : out) {
    if (!o.status.ok()) continue;
    auto text = model.tokenizer().Decode(o.tokens);
    if (!text.ok()) {
      o.status = text.status();
      continue;
    }
    o.text = std::move(*text);
    if (!o.complete) o.status = Error(StatusCode::kOutOfRange, "output cut at max_tokens {} before it was complete", max_tokens);
  }
  return out;
}

}  // namespace qwenmux::pipeline
