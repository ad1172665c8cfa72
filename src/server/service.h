// The model side of the server: the served models (names, aliases, files, context sizes,
// tokenizers), the route decision for a request's `model` field, and the handles the API
// handlers use (model manager, scheduler, metrics, limits).
//
// Thread-safety: after setup (Add* before the HTTP server starts) every const method and
// Tokenizer() may be called from any thread; ready flags are atomic.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "orchestrator/catalog/catalog.h"
#include "orchestrator/manager/model_manager.h"
#include "orchestrator/metrics/metrics.h"
#include "orchestrator/router/features.h"
#include "orchestrator/router/router.h"
#include "orchestrator/scheduler/scheduler.h"
#include "orchestrator/setup/setup.h"
#include "tokenizer/tokenizer.h"

namespace qwenmux::server {

class Dashboard;
class HttpServer;
class RagApi;
class Upstreams;

struct ServedModel {
  std::string name;
  std::string path;
  orchestrator::ModelRole role = orchestrator::ModelRole::kChat;
  std::vector<std::string> aliases;
  uint64_t file_bytes = 0;
  int64_t modified_unix = 0;
  std::string arch;            // "qwen3", "qwen3moe"
  std::string quantization;    // "Q8_0" (from the file name), "" if unknown
  std::string parameter_size;  // "0.6B"
  int64_t parameters = 0;
  int32_t n_ctx = 0;           // tokens per sequence the model is loaded with
  int32_t n_ctx_train = 0;
  int32_t n_embd = 0;
  std::optional<bool> thinking;  // qwenmux.yaml `thinking:`: chat requests that do not choose; unset: on
};

// A served model as BuildServeSetup describes it (the GGUF header is not read again).
ServedModel MakeServedModel(const orchestrator::ModelSpec& spec, const orchestrator::RouterCandidate& candidate,
                            const orchestrator::ModelFacts& facts);

// A LoRA adapter of a served model (orchestrator::AdapterSpec as the server shows it).
//
// Naming rule: a request's `model` is resolved as a whole first (model names, aliases, tiers:
// Ollama-style "qwen3:8b" names stay models); only when that finds nothing is it split at its
// LAST ':' into "<base>:<adapter>", where <base> is a served model's name or alias and <adapter>
// one of its adapters. Startup refuses an adapter whose "<base>:<name>" is a model's name or
// alias, so no name means both. "<base>:<unknown>" is a 404 listing the base's adapters.
struct ServedAdapter {
  std::string name;        // the adapter's own name
  std::string base;        // the served model it applies to
  std::string path;        // GGUF adapter file or PEFT directory
  float scale = 1.0f;      // default lora_scale
  uint64_t file_bytes = 0;
  int64_t modified_unix = 0;
  std::string full_name() const { return base + ":" + name; }
};

// Bounds of a request's lora_scale (OpenAI `lora_scale`, Ollama `options.lora_scale`).
inline constexpr double kMaxLoraScale = 1e6;

struct Route {
  const ServedModel* model = nullptr;
  const ServedAdapter* adapter = nullptr;  // "<base>:<adapter>" requests (model is the base)
  std::string requested;    // the request's `model` field
  std::string reason;       // the router's code: "explicit", "alias", "default", "complexity", ...
  std::string explanation;  // one line
  // What responses call the model: "<base>:<adapter>" for an adapter, else the model's name.
  std::string name() const { return adapter ? adapter->full_name() : model->name; }
};

struct ServiceLimits {
  int32_t max_tokens = 32768;        // cap on max_tokens / num_predict; above: 400
  int32_t default_max_tokens = 2048; // when the request gives none (clipped to the context)
  int32_t max_n = 1;                 // choices per request
  int32_t max_inputs = 2048;         // embedding inputs / rerank documents per request
  int32_t max_stop = 8;              // stop strings
};

class Service {
 public:
  Service(orchestrator::ModelManager* manager, orchestrator::Scheduler* scheduler, orchestrator::Metrics* metrics,
          ServiceLimits limits = {});

