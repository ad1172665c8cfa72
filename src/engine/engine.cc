#include "engine/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <tuple>

#include "engine/batch.h"
#include "engine/lora.h"
#include "runtime/backend_factory.h"

namespace qwenmux::engine {

namespace {

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

void L2Normalize(std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  const float inv = s > 0 ? static_cast<float>(1.0 / std::sqrt(s)) : 0.0f;
  for (float& x : v) x *= inv;
}

constexpr const char* kRerankPrefix =
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    "provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n";
constexpr const char* kRerankSuffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";

}  // namespace

Result<std::unique_ptr<Model>> Model::Load(const std::string& path, const LoadOptions& options) {
  std::unique_ptr<Model> m(new Model());
  m->options_ = options;
  QM_ASSIGN_OR_RETURN(m->file_, gguf::File::Open(path));
  QM_ASSIGN_OR_RETURN(m->config_, model::ReadConfig(m->file_));
  QM_ASSIGN_OR_RETURN(m->weights_, runtime::BindWeights(m->file_, m->config_));
  QM_ASSIGN_OR_RETURN(m->tokenizer_, tokenizer::Tokenizer::SharedFromGguf(m->file_));
  if (options.n_seq <= 0 || options.n_batch <= 0 || options.n_ctx <= 0) {
    return Error(StatusCode::kInvalidArgument, "engine: n_ctx {}, n_seq {} and n_batch {} must be positive",
                 options.n_ctx, options.n_seq, options.n_batch);
  }
  m->options_.n_ctx = std::min<int32_t>(options.n_ctx, static_cast<int32_t>(m->config_.n_ctx_train));
  m->pool_ = std::make_unique<ThreadPool>(options.n_threads);
  runtime::BackendOptions bo;
  bo.device = options.device;
  bo.n_ctx = m->options_.n_ctx;
  bo.n_seq = options.n_seq;
  bo.n_batch = options.n_batch;
  bo.pool = m->pool_.get();
  bo.device_index = options.device_index;
  QM_ASSIGN_OR_RETURN(m->backend_, runtime::CreateBackend(m->config_, m->weights_, bo, &m->backend_note_));
  for (const char* s : {"<|im_end|>", "<|endoftext|>"}) {
    if (auto id = m->tokenizer_->TokenId(s)) m->eos_ids_.push_back(*id);
  }
  return m;
}

Result<int32_t> Model::LoadAdapter(const std::string& path_or_dir) {
  QM_ASSIGN_OR_RETURN(LoraTensors t, ReadLora(path_or_dir));
  QM_ASSIGN_OR_RETURN(std::unique_ptr<runtime::LoraAdapter> a, BindLora(std::move(t), file_, config_));
  std::lock_guard lk(adapters_mu_);
  adapters_.push_back(std::move(a));
  adapter_users_.push_back(0);
  return static_cast<int32_t>(adapters_.size() - 1);
}

Status Model::UnloadAdapter(int32_t id) {
  std::unique_ptr<runtime::LoraAdapter> gone;
  {
    std::lock_guard lk(adapters_mu_);
    if (id < 0 || id >= static_cast<int32_t>(adapters_.size()) || !adapters_[static_cast<size_t>(id)]) {
      return Error(StatusCode::kNotFound, "engine: adapter {} is not loaded", id);
    }
    const int32_t users = adapter_users_[static_cast<size_t>(id)];
    if (users > 0) {
      return Error(StatusCode::kUnavailable, "engine: adapter {} ({}) is used by {} running sequence(s)", id,
                   adapters_[static_cast<size_t>(id)]->name, users);
    }
    gone = std::move(adapters_[static_cast<size_t>(id)]);  // the id stays empty: never reused
  }
  return Status::Ok();  // `gone` is freed outside the lock
}

int32_t Model::adapter_users(int32_t id) const {
  std::lock_guard lk(adapters_mu_);
  return id >= 0 && id < static_cast<int32_t>(adapter_users_.size()) ? adapter_users_[static_cast<size_t>(id)] : 0;
}

const runtime::LoraAdapter* Model::UseAdapter(int32_t id) {
  std::lock_guard lk(adapters_mu_);
  if (id < 0 || id >= static_cast<int32_t>(adapters_.size()) || !adapters_[static_cast<size_t>(id)]) return nullptr;
  ++adapter_users_[static_cast<size_t>(id)];
  return adapters_[static_cast<size_t>(id)].get();
}

void Model::UnuseAdapter(int32_t id) {
  std::lock_guard lk(adapters_mu_);
  if (id >= 0 && id < static_cast<int32_t>(adapter_users_.size()) && adapter_users_[static_cast<size_t>(id)] > 0) {
    --adapter_users_[static_cast<size_t>(id)];
  }
}

uint64_t Model::adapter_bytes() const {
  std::lock_guard lk(adapters_mu_);
  uint64_t n = 0;
  for (const auto& a : adapters_) {
    if (a) n += a->bytes();
  }
  return n;
}

namespace {

// Index of the first NaN or Inf in x[0, n), or n. Tests the exponent bits so the loop vectorizes.
size_t FirstNonFinite(const float* x, size_t n) {
  constexpr size_t kBlock = 4096;
  for (size_t b = 0; b < n; b += kBlock) {
    const size_t e = std::min(n, b + kBlock);
    uint32_t bad = 0;
    for (size_t i = b; i < e; ++i) {
      uint32_t bits;
      std::memcpy(&bits, x + i, sizeof bits);
      bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }
    if (bad) {
      for (size_t i = b; i < e; ++i)
        if (!std::isfinite(x[i])) return i;
    }
  }
  return n;
}

// The error of a non-finite output value of `entry` (null: not found).
Status NonFiniteOutput(const char* what, float value, const runtime::BatchEntry* entry) {
  return Error(StatusCode::kInternal,
               "engine: the model produced a non-finite {} value ({}) for sequence {} at position {}; "
               "its weights or hyper-parameters are broken", what, value, entry ? entry->seq : -1,
               entry ? entry->pos : -1);
}

}  // namespace

Status Model::Forward(std::span<const runtime::BatchEntry> batch, float* logits, float* hidden) {
  QM_RETURN_IF_ERROR(backend_->Run(batch, logits, hidden));
  // A NaN or Inf output must fail the request instead of becoming JSON nulls or a token drawn
  // from garbage: broken weights, or numbers that overflow. logits: [n_out, n_vocab],
  // hidden: [n_out, n_embd], rows in the order of the batch's output entries.
  const size_t n_out = static_cast<size_t>(
      std::count_if(batch.begin(), batch.end(), [](const runtime::BatchEntry& e) { return e.output; }));
  for (auto [data, width, what] : {std::tuple{static_cast<const float*>(logits), size_t{config_.n_vocab}, "logits"},
                                   std::tuple{static_cast<const float*>(hidden), size_t{config_.n_embd}, "hidden state"}}) {
    if (data == nullptr || n_out == 0) continue;
    const size_t at = FirstNonFinite(data, n_out * width);
    if (at == n_out * width) continue;
    size_t row = at / width, k = 0;
    const runtime::BatchEntry* entry = nullptr;
    for (const runtime::BatchEntry& e : batch) {
      if (e.output && k++ == row) { entry = &e; break; }
    }
    return NonFiniteOutput(what, data[at], entry);
  }
  return Status::Ok();
}

Status Model::ForwardTop(std::span<const runtime::BatchEntry> batch, int32_t k, runtime::TopLogit* top) {
  QM_RETURN_IF_ERROR(backend_->RunTop(batch, k, top));
  // The lists hold the largest values, so +Inf and NaN (which sort above every number on the
  // device) show up in them.
  size_t row = 0;
  for (const runtime::BatchEntry& e : batch) {
    if (!e.output) continue;
    for (int32_t j = 0; j < k; ++j) {
      const float v = top[row * k + j].logit;
      if (!std::isfinite(v)) {
        return NonFiniteOutput("logits", v, &e);
      }
    }
    ++row;
  }
  return Status::Ok();
}

bool Model::samples_from_top() const {
  switch (options_.top_logits) {
    case LoadOptions::TopLogits::kOn: return true;
    case LoadOptions::TopLogits::kOff: return false;
    case LoadOptions::TopLogits::kAuto: return backend_->selects_top_on_device();
  }
  return false;
}

Status Model::CheckPrompt(std::span<const int32_t> tokens, int32_t seq) const {
  if (seq < 0 || seq >= n_seq()) {
    return Error(StatusCode::kInvalidArgument, "engine: sequence {} out of range [0, {})", seq, n_seq());
  }
  if (tokens.empty()) return Error(StatusCode::kInvalidArgument, "engine: empty prompt");
  const int64_t total = static_cast<int64_t>(length(seq)) + static_cast<int64_t>(tokens.size());
  if (total > n_ctx()) {
    return Error(StatusCode::kOutOfRange, "engine: prompt of {} tokens does not fit the context of {} tokens",
                 total, n_ctx());
  }
  for (int32_t t : tokens) {
    if (t < 0 || t >= static_cast<int32_t>(config_.n_vocab)) {
      return Error(StatusCode::kInvalidArgument, "engine: token id {} out of range [0, {})", t, config_.n_vocab);
    }
  }
  return Status::Ok();
}

Status Model::Prefill(int32_t seq, std::span<const int32_t> tokens, std::vector<float>* last_logits,
                      std::vector<float>* all_logits) {
  QM_RETURN_IF_ERROR(CheckPrompt(tokens, seq));
  const int64_t V = config_.n_vocab;
  const int32_t start = length(seq);
  if (all_logits) all_logits->resize(tokens.size() * V);
  if (last_logits) last_logits->resize(V);
  std::vector<runtime::BatchEntry> batch;
  for (size_t begin = 0; begin < tokens.size(); begin += options_.n_batch) {
    const size_t end = std::min(tokens.size(), begin + static_cast<size_t>(options_.n_batch));
    batch.clear();
    for (size_t i = begin; i < end; ++i) {
      const bool out = all_logits != nullptr || (last_logits != nullptr && i + 1 == tokens.size());
      batch.push_back({tokens[i], start + static_cast<int32_t>(i), seq, out});
    }
    float* dst = all_logits ? all_logits->data() + begin * V : (end == tokens.size() && last_logits ? last_logits->data() : nullptr);
    QM_RETURN_IF_ERROR(Forward(batch, dst, nullptr));
    backend_->set_length(seq, start + static_cast<int32_t>(end));
  }
  if (all_logits && last_logits) std::copy_n(all_logits->data() + (tokens.size() - 1) * V, V, last_logits->data());
  return Status::Ok();
}

Result<GenerateResult> Model::Generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                                       const TokenCallback& on_text, int32_t seq) {
  QM_RETURN_IF_ERROR(options.sampler.Validate());
  if (options.max_tokens < 0) return Error(StatusCode::kInvalidArgument, "engine: max_tokens {} < 0", options.max_tokens);
  if (seq < 0) return Error(StatusCode::kInvalidArgument, "engine: sequence {} out of range [0, {})", seq, n_seq());
  SequenceRequest req;
  req.prompt.assign(prompt.begin(), prompt.end());
  req.options = options;
  req.slot = seq;
  req.adapter = options.adapter;
  req.adapter_scale = options.adapter_scale;
  GenerateResult res;
  res.prompt_tokens = static_cast<int32_t>(prompt.size());
  const auto t0 = std::chrono::steady_clock::now();
  auto t1 = t0;
  Batch batch(*this);
  QM_ASSIGN_OR_RETURN(const int32_t id, batch.Admit(std::move(req)));
  bool cancelled = false, prompt_done = false;
  std::vector<SequenceEvent> events;
  while (res.finish_reason.empty()) {
    Status st = batch.Step(&events);
    if (!st.ok()) return st;
    for (SequenceEvent& ev : events) {
      if (ev.id != id) continue;
      if (!prompt_done) {
        prompt_done = true;
        t1 = std::chrono::steady_clock::now();
      }
      if (!ev.error.ok()) return ev.error;
      if (ev.has_token) res.tokens.push_back(ev.token);
      res.text += ev.text;
      if (on_text && !ev.text.empty() && !cancelled && !on_text(ev.text)) cancelled = true;
      if (ev.finished) {
        res.finish_reason = ev.finish_reason;
      } else if (cancelled) {
        batch.Remove(id);
        res.finish_reason = "cancelled";
      }
    }
  }
  if (cancelled) res.finish_reason = "cancelled";
  res.prefill_seconds = Seconds(t0, t1);
  res.decode_seconds = Seconds(t1, std::chrono::steady_clock::now());
  return res;
}

