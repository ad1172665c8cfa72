#include "server/service.h"


#include <algorithm>

#include <fmt/format.h>

#include "gguf/gguf.h"
#include "server/api_common.h"
#include "server/generation.h"
#include "orchestrator/setup/setup.h"
#include "server/http_server.h"
#include "server/upstream.h"

namespace qwenmux::server {

namespace {

std::string ParameterSize(int64_t n) {
  if (n >= 1'000'000'000) return fmt::format("{:.1f}B", n / 1e9);
  if (n >= 1'000'000) return fmt::format("{:.0f}M", n / 1e6);
  return fmt::format("{}K", n / 1000);
}

std::string JsonError(const std::string& path, int status, const std::string& message) {
  if (path.starts_with("/api/")) return Dump(Json{{"error", message}});
  const char* type = status == 401   ? "authentication_error"
                     : status == 404 ? "not_found_error"
                     : status == 429 ? "rate_limit_error"
                     : status < 500  ? "invalid_request_error"
                                     : "server_error";
  return Dump(Json{{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", status}}}});
}

}  // namespace

ServedModel MakeServedModel(const orchestrator::ModelSpec& spec, const orchestrator::RouterCandidate& candidate,
                            const orchestrator::ModelFacts& facts) {
  ServedModel m;
  m.name = spec.name;
  m.path = spec.path;
  m.role = candidate.role;
  m.aliases = candidate.aliases;
  m.file_bytes = facts.file_bytes;
  m.modified_unix = facts.modified_unix;
  m.arch = facts.arch;
  m.quantization = candidate.quantization;
  m.parameters = static_cast<int64_t>(candidate.params);
  m.parameter_size = ParameterSize(m.parameters);
  m.n_ctx = spec.load.n_ctx;
  m.n_ctx_train = facts.n_ctx_train;
  m.n_embd = facts.n_embd;
  m.thinking = facts.thinking;
  return m;
}

Service::Service(orchestrator::ModelManager* manager, orchestrator::Scheduler* scheduler,
                 orchestrator::Metrics* metrics, ServiceLimits limits)
    : manager_(manager), scheduler_(scheduler), metrics_(metrics), limits_(limits) {}

Status Service::AddModel(ServedModel model) {
  auto taken = [&](const std::string& n) {
    for (const ServedModel& m : models_) {
      if (m.name == n || std::find(m.aliases.begin(), m.aliases.end(), n) != m.aliases.end()) return true;
    }
    return false;
  };
  if (model.name.empty()) return Error(StatusCode::kInvalidArgument, "serve: a model needs a name");
  if (taken(model.name)) return Error(StatusCode::kInvalidArgument, "serve: model name {} is used twice", model.name);
  for (const std::string& a : model.aliases) {
    if (taken(a)) return Error(StatusCode::kInvalidArgument, "serve: alias {} is used twice", a);
  }
  models_.push_back(std::move(model));
  return Status::Ok();
}

Status Service::AddAdapter(ServedAdapter adapter) {
  const std::string full = adapter.full_name();
  bool base = false;
  for (const ServedModel& m : models_) {
    if (m.name == full || std::find(m.aliases.begin(), m.aliases.end(), full) != m.aliases.end()) {
      return Error(StatusCode::kInvalidArgument, "serve: adapter {} clashes with model {}", full, m.name);
    }
    base = base || m.name == adapter.base;
  }
  if (!base) return Error(StatusCode::kNotFound, "serve: adapter {}: base model {} is not served", full, adapter.base);
  std::lock_guard lk(adapters_mu_);
  for (const auto& a : adapters_) {
    if (a->full_name() == full) return Error(StatusCode::kInvalidArgument, "serve: adapter {} is declared twice", full);
  }
  adapters_.push_back(std::make_shared<const ServedAdapter>(std::move(adapter)));
  return Status::Ok();
}

std::string Service::ModelList() const {
  std::string s;
  for (const ServedModel& m : models_) s += (s.empty() ? "" : ", ") + m.name;
  return s.empty() ? "(none)" : s;
}

void Service::SetRouter(std::vector<orchestrator::RouterCandidate> candidates, orchestrator::RouterPolicy policy) {
  candidates_ = std::move(candidates);
  policy_ = std::move(policy);
  if (!default_model_.empty() && policy_.default_model.empty()) policy_.default_model = default_model_;
}

Result<Route> Service::Resolve(const std::string& requested, orchestrator::ModelRole role) const {
  orchestrator::RequestInput in;
  in.role = role;
  return Resolve(requested, in);
}

Result<Route> Service::Resolve(const std::string& requested, const orchestrator::RequestInput& input) const {
  if (models_.empty()) {
    return Error(StatusCode::kNotFound, "model \"{}\" not found: no model is configured; start the server with "
                 "--model FILE.gguf or a models: list in --config", requested);
  }
  QM_ASSIGN_OR_RETURN(orchestrator::RequestFeatures features, orchestrator::ExtractFeatures(input));
  const auto snapshot = manager_->Snapshot();
  const orchestrator::RouterState state = orchestrator::MakeRouterState(
      snapshot, manager_->EffectiveBudget(), [this](const std::string& m) { return scheduler_->QueueDepth(m); });
  auto d = orchestrator::Route(requested, features, candidates_, state, policy_);
  if (!d.ok() && d.status().code() == StatusCode::kNotFound && requested.rfind(':') != std::string::npos) {
    // Not a model as a whole: "<base>:<adapter>" (the rule in ServedAdapter's comment).
    const size_t colon = requested.rfind(':');
    const std::string base_name = requested.substr(0, colon), adapter_name = requested.substr(colon + 1);
    orchestrator::RequestInput base_in = input;
    Result<Route> base = base_name.empty() ? Result<Route>(Status(StatusCode::kNotFound, "")) : Resolve(base_name, base_in);
    if (base.ok() && (base->reason == "explicit" || base->reason == "alias")) {
      std::string names;
      for (const auto& a : adapters()) {
        if (a->base != base->model->name) continue;
        if (a->name == adapter_name) {
          if (input.role != orchestrator::ModelRole::kChat) {
            return Error(StatusCode::kInvalidArgument, "model \"{}\" is a LoRA adapter: it generates text (chat and "
                         "completions), it does not embed or rerank", requested);
          }
          Route r = *base;
          r.requested = requested;
          r.adapter = a.get();
          r.reason = "adapter";
          r.explanation = fmt::format("adapter {} of model {}", a->name, a->base);
          return r;
        }
        names += (names.empty() ? "" : ", ") + a->full_name();
      }
      return Error(StatusCode::kNotFound, "model \"{}\" not found: model {} has no adapter \"{}\"; its adapters: {}",
                   requested, base->model->name, adapter_name, names.empty() ? "(none)" : names);
    }
  }
  if (!d.ok()) {
    if (d.status().code() != StatusCode::kNotFound) return d.status();
    // One sentence: the name asked for once, what exists once (the router's own text says the
    // same, so it is not appended).
    std::string tiers;
    for (const orchestrator::RouterCandidate& c : candidates_) {
      if (!c.tier.empty() && c.tier != c.name) tiers += (tiers.empty() ? "" : ", ") + c.tier;
    }
    if (requested.empty() || requested == "auto") {  // no model of the request's role
      std::string why(d.status().message());
      if (why.starts_with("router: ")) why = why.substr(8);
      return Error(StatusCode::kNotFound, "{}; available: {}", why, ModelList());
    }
    std::string adapters;
    for (const auto& a : this->adapters()) adapters += (adapters.empty() ? "" : ", ") + a->full_name();
    return Error(StatusCode::kNotFound, "model \"{}\" not found; available: {}{}{} (or \"auto\")", requested, ModelList(),
                 tiers.empty() ? "" : "; tiers: " + tiers, adapters.empty() ? "" : "; adapters: " + adapters);
  }
  Route r;
  r.requested = requested;
  r.reason = d->reason_code();
  r.explanation = d->explanation;
  for (const ServedModel& m : models_) {
    if (m.name == d->model) r.model = &m;
  }
  if (!r.model) return Error(StatusCode::kInternal, "router chose {}, which is not served", d->model);
  return r;
}

Result<std::shared_ptr<const tokenizer::Tokenizer>> Service::Tokenizer(const ServedModel& m) {
  using R = Result<std::shared_ptr<const tokenizer::Tokenizer>>;
  std::shared_future<R> fut;
  std::promise<R> promise;
  bool load = false;
  {
    std::lock_guard<std::mutex> lk(tok_mu_);
    auto it = tokenizers_.find(m.path);
    if (it == tokenizers_.end()) {
      fut = promise.get_future().share();
      tokenizers_.emplace(m.path, fut);
      load = true;
    } else {
      fut = it->second;
    }
  }
  if (load) {
    R r = [&]() -> R {
      QM_ASSIGN_OR_RETURN(gguf::File f, gguf::File::Open(m.path));
      QM_ASSIGN_OR_RETURN(tokenizer::Tokenizer t, tokenizer::Tokenizer::FromGguf(f));
      return std::shared_ptr<const tokenizer::Tokenizer>(std::make_shared<tokenizer::Tokenizer>(std::move(t)));
    }();
    if (!r.ok()) {
      std::lock_guard<std::mutex> lk(tok_mu_);
      tokenizers_.erase(m.path);  // the next request tries again
    }
    promise.set_value(r);
  }
  return fut.get();
}

void Service::RegisterRoutes(HttpServer& http) {
  http.SetErrorFormatter(JsonError);
  http.Route("GET", "/health", [this](const HttpRequest&, std::shared_ptr<Responder> r) {
    Json j{{"status", ready() ? "ok" : "loading"}, {"models", models_.size()}};
    r->Send(ready() ? 200 : 503, "application/json", Dump(j), ready() ? HeaderList{} : HeaderList{{"Retry-After", "5"}});
  });
  http.Route("GET", "/metrics", [this](const HttpRequest&, std::shared_ptr<Responder> r) {
    // Compiled constraints grow between model events: publish them (and the memory in use,
    // which includes them) at each scrape.
    metrics_->SetConstraintCache(ConstraintCacheBytes(), ConstraintCacheMaxBytes(), CachedConstraints());
    manager_->PublishMemory();
    r->Send(200, "text/plain; version=0.0.4; charset=utf-8",
            metrics_->RenderText() + (upstreams_ ? upstreams_->MetricsText() : std::string()));
  });
  // "/" is the dashboard's page (dashboard_api.cc), "qwenmux is running" for non-browsers.
  RegisterOpenAiRoutes(*this, http);
  RegisterOllamaRoutes(*this, http);
  RegisterRagRoutes(*this, http);
}

}  // namespace qwenmux::server