  // Setup (before serving).
  Status AddModel(ServedModel model);
  // After its base (AddModel); also while serving (a fine-tuning job's adapter, finetune_jobs.h).
  // Errors: unknown base, a full name that is a model name or alias, the same adapter twice.
  Status AddAdapter(ServedAdapter adapter);
  // A snapshot (adapters are only ever added, so a Route's pointer stays valid).
  std::vector<std::shared_ptr<const ServedAdapter>> adapters() const {
    std::lock_guard lk(adapters_mu_);
    return adapters_;
  }
  void SetDefaultModel(std::string name) { default_model_ = std::move(name); }
  void SetVersion(std::string v) { version_ = std::move(v); }
  // Installs every route (OpenAI, Ollama, /health, /metrics) and the error formatter.
  void RegisterRoutes(HttpServer& http);

  // /health answers 503 until this is set (the configured preload is done).
  void SetReady(bool ready) { ready_.store(ready); }
  bool ready() const { return ready_.load(); }

  // The router (orchestrator/router): candidates in the order of models(), policy.
  void SetRouter(std::vector<orchestrator::RouterCandidate> candidates, orchestrator::RouterPolicy policy);
  // The router's candidate of that name; null if none.
  const orchestrator::RouterCandidate* FindCandidate(const std::string& name) const {
    for (const auto& c : candidates_) {
      if (c.name == name) return &c;
    }
    return nullptr;
  }
  // Routes a request: its `model` field ("auto", "" = default, a name, an alias, a tier or
  // "<base>:<adapter>", see ServedAdapter) and its features; kNotFound lists what exists.
  Result<Route> Resolve(const std::string& requested, const orchestrator::RequestInput& input) const;
  Result<Route> Resolve(const std::string& requested, orchestrator::ModelRole role) const;
  const std::vector<ServedModel>& models() const { return models_; }
  std::string ModelList() const;  // "a, b, c" or "(none)"

  // The model's tokenizer, read from its GGUF file on first use (shared by every request).
  Result<std::shared_ptr<const tokenizer::Tokenizer>> Tokenizer(const ServedModel& m);

  orchestrator::ModelManager& manager() { return *manager_; }
  orchestrator::Scheduler& scheduler() { return *scheduler_; }
  orchestrator::Metrics& metrics() { return *metrics_; }
  const ServiceLimits& limits() const { return limits_; }
  const std::string& version() const { return version_; }
  // Called with every finished generation (tests, benchmarks); set before serving.
  void SetGenerationObserver(std::function<void(const orchestrator::GenerationResult&)> f) { observer_ = std::move(f); }
  const std::function<void(const orchestrator::GenerationResult&)>& observer() const { return observer_; }
  std::chrono::system_clock::time_point started() const { return started_; }
  // The RAG endpoints' state (rag_api.h); null: POST /v1/rag answers 503. Set before serving.
  void SetRag(RagApi* rag) { rag_ = rag; }
  RagApi* rag() const { return rag_; }
  // Other engines' models as "NAME/MODEL" (upstream.h); null: none. Set before serving.
  void SetUpstreams(Upstreams* u) { upstreams_ = u; }
  Upstreams* upstreams() const { return upstreams_; }
  // The dashboard's KPI ring and routing log (dashboard.h); null: none. Set before serving.
  void SetDashboard(Dashboard* d) { dashboard_ = d; }
  Dashboard* dashboard() const { return dashboard_; }

 private:
  orchestrator::ModelManager* manager_;
  orchestrator::Scheduler* scheduler_;
  orchestrator::Metrics* metrics_;
  ServiceLimits limits_;
  std::vector<ServedModel> models_;
  mutable std::mutex adapters_mu_;
  std::vector<std::shared_ptr<const ServedAdapter>> adapters_;  // stable addresses (Route points at them); under adapters_mu_
  std::vector<orchestrator::RouterCandidate> candidates_;
  orchestrator::RouterPolicy policy_;
  std::string default_model_;
  std::string version_ = "0.1.0";
  std::atomic<bool> ready_{true};
  std::chrono::system_clock::time_point started_ = std::chrono::system_clock::now();
  std::function<void(const orchestrator::GenerationResult&)> observer_;
  RagApi* rag_ = nullptr;
  Upstreams* upstreams_ = nullptr;
  Dashboard* dashboard_ = nullptr;
  std::mutex tok_mu_;
  std::map<std::string, std::shared_future<Result<std::shared_ptr<const tokenizer::Tokenizer>>>> tokenizers_;
};

void RegisterOpenAiRoutes(Service& service, HttpServer& http);  // openai_api.cc
void RegisterOllamaRoutes(Service& service, HttpServer& http);  // ollama_api.cc
void RegisterRagRoutes(Service& service, HttpServer& http);     // rag_api.cc

}  // namespace qwenmux::server
