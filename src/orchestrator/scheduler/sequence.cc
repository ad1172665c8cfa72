#include "orchestrator/scheduler/sequence.h"

#include <algorithm>

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
    case Kind::kExclusive:
      if (exclusive.run) exclusive.run(status);
      break;
  }
}

Sequence::Sequence(std::unique_ptr<Job> job, const std::string& served_by, bool degraded, Clock::time_point admitted)
    : job_(std::move(job)) {
  result_.model = served_by;
  result_.degraded = degraded;
  result_.prompt_tokens = static_cast<int32_t>(job_->gen.prompt.size());
  result_.queue_seconds = Seconds(job_->submitted, admitted);
}

engine::SequenceRequest Sequence::EngineRequest() {
  GenerationRequest& g = job_->gen;
  engine::SequenceRequest r;
  r.prompt = g.prompt;
  r.options = g.options;
  r.adapter = g.options.adapter;  // set by the worker from the request's adapter lease
  r.adapter_scale = g.options.adapter_scale;
  r.processor = std::move(g.processor);
  r.logprobs = g.logprobs;
  r.top_logprobs = g.top_logprobs;
  r.cancelled = [h = job_->handle] { return h->cancelled(); };
  return r;
}

bool Sequence::OnEvent(engine::SequenceEvent& ev, Metrics* metrics, const std::string& model_label) {
  if (finished_) return true;
  if (ev.has_token) {
    const Clock::time_point now = Clock::now();
    if (result_.tokens.empty()) {
      result_.ttft_seconds = Seconds(job_->submitted, now);
      metrics->ObserveTimeToFirstToken(model_label, result_.ttft_seconds);
    } else {
      metrics->ObserveInterToken(model_label, Seconds(last_token_, now));
    }
    last_token_ = now;
    result_.tokens.push_back(ev.token);
  }
  if (!ev.error.ok()) {
    Abort(std::move(ev.error));
    return true;
  }
  if (ev.finished) End(ev.finish_reason);
  if (!ev.has_token) return true;
  result_.text += ev.text;
  const GenerationRequest& req = job_->gen;
  if (req.on_token) {
    TokenEvent te;
    te.text = ev.text;
    te.token = ev.token;
    te.logprob = ev.logprob;
    te.top.reserve(ev.top.size());
    for (const engine::TokenLogprob& t : ev.top) te.top.push_back({t.token, t.logprob});
    if (!req.on_token(te) && !finished_) {
      End("cancelled");
      return false;
    }
  }
  return true;
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

PromptJob::PromptJob(std::unique_ptr<Job> job, const engine::Model& model) : job_(std::move(job)), model_(model) {}

Status PromptJob::Prepare() {
  if (job_->kind == Job::Kind::kEmbed) {
    QM_RETURN_IF_ERROR(model_.CheckEmbedDims(job_->embed.dims));
    for (const auto& in : job_->embed.inputs) prompts_.push_back(model_.EmbedPrompt(in));
    vectors_.resize(prompts_.size());
  } else {
    prompts_ = job_->rerank.inputs;
    scores_.assign(prompts_.size(), 0.0f);
  }
  return Status::Ok();
}

std::pair<size_t, engine::SequenceRequest> PromptJob::Next() {
  engine::SequenceRequest r;
  r.prompt = prompts_[next_];
  r.output = job_->kind == Job::Kind::kEmbed ? engine::SequenceOutput::kLastHidden : engine::SequenceOutput::kLastLogits;
  return {next_++, std::move(r)};
}

Status PromptJob::OnRow(size_t input, std::span<const float> row) {
  if (job_->kind == Job::Kind::kEmbed) {
    vectors_[input] = model_.PoolEmbedding(row, job_->embed.dims);
  } else {
    QM_ASSIGN_OR_RETURN(scores_[input], model_.RerankScore(row));
  }
  ++done_;
  return Status::Ok();
}

void PromptJob::Finish(const Status& status) {
  if (!status.ok()) return job_->Fail(status);
  if (job_->kind == Job::Kind::kEmbed) {
    if (job_->embed.on_done) job_->embed.on_done(std::move(vectors_));
  } else if (job_->rerank.on_done) {
    job_->rerank.on_done(std::move(scores_));
  }
}

}  // namespace qwenmux::orchestrator::internal
