#include "engine/batch.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace qwenmux::engine {

// One admitted sequence: its request, prompt progress, sampler, text stream and history.
struct Batch::Seq {
  Seq(SequenceRequest r, int32_t slot, const tokenizer::Tokenizer& tok)
      : req(std::move(r)), slot(slot), sampler(req.options.sampler), stream(tok, req.options.stop), history(req.prompt) {
    history.reserve(history.size() + static_cast<size_t>(std::max(0, req.options.max_tokens)));
  }
  LogitProcessor* processor() const { return req.processor ? req.processor.get() : req.options.processor; }
  bool cancelled() const { return req.cancelled && req.cancelled(); }
  bool prefilling() const { return prompt_done < req.prompt.size(); }

  SequenceRequest req;
  int32_t slot;
  const runtime::LoraAdapter* lora = nullptr;
  size_t prompt_done = 0;   // prompt tokens in the KV cache
  int32_t next_token = -1;  // the sampled token that the next step feeds
  int32_t generated = 0;
  bool finished = false;
  Sampler sampler;
  TextStream stream;
  std::vector<int32_t> history;  // prompt and generated tokens, for the penalties
  std::vector<float> saved_row;  // logits before sampling, when logprobs are asked for
  std::string tail;
};

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

Batch::Batch(Model& model)
    : model_(model),
      backend_(*model.backend_),
      n_vocab_(static_cast<int32_t>(model.config().n_vocab)),
      n_embd_(static_cast<int32_t>(model.config().n_embd)),
      n_batch_(model.options().n_batch),
      slots_(static_cast<size_t>(backend_.n_seq())) {}

Batch::~Batch() { Clear(); }  // counts its sequences out of their adapters

int32_t Batch::free_slots() const { return n_seq() - active(); }

bool Batch::prefilling(int32_t id) const {
  return id >= 0 && id < n_seq() && slots_[id] && slots_[id]->prefilling();
}

Result<int32_t> Batch::Admit(SequenceRequest r) {
  if (r.adapter != -1 && model_.adapter(r.adapter) == nullptr) {
    return Error(StatusCode::kInvalidArgument, "engine: adapter {} is not loaded ({} adapters)", r.adapter, model_.n_adapters());
  }
  if (!std::isfinite(r.adapter_scale)) {
    return Error(StatusCode::kInvalidArgument, "engine: adapter scale {} is not finite", r.adapter_scale);
  }
  if (r.output == SequenceOutput::kTokens) {
    QM_RETURN_IF_ERROR(r.options.sampler.Validate());
    if (r.options.max_tokens < 0) return Error(StatusCode::kInvalidArgument, "engine: max_tokens {} < 0", r.options.max_tokens);
    if (r.top_logprobs < 0 || r.top_logprobs > 20) {
      return Error(StatusCode::kInvalidArgument, "engine: top_logprobs {} not in 0..20", r.top_logprobs);
    }
  }
  int32_t slot = r.slot;
  if (slot == -1) {
    slot = 0;
    while (slot < n_seq() && slots_[slot]) ++slot;
    if (slot == n_seq()) return Error(StatusCode::kResourceExhausted, "engine: all {} sequences are in use", n_seq());
  } else if (slot < 0 || slot >= n_seq()) {
    return Error(StatusCode::kInvalidArgument, "engine: sequence {} out of range [0, {})", slot, n_seq());
  } else if (slots_[slot]) {
    return Error(StatusCode::kInvalidArgument, "engine: sequence {} is in use", slot);
  }
  if (r.prompt.empty()) return Error(StatusCode::kInvalidArgument, "engine: empty prompt");
  if (static_cast<int64_t>(r.prompt.size()) > n_ctx()) {
    return Error(StatusCode::kOutOfRange, "engine: prompt of {} tokens does not fit the context of {} tokens",
                 r.prompt.size(), n_ctx());
  }
  for (int32_t t : r.prompt) {
    if (t < 0 || t >= n_vocab_) return Error(StatusCode::kInvalidArgument, "engine: token id {} out of range [0, {})", t, n_vocab_);
  }
  // Counted in: the adapter cannot be unloaded while this sequence runs (Remove counts it out).
  const runtime::LoraAdapter* lora = r.adapter == -1 ? nullptr : model_.UseAdapter(r.adapter);
  if (r.adapter != -1 && lora == nullptr) {
    return Error(StatusCode::kInvalidArgument, "engine: adapter {} is not loaded", r.adapter);
  }
  backend_.set_length(slot, 0);
  slots_[slot] = std::make_unique<Seq>(std::move(r), slot, model_.tokenizer());
  slots_[slot]->lora = lora;
  order_.push_back(slot);
  return slot;
}

