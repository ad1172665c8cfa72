// Other engines as routed backends (issue 18): the backends of qwenmux.yaml `backends:` and
// `serve --backend`, their model lists (discovered at start and every refresh_interval; a
// backend that cannot be reached is logged and retried with backoff) and the proxying of
// requests for "NAME/MODEL" to them.
//
// Proxying: the request body goes to the backend with `model` rewritten to MODEL, in the
// backend's dialect: same dialect as the client's: as it is (plain and streamed; a stream is
// passed through chunk by chunk as it arrives); the other dialect: chat, completions (plain and
// streamed) and embeddings are translated both ways (upstream_translate.h, upstream_stream.h);
// rerank goes to the backend's /v1/rerank in either dialect (none there: 501). Upstream
// failures answer in the client's dialect, naming the backend: 502 (cannot connect, HTTP 5xx,
// invalid JSON, response too large), 504 (no byte for the backend's `timeout`, or the whole
// request past UpstreamOptions::max_duration), the backend's own 4xx status for its 4xx
// answers; once a stream has started, an error event (OpenAI) or line (Ollama) ends it. A
// client that goes away aborts the upstream transfer.
//
// Each backend keeps live figures from real traffic (Stats): requests, errors, in flight, and
// moving averages of the time to the first byte and of tokens/s (streamed: one event or line
// per token; plain: usage.completion_tokens). A proxied request that cannot connect, times out
// or breaks off marks the backend unhealthy and schedules a health check (the model list).
//
// Each proxied request runs its (blocking, libcurl) transfer on a thread of its own, so a long
// stream never holds the HTTP server's work pool.
//
// Thread-safety: every public method may be called from any thread after construction;
// Start/Shutdown from the controlling thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "orchestrator/config/backend_config.h"
#include "rag/backend_model.h"
#include "server/api_common.h"
#include "server/http_server.h"

namespace qwenmux::server {

struct UpstreamOptions {
  std::chrono::milliseconds refresh_interval{30000};  // model lists of healthy backends
  std::chrono::milliseconds min_backoff{1000};        // first retry of an unreachable backend
  std::chrono::milliseconds max_backoff{60000};       // retries double up to this
  std::chrono::milliseconds connect_timeout{5000};
  size_t max_response_bytes = 64u << 20;              // a non-streamed answer; above: 502
  size_t max_list_bytes = 8u << 20;                   // a model list answer; above: the backend is unhealthy
  size_t max_models = 1024;                           // models kept of one backend's list (the rest dropped, logged)
  std::chrono::milliseconds max_duration{1800000};    // a whole proxied request, stream included; past it: 504
};

enum class ClientDialect { kOpenAi, kOllama };

class Upstreams {
 public:
  using Log = std::function<void(const std::string&)>;
  // Backends already validated (names unique, URLs normalized: backend_config.h).
  Upstreams(std::vector<orchestrator::BackendConfig> backends, UpstreamOptions options, Log log);
  ~Upstreams();
  Upstreams(const Upstreams&) = delete;
  Upstreams& operator=(const Upstreams&) = delete;

  // Starts discovery (the first round at once, on the discovery thread).
  void Start();
  // Stops discovery, aborts every proxied transfer and waits for their threads.
  void Shutdown();

  bool empty() const { return backends_.empty(); }

  // A model as the lists show it: "NAME/MODEL", the backend's own entry (for its details).
  struct Listed {
    std::string backend, model;
    orchestrator::BackendDialect dialect;
    bool healthy = false;  // the last contact with the backend worked
    Json entry;            // the backend's list entry (null for a configured model not discovered yet)
    std::string full_name() const { return backend + "/" + model; }
  };
  std::vector<Listed> Models() const;

  // Live figures of one backend (see above); ttft_ms and tokens_per_s are < 0 until measured.
  struct Stats {
    std::string name, url;
    orchestrator::BackendDialect dialect;
    bool healthy = false;
    int64_t models = 0, requests = 0, errors = 0, in_flight = 0;
    double ttft_ms = -1, tokens_per_s = -1;
  };
  std::vector<Stats> BackendStats() const;
  // Prometheus text of the Stats: qwenmux_backend_{up,models,requests_total,errors_total,
  // in_flight,ttft_ms,tokens_per_second}{backend="NAME"} (the averages once measured).
  std::string MetricsText() const;
  // The backends for /api/ps: name, url, dialect, state, tier, models ("NAME/MODEL") and Stats.
  Json PsJson() const;

