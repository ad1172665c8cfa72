#include "engine/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "engine/text_stream.h"
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

Status Model::Forward(std::span<const runtime::BatchEntry> batch, float* logits, float* hidden) {
  return backend_->Run(batch, logits, hidden);
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
    SetLength(seq, start + static_cast<int32_t>(end));
  }
  if (all_logits && last_logits) std::copy_n(all_logits->data() + (tokens.size() - 1) * V, V, last_logits->data());
  return Status::Ok();
}

Result<GenerateResult> Model::Generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                                       const TokenCallback& on_text, int32_t seq) {
  QM_RETURN_IF_ERROR(options.sampler.Validate());
  if (options.max_tokens < 0) return Error(StatusCode::kInvalidArgument, "engine: max_tokens {} < 0", options.max_tokens);
  if (seq >= 0 && seq < n_seq()) ResetSequence(seq);
  GenerateResult res;
  res.prompt_tokens = static_cast<int32_t>(prompt.size());
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<float> logits;
  QM_RETURN_IF_ERROR(Prefill(seq, prompt, &logits));
  const auto t1 = std::chrono::steady_clock::now();
  res.prefill_seconds = Seconds(t0, t1);

  Sampler sampler(options.sampler);
  std::vector<int32_t> history(prompt.begin(), prompt.end());
  TextStream stream(*tokenizer_, options.stop);
  std::string piece;
  res.finish_reason = "length";
  bool cancelled = false;
  auto emit = [&](std::string_view s) {
    res.text.append(s);
    if (on_text && !s.empty() && !on_text(s)) cancelled = true;
  };
  for (int32_t i = 0; i < options.max_tokens && !cancelled; ++i) {
    if (options.processor) QM_RETURN_IF_ERROR(options.processor->Apply(logits));
    const int32_t tok = sampler.Sample(logits, history);
    if (options.processor) QM_RETURN_IF_ERROR(options.processor->Accept(tok));
    if (options.stop_on_eos && IsEndOfGeneration(tok)) {
      res.finish_reason = "stop";
      break;
    }
    res.tokens.push_back(tok);
    history.push_back(tok);
    QM_ASSIGN_OR_RETURN(const bool stopped, stream.Push(tok, &piece));
    emit(piece);
    if (stopped) {
      res.finish_reason = "stop";
      break;
    }
    if (options.processor && options.processor->Done()) {
      stream.Finish(&piece);
      emit(piece);
      res.finish_reason = "stop";
      break;
    }
    if (length(seq) >= n_ctx()) break;  // context full
    if (i + 1 == options.max_tokens) break;
    const runtime::BatchEntry e{tok, length(seq), seq, true};
    QM_RETURN_IF_ERROR(Forward({&e, 1}, logits.data(), nullptr));
    SetLength(seq, length(seq) + 1);
  }
  if (res.finish_reason == "length") {
    stream.Finish(&piece);
    emit(piece);
  }
  if (cancelled) res.finish_reason = "cancelled";
  res.decode_seconds = Seconds(t1, std::chrono::steady_clock::now());
  return res;
}

