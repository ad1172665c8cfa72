// `qwenmux serve` as an object: configuration (qwenmux.yaml and/or --model FILE[=ALIAS] flags)
// -> model manager, scheduler, service, HTTP server; startup (preload in the background while
// /health says 503) and graceful shutdown. apps/qwenmux/serve.cc parses flags and waits for a
// signal; tests and benchmarks run the same object in-process.
//
// Thread-safety: Start/Shutdown from one controlling thread; port() and service() any thread.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "orchestrator/manager/model_manager.h"
#include "orchestrator/metrics/metrics.h"
#include "orchestrator/scheduler/scheduler.h"
#include "orchestrator/setup/setup.h"
#include "server/dashboard.h"
#include "server/finetune_jobs.h"
#include "server/http_server.h"
#include "server/pipeline_jobs.h"
#include "server/rag_api.h"
#include "server/server_log.h"
#include "server/service.h"
#include "server/upstream.h"

namespace qwenmux::server {

// Accepted ranges of the numeric serve settings (one place: AppOptions::Validate checks them at
// startup, apps/qwenmux/serve.cc puts the same bounds on its flags; context and parallel are
// shared with qwenmux.yaml through orchestrator::kMaxContextTokens / kMaxParallel).
struct AppLimits {
  static constexpr int32_t kMinMaxQueue = 1, kMaxMaxQueue = 1 << 20;
  static constexpr int32_t kMinMaxTokens = 1;
  static constexpr size_t kMinMaxBody = 1024;             // a request is JSON of some size
  static constexpr int32_t kMinMaxConnections = 1;
};

// Every default of `qwenmux serve` is declared once, in the struct that uses it (here or in the
// structs below); apps/qwenmux/serve.cc binds its flags to these fields and `serve --help` shows
// their values.
struct AppOptions {
  std::string config_path;               // qwenmux.yaml ("" = none)
  std::vector<std::string> model_flags;  // "FILE.gguf" or "FILE.gguf=ALIAS"
  std::vector<std::string> adapter_flags;  // --adapter NAME=FILE[@BASE][:SCALE] (setup.h ParseAdapterFlag)
  std::string memory_budget;             // "24GiB", "75%" ("" = config or default)
  std::string gpu_memory_budget;         // "20GiB", "90%" of free device memory ("" = config or default)
  runtime::DeviceChoice device = runtime::DeviceChoice::kAuto;  // models without a `device:`
  int device_index = 0;                  // the GPU (cuda:N)
  // Tests: a fake GPU and placement for the model manager (model_manager.h); default: the real ones.
  std::function<runtime::CudaDeviceInfo(int)> query_device;
  std::function<Result<std::unique_ptr<engine::Model>>(const std::string&, const engine::LoadOptions&)> load_model;
  std::string models_dir;                // model store for catalog names in the config
  // Other engines as backends (upstream.h): --backend NAME=URL[,openai|ollama], beside the
  // config's `backends:`; their models are served as "NAME/MODEL".
  std::vector<std::string> backend_flags;
  UpstreamOptions upstream;              // discovery refresh, backoff, connect timeout, size cap
  orchestrator::ModelFlagOptions models;     // context and sequences of --model files, threads
  HttpServerOptions http;
  ServiceLimits limits;
  orchestrator::SchedulerOptions scheduler;  // max_queue (metrics: set by App)
  std::chrono::milliseconds shutdown_grace{10000};  // in-flight requests may finish within this
  orchestrator::Metrics* metrics = nullptr;          // default Metrics::Global()
  // RAG (POST /v1/rag, rag_api.h): store_dir, stage_models (over the config's pipelines.rag),
  // max_concurrent. App sets the rest (config, models_dir, n_ctx and threads from `models`).
  RagApiOptions rag;
  PipelineJobOptions jobs;               // /v1/pipelines/jobs: data roots, work dir, caps
  // /v1/fine_tuning/jobs (finetune_jobs.h): caps; work_dir "" = <jobs.work_dir>/fine_tuning,
  // threads 0 = models.threads; data roots are jobs.data_roots.
  FinetuneJobOptions finetune;
  // Compiled JSON-schema / tool-call constraints (process-wide cache, generation.h): byte cap,
  // counted in the model manager's memory budget.
  uint64_t constraint_cache_bytes = uint64_t{256} << 20;
  // After startup: a line per request and per model load/unload through the Log callback
  // (server_log.h), unless quiet. In JSON format every line the callback gets is JSON.
  ServerLogOptions log;
  // The web dashboard at / (dashboard.h): KPI sample period, window, routing log length.
  DashboardOptions dashboard;

  // Refuses settings on which every request would fail (--ctx 0, --parallel 100000,
  // --max-queue 0, --max-tokens 0, --max-body 0, --max-connections 0), naming the flag and its
  // range. App::Create calls it first.
  Status Validate() const;
};

class App {
 public:
  using Log = std::function<void(const std::string&)>;
  // Reads the config and the model files' headers (once, in orchestrator::BuildServeSetup);
  // nothing is loaded or bound yet.
  static Result<std::unique_ptr<App>> Create(AppOptions options, Log log);
  ~App();

  // Binds, starts serving, preloads in the background (/health: 503 until done).
  Status Start();
  // Graceful: stop accepting, let in-flight requests finish for shutdown_grace, cancel the
  // rest, cancel and join the pipeline jobs, stop the scheduler and unload the models.
  void Shutdown();

  uint16_t port() const { return http_->port(); }
  Service& service() { return *service_; }
  HttpServer& http() { return *http_; }
  PipelineJobs& jobs() { return *jobs_; }
  FinetuneJobs& finetune_jobs() { return *finetune_; }
  Dashboard& dashboard() { return *dashboard_; }

 private:
  App() = default;
  AppOptions options_;
  Log log_;
  std::vector<orchestrator::ModelSpec> specs_;
  std::unique_ptr<orchestrator::ModelManager> manager_;
  std::unique_ptr<orchestrator::Scheduler> scheduler_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<RagApi> rag_;
  std::unique_ptr<orchestrator::Config> config_;  // qwenmux.yaml (pipeline model overrides), or null
  std::unique_ptr<PipelineJobs> jobs_;
  std::unique_ptr<FinetuneJobs> finetune_;
  std::unique_ptr<Upstreams> upstreams_;
  std::unique_ptr<Dashboard> dashboard_;
  std::unique_ptr<HttpServer> http_;
  std::thread preload_;
  bool shut_down_ = false;
};

}  // namespace qwenmux::server
