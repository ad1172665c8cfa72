// qwenmux pipeline run FILE.yaml|NAME PATH... [--model TIER=FILE.gguf]... [--json] [-o RESULTS.jsonl]
// qwenmux pipeline check FILE.yaml|NAME
// (NAME: a definition in --pipelines-dir, default examples/pipelines; see pipeline/library.h)
// Runs a document pipeline (src/pipeline/job.h) over files and directories; prints a progress bar
// (stderr, on a terminal), one JSON line per document with --json, and a summary (the last line
// with --json). Results are appended to the results file, which also makes a rerun resume.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "backend_flags.h"
#include "commands.h"
#include "engine_flags.h"
#include "orchestrator/config/config.h"
#include "orchestrator/setup/setup.h"
#include "pipeline/definition.h"
#include "pipeline/job.h"
#include "pipeline/library.h"
#include "rag_common.h"

namespace qwenmux::apps {

namespace {

// A definition file, or a pipeline name looked up in the pipeline directories.
Result<pipeline::PipelineDef> LoadDefinition(const std::string& file_or_name, const std::vector<std::string>& dirs) {
  const bool path_like = file_or_name.find('/') != std::string::npos || file_or_name.ends_with(".yaml") ||
                         file_or_name.ends_with(".yml") || access(file_or_name.c_str(), F_OK) == 0;
  return path_like ? pipeline::LoadPipeline(file_or_name) : pipeline::FindPipeline(file_or_name, dirs);
}

struct PipelineArgs {
  std::vector<std::string> pipeline_dirs = {"examples/pipelines"};
  std::string file;
  std::vector<std::string> paths;
  std::vector<std::string> models;
  std::string output, config, models_dir, budget, store;
  size_t threads = 0;
  runtime::DeviceChoice device = runtime::DeviceChoice::kAuto;
  int device_index = 0;
  bool json = false, quiet = false;
  BackendFlags backends;  // with --config's `backends:`: stages may name NAME/MODEL
};

void PrintBar(const pipeline::JobProgress& p, bool final) {
  const int64_t todo = p.total - p.skipped;
  const double frac = todo > 0 ? static_cast<double>(p.done) / static_cast<double>(todo) : 1.0;
  const int width = 30;
  const int fill = static_cast<int>(frac * width);
  std::string bar(static_cast<size_t>(fill), '#');
  bar.resize(width, '.');
  std::string stages;
  for (const auto& s : p.stages) stages += fmt::format(" {}:{}", s.name, s.items);
  std::fprintf(stderr, "\r[%s] %lld/%lld docs, %lld failed, %.1fs |%s\033[K%s", bar.c_str(),
               static_cast<long long>(p.done), static_cast<long long>(todo), static_cast<long long>(p.failed),
               p.elapsed_seconds, stages.c_str(), final ? "\n" : "");
}

void PrintSummary(const nlohmann::ordered_json& s) {
  std::printf("pipeline %s: %lld documents, %lld ok, %lld failed, %lld empty (skipped), %lld skipped (done before), "
              "%lld retried, %.2f s\n",
              s["pipeline"].get<std::string>().c_str(), static_cast<long long>(s["documents"].get<int64_t>()),
              static_cast<long long>(s["ok"].get<int64_t>()), static_cast<long long>(s["failed"].get<int64_t>()),
              static_cast<long long>(s["empty"].get<int64_t>()), static_cast<long long>(s["skipped"].get<int64_t>()),
              static_cast<long long>(s["retried"].get<int64_t>()), s["seconds"].get<double>());
  std::printf("%-10s %-9s %7s %9s %10s %10s  %s\n", "stage", "type", "items", "seconds", "items/min", "tok/s", "failures");
  for (const auto& st : s["stages"]) {
    std::string f;
    for (auto it = st["failures"].begin(); it != st["failures"].end(); ++it) {
      f += fmt::format("{}{}: {}", f.empty() ? "" : ", ", it.key(), it.value().get<int64_t>());
    }
    std::printf("%-10s %-9s %7lld %9.2f %10.1f %10.1f  %s\n", st["name"].get<std::string>().c_str(),
                st["type"].get<std::string>().c_str(), static_cast<long long>(st["items"].get<int64_t>()),
                st["seconds"].get<double>(), st["items_per_minute"].get<double>(), st["tokens_per_second"].get<double>(),
                f.empty() ? "-" : f.c_str());
  }
}

int Run(const PipelineArgs& a) {
  auto def = LoadDefinition(a.file, a.pipeline_dirs);
  if (!def.ok()) return ReportError(def.status());
  pipeline::RunOptions opt;
  opt.inputs = a.paths;
  for (const std::string& m : a.models) {
    const size_t eq = m.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == m.size()) {
      return ReportError(Error(StatusCode::kInvalidArgument, "--model {}: expected TIER=FILE.gguf or NAME=FILE.gguf", m));
    }
    opt.models[m.substr(0, eq)] = m.substr(eq + 1);
  }
  std::unique_ptr<orchestrator::Config> config;
  if (!a.config.empty()) {
    auto c = orchestrator::LoadConfig(a.config);
    if (!c.ok()) return ReportError(c.status());
    config = std::make_unique<orchestrator::Config>(std::move(*c));
    opt.config = config.get();
    opt.models_dir = config->models_dir;
  }
  if (!a.models_dir.empty()) opt.models_dir = a.models_dir;
  BackendFlags backends = a.backends;  // outlives the job (Run waits for it)
  if (Status b = backends.Open(config.get()); !b.ok()) return ReportError(b);
  opt.backend = backends.access;
  if (!a.budget.empty()) {  // as `serve` reads it: a size or a share of RAM, capped at RAM - reserve
    auto b = orchestrator::ResolveMemoryBudget(config ? config->memory : orchestrator::MemoryConfig{}, a.budget);
    if (!b.ok()) return ReportError(b.status());
    opt.memory_budget = b->bytes;
    if (!a.quiet) fmt::print(stderr, "pipeline: memory budget {}\n", b->description);
  }
  opt.threads = a.threads;
  opt.device = a.device;
  opt.device_index = a.device_index;
  opt.store_dir = a.store.empty() ? DefaultRagStoreDir() : a.store;
  opt.results_path = a.output.empty() ? def->name + ".results.jsonl" : a.output;
  const bool json = a.json;
  auto job = pipeline::Job::Start(std::move(*def), std::move(opt), [json](const nlohmann::ordered_json& r) {
    if (!json) return;
    const std::string line = r.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fflush(stdout);
  });
  if (!job.ok()) return ReportError(job.status());
  const bool bar = !a.quiet && isatty(fileno(stderr)) != 0;
  std::thread progress;
  std::atomic<bool> stop{false};
  if (bar) {
    progress = std::thread([&] {
      while (!stop) {
        PrintBar((*job)->Progress(), false);
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
    });
  }
  auto summary = (*job)->Wait();
  stop = true;
  if (progress.joinable()) progress.join();
  if (bar) PrintBar((*job)->Progress(), true);
  if (!summary.ok()) return ReportError(summary.status());
  if (json) {
    std::printf("%s\n", nlohmann::ordered_json{{"summary", *summary}}.dump().c_str());
  } else {
    PrintSummary(*summary);
  }
  // 3 when any document failed in this run (earlier failures are retried, so a rerun that still
  // fails still says so).
  return (*summary)["failed"].get<int64_t>() > 0 ? 3 : 0;
}

}  // namespace

void RegisterPipeline(CLI::App& app, int* exit_code) {
  CLI::App* cmd = app.add_subcommand("pipeline", "Document pipelines defined in YAML (classify, extract, validate, chunk, embed)");
  cmd->require_subcommand(1);
  auto a = std::make_shared<PipelineArgs>();
  CLI::App* run = cmd->add_subcommand("run", "Run a pipeline over files and directories (resumable)");
  run->add_option("file", a->file, "Pipeline definition (YAML) or name, e.g. examples/pipelines/document-processing.yaml or document-processing")->required();
  run->add_option("--pipelines-dir", a->pipeline_dirs, "Where pipeline names are looked up (repeatable; default examples/pipelines)");
  run->add_option("paths", a->paths, "Documents and directories (txt, md, html, pdf)")->required();
  run->add_option("--model", a->models, "Map a tier or model name to a GGUF file: fast=qwen3-1.7b.gguf (repeatable)");
  run->add_option("-o,--output", a->output, "Results JSONL (appended; finished documents in it are skipped). Default: NAME.results.jsonl");
  run->add_option("--config", a->config, "qwenmux.yaml (configured models; a pipeline of the same name overrides stage models)");
  run->add_option("--models-dir", a->models_dir, "Model store for catalog names and tiers");
  run->add_option("--store", a->store, "Document store of embed stages with a collection (default: $QWENMUX_HOME/rag or ~/.qwenmux/rag)");
  run->add_option("--memory-budget", a->budget, "Memory the pipeline's models may use together: 24GiB or 75% (default: the OS limit)");
  run->add_option("-t,--threads", a->threads, "Engine threads per model (0: all cores)");
  AddDeviceFlags(run, &a->device, &a->device_index);
  a->backends.Add(run);
  run->add_flag("--json", a->json, "One JSON line per document, the summary as the last line");
  run->add_flag("-q,--quiet", a->quiet, "No progress bar");
  run->callback([a, exit_code] { *exit_code = Run(*a); });

  auto check_file = std::make_shared<std::string>();
  CLI::App* check = cmd->add_subcommand("check", "Parse and check a pipeline definition");
  check->add_option("file", *check_file, "Pipeline definition (YAML) or name")->required();
  check->add_option("--pipelines-dir", a->pipeline_dirs, "Where pipeline names are looked up (repeatable; default examples/pipelines)");
  check->callback([a, check_file, exit_code] {
    auto def = LoadDefinition(*check_file, a->pipeline_dirs);
    if (!def.ok()) {
      *exit_code = ReportError(def.status());
      return;
    }
    std::printf("%s: %zu stages:", def->name.c_str(), def->stages.size());
    for (const auto& s : def->stages) std::printf(" %s(%s%s%s)", s.name.c_str(), pipeline::StageTypeName(s.type), s.model.empty() ? "" : " on ", s.model.c_str());
    std::printf("\n");
  });
}

}  // namespace qwenmux::apps