void Batch::Remove(int32_t id) {
  if (id < 0 || id >= n_seq() || !slots_[id]) return;
  if (slots_[id]->lora != nullptr) model_.UnuseAdapter(slots_[id]->req.adapter);
  slots_[id].reset();
  backend_.set_length(id, 0);
  std::erase(order_, id);
}

void Batch::Clear() {
  while (!order_.empty()) Remove(order_.back());
}

void Batch::Finish(Seq& s, std::string_view reason, SequenceEvent* ev) {
  if (s.finished) return;
  s.finished = true;
  ev->finished = true;
  ev->finish_reason = reason;
}

void Batch::Fail(Seq& s, Status error, SequenceEvent* ev) {
  s.finished = true;
  ev->finished = true;
  ev->finish_reason = {};
  ev->error = std::move(error);
}

bool Batch::EndsBeforeDraw(Seq& s, SequenceEvent* ev) {
  if (s.cancelled()) {
    Finish(s, "cancelled", ev);
    return true;
  }
  if (s.req.options.max_tokens == 0) {
    Finish(s, "length", ev);
    return true;
  }
  return false;
}

void Batch::OnLogits(Seq& s, std::span<float> row, SequenceEvent* ev) {
  if (EndsBeforeDraw(s, ev)) return;
  LogitProcessor* proc = s.processor();
  if (proc) {
    if (Status st = proc->Apply(row); !st.ok()) return Fail(s, st.WithContext("logit processor"), ev);
  }
  const bool want_logprobs = s.req.logprobs || s.req.top_logprobs > 0;
  float lse = 0;
  if (want_logprobs) {
    lse = LogSumExp(row);
    ev->top = TopLogprobs(row, s.req.top_logprobs, lse);
    s.saved_row.assign(row.begin(), row.end());
  }
  const int32_t tok = s.sampler.Sample(row, s.history);
  if (proc) {
    if (!std::isfinite(row[tok])) return Fail(s, Error(StatusCode::kInternal, "logit processor: no finite logit left"), ev);
    if (Status st = proc->Accept(tok); !st.ok()) return Fail(s, st.WithContext("logit processor"), ev);
  }
  if (want_logprobs) ev->logprob = s.saved_row[tok] - lse;
  OnToken(s, tok, ev);
}

void Batch::OnTop(Seq& s, std::span<const runtime::TopLogit> top, SequenceEvent* ev) {
  if (EndsBeforeDraw(s, ev)) return;
  OnToken(s, s.sampler.SampleTop(top), ev);
}

void Batch::OnToken(Seq& s, int32_t tok, SequenceEvent* ev) {
  const GenerateOptions& o = s.req.options;
  if (o.stop_on_eos && model_.IsEndOfGeneration(tok)) return Finish(s, "stop", ev);
  ++s.generated;
  s.history.push_back(tok);
  ev->has_token = true;
  ev->token = tok;
  Result<bool> stopped = s.stream.Push(tok, &ev->text);
  if (!stopped.ok()) return Fail(s, stopped.status(), ev);
  LogitProcessor* proc = s.processor();
  if (*stopped) {
    Finish(s, "stop", ev);
  } else if (proc && proc->Done()) {
    Finish(s, "stop", ev);
  } else if (backend_.length(s.slot) >= n_ctx() || s.generated >= o.max_tokens) {
    Finish(s, "length", ev);
  }
  if (s.finished && !*stopped) {  // the end of the text: flush what was held back
    s.stream.Finish(&s.tail);
    ev->text += s.tail;
  }
  s.next_token = tok;
}

bool Batch::StepSamplesFromTop() const {
  if (!model_.samples_from_top()) return false;
  for (int32_t slot : owners_) {
    const Seq& s = *slots_[slot];
    if (s.req.output != SequenceOutput::kTokens || s.processor() || s.req.logprobs || s.req.top_logprobs > 0 ||
        !s.sampler.CanSampleTop(kTop, s.history)) {
      return false;
    }
  }
  return true;
}

