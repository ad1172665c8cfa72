// From configuration to a running server's parts: turns a Config (qwenmux.yaml), the model store,
// the command line's --memory-budget and --model FILE.gguf[=ALIAS] flags into the model
// manager's options and specs and the router's candidates and policy. `qwenmux serve` calls
// BuildServeSetup once at startup and logs setup.log.
//
// What each configured model becomes:
//   path          catalog: the store's blob for the catalog name (error if not pulled: "run
//                 `qwenmux pull NAME`", naming the config line); file: the file (must open)
//   load.n_ctx    `context`, or the model's training context (40,960 for Qwen3); --model files:
//                 ModelFlagOptions::n_ctx (clipped to the training context)
//   load.n_seq    `parallel`; --model files: ModelFlagOptions::parallel
//   load.n_threads  ModelFlagOptions::threads, every model
//   keep_alive    `keep_alive` ("-1" -> forever); pinned, preload as given
//   load.device   `device:`, else --device (auto); the manager places it (model_manager.h)
//   fallbacks     the chat models of lower tiers, highest first (ties: larger first), so a model
//                 that cannot fit degrades gracefully along the tier order
//   tier          the tier named by its name or an alias ("qwen3-balanced"), else the tier whose
//                 catalog target it is (unless another model has that tier by name), else none
//                 (the router ranks it by parameter count)
//   candidate     name, aliases (config aliases, its tier, its catalog name), role, parameter
//                 count, quantization, label ("8B Q8_0"), memory estimate at its n_ctx x n_seq,
//                 and speeds from the cached `qwenmux plan --measure` figures when given
//   role          the config's `role`, else the store's, else RoleFromPooling (the one rule)
//   facts         what the server shows that the router does not need (arch, file size, ...)
// Each file's GGUF header is read once, here; the server builds its model list from the result.
// With no `models:` section and no --model flags, every model in the store is served (its store
// name and aliases, default settings); with none there either, an error unless allow_no_models.
// Budget: ResolveMemoryBudget (the one rule for serve, plan and pipeline).
//
// Thread-safety: pure functions (BuildServeSetup reads the store and the GGUF headers).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "model/config.h"
#include "orchestrator/catalog/catalog.h"
#include "orchestrator/config/config.h"
#include "orchestrator/manager/model_manager.h"
#include "orchestrator/plan/speed.h"
#include "orchestrator/router/router.h"

namespace qwenmux::orchestrator {

// How `serve` loads its --model FILE.gguf files (configured models carry their own context and
// parallelism; threads apply to every model). The one declaration of these defaults: `serve
// --help` shows them from here.
struct ModelFlagOptions {
  int32_t n_ctx = 4096;   // context tokens per sequence (clipped to the training context)
  int32_t parallel = 4;   // sequences per model that share a batch
  size_t threads = 0;     // compute threads per model (0: all)
};

struct ServeInputs {
  Config config;                          // parsed qwenmux.yaml (a default Config{} if none)
  std::string models_dir;                 // --models-dir; "" = config.models_dir, else DefaultModelsDir()
  std::string memory_budget;              // --memory-budget SIZE ("" = the config's)
  std::string gpu_memory_budget;          // --gpu-memory-budget SIZE|PCT ("" = the config's)
  runtime::DeviceChoice device = runtime::DeviceChoice::kAuto;  // --device: models without `device:`
  std::vector<std::string> extra_models;  // --model FILE.gguf[=ALIAS], in order
  std::vector<std::string> extra_adapters;  // --adapter NAME=FILE[@BASE][:SCALE], in order
  ModelFlagOptions flag_models;           // load options of the extra_models (threads: all models)
  bool allow_no_models = false;           // nothing configured or pulled: an empty setup, no error
  uint64_t total_ram = 0;                 // 0: PhysicalMemoryBytes()
  const MachineSpeed* speed = nullptr;    // cached plan figures for the candidates' speeds
};

// What the server shows of a model beyond the router's candidate, from the same header read.
struct ModelFacts {
  std::string arch;            // "qwen3", "qwen3moe"
  uint64_t file_bytes = 0;
  int64_t modified_unix = 0;   // the file's mtime
  int32_t n_ctx_train = 0;
  int32_t n_embd = 0;
  std::optional<bool> thinking;  // the config's `thinking:` (the default of chat requests that do not choose)
};

struct ServeSetup {
  ManagerOptions manager;                 // budget_bytes set; the rest default
  std::vector<ModelSpec> specs;           // in config order, then --model order
  std::vector<RouterCandidate> candidates;  // same order
  std::vector<ModelFacts> facts;          // same order
  // LoRA adapters: the config's `adapters:` (in model order), then the --adapter flags; each
  // checked at startup against its base (file readable, architecture, shapes) and its full name
  // "<base>:<name>" against every model name and alias.
  std::vector<AdapterSpec> adapters;
  RouterPolicy policy;
  std::string models_dir;
  uint64_t total_ram = 0, budget_bytes = 0;
  std::vector<std::string> log;           // one line per knob and per model (for the startup log)
};

Result<ServeSetup> BuildServeSetup(const ServeInputs& inputs);

// The memory budget, the one rule for serve, plan and pipeline: `flag` (--memory-budget: a size
// "24GiB" or a share of RAM "75%"; "" = the config's memory.budget) resolved against total_ram
// (0: PhysicalMemoryBytes()) and capped at RAM minus memory.reserve. Errors: a bad flag (named
// "--memory-budget"), a budget that leaves nothing for models.
struct MemoryBudget {
  uint64_t bytes = 0, total_ram = 0;
  std::string description;  // "24.0 GiB (75% from --memory-budget of 32.0 GiB RAM, 2.0 GiB reserved)"
};
Result<MemoryBudget> ResolveMemoryBudget(MemoryConfig memory, std::string_view flag, uint64_t total_ram = 0);

// The role of a GGUF file whose configuration does not name one: reranker for rank pooling,
// embedding for any other pooling, chat without pooling. The one rule (serve, /api/show, RAG).
ModelRole RoleFromPooling(model::PoolingType pooling);

// "FILE.gguf=ALIAS" -> (FILE.gguf, ALIAS); "FILE.gguf" -> (FILE.gguf, file stem).
Result<std::pair<std::string, std::string>> ParseModelFlag(std::string_view value);

// `--adapter NAME=FILE[@BASE][:SCALE]`: the suffix after the last ':' is the scale when it is a
// number (so a base whose name ends in ":<number>" needs the scale given too), the part after the
// last '@' the base model's name or alias; without @BASE the server's only chat model is the base.
struct AdapterFlag {
  std::string name, file, base;  // base "" = not given
  std::optional<float> scale;
};
Result<AdapterFlag> ParseAdapterFlag(std::string_view value);

// Physical RAM, capped by the cgroup's memory.max when there is one.
uint64_t PhysicalMemoryBytes();

// The router's view of the manager: free = budget - held, evictable = idle unpinned loaded models;
// queue_depth (may be empty) gives each model's queue.
RouterState MakeRouterState(std::span<const LoadedModelInfo> snapshot, uint64_t effective_budget,
                            const std::function<int(const std::string&)>& queue_depth = nullptr);

}  // namespace qwenmux::orchestrator
