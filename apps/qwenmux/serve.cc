// qwenmux serve [--config FILE] [--model FILE.gguf[=ALIAS]]... [--host H] [--port P] [--api-key K]
// The HTTP server (OpenAI and Ollama APIs) until SIGINT/SIGTERM, then a graceful shutdown.
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <utility>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include "commands.h"
#include "engine_flags.h"
#include "orchestrator/config/config.h"
#include "orchestrator/config/units.h"
#include "server/app.h"

namespace qwenmux::apps {

namespace {

// Text lines get a local timestamp; JSON lines (--log-format json) carry their own "time".
void Log(const std::string& line) {
  if (line.starts_with("{")) {
    fmt::print(stderr, "{}\n", line);
    return;
  }
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  fmt::print(stderr, "{:%Y-%m-%d %H:%M:%S} {}\n", tm, line);
}

bool IsLoopback(const std::string& host) {
  return host.starts_with("127.") || host == "::1" || host == "localhost";
}

int Serve(server::AppOptions o, const std::string& max_body, int64_t grace_ms, const std::vector<std::string>& rag_models,
          const std::string& log_format) {
  auto format = server::ParseLogFormat(log_format);
  if (!format.ok()) return ReportError(format.status());
  o.log.format = *format;
  for (const std::string& m : rag_models) {
    const size_t eq = m.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == m.size()) {
      return ReportError(Error(StatusCode::kInvalidArgument, "--rag-model {}: expected STAGE=MODEL", m));
    }
    o.rag.stage_models[m.substr(0, eq)] = m.substr(eq + 1);
  }
  {
    auto b = orchestrator::ParseSize(max_body);
    if (!b.ok()) return ReportError(b.status().WithContext("--max-body"));
    o.http.limits.max_body_bytes = *b;
  }
  if (o.http.host == "localhost") o.http.host = "127.0.0.1";
  o.http.security.check_host = IsLoopback(o.http.host);
  o.shutdown_grace = std::chrono::milliseconds(grace_ms);
  // Signals are taken by sigwait below; every thread started from here on inherits the mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  const server::LogFormat log_as = o.log.format;
  auto app = server::App::Create(std::move(o), Log);
  if (!app.ok()) return ReportError(app.status());
  if (Status s = (*app)->Start(); !s.ok()) return ReportError(s);
  int sig = 0;
  sigwait(&set, &sig);
  const std::string stopping = fmt::format("serve: {} received, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
  Log(server::FormatMessageLine(stopping, log_as));
  (*app)->Shutdown();
  return 0;
}

}  // namespace

// A byte count as --max-body takes it back: "8MiB", "512KiB", "1000".
std::string SizeFlag(uint64_t bytes) {
  static constexpr std::pair<uint64_t, const char*> kUnits[] = {{1ull << 30, "GiB"}, {1ull << 20, "MiB"}, {1ull << 10, "KiB"}};
  for (const auto& [unit, name] : kUnits) {
    if (bytes >= unit && bytes % unit == 0) return fmt::format("{}{}", bytes / unit, name);
  }
  return std::to_string(bytes);
}

void RegisterServe(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("serve", "Serve models over OpenAI- and Ollama-compatible HTTP APIs");
  // The defaults shown by --help are the option structs' own (server::AppOptions and the structs
  // it holds): capture_default_str() reads each bound field before parsing.
  auto o = std::make_shared<server::AppOptions>();
  auto max_body = std::make_shared<std::string>(SizeFlag(o->http.limits.max_body_bytes));
  auto grace = std::make_shared<int64_t>(o->shutdown_grace.count());
  auto rag_models = std::make_shared<std::vector<std::string>>();
  auto log_format = std::make_shared<std::string>("text");
  cmd->add_option("--config", o->config_path, "qwenmux.yaml (models, memory budget, router)")->check(CLI::ExistingFile);
  cmd->add_option("--model,-m", o->model_flags, "serve a GGUF file, optionally under a name: FILE.gguf[=NAME] (repeatable)");
  cmd->add_option("--adapter", o->adapter_flags,
                  "serve a LoRA adapter (GGUF file or PEFT dir) on a model: NAME=FILE[@BASE][:SCALE] (repeatable); "
                  "requests name it BASE:NAME; BASE may be left out when one chat model is served");
  cmd->add_option("--host", o->http.host, "address to bind (0.0.0.0 for every interface)")->capture_default_str();
  cmd->add_option("--port,-p", o->http.port, "TCP port (0 picks a free one)")->capture_default_str();
  cmd->add_option("--api-key", o->http.security.api_keys, "require this key (Authorization: Bearer KEY) on every route but /health (repeatable)")
      ->envname("QWENMUX_API_KEY");
  cmd->add_option("--cors-origin", o->http.security.cors_origins, "allow browser requests from this origin (repeatable; * for any)");
  cmd->add_option("--allow-host", o->http.security.allowed_hosts, "extra Host header value accepted while bound to loopback");
  cmd->add_option("--memory-budget", o->memory_budget, "memory for models: 24GiB or 75% (overrides the config)");
  cmd->add_option("--gpu-memory-budget", o->gpu_memory_budget,
                  "GPU memory for models: 20GiB or 90% of the free device memory at start (default 90%; overrides the config)");
  AddDeviceFlags(cmd, &o->device, &o->device_index);
  cmd->add_option("--models-dir", o->models_dir, "model store for catalog names in the config");
  cmd->add_option("--backend", o->backend_flags,
                  "another engine's server as a backend: NAME=URL[,openai|ollama] (repeatable); its models are "
                  "served as NAME/MODEL");
  // Ranges: server/app.h (AppOptions::Validate checks the same at startup).
  cmd->add_option("--ctx", o->models.n_ctx, "context tokens per sequence for --model files")
      ->capture_default_str()
      ->check(CLI::Range(int32_t{1}, static_cast<int32_t>(orchestrator::kMaxContextTokens)));
  cmd->add_option("--parallel", o->models.parallel, "sequences per --model file that share a batch")
      ->capture_default_str()
      ->check(CLI::Range(int32_t{1}, static_cast<int32_t>(orchestrator::kMaxParallel)));
  cmd->add_option("--threads,-t", o->models.threads, "compute threads per model (0: all)")->capture_default_str();
  cmd->add_option("--max-queue", o->scheduler.max_queue, "waiting requests per model before 429/503")
      ->capture_default_str()
      ->check(CLI::Range(server::AppLimits::kMinMaxQueue, server::AppLimits::kMaxMaxQueue));
  cmd->add_option("--max-body", *max_body, "largest request body (at least 1KiB)")->capture_default_str();
  cmd->add_option_function<std::string>(
      "--constraint-cache",
      [o](const std::string& v) {
        auto b = orchestrator::ParseSize(v);
        if (!b.ok() || *b < (uint64_t{1} << 20)) {
          throw CLI::ValidationError("--constraint-cache", "expected a size of at least 1MiB, e.g. 256MiB");
        }
        o->constraint_cache_bytes = *b;
      },
      "memory for compiled JSON-schema/tool-call constraints, counted in the memory budget (default 256MiB)");
  cmd->add_option("--max-connections", o->http.limits.max_connections, "open connections")
      ->capture_default_str()
      ->check(CLI::Range(server::AppLimits::kMinMaxConnections, INT32_MAX));
  cmd->add_option("--max-tokens", o->limits.max_tokens, "largest max_tokens a request may ask for")
      ->capture_default_str()
      ->check(CLI::Range(server::AppLimits::kMinMaxTokens, INT32_MAX));
  cmd->add_option("--io-threads", o->http.io_threads, "network threads")->capture_default_str();
  cmd->add_option("--data-root", o->jobs.data_roots, "pipeline and fine-tuning jobs may read server-side files under this directory (repeatable; none: inline documents only)");
  cmd->add_option("--work-dir", o->jobs.work_dir, "pipeline job directories (inline documents, results.jsonl); default: TMPDIR/qwenmux-jobs-UID");
  cmd->add_option("--pipelines-dir", o->jobs.pipeline_dirs, "pipeline definitions that jobs may name, e.g. examples/pipelines (repeatable)");
  cmd->add_option("--max-jobs", o->jobs.max_running, "pipeline jobs running at once; more get 429; 0 turns jobs off")
      ->capture_default_str();
  cmd->add_option("--jobs-write-collections", o->jobs.write_collections,
                  "collections of the document store (--store) that pipeline jobs may write, e.g. kb,docs (default none: "
                  "jobs write to their own store under --work-dir)")
      ->delimiter(',');
  cmd->add_option("--keep-jobs", o->jobs.keep_finished, "finished pipeline jobs kept for their progress and results")->capture_default_str();
  cmd->add_option("--max-finetune-jobs", o->finetune.max_running,
                  "fine-tuning jobs (POST /v1/fine_tuning/jobs) training at once; more get 429; 0 turns them off; "
                  "their files live in --work-dir/fine_tuning")
      ->capture_default_str()
      ->check(CLI::Range(0, 64));
  cmd->add_option("--finetune-checkpoint-every", o->finetune.checkpoint_every,
                  "steps between a fine-tuning job's checkpoints (a restarted server resumes there)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd->add_option("--shutdown-grace-ms", *grace, "on SIGTERM, time in-flight requests get to finish")->capture_default_str();
  cmd->add_option_function<int64_t>(
         "--dashboard-sample-ms", [o](int64_t ms) { o->dashboard.sample_period = std::chrono::milliseconds(ms); },
         "the dashboard's KPI sample period (it keeps 15 minutes of samples)")
      ->default_str(std::to_string(o->dashboard.sample_period.count()))
      ->check(CLI::Range(int64_t{100}, int64_t{600000}));
  cmd->add_option("--store", o->rag.store_dir, "RAG document store for POST /v1/rag (default: $QWENMUX_HOME/rag or ~/.qwenmux/rag)");
  cmd->add_option("--rag-model", *rag_models, "RAG stage model: STAGE=NAME, a served, configured or catalog model (repeatable; "
                  "over pipelines.rag in the config)");
  cmd->add_option("--rag-max-concurrent", o->rag.max_concurrent, "RAG pipelines running at once; above: 429")->capture_default_str();
  cmd->add_option("--log-format", *log_format, "log lines after startup as text or json (one JSON object a line)")
      ->check(CLI::IsMember({"text", "json"}));
  cmd->add_flag("--quiet,-q", o->log.quiet, "no request or model load/unload lines (startup and shutdown only)");
  cmd->add_flag("--log-prompts", o->log.log_prompts, "put request bodies (prompt text, first 4 KiB) in the request lines");
  cmd->callback([o, max_body, grace, rag_models, log_format, exit_code] {
    *exit_code = Serve(*o, *max_body, *grace, *rag_models, *log_format);
  });
}

}  // namespace qwenmux::apps
