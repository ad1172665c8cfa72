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
#include "server/http_server.h"
#include "server/pipeline_jobs.h"
#include "server/rag_api.h"
#include "server/service.h"

namespace qwenmux::server {

// Every default of `qwenmux serve` is declared once, in the struct that uses it (here or in the
// structs below); apps/qwenmux/serve.cc binds its flags to these fields and `serve --help` shows
// their values.
struct AppOptions {
  std::string config_path;               // qwenmux.yaml ("" = none)
  std::vector<std::string> model_flags;  // "FILE.gguf" or "FILE.gguf=ALIAS"
  std::string memory_budget;             // "24GiB", "75%" ("" = config or default)
  std::string models_dir;                // model store for catalog names in the config
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
  std::unique_ptr<HttpServer> http_;
  std::thread preload_;
  bool shut_down_ = false;
};

}  // namespace qwenmux::server