  // Whether `requested` is "NAME/..." for a configured backend NAME.
  bool Owns(std::string_view requested) const;

  // Routing (orchestrator/router): for an `auto` or tier request of `role` ("chat", "embedding")
  // whose local choice has tier rank `local_rank` and decode speed `local_tok_s` (0: unknown),
  // the backend model to send it to instead: of a backend with that tier, healthy, not
  // saturated (in flight < max_concurrent), and with a measured tokens/s above local_tok_s; the
  // fastest of those. "" when none. A backend enters this choice once real traffic measured it.
  std::string Prefer(int local_rank, const std::string& role, double local_tok_s) const;

  // Called instead of an error answer when a backend with a tier cannot serve: it is unhealthy
  // or saturated (before sending), or the request failed before any byte reached the client
  // (cannot connect, timeout, HTTP 5xx). `tier`: the backend's; `why`: one line naming it. The
  // caller serves the request locally, marked degraded.
  using Fallback = std::function<void(const std::string& tier, const std::string& why)>;

  // Forwards a client request (`path`: the route it came to, e.g. "/v1/chat/completions") for
  // the model in body["model"] (Owns() was true). Answers through `r`, from another thread.
  void Forward(ClientDialect client, std::string path, Json body, std::shared_ptr<Responder> r, Fallback fallback = {});

  // A whole (not streamed) request to the backend model `requested` ("NAME/MODEL") made by
  // qwenmux itself rather than proxied for a client: the building block for pipeline and RAG
  // stages naming a backend model (upstream_call.cc). `body` is in the OpenAI dialect (its
  // "model" and "stream" are set here); the answer is too, translated from an Ollama backend's.
  // Blocks the calling thread; counts in the backend's Stats. Errors name the backend:
  // kInvalidArgument (not NAME/MODEL, or the backend refused the request with a 4xx),
  // kNotFound (no such backend, or a model it does not have), kUnavailable (cannot connect, no
  // answer within its timeout, HTTP 5xx, invalid answer, shutting down).
  enum class CallKind { kChat, kEmbeddings };
  Result<Json> Call(CallKind kind, const std::string& requested, Json body);

 private:
  struct Backend {
    orchestrator::BackendConfig config;
    std::string api_key;                  // from api_key_env at construction
    // Discovery state, under mu_.
    bool discovered = false;              // one list was read
    bool healthy = false;
    std::vector<std::pair<std::string, Json>> models;  // (name, entry) of the last list
    std::chrono::steady_clock::time_point next_try{};
    std::chrono::milliseconds backoff{0};
    // Traffic figures (Stats), under mu_.
    int64_t requests = 0, errors = 0, in_flight = 0;
    double ttft_ms = -1, tokens_per_s = -1;
  };
  // After a proxied request: its figures (ttft_ms < 0: none), and whether it failed; a failure
  // of the connection marks the backend unhealthy and brings its health check forward.
  void Record(Backend& b, double ttft_ms, double tokens_per_s, bool error, bool connection_failed);
  // The backend called `name`; null if none.
  Backend* Find(std::string_view name) const;
  // Under mu_: kNotFound (listing what it has) unless `model` is one the backend exposes (any
  // model while its list is not known yet).
  Status CheckModel(const Backend& b, const std::string& model) const;
  void DiscoveryLoop();
  void Discover(Backend& b);
  void Run(ClientDialect client, std::string path, Json body, std::shared_ptr<Responder> r, const Fallback& fallback);
  void Proxy(ClientDialect client, const std::string& path, Json body, const std::shared_ptr<Responder>& r, Backend& b,
             const std::string& requested, const std::string& model, const Fallback& fallback);

  std::vector<std::unique_ptr<Backend>> backends_;
  UpstreamOptions options_;
  Log log_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool rescan_ = false;             // a backend's next check moved earlier: the discovery loop looks again
  std::atomic<bool> abort_{false};  // proxied transfers stop at their next progress check
  int32_t active_ = 0;              // proxied transfers running (under mu_)
  std::thread discovery_;
};

// What pipeline and RAG stages (and `qwenmux run`/`ask`) use to reach backend models
// (rag/backend_model.h): Owns and Call of `u`, which must outlive it; null: no backends.
rag::BackendAccess BackendAccessOf(Upstreams* u);

// The HTTP error answer in the client's dialect: OpenAI {"error": {...}}, Ollama {"error": "..."}.
void SendDialectError(ClientDialect client, Responder& r, int status, const std::string& message);

}  // namespace qwenmux::server
