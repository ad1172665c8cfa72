// qwenmux plan [--json] [--context N] [--parallel N] [--memory-budget SIZE] [--config FILE]
//              [--measure | --no-measure] [--threads N]
// For every catalog model and quantization: memory at the context, whether it fits this
// machine's budget, decode/prefill speed estimated from this machine's measured kernel rates
// (cached; see src/orchestrator/plan/speed.h), and the suggested tier assignment.
#include <ctime>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "orchestrator/config/config.h"
#include "orchestrator/plan/plan.h"
#include "orchestrator/setup/setup.h"

namespace qwenmux::apps {

namespace {

struct Args {
  bool json = false, measure = false, no_measure = false;
  uint32_t context = 8192;
  int32_t parallel = 1;
  size_t threads = 0;
  uint64_t ring_mib = 512;
  std::string memory_budget, gpu_memory_budget, config, cache_dir;
};

std::string When(int64_t unix) {
  std::time_t t = static_cast<std::time_t>(unix);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

int Run(const Args& a) {
  using namespace orchestrator;
  Config config;
  if (!a.config.empty()) {
    Result<Config> c = LoadConfig(a.config);
    if (!c.ok()) return ReportError(c.status());
    config = std::move(*c);
  }
  Result<MemoryBudget> budget = ResolveMemoryBudget(config.memory, a.memory_budget);
  if (!budget.ok()) return ReportError(budget.status());
  PlanOptions o;
  o.context = a.context;
  o.n_seq = a.parallel;
  o.total_ram = budget->total_ram;
  o.budget_bytes = budget->bytes;
  if (!a.gpu_memory_budget.empty()) {
    if (Status s = ApplyGpuMemoryBudgetFlag(config, a.gpu_memory_budget); !s.ok()) return ReportError(s);
  }
  o.gpu = runtime::QueryCudaDevice(0);
  o.gpu_budget_bytes = ResolveGpuBudget(config.memory.gpu_budget, o.gpu);

  const std::string cache = SpeedCachePath(a.cache_dir.empty() ? DefaultCacheDir() : a.cache_dir);
  const std::string key = MachineKey(a.threads);
  std::optional<MachineSpeed> speed;
  if (!a.measure) {
    Result<std::optional<MachineSpeed>> cached = LoadSpeedCache(cache, key);
    if (!cached.ok()) {
      fmt::print(stderr, "warning: {}\n", cached.status().ToString());
    } else if (*cached) {
      const std::string expired = (*cached)->ExpiredReason(static_cast<int64_t>(std::time(nullptr)), BinaryId());
      if (expired.empty() || a.no_measure) {
        speed = std::move(**cached);
        o.speed_note = fmt::format("cached {} in {}{}", When(speed->measured_unix), cache,
                                   expired.empty() ? "" : " (expired: " + expired + "; `plan --measure` re-measures)");
      } else if (!a.json) {
        fmt::print(stderr, "the cached measurement of {} has expired ({}); measuring again\n",
                   When((*cached)->measured_unix), expired);
      }
    }
  }
  if (!speed && !a.no_measure) {
    if (!a.json) fmt::print(stderr, "measuring this machine's kernels (a few seconds; cached in {})...\n", cache);
    MeasureOptions mo;
    mo.threads = a.threads;
    mo.ring_bytes = a.ring_mib << 20;
    Result<MachineSpeed> m = MeasureMachineSpeed(mo);
    if (!m.ok()) return ReportError(m.status());
    speed = std::move(*m);
    o.speed_note = fmt::format("measured now ({})", When(speed->measured_unix));
    if (Status s = SaveSpeedCache(cache, *speed); !s.ok()) fmt::print(stderr, "warning: {}\n", s.ToString());
  }
  if (speed) o.speed = &*speed;
  Result<Plan> plan = BuildPlan(o);
  if (!plan.ok()) return ReportError(plan.status());
  if (a.json) {
    fmt::print("{}\n", PlanToJson(*plan).dump(2));
  } else {
    fmt::print("{}", PlanToText(*plan));
  }
  return 0;
}

}  // namespace

void RegisterPlan(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("plan", "Which Qwen3 models fit and how fast they run here; suggested tiers");
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->add_option("--context", a->context, "Context (tokens per sequence) for the memory figures")
      ->capture_default_str()->check(CLI::Range(1u, 1u << 20));
  cmd->add_option("--parallel", a->parallel, "Sequences (KV-cache slots) per model")
      ->capture_default_str()->check(CLI::Range(1, 256));
  cmd->add_option("--memory-budget", a->memory_budget, "Budget: a size (24GiB) or a share of RAM (75%)");
  cmd->add_option("--gpu-memory-budget", a->gpu_memory_budget,
                  "GPU budget: a size (20GiB) or a share of the free device memory (default 90%)");
  cmd->add_option("--config", a->config, "qwenmux.yaml whose memory section sets the budget");
  auto* m = cmd->add_flag("--measure", a->measure, "Measure the kernels now (replaces the cached figures)");
  cmd->add_flag("--no-measure", a->no_measure, "Use cached figures only; never measure")->excludes(m);
  cmd->add_option("--threads", a->threads, "Threads for the measurement (0: all)");
  cmd->add_option("--cache-dir", a->cache_dir, "Where measurements are cached (default $XDG_CACHE_HOME/qwenmux)");
  cmd->add_option("--ring-mib", a->ring_mib, "Weights per type for the measurement (MiB)")->group("");
  cmd->callback([a, exit_code] { *exit_code = Run(*a); });
}

}  // namespace qwenmux::apps
