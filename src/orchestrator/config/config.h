// qwenmux.yaml: the one configuration file (models, memory budget, router policy, pipelines).
// See examples/qwenmux.yaml for a documented example. Every error names the file, the line and
// the key path: `qwenmux.yaml:12: models[1].keep_alive: "5x" is not a duration ...`.
// Unknown keys are errors, so a typo never passes silently.
//
// Thread-safety: plain data; the loader is a pure function.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "orchestrator/catalog/catalog.h"
#include "orchestrator/config/backend_config.h"
#include "orchestrator/config/units.h"
#include "runtime/backend.h"

namespace qwenmux::orchestrator {

// Accepted ranges of the per-model numbers, shared by qwenmux.yaml (`context:`, `parallel:`) and
// the serve flags (`--ctx`, `--parallel`, server/app.h AppOptions::Validate).
inline constexpr uint32_t kMaxContextTokens = 1u << 20;  // tokens per sequence
inline constexpr uint32_t kMaxParallel = 256;             // sequences per model sharing a batch

// A LoRA adapter of a configured model (`adapters:` under the model): requests name it
// "<model>:<name>" (server/service.h has the rule); it loads on first use unless preload.
struct AdapterConfig {
  std::string name;      // letters, digits, '-', '_', '.' (no ':')
  std::string file;      // GGUF adapter file or PEFT directory
  float scale = 1.0f;    // default lora_scale (finite)
  bool preload = false;  // loaded (with its model) at startup
  int line = 0;
};

struct ModelConfig {
  std::string name;        // what requests and pipelines call it (default: the catalog name)
  std::string catalog;     // catalog name ("qwen3:8b-q8_0" or a tier), or
  std::string file;        // a GGUF path (exactly one of catalog/file)
  ModelRole role = ModelRole::kChat;
  std::vector<std::string> aliases;
  uint32_t context = 0;    // tokens per slot, [1, kMaxContextTokens]; 0: the model's own
  uint32_t parallel = 1;   // concurrent sequences (slots), [1, kMaxParallel]
  Duration keep_alive = Duration::Millis(5 * 60 * 1000);  // idle time before unload
  bool pinned = false;     // never evicted (and loaded at startup)
  bool preload = false;    // loaded at startup (may be evicted later)
  std::optional<runtime::DeviceChoice> device;  // `device: cpu|cuda|auto`; unset: the server's --device
  std::vector<AdapterConfig> adapters;          // `adapters:` (LoRA)
  // `thinking: false`: chat requests that do not choose (enable_thinking / think) answer without
  // thinking; unset: Qwen3's default (thinking on).
  std::optional<bool> thinking;
  int line = 0;            // where it was declared (for later messages)
};

struct MemoryConfig {
  // A fixed budget below this cannot hold any model (`--memory-budget 10` is 10 bytes).
  static constexpr uint64_t kMinBudgetBytes = 64ull << 20;
  MemoryAmount budget{true, 0, 75.0};     // default: 75% of RAM; a size >= kMinBudgetBytes
  uint64_t reserve = 2ull << 30;          // kept free for the system (2 GiB)
  // GPU memory for models placed on the GPU: a size or a share of the device's free memory when
  // the server starts (default 90%); `gpu_budget:` or --gpu-memory-budget.
  MemoryAmount gpu_budget{true, 0, 90.0};
  // Bytes the model manager may use on a machine with `total_ram` bytes.
  uint64_t Resolve(uint64_t total_ram) const {
    uint64_t b = budget.Resolve(total_ram);
    uint64_t cap = total_ram > reserve ? total_ram - reserve : 0;
    return b < cap ? b : cap;
  }
  // The budget is a share of RAM or at least kMinBudgetBytes.
  Status Validate() const;
};

// Router policy (a plain struct for now; the router task fills in behaviour).
struct RouterConfig {
  std::string default_model;               // a configured model name/alias or a tier
  Duration ttft_target = Duration::Millis(2000);   // time to first token the router aims for
  Duration max_queue_wait = Duration::Millis(30000);  // beyond this: a smaller model or 503
};

struct PipelineConfig {
  std::string name;                                      // "document_processing"
  std::vector<std::pair<std::string, std::string>> stages;  // stage -> model, in file order
  int line = 0;
};

struct Config {
  std::string source;      // file name the config came from ("" if built in code)
  std::string models_dir;  // "" = default (see store/model_store.h)
  std::vector<ModelConfig> models;
  MemoryConfig memory;
  RouterConfig router;
  std::vector<PipelineConfig> pipelines;
  std::vector<BackendConfig> backends;  // `backends:` (backend_config.h)

  // The configured model called `name` (its name or an alias), or nullptr.
  const ModelConfig* FindModel(std::string_view name) const;
  // `name` as "<model>:<adapter>" where <model> is a configured model (name or alias) and
  // <adapter> one of its adapters (split at the last ':'), or nullptr. A whole name that is a
  // model is never an adapter (FindModel first).
  const AdapterConfig* FindAdapter(std::string_view name) const;
};

// Parses and validates YAML text; `file_name` prefixes every error ("qwenmux.yaml:12: ...").
Result<Config> ParseConfig(std::string_view yaml_text, std::string_view file_name);
// Reads and parses a file.
Result<Config> LoadConfig(const std::string& path);

// A LoRA scale as text (`scale:` in qwenmux.yaml, serve --adapter NAME=FILE:SCALE): a finite
// number.
Result<float> ParseLoraScale(std::string_view text);

// `--gpu-memory-budget SIZE` on the command line: replaces memory.gpu_budget ("20GiB", "90%").
Status ApplyGpuMemoryBudgetFlag(Config& config, std::string_view value);

}  // namespace qwenmux::orchestrator
