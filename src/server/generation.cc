#include "server/generation.h"

#include <atomic>
#include <limits>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "orchestrator/router/features.h"
#include "server/dashboard.h"
#include "server/prompt.h"
#include "server/upstream.h"

namespace qwenmux::server {

namespace {

// Compiled constraints shared by every request of the process: a schema sent again is not
// compiled again, and its requests share the per-state token masks already computed.
// Bounded by bytes (grammars + mask caches; SetConstraintCacheBytes), counted in the model
// manager's memory figure and exported in /metrics.
structured::ConstraintCache& Constraints() {
  static structured::ConstraintCache cache;
  return cache;
}

std::mutex& CompileHookMutex() {
  static std::mutex mu;
  return mu;
}
std::function<void()>& CompileHook() {  // under CompileHookMutex()
  static std::function<void()> hook;
  return hook;
}
std::function<void()> CurrentCompileHook() {
  std::lock_guard<std::mutex> lk(CompileHookMutex());
  return CompileHook();
}

// Schema options whose constraint counts its bytes in the process-wide cache.
structured::JsonSchemaOptions SchemaOptions() {
  structured::JsonSchemaOptions o;
  o.constraint = Constraints().options();
  return o;
}

Status SetConstraint(GenerationJob* job, const std::string& key,
                     const std::function<Result<structured::Constraint>(std::shared_ptr<const structured::VocabIndex>)>& compile) {
  std::shared_ptr<const structured::VocabIndex> vocab = structured::VocabIndex::Shared(*job->tok);
  // Compiled here, on the HTTP work pool, with the start state's masks: the model's worker
  // only ever finds the constraint ready (one schema cannot stall the other requests' steps).
  QM_ASSIGN_OR_RETURN(structured::Constraint c, Constraints().GetOrCompile(*vocab, key, [&]() -> Result<structured::Constraint> {
    if (auto hook = CurrentCompileHook()) hook();
    QM_ASSIGN_OR_RETURN(structured::Constraint compiled, compile(vocab));
    QM_RETURN_IF_ERROR(structured::WarmStartMasks(compiled));
    return compiled;
  }));
  if (c && job->constraint) {
    return Error(StatusCode::kInvalidArgument, "tool_choice: a forced tool call cannot be combined with response_format");
  }
  if (c) job->constraint = std::move(c);
  return Status::Ok();
}

// logit_bias in front of the request's own processor (constraint, thinking budget): the bias
// first, then the masks, so a constraint always keeps a token to pick.
class LogitBias final : public engine::LogitProcessor {
 public:
  LogitBias(std::vector<std::pair<int32_t, float>> bias, std::unique_ptr<engine::LogitProcessor> inner)
      : bias_(std::move(bias)), inner_(std::move(inner)) {}
  Status Apply(std::span<float> logits) override {
    for (const auto& [id, b] : bias_) {
      if (id < 0 || static_cast<size_t>(id) >= logits.size()) continue;
      logits[id] = b <= -100.0f ? -std::numeric_limits<float>::infinity() : logits[id] + b;
    }
    return inner_ ? inner_->Apply(logits) : Status::Ok();
  }
  Status Accept(int32_t token) override { return inner_ ? inner_->Accept(token) : Status::Ok(); }
  bool Done() const override { return inner_ && inner_->Done(); }

 private:
  std::vector<std::pair<int32_t, float>> bias_;
  std::unique_ptr<engine::LogitProcessor> inner_;
};

// Forwards everything; counts a 400 answered by the handler itself (on its thread, while it runs).
class CountingResponder final : public Responder {
 public:
  CountingResponder(std::shared_ptr<Responder> inner, std::function<void()> count)
      : inner_(std::move(inner)), count_(std::move(count)), thread_(std::this_thread::get_id()) {}
  void Send(int status, std::string content_type, std::string body, HeaderList headers) override {
    if (status == 400 && handler_running_.load() && std::this_thread::get_id() == thread_) count_();
    inner_->Send(status, std::move(content_type), std::move(body), std::move(headers));
  }
  void StartStream(int status, std::string content_type, HeaderList headers) override {
    inner_->StartStream(status, std::move(content_type), std::move(headers));
  }
  bool Write(std::string chunk) override { return inner_->Write(std::move(chunk)); }
  void End() override { inner_->End(); }
  bool cancelled() const override { return inner_->cancelled(); }
  void OnCancel(std::function<void()> hook) override { inner_->OnCancel(std::move(hook)); }
  void NoteUsage(std::string model, int64_t prompt_tokens, int64_t completion_tokens) override {
    inner_->NoteUsage(std::move(model), prompt_tokens, completion_tokens);
  }
  void NoteError(std::string message) override { inner_->NoteError(std::move(message)); }
  void HandlerReturned() { handler_running_.store(false); }

