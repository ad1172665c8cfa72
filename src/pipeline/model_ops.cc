#include "pipeline/model_ops.h"

#include <algorithm>
#include <cmath>

#include "engine/batch.h"

namespace qwenmux::pipeline {

namespace {

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
                                                    const std::vector<std::vector<int32_t>>& continuations, int64_t* tokens,
                                                    int32_t adapter, float adapter_scale) {
  return model.ScoreContinuations(prompts, continuations, tokens, adapter, adapter_scale);
}

Result<std::vector<ConstrainedOutput>> GenerateConstrained(engine::Model& model, const std::vector<std::vector<int32_t>>& prompts,
                                                           std::vector<std::unique_ptr<engine::LogitProcessor>> processors,
                                                           int32_t max_tokens, int64_t* tokens, int32_t adapter,
                                                           float adapter_scale) {
  if (processors.size() != prompts.size()) return Error(StatusCode::kInvalidArgument, "generate: one processor per prompt");
  engine::Batch batch(model);
  std::vector<ConstrainedOutput> out(prompts.size());
  std::vector<size_t> ok;
  for (size_t i = 0; i < prompts.size(); ++i) {
    out[i].status = CheckTokens(model, prompts[i], static_cast<size_t>(std::max(0, max_tokens)));
    if (out[i].status.ok()) ok.push_back(i);
  }
  // Greedy, no end-of-sequence stop: the processor decides when the value is complete.
  std::vector<size_t> owner(static_cast<size_t>(model.n_seq()));  // engine sequence id -> prompt
  std::vector<engine::SequenceEvent> events;
  engine::StepStats stats;
  size_t next = 0, running = 0;
  while (next < ok.size() || running > 0) {
    while (next < ok.size() && batch.free_slots() > 0) {
      const size_t i = ok[next++];
      engine::SequenceRequest r;
      r.prompt = prompts[i];
      r.options.sampler.temperature = 0;
      r.options.max_tokens = max_tokens;
      r.options.stop_on_eos = false;
      r.processor = std::move(processors[i]);
      r.adapter = adapter;  // a LoRA adapter loaded into `model` (-1: none)
      r.adapter_scale = adapter_scale;
      Result<int32_t> id = batch.Admit(std::move(r));
      if (!id.ok()) {
        batch.Clear();
        return id.status();
      }
      owner[*id] = i;
      ++running;
    }
    QM_RETURN_IF_ERROR(batch.Step(&events, &stats));
    if (tokens) *tokens += stats.n_prompt + stats.n_decode;
    for (const engine::SequenceEvent& ev : events) {
      ConstrainedOutput& o = out[owner[ev.id]];
      if (ev.has_token) o.tokens.push_back(ev.token);
      if (!ev.finished) continue;
      --running;
      if (!ev.error.ok()) {
        o.status = ev.error;
      } else {
        o.complete = ev.finish_reason == "stop";  // the processor's Done()
      }
    }
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