Status Batch::Step(std::vector<SequenceEvent>* events, StepStats* stats) {
  events->clear();
  StepStats st;
  // Cancelled sequences leave before the step.
  for (int32_t slot : order_) {
    Seq& s = *slots_[slot];
    if (!s.cancelled()) continue;
    events->emplace_back().id = slot;
    Finish(s, "cancelled", &events->back());
  }
  // The batch: one decode token per generating sequence, then prompt chunks in admission order.
  entries_.clear();
  owners_.clear();
  bool need_logits = false, need_hidden = false;
  auto wants = [&](const Seq& s) {
    need_logits |= s.req.output != SequenceOutput::kLastHidden;
    need_hidden |= s.req.output == SequenceOutput::kLastHidden;
  };
  for (int32_t slot : order_) {
    Seq& s = *slots_[slot];
    if (s.finished || s.prefilling()) continue;
    entries_.push_back({s.next_token, backend_.length(slot), slot, true, s.lora, s.req.adapter_scale});
    owners_.push_back(slot);
    wants(s);
    ++st.n_decode;
  }
  int32_t budget = std::max(1, n_batch_ - st.n_decode);
  for (int32_t slot : order_) {
    Seq& s = *slots_[slot];
    if (s.finished || !s.prefilling() || budget == 0) continue;
    const std::vector<int32_t>& p = s.req.prompt;
    const size_t begin = s.prompt_done;
    const size_t end = std::min(p.size(), begin + static_cast<size_t>(budget));
    for (size_t i = begin; i < end; ++i) {
      const bool last = i + 1 == p.size();
      entries_.push_back({p[i], static_cast<int32_t>(i), slot, last, s.lora, s.req.adapter_scale});
      if (last) {
        owners_.push_back(slot);
        wants(s);
      }
    }
    budget -= static_cast<int32_t>(end - begin);
    st.n_prompt += static_cast<int32_t>(end - begin);
  }
  if (!entries_.empty()) {
    // Output rows come in batch order: decode rows first, then the prompts' last tokens.
    const bool from_top = need_logits && !need_hidden && StepSamplesFromTop();
    st.from_top = from_top;
    if (from_top) {
      top_.resize(owners_.size() * static_cast<size_t>(kTop));
    } else if (need_logits) {
      logits_.resize(owners_.size() * static_cast<size_t>(n_vocab_));
    }
    if (need_hidden) hidden_.resize(owners_.size() * static_cast<size_t>(n_embd_));
    const auto t0 = std::chrono::steady_clock::now();
    Status fs = from_top ? model_.ForwardTop(entries_, kTop, top_.data())
                         : model_.Forward(entries_, need_logits ? logits_.data() : nullptr,
                                          need_hidden ? hidden_.data() : nullptr);
    st.forward_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!fs.ok()) {
      Clear();
      events->clear();
      if (stats) *stats = st;
      return fs;
    }
    // Commit the new positions.
    for (const runtime::BatchEntry& e : entries_) backend_.set_length(e.seq, e.pos + 1);
    for (int32_t slot : order_) {
      Seq& s = *slots_[slot];
      if (s.prefilling()) s.prompt_done = static_cast<size_t>(backend_.length(slot));
    }
    for (size_t r = 0; r < owners_.size(); ++r) {
      Seq& s = *slots_[owners_[r]];
      SequenceEvent& ev = events->emplace_back();
      ev.id = s.slot;
      switch (s.req.output) {
        case SequenceOutput::kTokens:
          if (from_top) {
            OnTop(s, std::span<const runtime::TopLogit>(top_.data() + r * kTop, static_cast<size_t>(kTop)), &ev);
          } else {
            OnLogits(s, std::span<float>(logits_.data() + r * n_vocab_, static_cast<size_t>(n_vocab_)), &ev);
          }
          st.generated += ev.has_token;
          break;
        case SequenceOutput::kLastLogits:
          ev.row.assign(logits_.begin() + static_cast<long>(r * n_vocab_), logits_.begin() + static_cast<long>((r + 1) * n_vocab_));
          Finish(s, "length", &ev);
          break;
        case SequenceOutput::kLastHidden:
          ev.row.assign(hidden_.begin() + static_cast<long>(r * n_embd_), hidden_.begin() + static_cast<long>((r + 1) * n_embd_));
          Finish(s, "length", &ev);
          break;
      }
      if (!ev.has_token && !ev.finished && ev.row.empty()) events->pop_back();
    }
  }
  for (size_t i = 0; i < order_.size();) {
    const int32_t slot = order_[i];
    if (slots_[slot]->finished) {
      Remove(slot);
    } else {
      ++i;
    }
  }
  if (stats) *stats = st;
  return Status::Ok();
}

}  // namespace qwenmux::engine
