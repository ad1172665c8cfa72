#include "orchestrator/scheduler/sequence.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace qwenmux::orchestrator::internal {

namespace {

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

}  // namespace

void Job::Fail(const Status& status) {
  switch (kind) {
    case Kind::kGenerate:
      if (gen.on_done) gen.on_done(status);
      break;
    case Kind::kEmbed:
      if (embed.on_done) embed.on_done(status);
      break;
    case Kind::kRerank:
      if (rerank.on_done) rerank.on_done(status);
      break;
  }
}

float LogSumExp(std::span<const float> row) {
  float mx = -std::numeric_limits<float>::infinity();
  for (float x : row) mx = std::max(mx, x);
  if (!std::isfinite(mx)) return mx;
  double s = 0;
  for (float x : row) s += std::exp(static_cast<double>(x - mx));
  return mx + static_cast<float>(std::log(s));
}

std::vector<TokenLogprob> TopLogprobs(std::span<const float> row, int32_t k, float lse) {
  std::vector<TokenLogprob> top;
  if (k <= 0) return top;
  top.reserve(static_cast<size_t>(k) + 1);
  // Insertion into a short sorted list: one pass over the vocabulary, no index array.
  for (int32_t i = 0; i < static_cast<int32_t>(row.size()); ++i) {
    const float v = row[i];
    if (static_cast<int32_t>(top.size()) == k && !(v > top.back().logprob)) continue;
    auto it = std::upper_bound(top.begin(), top.end(), v, [](float x, const TokenLogprob& t) { return x > t.logprob; });
    top.insert(it, {i, v});
    if (static_cast<int32_t>(top.size()) > k) top.pop_back();
  }
  for (TokenLogprob& t : top) t.logprob -= lse;
  return top;
}

Sequence::Sequence(std::unique_ptr<Job> job, engine::Model& model, int32_t slot, const std::string& served_by,
                   bool degraded, Clock::time_point admitted)
    : job_(std::move(job)),
      model_(model),
      slot_(slot),
      sampler_(job_->gen.options.sampler),
      stream_(model.tokenizer(), job_->gen.options.stop),
      history_(job_->gen.prompt) {
  result_.model = served_by;
  result_.degraded = degraded;
  result_.prompt_tokens = static_cast<int32_t>(job_->gen.prompt.size());
  result_.queue_seconds = Seconds(job_->submitted, admitted);
  history_.reserve(history_.size() + static_cast<size_t>(std::max(0, job_->gen.options.max_tokens)));
}

int32_t Sequence::OnLogits(std::span<float> row, Metrics* metrics, const std::string& model_label) {
  const GenerationRequest& req = job_->gen;
  if (finished_) return 0;
  if (cancelled()) {
    End("cancelled");
    return 0;
  }
  if (req.options.max_tokens == 0) {
    End("length");
    return 0;
  }
  // The request's own processor, else one the caller keeps (GenerateOptions::processor).
  engine::LogitProcessor* proc = req.processor ? req.processor.get() : req.options.processor;
  if (proc) {
    Status st = proc->Apply(row);
    if (!st.ok()) {
      Abort(st.WithContext("logit processor"));
      return 0;
    }
  }
  const bool want_logprobs = req.logprobs || req.top_logprobs > 0;
  float lse = 0;
  TokenEvent ev;
  if (want_logprobs) {
    lse = LogSumExp(row);
    ev.top = TopLogprobs(row, req.top_logprobs, lse);
    saved_row_.assign(row.begin(), row.end());
  }
  const int32_t tok = sampler_.Sample(row, history_);
  if (proc) {
    Status st = proc->Accept(tok);
    if (!st.ok()) {
      Abort(st.WithContext("logit processor"));
      return 0;
    }
  }
  if (req.options.stop_on_eos && model_.IsEndOfGeneration(tok)) {
    End("stop");
    return 0;
  }
  const Clock::time_point now = Clock::now();
  if (result_.tokens.empty()) {
    result_.ttft_seconds = Seconds(job_->submitted, now);
    metrics->ObserveTimeToFirstToken(model_label, result_.ttft_seconds);
  } else {
    metrics->ObserveInterToken(model_label, Seconds(last_token_, now));
  }
  last_token_ = now;
  result_.tokens.push_back(tok);
  history_.push_back(tok);
  Result<bool> stopped = stream_.Push(tok, &piece_);
  if (!stopped.ok()) {
    Abort(stopped.status());
    return 1;
  }
  if (*stopped) {
    End("stop");
  } else if (proc && proc->Done()) {
    End("stop");
  } else if (model_.length(slot_) >= model_.n_ctx() ||
             static_cast<int32_t>(result_.tokens.size()) >= req.options.max_tokens) {
    End("length");
  }
  if (finished_ && !*stopped) {  // the end of the text: flush what was held back
    stream_.Finish(&tail_);
    piece_ += tail_;
  }
  result_.text += piece_;
  if (req.on_token) {
    ev.text = piece_;
    ev.token = tok;
    if (want_logprobs) ev.logprob = saved_row_[tok] - lse;
    if (!req.on_token(ev)) End("cancelled");
  }
  next_token_ = tok;
  return 1;
}

void Sequence::Complete(Metrics* metrics, const std::string& model_label) {
  if (!error_.ok()) {
    metrics->RequestFailed(model_label, "error");
    if (job_->gen.on_done) job_->gen.on_done(error_);
    job_->gen.on_done = nullptr;
    return;
  }
  result_.finish_reason = reason_;
  result_.completion_tokens = static_cast<int32_t>(result_.tokens.size());
  result_.total_seconds = Seconds(job_->submitted, Clock::now());
  if (result_.finish_reason == "cancelled") {
    metrics->RequestFailed(model_label, "cancelled");
  } else {
    metrics->RequestCompleted(model_label);
  }
  if (job_->gen.on_done) job_->gen.on_done(std::move(result_));
  job_->gen.on_done = nullptr;
}

}  // namespace qwenmux::orchestrator::internal
