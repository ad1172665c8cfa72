#include "server/upstream.h"

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

#include "server/upstream_http.h"
#include "server/upstream_translate.h"

namespace qwenmux::server {

namespace {

using orchestrator::BackendDialect;
using Outcome = UpstreamReply::Outcome;

std::string Snippet(const std::string& s) {
  std::string out = s.substr(0, 200);
  std::replace_if(out.begin(), out.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  return out.size() < s.size() ? out + "..." : out;
}

// The message of a backend's error answer: OpenAI {"error": {"message"}}, Ollama {"error": "..."},
// or the start of the body.
std::string ErrorMessageOf(const std::string& body) {
  const Json j = Json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("error")) {
    const Json& e = j["error"];
    if (e.is_string()) return e.get<std::string>();
    if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
  }
  return Snippet(body);
}

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

std::string DescribeFailure(const UpstreamReply& r) {
  switch (r.outcome) {
    case Outcome::kConnectFailed: return fmt::format("cannot connect: {}", r.error);
    case Outcome::kTimeout: return fmt::format("timed out: {}", r.error);
    case Outcome::kTooLarge: return "the answer is too large";
    case Outcome::kAborted: return "aborted";
    case Outcome::kError: return r.error;
    case Outcome::kOk: break;
  }
  return fmt::format("HTTP {}: {}", r.status, ErrorMessageOf(r.body));
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
    cv_.wait_until(lock, next, [this] { return stopping_; });
  }
}

void Upstreams::Discover(Backend& b) {
  const auto& c = b.config;
  UpstreamCall call;
  call.url = c.url + (c.dialect == BackendDialect::kOllama ? "/api/tags" : "/v1/models");
  call.api_key = b.api_key;
  call.connect_timeout = options_.connect_timeout;
  call.idle_timeout = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(c.timeout.ms), options_.connect_timeout * 2);
  call.max_buffered = options_.max_response_bytes;
  call.should_abort = [this] { return abort_.load(); };
  const UpstreamReply reply = PerformUpstream(call);
  Result<std::vector<std::pair<std::string, Json>>> list =
      reply.outcome == Outcome::kOk && reply.status == 200
          ? ParseModelList(c.dialect, reply.body)
          : Result<std::vector<std::pair<std::string, Json>>>(Error(StatusCode::kUnavailable, "{}", DescribeFailure(reply)));
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
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

void Upstreams::Forward(ClientDialect client, std::string path, Json body, std::shared_ptr<Responder> r) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return SendDialectError(client, *r, 503, "the server is shutting down");
    ++active_;
  }
  std::thread([this, client, path = std::move(path), body = std::move(body), r = std::move(r)]() mutable {
    Run(client, std::move(path), std::move(body), std::move(r));
    std::lock_guard lock(mu_);
    --active_;
    cv_.notify_all();
  }).detach();
}