Status Model::RunPrompts(const std::vector<std::vector<int32_t>>& prompts, std::vector<float>* last_logits,
                         std::vector<float>* last_hidden) {
  Batch batch(*this);
  const int64_t V = config_.n_vocab, E = config_.n_embd;
  const int64_t width = last_hidden ? E : V;
  std::vector<float>* out = last_hidden ? last_hidden : last_logits;
  out->assign(prompts.size() * width, 0.0f);
  std::vector<size_t> owner(static_cast<size_t>(batch.n_seq()));  // id -> prompt index
  std::vector<SequenceEvent> events;
  size_t next = 0, done = 0;
  while (done < prompts.size()) {
    while (next < prompts.size() && batch.free_slots() > 0) {
      SequenceRequest req;
      req.prompt = prompts[next];
      req.output = last_hidden ? SequenceOutput::kLastHidden : SequenceOutput::kLastLogits;
      Result<int32_t> id = batch.Admit(std::move(req));
      if (!id.ok()) {
        batch.Clear();
        return id.status().WithContext(fmt::format("input {}", next));
      }
      owner[*id] = next++;
    }
    QM_RETURN_IF_ERROR(batch.Step(&events));
    for (const SequenceEvent& ev : events) {
      if (ev.row.empty()) continue;
      std::copy(ev.row.begin(), ev.row.end(), out->begin() + static_cast<long>(owner[ev.id] * width));
      ++done;
    }
  }
  return Status::Ok();
}