Status Model::RunPrompts(const std::vector<std::vector<int32_t>>& prompts, std::vector<float>* last_logits,
                         std::vector<float>* last_hidden) {
  const int64_t V = config_.n_vocab, E = config_.n_embd;
  if (last_logits) last_logits->assign(prompts.size() * V, 0.0f);
  if (last_hidden) last_hidden->assign(prompts.size() * E, 0.0f);
  const size_t group = static_cast<size_t>(n_seq());
  std::vector<runtime::BatchEntry> entries;
  std::vector<size_t> owner;  // entry -> prompt index, for output entries
  std::vector<float> logits, hidden;
  for (size_t g0 = 0; g0 < prompts.size(); g0 += group) {
    const size_t g1 = std::min(prompts.size(), g0 + group);
    size_t longest = 0;
    for (size_t i = g0; i < g1; ++i) {
      const int32_t seq = static_cast<int32_t>(i - g0);
      ResetSequence(seq);
      QM_RETURN_IF_ERROR(CheckPrompt(prompts[i], seq).WithContext(fmt::format("input {}", i)));
      longest = std::max(longest, prompts[i].size());
    }
    entries.clear();
    owner.clear();
    for (size_t p = 0; p < longest; ++p) {
      for (size_t i = g0; i < g1; ++i) {
        if (p >= prompts[i].size()) continue;
        const bool last = p + 1 == prompts[i].size();
        entries.push_back({prompts[i][p], static_cast<int32_t>(p), static_cast<int32_t>(i - g0), last});
        if (last) owner.push_back(i);
      }
    }
    size_t out_index = 0;
    for (size_t b = 0; b < entries.size(); b += options_.n_batch) {
      const size_t e = std::min(entries.size(), b + static_cast<size_t>(options_.n_batch));
      const auto chunk = std::span(entries).subspan(b, e - b);
      const size_t n_out = static_cast<size_t>(std::count_if(chunk.begin(), chunk.end(), [](const auto& x) { return x.output; }));
      if (last_logits) logits.resize(n_out * V);
      if (last_hidden) hidden.resize(n_out * E);
      QM_RETURN_IF_ERROR(Forward(chunk, last_logits ? logits.data() : nullptr, last_hidden ? hidden.data() : nullptr));
      for (size_t k = 0; k < n_out; ++k, ++out_index) {
        const size_t i = owner[out_index];
        if (last_logits) std::copy_n(logits.data() + k * V, V, last_logits->data() + i * V);
        if (last_hidden) std::copy_n(hidden.data() + k * E, E, last_hidden->data() + i * E);
      }
    }
    for (size_t i = g0; i < g1; ++i) ResetSequence(static_cast<int32_t>(i - g0));
  }
  return Status::Ok();
}

Result<std::vector<std::vector<float>>> Model::Embed(const std::vector<std::vector<int32_t>>& inputs, int32_t dims) {
  const int32_t E = static_cast<int32_t>(config_.n_embd);
  if (dims < 0 || dims > E) return Error(StatusCode::kInvalidArgument, "engine: dimensions {} not in 1..{}", dims, E);
  const int32_t eot = tokenizer_->TokenId("<|endoftext|>").value_or(151643);
  std::vector<std::vector<int32_t>> prompts = inputs;
  for (auto& ids : prompts) {
    if (ids.empty() || ids.back() != eot) ids.push_back(eot);
  }
  std::vector<float> hidden;
  QM_RETURN_IF_ERROR(RunPrompts(prompts, nullptr, &hidden));
  std::vector<std::vector<float>> out;
  out.reserve(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::vector<float> v(hidden.begin() + static_cast<long>(i * E), hidden.begin() + static_cast<long>((i + 1) * E));
    L2Normalize(v);
    if (dims > 0 && dims < E) {
      v.resize(dims);
      L2Normalize(v);
    }
    out.push_back(std::move(v));
  }
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

Result<std::vector<float>> Model::RerankScores(const std::vector<std::vector<int32_t>>& inputs) {
  const auto yes = tokenizer_->TokenId("yes");
  const auto no = tokenizer_->TokenId("no");
  if (!yes || !no) return Error(StatusCode::kUnsupported, "engine: the vocabulary has no \"yes\"/\"no\" tokens");
  std::vector<float> logits;
  QM_RETURN_IF_ERROR(RunPrompts(inputs, &logits, nullptr));
  const int64_t V = config_.n_vocab;
  std::vector<float> scores;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const double d = static_cast<double>(logits[i * V + *yes]) - logits[i * V + *no];
    scores.push_back(static_cast<float>(1.0 / (1.0 + std::exp(-d))));
  }
  return scores;
}

}  // namespace qwenmux::engine
