#include "server/upstream.h"

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

#include "orchestrator/router/router.h"
#include "server/upstream_http.h"
#include "server/upstream_translate.h"

namespace qwenmux::server {

namespace {

using orchestrator::BackendDialect;
using Outcome = UpstreamReply::Outcome;

// Model names of a list answer: OpenAI data[].id, Ollama models[].name.
Result<std::vector<std::pair<std::string, Json>>> ParseModelList(BackendDialect d, const std::string& body) {
  const Json j = Json::parse(body, nullptr, false);
  const char* key = d == BackendDialect::kOllama ? "models" : "data";
  const char* id = d == BackendDialect::kOllama ? "name" : "id";
  if (!j.is_object() || !j.contains(key) || !j[key].is_array())
    return Error(StatusCode::kInvalidArgument, "the model list is not JSON with a `{}` list: {}", key, Snippet(body));
  std::vector<std::pair<std::string, Json>> out;
  for (const Json& e : j[key]) {
    if (e.is_object() && e.contains(id) && e[id].is_string()) out.emplace_back(e[id].get<std::string>(), e);
  }
  return out;
}

}  // namespace

void SendDialectError(ClientDialect client, Responder& r, int status, const std::string& message) {
  if (client == ClientDialect::kOpenAi) {
    ApiError e;
    e.status = status;
    e.message = message;
    return SendApiError(r, e);
  }
  r.NoteError(message);
  r.Send(status, "application/json", Dump(Json{{"error", message}}));
}

Upstreams::Upstreams(std::vector<orchestrator::BackendConfig> backends, UpstreamOptions options, Log log)
    : options_(options), log_(std::move(log)) {
  for (auto& c : backends) {
    auto b = std::make_unique<Backend>();
    if (!c.api_key_env.empty()) {
      const char* key = std::getenv(c.api_key_env.c_str());
      if (key) b->api_key = key;
      else log_(fmt::format("serve: backend {}: api_key_env {} is not set; requests go without a key", c.name, c.api_key_env));
    }
    b->config = std::move(c);
    backends_.push_back(std::move(b));
  }
}

Upstreams::~Upstreams() { Shutdown(); }

void Upstreams::Start() {
  if (backends_.empty() || discovery_.joinable()) return;
  for (const auto& b : backends_) {
    log_(fmt::format("serve: backend {} at {} ({} dialect), models: {}", b->config.name, b->config.url,
                     orchestrator::BackendDialectName(b->config.dialect),
                     b->config.models.empty() ? std::string("all it lists") : fmt::format("{}", fmt::join(b->config.models, ", "))));
  }
  discovery_ = std::thread([this] { DiscoveryLoop(); });
}

void Upstreams::Shutdown() {
  std::unique_lock lock(mu_);
  stopping_ = true;
  abort_.store(true);
  cv_.notify_all();
  lock.unlock();
  if (discovery_.joinable()) discovery_.join();
  lock.lock();
  cv_.wait(lock, [this] { return active_ == 0; });
}

void Upstreams::DiscoveryLoop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    auto next = std::chrono::steady_clock::time_point::max();
    for (auto& b : backends_) {
      if (stopping_) break;
      if (std::chrono::steady_clock::now() >= b->next_try) {
        lock.unlock();
        Discover(*b);
        lock.lock();
      }
      next = std::min(next, b->next_try);
    }
    cv_.wait_until(lock, next, [this] { return stopping_ || rescan_; });
    rescan_ = false;
  }
}