Status Model::CheckEmbedDims(int32_t dims) const {
  const int32_t E = static_cast<int32_t>(config_.n_embd);
  if (dims < 0 || dims > E) return Error(StatusCode::kInvalidArgument, "engine: dimensions {} not in 1..{}", dims, E);
  return Status::Ok();
}

std::vector<int32_t> Model::EmbedPrompt(std::vector<int32_t> input) const {
  const int32_t eot = tokenizer_->TokenId("<|endoftext|>").value_or(151643);
  if (input.empty() || input.back() != eot) input.push_back(eot);
  return input;
}

std::vector<float> Model::PoolEmbedding(std::span<const float> last_hidden, int32_t dims) const {
  const int32_t E = static_cast<int32_t>(last_hidden.size());
  std::vector<float> v(last_hidden.begin(), last_hidden.end());
  L2Normalize(v);
  if (dims > 0 && dims < E) {
    v.resize(dims);
    L2Normalize(v);
  }
  return v;
}

Result<std::vector<std::vector<float>>> Model::Embed(const std::vector<std::vector<int32_t>>& inputs, int32_t dims) {
  QM_RETURN_IF_ERROR(CheckEmbedDims(dims));
  const size_t E = static_cast<size_t>(config_.n_embd);
  std::vector<std::vector<int32_t>> prompts;
  prompts.reserve(inputs.size());
  for (const auto& ids : inputs) prompts.push_back(EmbedPrompt(ids));
  std::vector<float> hidden;
  QM_RETURN_IF_ERROR(RunPrompts(prompts, nullptr, &hidden));
  std::vector<std::vector<float>> out;
  out.reserve(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) out.push_back(PoolEmbedding(std::span(hidden).subspan(i * E, E), dims));
  return out;
}