 private:
  std::shared_ptr<Responder> inner_;
  std::function<void()> count_;
  const std::thread::id thread_;
  std::atomic<bool> handler_running_{true};
};

}  // namespace

const ServedModel* NamedModel(const Service& service, const std::string& requested) {
  if (requested.empty() || requested == "auto") return nullptr;
  auto route = service.Resolve(requested, orchestrator::RequestInput{});
  if (!route.ok() || (route->reason != "explicit" && route->reason != "alias")) return nullptr;
  return route->model;
}

Handler CountInvalidRequests(Service& service, Handler handler) {
  return [s = &service, handler = std::move(handler)](const HttpRequest& req, std::shared_ptr<Responder> r) {
    auto counting = std::make_shared<CountingResponder>(std::move(r), [s, &req] {
      auto body = ParseBody(req.body);
      if (!body.ok()) return;
      const auto it = body->find("model");
      if (it == body->end() || !it->is_string()) return;
      if (const ServedModel* m = NamedModel(*s, it->get<std::string>())) s->metrics().RequestFailed(m->name, "invalid_request");
    });
    handler(req, counting);
    counting->HandlerReturned();
  };
}

Status LoadTokenizer(Service& service, GenerationJob* job) {
  QM_ASSIGN_OR_RETURN(job->tok, service.Tokenizer(*job->route.model));
  return Status::Ok();
}

Status EncodeChat(Service& service, const chat::ChatRequest& request, GenerationJob* job) {
  if (!job->tok) QM_RETURN_IF_ERROR(LoadTokenizer(service, job));
  // A request that says nothing about thinking gets the model's `thinking:` setting, if any; a
  // setting chosen by the operator counts as chosen (no automatic budget for constrained output).
  chat::ChatOptions options = request.options;
  if (!options.enable_thinking) options.enable_thinking = job->route.model->thinking;
  QM_ASSIGN_OR_RETURN(std::vector<chat::PromptSegment> segments, chat::RenderChatSegments(request.messages, options));
  job->prompt = EncodeChatPrompt(*job->tok, segments);
  job->chat = true;
  job->thinking = !options.enable_thinking.has_value() || *options.enable_thinking;
  job->thinking_chosen = options.enable_thinking.has_value();
  return Status::Ok();
}

int32_t RequestContext(const GenerationJob& job) {
  const int32_t n_ctx = job.route.model->n_ctx;
  return job.num_ctx > 0 && job.num_ctx < n_ctx ? static_cast<int32_t>(job.num_ctx) : n_ctx;
}

Status CheckLimits(Service& service, std::optional<int64_t> max_tokens, GenerationJob* job,
                   const char* max_tokens_field) {
  const int32_t n_ctx = RequestContext(*job);
  const int64_t n_prompt = static_cast<int64_t>(job->prompt.size());
  if (n_prompt == 0) return Error(StatusCode::kInvalidArgument, "prompt: empty");
  if (n_prompt >= n_ctx) {
    if (n_ctx < job->route.model->n_ctx) {
      return Error(StatusCode::kOutOfRange, "prompt has {} tokens, more than the context of {} tokens set by "
                   "options.num_ctx (model {} has {})", n_prompt, n_ctx, job->route.model->name, job->route.model->n_ctx);
    }
    return Error(StatusCode::kOutOfRange, "prompt has {} tokens, more than the context of {} tokens of model {}",
                 n_prompt, n_ctx, job->route.model->name);
  }
  const int64_t cap = service.limits().max_tokens;
  if (max_tokens && *max_tokens > cap) {
    return Error(StatusCode::kInvalidArgument, "{}: {} is above the server's limit of {}", max_tokens_field, *max_tokens,
                 cap);
  }
  const int64_t want = max_tokens.value_or(service.limits().default_max_tokens);
  job->options.max_tokens = static_cast<int32_t>(std::min<int64_t>(want, n_ctx - n_prompt));
  return Status::Ok();
}

int32_t DefaultConstrainedThinking(int32_t max_tokens) { return std::min<int32_t>(256, std::max(0, max_tokens / 4)); }

Status CheckLatencyField(const std::string& latency) {
  if (latency.empty()) return Status::Ok();
  auto l = orchestrator::ParseLatency(latency);
  return l.ok() ? Status::Ok() : l.status();  // 'latency "x": use low, normal, ...'
}

std::string RouteErrorParam(const Status& s) { return s.code() == StatusCode::kNotFound ? "model" : ""; }

Status CancelledError(const orchestrator::GenerationResult& g, Responder& r) {
  r.NoteUsage(g.model, g.prompt_tokens, g.completion_tokens);
  if (r.cancelled()) {  // by the server (a client that left reads nothing)
    return Error(StatusCode::kCancelled, "generation cancelled after {} tokens: the server is shutting down; retry",
                 g.completion_tokens);
  }
  return Error(StatusCode::kCancelled, "generation cancelled after {} tokens: the model stopped serving; retry",
               g.completion_tokens);
}

Status SetJsonSchema(GenerationJob* job, const Json& schema) {
  // The schema's size is checked before its text becomes a cache key.
  const size_t text = schema.dump().size();
  const structured::JsonSchemaOptions o = SchemaOptions();
  if (text > static_cast<size_t>(o.max_schema_bytes)) {
    return Error(StatusCode::kInvalidArgument, "json schema: {} bytes of JSON, more than the limit of {}", text,
                 o.max_schema_bytes);
  }
  return SetConstraint(job, "schema:" + schema.dump(),
                       [&](auto vocab) { return structured::CompileJsonSchema(schema, std::move(vocab), o); });
}

size_t CachedConstraints() { return Constraints().size(); }
uint64_t ConstraintCacheBytes() { return Constraints().memory()->used(); }
uint64_t ConstraintCacheMaxBytes() { return Constraints().max_bytes(); }
void SetConstraintCacheBytes(uint64_t max_bytes) { Constraints().set_max_bytes(static_cast<size_t>(max_bytes)); }
void SetConstraintCompileHookForTesting(std::function<void()> hook) {
  std::lock_guard<std::mutex> lk(CompileHookMutex());
  CompileHook() = std::move(hook);
}

Status SetJsonObject(GenerationJob* job) {
  return SetConstraint(job, "json_object", [](auto vocab) { return structured::CompileJsonObject(std::move(vocab), SchemaOptions()); });
}

Status SetToolChoice(GenerationJob* job, const Json& tools, const Json& tool_choice, bool parallel_calls) {
  structured::ToolCallOptions o;
  o.schema = SchemaOptions();
  if (!parallel_calls) o.max_calls = 1;
  return SetConstraint(job, fmt::format("tools:{}:{}:{}", o.max_calls, tool_choice.dump(), tools.dump()), [&](auto vocab) {
    return structured::MakeToolCallConstraint(tools, tool_choice, std::move(vocab), o);
  });
}

HeaderList RouteHeaders(const Route& route) {
  std::string why;  // printable ASCII only in a header
  for (unsigned char c : route.explanation) why.push_back(c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?');
  return {{"X-Qwenmux-Model", route.name()}, {"X-Qwenmux-Route", route.reason}, {"X-Qwenmux-Route-Explanation", why}};
}

Json RouteJson(const Route& route, const std::string& served, bool degraded) {
  degraded = degraded || route.reason == "failover";  // a backend could not serve (upstream.h)
  return Json{{"model", served.empty() ? route.name() : served},
              {"requested", route.requested},
              {"route", degraded && route.reason != "failover" ? "fallback" : route.reason},
              {"explanation", route.explanation},
              {"degraded", degraded}};
}

std::string PreferBackend(Service& service, const Route& route, const std::string& kind) {
  Upstreams* u = service.upstreams();
  if (!u || route.reason == "explicit" || route.reason == "adapter" || route.reason == "failover") return "";
  const orchestrator::RouterCandidate* c = service.FindCandidate(route.model->name);
  if (!c) return "";
  std::string pick = u->Prefer(c->rank(), "chat", c->decode_tok_s);
  if (pick.empty()) return pick;
  if (Dashboard* dash = service.dashboard()) {
    RoutingEntry e;
    e.kind = kind;
    e.requested = route.requested;
    e.chosen = e.served = pick;
    e.reason = "backend";
    e.explanation = fmt::format("{} (local {}) went to backend model {}, faster on measured traffic", route.requested,
                                route.name(), pick);
    dash->Record(std::move(e));
  }
  return pick;
}

Status SubmitGeneration(Service& service, GenerationJob& job, std::shared_ptr<Responder> responder,
                        std::function<bool(const orchestrator::TokenEvent&)> on_token,
                        std::function<void(Result<orchestrator::GenerationResult>)> on_done) {
  orchestrator::GenerationRequest req;
  req.model = job.route.model->name;
  if (job.route.adapter) {
    req.adapter = job.route.adapter->name;
    req.adapter_scale = job.lora_scale;
  } else if (job.lora_scale) {
    return Error(StatusCode::kInvalidArgument,
                 "lora_scale: model {} is not an adapter (name one as <model>:<adapter>)", job.route.model->name);
  }
  req.prompt = job.prompt;
  req.options = job.options;
  req.keep_alive = job.keep_alive;
  req.logprobs = job.logprobs;
  int32_t thinking_budget = job.thinking_budget;
  if (thinking_budget < 0 && job.constraint && job.chat && job.thinking && !job.thinking_chosen) {
    thinking_budget = DefaultConstrainedThinking(job.options.max_tokens);
  }
  if (job.constraint || (job.chat && job.thinking && thinking_budget >= 0)) {
    std::unique_ptr<engine::LogitProcessor> proc = job.constraint ? job.constraint->NewProcessor() : nullptr;
    if (job.chat && job.thinking) {
      // The constraint applies to the answer: thinking stays free (within its budget).
      structured::ThinkingOptions t;
      t.budget = thinking_budget;
      proc = structured::MakeThinkingBudget(std::move(proc), structured::VocabIndex::Shared(*job.tok), t);
    }
    req.processor = std::move(proc);
  }
  if (!job.logit_bias.empty()) req.processor = std::make_unique<LogitBias>(job.logit_bias, std::move(req.processor));
  req.top_logprobs = job.top_logprobs;
  Responder* raw = responder.get();
  req.on_token = [raw, on_token = std::move(on_token)](const orchestrator::TokenEvent& ev) {
    if (raw->cancelled()) return false;
    return on_token(ev);
  };
  if (service.observer()) {
    req.on_done = [obs = service.observer(), on_done = std::move(on_done)](Result<orchestrator::GenerationResult> r) {
      if (r.ok()) obs(*r);
      on_done(std::move(r));
    };
  } else {
    req.on_done = std::move(on_done);
  }
  // The dashboard's routing log: one entry per generation, refused ones included.
  Dashboard* dash = service.dashboard();
  RoutingEntry entry;
  if (dash) {
    entry.kind = job.chat ? "chat" : "completion";
    entry.requested = job.route.requested;
    entry.chosen = job.route.name();
    entry.reason = job.route.reason;
    entry.explanation = job.route.explanation;
    req.on_done = [dash, entry, started = std::chrono::steady_clock::now(),
                   on_done = std::move(req.on_done)](Result<orchestrator::GenerationResult> r) mutable {
      entry.latency_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
      if (r.ok()) {
        entry.served = r->model.empty() ? entry.chosen : r->model;
        entry.degraded = r->degraded || entry.reason == "failover";  // failover: a backend could not serve
        entry.ok = r->finish_reason != "cancelled";
        if (!entry.ok) entry.error = "cancelled";
        if (r->completion_tokens > 0) entry.ttft_ms = r->ttft_seconds * 1000.0;
        entry.prompt_tokens = r->prompt_tokens;
        entry.completion_tokens = r->completion_tokens;
      } else {
        entry.ok = false;
        entry.error = r.status().message();
      }
      dash->Record(std::move(entry));
      on_done(std::move(r));
    };
  }
  auto handle = service.scheduler().Submit(std::move(req));
  if (!handle.ok()) {
    if (dash) {
      entry.ok = false;
      entry.error = handle.status().message();
      dash->Record(std::move(entry));
    }
    return handle.status();
  }
  responder->OnCancel([h = *handle] { h->Cancel(); });
  return Status::Ok();
}

std::string TokenText(const tokenizer::Tokenizer& tok, int32_t id) { return std::string(tok.TokenBytes(id)); }

}  // namespace qwenmux::server