void Upstreams::Discover(Backend& b) {
  const auto& c = b.config;
  UpstreamCall call;
  call.url = c.url + (c.dialect == BackendDialect::kOllama ? "/api/tags" : "/v1/models");
  call.api_key = b.api_key;
  call.connect_timeout = options_.connect_timeout;
  call.idle_timeout = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(c.timeout.ms), options_.connect_timeout * 2);
  call.max_buffered = options_.max_list_bytes;
  call.should_abort = [this] { return abort_.load(); };
  const UpstreamReply reply = PerformUpstream(call);
  Result<std::vector<std::pair<std::string, Json>>> list =
      reply.outcome == Outcome::kOk && reply.status == 200
          ? ParseModelList(c.dialect, reply.body)
          : Result<std::vector<std::pair<std::string, Json>>>(Error(StatusCode::kUnavailable, "{}", DescribeFailure(reply)));
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (list.ok() && list->size() > options_.max_models) {
    log_(fmt::format("serve: backend {} ({}) lists {} models; keeping the first {}", c.name, c.url, list->size(),
                     options_.max_models));
    list->resize(options_.max_models);
  }
  if (list.ok()) {
    if (!b.healthy || !b.discovered || list->size() != b.models.size()) {
      log_(fmt::format("serve: backend {} ({}): {} model(s){}", c.name, c.url, list->size(),
                       b.discovered && !b.healthy ? " (reachable again)" : ""));
    }
    b.models = std::move(*list);
    b.discovered = true;
    b.healthy = true;
    b.backoff = std::chrono::milliseconds(0);
    b.next_try = now + options_.refresh_interval;
  } else {
    if (stopping_) return;
    b.backoff = b.backoff.count() == 0 ? options_.min_backoff : std::min(b.backoff * 2, options_.max_backoff);
    b.healthy = false;
    b.next_try = now + b.backoff;
    log_(fmt::format("serve: backend {} ({}): cannot list models: {}; retrying in {} ms", c.name, call.url,
                     list.status().message(), b.backoff.count()));
  }
}

std::vector<Upstreams::Stats> Upstreams::BackendStats() const {
  std::lock_guard lock(mu_);
  std::vector<Stats> out;
  for (const auto& b : backends_) {
    out.push_back(Stats{b->config.name, b->config.url, b->config.dialect, b->healthy,
                        static_cast<int64_t>(b->config.models.empty() ? b->models.size() : b->config.models.size()),
                        b->requests, b->errors, b->in_flight, b->ttft_ms, b->tokens_per_s});
  }
  return out;
}

std::string Upstreams::MetricsText() const {
  const std::vector<Stats> stats = BackendStats();
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    for (const Stats& s : stats) {
      const double v = value(s);
      if (v >= 0) out += fmt::format("{}{{backend=\"{}\"}} {}\n", name, s.name, v);
    }
  };
  family("qwenmux_backend_up", "gauge", "1 if the backend's last contact worked (backends: in qwenmux.yaml).",
         [](const Stats& s) { return s.healthy ? 1.0 : 0.0; });
  family("qwenmux_backend_models", "gauge", "Models the backend exposes.", [](const Stats& s) { return double(s.models); });
  family("qwenmux_backend_requests_total", "counter", "Requests proxied to the backend.",
         [](const Stats& s) { return double(s.requests); });
  family("qwenmux_backend_errors_total", "counter", "Proxied requests that failed (error answer or broken stream).",
         [](const Stats& s) { return double(s.errors); });
  family("qwenmux_backend_in_flight", "gauge", "Proxied requests running now.", [](const Stats& s) { return double(s.in_flight); });
  family("qwenmux_backend_ttft_ms", "gauge", "Moving average of the time to the first streamed byte, in ms.",
         [](const Stats& s) { return s.ttft_ms; });
  family("qwenmux_backend_tokens_per_second", "gauge", "Moving average of the generated tokens per second.",
         [](const Stats& s) { return s.tokens_per_s; });
  return out;
}

Json Upstreams::PsJson() const {
  const std::vector<Stats> stats = BackendStats();
  const std::vector<Listed> models = Models();
  Json out = Json::array();
  for (const Stats& s : stats) {
    Json names = Json::array();
    for (const Listed& m : models) {
      if (m.backend == s.name) names.push_back(m.full_name());
    }
    std::string tier;
    for (const auto& b : backends_) {
      if (b->config.name == s.name) tier = b->config.tier;
    }
    out.push_back(Json{{"name", s.name}, {"url", s.url}, {"dialect", orchestrator::BackendDialectName(s.dialect)},
                       {"state", s.healthy ? "ready" : "unreachable"}, {"tier", tier}, {"models", std::move(names)},
                       {"requests", s.requests}, {"errors", s.errors}, {"in_flight", s.in_flight},
                       {"ttft_ms", s.ttft_ms >= 0 ? Json(s.ttft_ms) : Json(nullptr)},
                       {"tokens_per_second", s.tokens_per_s >= 0 ? Json(s.tokens_per_s) : Json(nullptr)}});
  }
  return out;
}

