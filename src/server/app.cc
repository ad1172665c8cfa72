#include "server/app.h"

#include "base/ascii.h"
#include "orchestrator/router/router.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <set>

#include <fmt/format.h>

#include "orchestrator/config/config.h"
#include "orchestrator/config/units.h"
#include "orchestrator/setup/setup.h"
#include "rag/store.h"
#include "server/generation.h"

namespace qwenmux::server {

Status AppOptions::Validate() const {
  auto range = [](const char* flag, int64_t v, int64_t lo, int64_t hi) -> Status {
    if (v >= lo && v <= hi) return Status::Ok();
    return Error(StatusCode::kInvalidArgument, "{} {}: must be between {} and {}", flag, v, lo, hi);
  };
  QM_RETURN_IF_ERROR(range("--ctx", models.n_ctx, 1, orchestrator::kMaxContextTokens));
  QM_RETURN_IF_ERROR(range("--parallel", models.parallel, 1, orchestrator::kMaxParallel));
  QM_RETURN_IF_ERROR(range("--max-queue", scheduler.max_queue, AppLimits::kMinMaxQueue, AppLimits::kMaxMaxQueue));
  QM_RETURN_IF_ERROR(range("--max-tokens", limits.max_tokens, AppLimits::kMinMaxTokens, INT32_MAX));
  QM_RETURN_IF_ERROR(range("--max-connections", http.limits.max_connections, AppLimits::kMinMaxConnections,
                           INT32_MAX));
  if (http.limits.max_body_bytes < AppLimits::kMinMaxBody)
    return Error(StatusCode::kInvalidArgument, "--max-body {}: must be at least {} bytes",
                 http.limits.max_body_bytes, AppLimits::kMinMaxBody);
  return Status::Ok();
}

Result<std::unique_ptr<App>> App::Create(AppOptions options, Log log) {
  QM_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<App> app(new App());
  app->options_ = std::move(options);
  app->log_ = std::move(log);
  if (app->options_.log.format == LogFormat::kJson) {
    // Every line a JSON object: the startup lines below become {"event": "message", "msg": ...}.
    app->log_ = [inner = std::move(app->log_)](const std::string& line) {
      inner(line.starts_with("{") ? line : FormatMessageLine(line, LogFormat::kJson));
    };
  }
  AppOptions& o = app->options_;
  orchestrator::Metrics* metrics = o.metrics ? o.metrics : &orchestrator::Metrics::Global();

  // Everything about the models comes from BuildServeSetup: one read of each file's header,
  // one budget, one role rule.
  orchestrator::ServeInputs in;
  if (!o.config_path.empty()) {
    QM_ASSIGN_OR_RETURN(in.config, orchestrator::LoadConfig(o.config_path));
  }
  in.models_dir = o.models_dir;
  in.memory_budget = o.memory_budget;
  in.gpu_memory_budget = o.gpu_memory_budget;
  in.device = o.device;
  in.extra_models = o.model_flags;
  in.extra_adapters = o.adapter_flags;
  in.flag_models = o.models;
  // A fresh machine (nothing configured, nothing pulled) still serves: /health, empty lists.
  in.allow_no_models = true;
  QM_ASSIGN_OR_RETURN(orchestrator::ServeSetup setup, orchestrator::BuildServeSetup(in));
  for (const std::string& line : setup.log) app->log_("serve: " + line);

  std::vector<ServedModel> served;
  for (size_t i = 0; i < setup.specs.size(); ++i) {
    served.push_back(MakeServedModel(setup.specs[i], setup.candidates[i], setup.facts[i]));
  }
  app->specs_ = setup.specs;

  orchestrator::ManagerOptions mo = setup.manager;
  mo.metrics = metrics;
  mo.gpu_index = o.device_index;
  if (o.query_device) mo.query_device = o.query_device;
  if (o.load_model) mo.load_model = o.load_model;
  mo.log = [log = app->log_](const std::string& line) { log("serve: " + line); };
  // Compiled constraints share the budget with the models (and show in ps and /metrics).
  SetConstraintCacheBytes(o.constraint_cache_bytes);
  mo.external_bytes = [] { return ConstraintCacheBytes(); };
  App* raw = app.get();
  const LogFormat log_format = o.log.format;
  if (!o.log.quiet) {
    mo.on_event = [raw, log_format](const orchestrator::ModelEvent& e) { raw->log_(FormatModelLine(e, log_format)); };
    o.http.request_log = [raw, log_format](const RequestLogEntry& e) { raw->log_(FormatRequestLine(e, log_format)); };
  }
  o.http.log_bodies = o.log.log_prompts;
  app->manager_ = std::make_unique<orchestrator::ModelManager>(mo);
  {
    const runtime::CudaDeviceInfo& gpu = app->manager_->gpu();
    app->log_(fmt::format("serve: device {} ; {}{}", runtime::DeviceChoiceName(o.device), runtime::DescribeCudaDevice(gpu),
                          gpu.available ? fmt::format(", GPU budget {} ({} of free device memory)",
                                                      orchestrator::FormatSize(app->manager_->gpu_budget_bytes()),
                                                      mo.gpu_budget.ToString())
                                        : ""));
    if (o.device == runtime::DeviceChoice::kCuda && !gpu.available) {
      return Error(StatusCode::kUnsupported, "serve: --device cuda: no usable GPU: {}", runtime::DescribeCudaDevice(gpu));
    }
  }
  for (const auto& spec : app->specs_) QM_RETURN_IF_ERROR(app->manager_->Register(spec));
  for (const auto& a : setup.adapters) QM_RETURN_IF_ERROR(app->manager_->RegisterAdapter(a));
  orchestrator::SchedulerOptions so = o.scheduler;
  so.metrics = metrics;
  app->scheduler_ = std::make_unique<orchestrator::Scheduler>(app->manager_.get(), so);
  app->service_ = std::make_unique<Service>(app->manager_.get(), app->scheduler_.get(), metrics, o.limits);
  for (ServedModel& m : served) QM_RETURN_IF_ERROR(app->service_->AddModel(std::move(m)));
  for (const auto& a : setup.adapters) {
    ServedAdapter sa{a.name, a.base, a.path, a.scale};
    std::error_code ec;
    const std::filesystem::path p(a.path);
    if (std::filesystem::is_directory(p, ec)) {  // PEFT: the weights file
      sa.file_bytes = std::filesystem::file_size(p / "adapter_model.safetensors", ec);
    } else {
      sa.file_bytes = std::filesystem::file_size(p, ec);
    }
    if (ec) sa.file_bytes = 0;
    struct stat st {};
    if (::stat(a.path.c_str(), &st) == 0) sa.modified_unix = st.st_mtime;
    QM_RETURN_IF_ERROR(app->service_->AddAdapter(std::move(sa)));
  }
  app->service_->SetRouter(setup.candidates, setup.policy);
  {  // Backends: qwenmux.yaml `backends:` and --backend flags (checked here: a bad one stops the start).
    std::vector<orchestrator::BackendConfig> backends = in.config.backends;
    for (const std::string& flag : o.backend_flags) {
      QM_ASSIGN_OR_RETURN(orchestrator::BackendConfig b, orchestrator::ParseBackendFlag(flag));
      backends.push_back(std::move(b));
    }
    QM_RETURN_IF_ERROR(orchestrator::CheckBackendList(backends).WithContext("serve"));
    for (orchestrator::BackendConfig& b : backends) {
      b.tier = AsciiLower(b.tier);
      if (!b.tier.empty() && orchestrator::TierRank(b.tier) < 0)
        return Error(StatusCode::kInvalidArgument, "serve: backend {}: tier \"{}\": expected qwen3-fast, qwen3-balanced, "
                     "qwen3-quality or qwen3-max", b.name, b.tier);
    }
    if (!backends.empty()) {
      app->upstreams_ = std::make_unique<Upstreams>(std::move(backends), o.upstream, app->log_);
      app->service_->SetUpstreams(app->upstreams_.get());
    }
  }
  RagApiOptions ro = o.rag;
  ro.config = in.config;
  ro.models_dir = setup.models_dir.empty() ? o.models_dir : setup.models_dir;
  ro.n_ctx = o.models.n_ctx;
  ro.threads = o.models.threads;
  QM_ASSIGN_OR_RETURN(app->rag_, RagApi::Create(app->service_.get(), std::move(ro)));
  app->service_->SetRag(app->rag_.get());
  app->dashboard_ = std::make_unique<Dashboard>(app->service_.get(), o.dashboard);
  {
    std::set<std::string> pinned;
    for (const auto& spec : app->specs_) {
      if (spec.pinned) pinned.insert(spec.name);
    }
    app->dashboard_->SetPinned(std::move(pinned));
  }
  app->service_->SetDashboard(app->dashboard_.get());
  for (const std::string& p : DashboardOpenPaths()) o.http.open_paths.push_back(p);
  app->http_ = std::make_unique<HttpServer>(o.http);
  app->service_->RegisterRoutes(*app->http_);
  RegisterDashboardRoutes(*app->service_, *app->dashboard_, *app->http_);
  if (!o.config_path.empty()) app->config_ = std::make_unique<orchestrator::Config>(in.config);
  // Pipeline jobs store into their own directories; only the collections the operator allows
  // (--jobs-write-collections) go where POST /v1/rag reads them.
  PipelineJobOptions jo = o.jobs;
  if (jo.store_dir.empty()) jo.store_dir = app->rag_->store_dir();
  // Pipeline stages on a served file run on the served instance (one load, counted once).
  std::map<std::string, pipeline::ServedModelRef> served_files;  // file -> served model
  for (const ServedModel& m : app->service_->models()) served_files.emplace(m.path, pipeline::ServedModelRef{m.name, m.n_ctx});
  for (const std::string& c : jo.write_collections) {
    if (Status v = rag::ValidateCollectionName(c); !v.ok()) return v.WithContext("serve: --jobs-write-collections");
  }
  app->jobs_ = std::make_unique<PipelineJobs>(jo, app->manager_.get(), app->config_.get(), setup.models_dir,
                                              o.models.threads, app->scheduler_.get(), std::move(served_files));
  app->jobs_->SetBackend(BackendAccessOf(app->upstreams_.get()));
  if (app->jobs_->enabled()) QM_RETURN_IF_ERROR(app->jobs_->PrepareWorkDir().WithContext("serve: --work-dir"));
  QM_RETURN_IF_ERROR(RegisterPipelineRoutes(*app->service_, *app->jobs_, *app->http_, setup.models_dir, app->config_.get()));
  {  // Fine-tuning jobs: their directories beside the pipeline jobs'; running ones of a previous run resume.
    FinetuneJobOptions fo = o.finetune;
    if (fo.work_dir.empty()) fo.work_dir = app->jobs_->work_dir() + "/fine_tuning";
    if (fo.threads == 0) fo.threads = static_cast<size_t>(o.models.threads);
    app->finetune_ = std::make_unique<FinetuneJobs>(fo, app->service_.get(), app->manager_.get());
    if (app->finetune_->enabled()) QM_RETURN_IF_ERROR(app->finetune_->Restore(app->log_).WithContext("serve"));
    QM_RETURN_IF_ERROR(RegisterFinetuneRoutes(*app->service_, *app->finetune_, *app->http_, o.jobs.data_roots));
  }

  const auto& L = o.http.limits;
  // The context and parallel of each model are on its own line (BuildServeSetup's log, the figures
  // that apply); --ctx/--parallel are only the defaults of --model files, so not repeated here.
  app->log_(fmt::format("serve: memory budget {} (compiled constraints up to {} of it), queue {} per model",
                        orchestrator::FormatSize(mo.budget_bytes), orchestrator::FormatSize(o.constraint_cache_bytes),
                        so.max_queue));
  app->log_(fmt::format("serve: limits: body {} B, header {} B, {} connections, max_tokens {}, api keys: {}, CORS: {}, "
                        "host check: {}",
                        L.max_body_bytes, L.max_header_bytes, L.max_connections, o.limits.max_tokens,
                        o.http.security.api_keys.empty() ? "off" : "on",
                        o.http.security.cors_origins.empty() ? "off" : fmt::format("{}", fmt::join(o.http.security.cors_origins, ",")),
                        o.http.security.check_host ? "on" : "off"));
  app->log_(fmt::format("serve: pipeline jobs: {}, work dir {}, write collections of the document store: {}, "
                        "data roots: {}, pipelines: {}",
                        app->jobs_->enabled() ? fmt::format("at most {} at once", app->jobs_->options().max_running)
                                              : std::string("off (--max-jobs 0)"),
                        app->jobs_->work_dir(),
                        jo.write_collections.empty() ? "none (jobs write to their own store)"
                                                     : fmt::format("{}", fmt::join(jo.write_collections, ", ")),
                        o.jobs.data_roots.empty() ? "none (inline documents only)" : fmt::format("{}", fmt::join(o.jobs.data_roots, ", ")),
                        o.jobs.pipeline_dirs.empty() ? "none" : fmt::format("{}", fmt::join(o.jobs.pipeline_dirs, ", "))));
  if (app->service_->models().empty()) {
    app->log_("serve: no models configured; add one with `qwenmux serve --model FILE.gguf[=NAME]` or a `models:` list in "
              "qwenmux.yaml (--config), e.g. after `qwenmux pull qwen3:0.6b`");
  }
  return app;
}

Status App::Start() {
  QM_RETURN_IF_ERROR(http_->Start());
  if (upstreams_) upstreams_->Start();
  dashboard_->Start();
  log_(fmt::format("serve: listening on http://{}:{} (OpenAI /v1/*, Ollama /api/*, /health, /metrics)",
                   options_.http.host.find(':') != std::string::npos ? "[" + options_.http.host + "]" : options_.http.host,
                   http_->port()));
  bool any_preload = false;
  for (const auto& s : specs_) any_preload |= s.pinned || s.preload;
  if (any_preload) {
    service_->SetReady(false);
    preload_ = std::thread([this] {
      Status s = manager_->Start();
      if (!s.ok()) log_(fmt::format("serve: preload failed: {}", s.ToString()));
      service_->SetReady(true);
      log_("serve: preload done");
    });
  } else {
    Status s = manager_->Start();  // starts the keep-alive reaper
    if (!s.ok()) log_(fmt::format("serve: {}", s.ToString()));
  }
  return Status::Ok();
}

void App::Shutdown() {
  if (shut_down_ || !http_) return;
  shut_down_ = true;
  http_->StopAccepting();
  // Pipeline jobs run for minutes: cancel them now (their event streams end) and wait for their
  // workers (each ends the batch it is in); handlers still running get "shutting down".
  if (jobs_) {
    if (jobs_->running() > 0) log_(fmt::format("serve: cancelling {} pipeline job(s)", jobs_->running()));
    jobs_->Shutdown();
  }
  if (finetune_) {
    if (finetune_->running() > 0) log_(fmt::format("serve: stopping {} fine-tuning job(s) (they resume at the next start)", finetune_->running()));
    finetune_->Shutdown();
  }
  const auto deadline = std::chrono::steady_clock::now() + options_.shutdown_grace;
  if (http_->InFlight() > 0) {
    log_(fmt::format("serve: shutting down: waiting up to {} ms for {} request(s)", options_.shutdown_grace.count(),
                     http_->InFlight()));
  }
  while (http_->InFlight() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (http_->InFlight() > 0) log_(fmt::format("serve: cancelling {} request(s)", http_->InFlight()));
  http_->CancelAll();
  if (upstreams_) upstreams_->Shutdown();  // proxied transfers abort (their responses end)
  // RAG pipelines first: they stop at their next event and give back their leases and the served
  // models their scheduler workers lent them (a worker waits for that before it can stop).
  rag_->Shutdown();
  scheduler_->Shutdown();  // every on_done runs (cancelled), so every response ends
  const auto flush = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (http_->InFlight() > 0 && std::chrono::steady_clock::now() < flush) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // last bytes to the sockets
  http_->Stop();
  dashboard_->Stop();
  if (preload_.joinable()) preload_.join();
  manager_->Stop();
  log_("serve: stopped");
}

App::~App() {
  Shutdown();
  // Order: HTTP (and with it every responder's session) before the scheduler and manager.
  http_.reset();
  upstreams_.reset();
  rag_.reset();
  jobs_.reset();
  finetune_.reset();
  dashboard_.reset();
  service_.reset();
  scheduler_.reset();
  manager_.reset();
}

}  // namespace qwenmux::server