std::vector<int32_t> Model::RerankPrompt(std::string_view instruction, std::string_view query,
                                         std::string_view document) const {
  tokenizer::EncodeOptions special;
  special.parse_special = true;
  std::vector<int32_t> ids = tokenizer_->Encode(kRerankPrefix, special);
  std::string body = "<Instruct>: ";
  body.append(instruction).append("\n<Query>: ").append(query).append("\n<Document>: ").append(document);
  tokenizer_->EncodeAppend(body, {}, &ids);  // user text: never parses control tokens
  tokenizer_->EncodeAppend(kRerankSuffix, special, &ids);
  return ids;
}

Result<std::pair<int32_t, int32_t>> Model::RerankTokens() const {
  const auto yes = tokenizer_->TokenId("yes");
  const auto no = tokenizer_->TokenId("no");
  if (!yes || !no) return Error(StatusCode::kUnsupported, "engine: the vocabulary has no \"yes\"/\"no\" tokens");
  return std::pair<int32_t, int32_t>(*yes, *no);
}

Result<float> Model::RerankScore(std::span<const float> last_logits) const {
  QM_ASSIGN_OR_RETURN(const auto yes_no, RerankTokens());
  const double d = static_cast<double>(last_logits[yes_no.first]) - last_logits[yes_no.second];
  return static_cast<float>(1.0 / (1.0 + std::exp(-d)));
}

Result<std::vector<float>> Model::RerankScores(const std::vector<std::vector<int32_t>>& inputs) {
  QM_RETURN_IF_ERROR(RerankTokens().status());
  std::vector<float> logits;
  QM_RETURN_IF_ERROR(RunPrompts(inputs, &logits, nullptr));
  const size_t V = static_cast<size_t>(config_.n_vocab);
  std::vector<float> scores;
  for (size_t i = 0; i < inputs.size(); ++i) {
    QM_ASSIGN_OR_RETURN(float score, RerankScore(std::span(logits).subspan(i * V, V)));
    scores.push_back(score);
  }
  return scores;
}

}  // namespace qwenmux::engine