void Upstreams::Run(ClientDialect client, std::string path, Json body, std::shared_ptr<Responder> r) {
  const std::string requested = body.value("model", "");
  const size_t slash = requested.find('/');
  const std::string name = requested.substr(0, slash), model = requested.substr(slash + 1);
  const Backend* b = nullptr;
  for (const auto& x : backends_) {
    if (x->config.name == name) b = x.get();
  }
  if (!b) return SendDialectError(client, *r, 404, fmt::format("backend \"{}\" is not configured", name));
  const auto& c = b->config;
  r->NoteUsage(requested, -1, -1);
  {  // The model must be one the backend exposes (once its list is known).
    std::lock_guard lock(mu_);
    std::vector<std::string> known;
    if (!c.models.empty()) known = c.models;
    else if (b->discovered) for (const auto& m : b->models) known.push_back(m.first);
    if ((!c.models.empty() || b->discovered) && std::find(known.begin(), known.end(), model) == known.end()) {
      std::string list;
      for (const std::string& k : known) list += (list.empty() ? "" : ", ") + name + "/" + k;
      return SendDialectError(client, *r, 404, fmt::format("model \"{}\" not found on backend {}; it has: {}", requested,
                                                           name, list.empty() ? "(none)" : list));
    }
  }
  const bool same = (client == ClientDialect::kOllama) == (c.dialect == BackendDialect::kOllama);
  bool translate = false;
  UpstreamCall call;
  call.method = "POST";
  if (same) {
    body["model"] = model;
    call.url = c.url + path;
  } else if (client == ClientDialect::kOpenAi && path == "/v1/chat/completions") {
    Result<Json> t = OpenAiChatToOllama(body, model);
    if (!t.ok()) return SendDialectError(client, *r, 400, fmt::format("backend {}: {}", name, t.status().message()));
    body = std::move(*t);
    call.url = c.url + "/api/chat";
    translate = true;
  } else {
    return SendDialectError(client, *r, 400,
                            fmt::format("backend {} speaks the {} dialect; {} is not translated to it yet (ask it in its "
                                        "own dialect)", name, orchestrator::BackendDialectName(c.dialect), path));
  }
  // Streamed: OpenAI "stream": true; Ollama streams unless "stream": false.
  const bool stream = client == ClientDialect::kOpenAi ? body.value("stream", false)
                                                       : !(body.contains("stream") && body["stream"] == false);
  call.body = Dump(body);
  call.api_key = b->api_key;
  call.connect_timeout = options_.connect_timeout;
  call.idle_timeout = std::chrono::milliseconds(c.timeout.ms);
  call.max_buffered = options_.max_response_bytes;
  call.should_abort = [this, r] { return abort_.load() || r->cancelled(); };
  if (stream && !translate) {
    call.on_start = [r](long status, const std::string& content_type) {
      if (status != 200) return false;
      r->StartStream(200, content_type.empty() ? "text/event-stream" : content_type);
      return true;
    };
    call.on_chunk = [r](std::string_view chunk) { return r->Write(std::string(chunk)); };
  }
  const UpstreamReply reply = PerformUpstream(call);
  const std::string who = fmt::format("backend {} ({})", name, c.url);
  if (reply.streamed) {  // the status line is sent: an error can only end the stream
    if (reply.outcome != Outcome::kOk && reply.outcome != Outcome::kAborted) {
      const std::string msg = fmt::format("{}: the stream broke off: {}", who, DescribeFailure(reply));
      r->NoteError(msg);
      if (client == ClientDialect::kOpenAi) {
        r->Write("data: " + Dump(Json{{"error", {{"message", msg}, {"type", "server_error"}, {"code", 502}}}}) + "\n\n");
      } else {
        r->Write(Dump(Json{{"error", msg}}) + "\n");
      }
    }
    r->End();
    return;
  }
  switch (reply.outcome) {
    case Outcome::kAborted: return SendDialectError(client, *r, 503, fmt::format("{}: request cancelled", who));
    case Outcome::kTimeout:
      return SendDialectError(client, *r, 504, fmt::format("{} did not answer within {} ms: {}", who, c.timeout.ms, reply.error));
    case Outcome::kConnectFailed:
    case Outcome::kTooLarge:
    case Outcome::kError: return SendDialectError(client, *r, 502, fmt::format("{}: {}", who, DescribeFailure(reply)));
    case Outcome::kOk: break;
  }
  if (reply.status >= 400 && reply.status < 500) {  // the backend refused the request: its status and words
    return SendDialectError(client, *r, static_cast<int>(reply.status), fmt::format("{}: {}", who, ErrorMessageOf(reply.body)));
  }
  if (reply.status != 200) {
    return SendDialectError(client, *r, 502, fmt::format("{} answered HTTP {}: {}", who, reply.status, ErrorMessageOf(reply.body)));
  }
  Json answer = Json::parse(reply.body, nullptr, false);
  if (answer.is_discarded() || !answer.is_object()) {
    return SendDialectError(client, *r, 502, fmt::format("{} returned invalid JSON: {}", who, Snippet(reply.body)));
  }
  if (translate) {
    Result<Json> t = OllamaChatToOpenAi(answer, requested);
    if (!t.ok()) return SendDialectError(client, *r, 502, fmt::format("{} returned an unexpected answer: {}", who, t.status().message()));
    answer = std::move(*t);
  } else if (answer.contains("model")) {
    answer["model"] = requested;
  }
  r->Send(200, "application/json", Dump(answer));
}

}  // namespace qwenmux::server