void Upstreams::Record(Backend& b, double ttft_ms, double tokens_per_s, bool error, bool connection_failed) {
  constexpr double kAlpha = 0.2;  // moving averages: the last ~5 requests weigh most
  std::lock_guard lock(mu_);
  --b.in_flight;
  if (error) ++b.errors;
  if (ttft_ms >= 0) b.ttft_ms = b.ttft_ms < 0 ? ttft_ms : (1 - kAlpha) * b.ttft_ms + kAlpha * ttft_ms;
  if (tokens_per_s > 0) b.tokens_per_s = b.tokens_per_s < 0 ? tokens_per_s : (1 - kAlpha) * b.tokens_per_s + kAlpha * tokens_per_s;
  if (connection_failed && b.healthy && !stopping_) {
    b.healthy = false;
    b.backoff = std::chrono::milliseconds(0);
    b.next_try = std::chrono::steady_clock::now() + options_.min_backoff;
    log_(fmt::format("serve: backend {} ({}) failed a request; marked unhealthy, checking it again in {} ms", b.config.name,
                     b.config.url, options_.min_backoff.count()));
    rescan_ = true;
    cv_.notify_all();
  }
}

std::vector<Upstreams::Listed> Upstreams::Models() const {
  std::lock_guard lock(mu_);
  std::vector<Listed> out;
  for (const auto& b : backends_) {
    auto add = [&](const std::string& model, const Json& entry) {
      out.push_back(Listed{b->config.name, model, b->config.dialect, b->healthy, entry});
    };
    if (b->config.models.empty()) {
      for (const auto& [name, entry] : b->models) add(name, entry);
      continue;
    }
    for (const std::string& want : b->config.models) {  // the configured list, as discovered
      Json entry;
      for (const auto& [name, e] : b->models) {
        if (name == want) entry = e;
      }
      add(want, entry);
    }
  }
  return out;
}

bool Upstreams::Owns(std::string_view requested) const {
  const size_t slash = requested.find('/');
  if (slash == std::string_view::npos) return false;
  const std::string_view name = requested.substr(0, slash);
  return std::any_of(backends_.begin(), backends_.end(), [&](const auto& b) { return b->config.name == name; });
}

std::string Upstreams::Prefer(int local_rank, const std::string& role, double local_tok_s) const {
  std::lock_guard lock(mu_);
  std::string best;
  double best_tok_s = local_tok_s > 0 ? local_tok_s : 0;
  for (const auto& b : backends_) {
    const auto& c = b->config;
    if (c.tier.empty() || orchestrator::TierRank(c.tier) != local_rank || c.role != role || !b->healthy) continue;
    if (c.max_concurrent > 0 && b->in_flight >= c.max_concurrent) continue;
    if (b->tokens_per_s <= best_tok_s) continue;
    std::string model = !c.models.empty() ? c.models.front() : !b->models.empty() ? b->models.front().first : "";
    if (model.empty()) continue;
    best = c.name + "/" + model;
    best_tok_s = b->tokens_per_s;
  }
  return best;
}

void Upstreams::Forward(ClientDialect client, std::string path, Json body, std::shared_ptr<Responder> r, Fallback fallback) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return SendDialectError(client, *r, 503, "the server is shutting down");
    ++active_;
  }
  std::thread([this, client, path = std::move(path), body = std::move(body), r = std::move(r),
               fallback = std::move(fallback)]() mutable {
    Run(client, std::move(path), std::move(body), std::move(r), fallback);
    std::lock_guard lock(mu_);
    --active_;
    cv_.notify_all();
  }).detach();
}

}  // namespace qwenmux::server
