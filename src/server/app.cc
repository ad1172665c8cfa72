#include "server/app.h"

#include <unistd.h>

#include <fmt/format.h>

#include "orchestrator/config/config.h"
#include "orchestrator/config/units.h"
#include "orchestrator/store/model_store.h"

namespace qwenmux::server {

namespace {

uint64_t TotalRam() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
}

orchestrator::KeepAlive ToKeepAlive(orchestrator::Duration d) {
  return d.forever ? orchestrator::kKeepForever : orchestrator::KeepAlive(d.ms);
}

}  // namespace

std::pair<std::string, std::string> ParseModelFlag(const std::string& flag) {
  std::string path = flag, name;
  if (const size_t eq = flag.rfind('='); eq != std::string::npos && eq > 0) {
    path = flag.substr(0, eq);
    name = flag.substr(eq + 1);
  }
  if (name.empty()) {
    const size_t slash = path.find_last_of('/');
    name = slash == std::string::npos ? path : path.substr(slash + 1);
    if (name.size() > 5 && name.ends_with(".gguf")) name.resize(name.size() - 5);
  }
  return {path, name};
}

Result<std::unique_ptr<App>> App::Create(AppOptions options, Log log) {
  std::unique_ptr<App> app(new App());
  app->options_ = std::move(options);
  app->log_ = std::move(log);
  AppOptions& o = app->options_;
  orchestrator::Metrics* metrics = o.metrics ? o.metrics : &orchestrator::Metrics::Global();

  orchestrator::Config config;
  if (!o.config_path.empty()) {
    QM_ASSIGN_OR_RETURN(config, orchestrator::LoadConfig(o.config_path));
  }
  if (!o.memory_budget.empty()) QM_RETURN_IF_ERROR(orchestrator::ApplyMemoryBudgetFlag(config, o.memory_budget));

  std::vector<ServedModel> served;
  std::optional<orchestrator::ModelStore> store;
  for (const orchestrator::ModelConfig& mc : config.models) {
    std::string path = mc.file;
    if (path.empty()) {
      if (!store) {
        const std::string dir = !o.models_dir.empty()        ? o.models_dir
                                : !config.models_dir.empty() ? config.models_dir
                                                             : orchestrator::DefaultModelsDir();
        QM_ASSIGN_OR_RETURN(store, orchestrator::ModelStore::Open(dir));
      }
      auto found = store->Find(mc.catalog);
      if (!found.ok()) {
        return Error(StatusCode::kNotFound, "{}:{}: model {}: {} (run `qwenmux pull {}`)", config.source, mc.line,
                     mc.name, found.status().message(), mc.catalog);
      }
      path = store->BlobPath(found->sha256);
    }
    const int32_t ctx = mc.context > 0 ? static_cast<int32_t>(mc.context) : o.n_ctx;
    auto m = DescribeModel(mc.name, path, ctx);
    if (!m.ok()) return m.status().WithContext(fmt::format("{}:{}", config.source, mc.line));
    m->role = mc.role;
    m->aliases = mc.aliases;
    orchestrator::ModelSpec spec;
    spec.name = mc.name;
    spec.path = path;
    spec.load.n_ctx = m->n_ctx;
    spec.load.n_seq = static_cast<int32_t>(std::max<uint32_t>(1, mc.parallel));
    spec.load.n_threads = o.threads;
    spec.keep_alive = ToKeepAlive(mc.keep_alive);
    spec.pinned = mc.pinned;
    app->specs_.push_back(spec);
    served.push_back(std::move(*m));
  }
  for (const std::string& flag : o.model_flags) {
    auto [path, name] = ParseModelFlag(flag);
    auto m = DescribeModel(name, path, o.n_ctx);
    if (!m.ok()) return m.status().WithContext(fmt::format("--model {}", flag));
    orchestrator::ModelSpec spec;
    spec.name = name;
    spec.path = path;
    spec.load.n_ctx = m->n_ctx;
    spec.load.n_seq = std::max(1, o.parallel);
    spec.load.n_threads = o.threads;
    app->specs_.push_back(spec);
    served.push_back(std::move(*m));
  }

  orchestrator::ManagerOptions mo;
  mo.budget_bytes = config.memory.Resolve(TotalRam());
  mo.metrics = metrics;
  app->manager_ = std::make_unique<orchestrator::ModelManager>(mo);
  for (const auto& spec : app->specs_) QM_RETURN_IF_ERROR(app->manager_->Register(spec));
  orchestrator::SchedulerOptions so;
  so.max_queue = o.max_queue;
  so.metrics = metrics;
  app->scheduler_ = std::make_unique<orchestrator::Scheduler>(app->manager_.get(), so);
  app->service_ = std::make_unique<Service>(app->manager_.get(), app->scheduler_.get(), metrics, o.limits);
  for (ServedModel& m : served) QM_RETURN_IF_ERROR(app->service_->AddModel(std::move(m)));
  app->service_->SetDefaultModel(config.router.default_model);
  app->http_ = std::make_unique<HttpServer>(o.http);
  app->service_->RegisterRoutes(*app->http_);

  const auto& L = o.http.limits;
  app->log_(fmt::format("serve: memory budget {}, context {} per sequence, {} sequences per model, queue {} per model",
                        orchestrator::FormatSize(mo.budget_bytes), o.n_ctx, o.parallel, o.max_queue));
  app->log_(fmt::format("serve: limits: body {} B, header {} B, {} connections, max_tokens {}, api keys: {}, CORS: {}",
                        L.max_body_bytes, L.max_header_bytes, L.max_connections, o.limits.max_tokens,
                        o.http.security.api_keys.empty() ? "off" : "on",
                        o.http.security.cors_origins.empty() ? "off" : fmt::format("{}", fmt::join(o.http.security.cors_origins, ","))));
  for (const ServedModel& m : app->service_->models()) {
    app->log_(fmt::format("serve: model {} ({}{}{}, {} params, context {}) <- {}", m.name,
                          orchestrator::ModelRoleName(m.role), m.quantization.empty() ? "" : ", ", m.quantization,
                          m.parameter_size, m.n_ctx, m.path));
  }
  if (app->service_->models().empty()) {
    app->log_("serve: no models configured; add one with `qwenmux serve --model FILE.gguf[=NAME]` or a `models:` list in "
              "qwenmux.yaml (--config), e.g. after `qwenmux pull qwen3:0.6b`");
  }
  return app;
}

Status App::Start() {
  QM_RETURN_IF_ERROR(http_->Start());
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
  scheduler_->Shutdown();  // every on_done runs (cancelled), so every response ends
  const auto flush = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (http_->InFlight() > 0 && std::chrono::steady_clock::now() < flush) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // last bytes to the sockets
  http_->Stop();
  if (preload_.joinable()) preload_.join();
  manager_->Stop();
  log_("serve: stopped");
}

App::~App() {
  Shutdown();
  // Order: HTTP (and with it every responder's session) before the scheduler and manager.
  http_.reset();
  service_.reset();
  scheduler_.reset();
  manager_.reset();
}

}  // namespace qwenmux::server
