// The memory-aware model manager: keeps engine::Models resident under a byte budget, loads them
// on demand, unloads idle ones by least-recent use or keep-alive expiry.
//
// Contract
// - Acquire(name, keep_alive) returns a ModelLease. While any lease of a model exists the model is
//   never unloaded (not by eviction, keep-alive, or Unload()). The lease releases on destruction.
//   A lease keeps the model resident; it does not make its user the only one: engine::Model is
//   single-threaded, and serialising calls on it is the scheduler's job.
// - Loads happen outside the manager's lock: a load never blocks requests to models that are
//   already loaded. Concurrent Acquire()s of a model that is not loaded share one load (one
//   estimate, one eviction pass, one Model::Load, one warm-up); each waiter gets its outcome.
// - Memory: every loading or loaded model holds its MemoryEstimate::total() (see
//   memory_estimate.h: the peak at full context). The sum never exceeds the effective budget:
//   min(options.budget_bytes, what the OS still offers + what the manager holds), where what the
//   OS offers is MemAvailable from /proc/meminfo, capped by the cgroup's memory.max -
//   memory.current when there is a cgroup limit. (The held estimates are peaks; until a model has
//   filled its context it uses less, so "OS offer + held" may overstate the room a little.) To make room, idle (no lease), unpinned loaded
//   models are unloaded least-recently-used first, only as many bytes as needed (never by count).
// - If the model cannot fit even with every unpinned model unloaded, the load fails at once with
//   kResourceExhausted "model manager: cannot fit <name>: needs X, budget Y, in use Z by [...]".
//   If it would fit once models that are in use are released, the request WAITS for releases up
//   to options.busy_wait (0: fails at once) and then fails with the same error, which names the
//   busy models. (Do not acquire a second model while holding a lease with a long busy_wait: the
//   wait may be on your own lease.)
// - Fallbacks: when a model cannot fit (kResourceExhausted from the budget check or from the
//   engine's allocation) and its spec lists fallbacks, they are tried in order; the lease then
//   says degraded() and names both the requested and the serving model.
// - A failed load (missing or corrupt file, cannot fit, out of memory) is returned to the request
//   that started it and to every request waiting on it; the model goes back to "not loaded", and
//   the next Acquire tries again.
// - Keep-alive: a duration set per model (ModelSpec::keep_alive) and overridable per request (the
//   Acquire argument; the latest request's value wins). When the last lease is released the model
//   stays loaded for keep_alive; 0 unloads it right then; negative keeps it until evicted for
//   memory or unloaded explicitly. Expired models are unloaded by a reaper thread (Start()/Stop()),
//   or by ReapExpired() (tests with a fake clock). Pinned models are never unloaded except by Stop().
// - GPU: a second budget, apart from RAM, for device memory (ManagerOptions::gpu_budget, default
//   90% of the GPU's free memory when the manager is made). Each load picks its device from the
//   spec's load.device (runtime/device_select.h): cpu; cuda (refused when there is no usable GPU,
//   or kResourceExhausted when it cannot fit the GPU budget, waiting for busy GPU models as for
//   RAM); auto (the GPU when usable and the model's DeviceMemoryEstimate fits, evicting idle GPU
//   models least-recently-used first; else the CPU, with the reason logged and shown in
//   Snapshot().placement). A GPU model holds its device estimate against the GPU budget and, in
//   RAM, only its metadata and host-side compute buffers (its weights are not touched in RAM);
//   a CPU model holds nothing against the GPU budget. The two evictions are independent: a model
//   is evicted for RAM only when RAM is short, for the GPU only when device memory is short.
//   One GPU per manager (options.gpu_index); a spec's device_index is set to it.
// - LoRA adapters (RegisterAdapter: a name, a registered base model, a file): AcquireAdapter loads
//   one into its base's engine::Model on first use (Model::LoadAdapter) and returns an
//   AdapterLease with its engine id; while any lease of it exists it stays loaded. Its bytes
//   (LoraAdapter::bytes) are held against the RAM budget beside the models'; an idle adapter
//   (no lease, no running sequence) is evicted least-recently-used like an idle model when a
//   model or adapter needs room (even on a model that is in use or pinned); unloading a model
//   unloads its adapters. An adapter is read before its bytes are known, so a load may pass the
//   budget by its size for the moment the check takes; one that cannot fit is unloaded again
//   (kResourceExhausted, naming it). Adapters are CPU-side (the GPU budget holds none).
// - Start() loads (and warms up) every spec with preload or pinned set, then every adapter with
//   preload set (loading its base if needed); Stop() (and the destructor)
//   stops the reaper and unloads every model; leases must be gone before the manager is destroyed.
//
// Thread-safety: every public method may be called from any thread. ModelLease is move-only and
// belongs to one thread at a time; it must not outlive its manager.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "engine/engine.h"
#include "orchestrator/config/units.h"
#include "orchestrator/manager/memory_estimate.h"
#include "orchestrator/metrics/metrics.h"
#include "runtime/cuda/cuda_device.h"
#include "runtime/device_select.h"

namespace qwenmux::orchestrator {

using ManagerClock = std::chrono::steady_clock;
using KeepAlive = std::chrono::milliseconds;  // <0: forever; 0: unload after the request

constexpr KeepAlive kKeepForever{-1};

struct ModelSpec {
  std::string name;                 // the name requests use
  std::string path;                 // GGUF file
  engine::LoadOptions load;         // context, sequences, batch, threads
  KeepAlive keep_alive = std::chrono::minutes(5);
  bool pinned = false;              // loaded at Start() and never unloaded until Stop()
  bool preload = false;             // loaded at Start()
  bool warm_up = true;              // every load maps all weight pages at once (TouchWeights);
                                    // preloads at Start() also run one token (on-demand loads
                                    // skip it: the request's own first token follows at once)
  std::vector<std::string> fallbacks;  // registered model names tried in order when this cannot fit
};

// A LoRA adapter of a registered model (see the contract above).
struct AdapterSpec {
  std::string name;      // the adapter's own name (no ':'); requests say "<base>:<name>"
  std::string base;      // the registered model it applies to
  std::string path;      // GGUF adapter file or PEFT directory
  float scale = 1.0f;    // default user scale on alpha / r (a request's lora_scale replaces it)
  bool preload = false;  // loaded (with its base) at Start()
};

// A model load or unload, for the server log (ManagerOptions::on_event).
struct ModelEvent {
  std::string kind;    // "load", "load_failed", "unload"; adapters: "adapter_load", ...
  std::string name;    // adapters: "<base>:<adapter>"
  // load: "request" or "preload"; unload: "lru" (its memory went to another model),
  // "keep_alive" (idle past its keep-alive), "explicit" (Unload, keep_alive 0, shutdown)
  std::string reason;
  double seconds = 0;  // load: time to load (and warm up)
  uint64_t bytes = 0;  // memory held against the budget (the estimate)
  std::string error;   // load_failed: why
};

struct ManagerOptions {
  uint64_t budget_bytes = 0;        // 0: no byte budget of its own (the OS limit still applies)
  bool respect_system_memory = true;
  // Bytes the OS can still give (default: ReadSystemAvailableBytes()); injectable for tests.
  std::function<uint64_t()> system_available;
  KeepAlive busy_wait{0};           // how long a request waits for busy models to be released
  std::chrono::milliseconds reaper_interval{1000};  // upper bound between reaper passes
  std::function<ManagerClock::time_point()> now;    // default ManagerClock::now; fake in tests
  Metrics* metrics = nullptr;       // default Metrics::Global()
  // GPU budget: bytes, or a share of the GPU's free memory when the manager is made ("90%",
  // the default; --gpu-memory-budget, parsed by ParseMemoryAmount like --memory-budget).
  MemoryAmount gpu_budget{true, 0, 90.0};
  int gpu_index = 0;                // the GPU this manager places models on (cuda:N)
  // What the GPU offers (default runtime::QueryCudaDevice); asked once, when the manager is made.
  // Injectable: tests give a fake device with chosen capacities.
  std::function<runtime::CudaDeviceInfo(int index)> query_device;
  // Loads a model (default engine::Model::Load); options.device is kCpu or kCuda by then. Tests
  // inject a fake placement (record the device, load on the CPU).
  std::function<Result<std::unique_ptr<engine::Model>>(const std::string& path, const engine::LoadOptions& options)>
      load_model;
  // Placement decisions ("model X: auto placed on cpu: ..."); default: stderr.
  std::function<void(const std::string& line)> log;
  // Bytes held outside the models that count against the budget (the server's compiled
  // JSON-schema constraints): models get what the budget leaves, and in_use_bytes() includes
  // them. Called under the manager's lock: must not call back into the manager.
  std::function<uint64_t()> external_bytes;
  // Each load, failed load and unload; may be empty. Runs under the manager's lock, on the
  // thread that loads or unloads: it must be quick and must not call the manager.
  std::function<void(const ModelEvent&)> on_event;
};

// MemAvailable from /proc/meminfo, capped by the cgroup v2 limit (memory.max - memory.current)
// when there is one; UINT64_MAX where neither can be read.
uint64_t ReadSystemAvailableBytes();
// Parsers for the two files (exposed for tests); nullopt when the text has no usable value.
std::optional<uint64_t> ParseMemAvailable(std::string_view meminfo);
std::optional<uint64_t> ParseCgroupBytes(std::string_view text);  // "max" -> nullopt

struct LoadedAdapterInfo {
  std::string name, base, path;  // adapter name, its model, its file
  uint64_t bytes = 0;            // held against the RAM budget
  int32_t in_use = 0;            // live adapter leases
  ManagerClock::time_point last_used{};
};

struct LoadedModelInfo {
  std::string name, path;
  uint64_t bytes = 0;               // the estimate held against the (RAM) budget
  runtime::Device device = runtime::Device::kCpu;  // where it runs (once placed)
  uint64_t vram_bytes = 0;          // device-memory estimate held against the GPU budget (0 on cpu)
  std::string placement;            // why it runs there ("auto chose cuda: ...", "does not fit ...")
  bool loading = false;             // still loading (not yet usable)
  bool pinned = false;
  int32_t in_use = 0;               // live leases
  ManagerClock::time_point last_used{};
  std::optional<KeepAlive> keep_alive_left;  // nullopt: forever (or pinned); only when in_use == 0
  std::vector<LoadedAdapterInfo> adapters;   // its loaded adapters, by name (bytes not in `bytes`)
};

struct ManagerStats {
  uint64_t loads = 0, load_failures = 0, evictions = 0;
};

class ModelManager;

class ModelLease {
 public:
  ModelLease() = default;
  ModelLease(ModelLease&& o) noexcept { *this = std::move(o); }
  ModelLease& operator=(ModelLease&& o) noexcept;
  ModelLease(const ModelLease&) = delete;
  ModelLease& operator=(const ModelLease&) = delete;
  ~ModelLease() { Release(); }

  explicit operator bool() const { return model_ != nullptr; }
  engine::Model& model() const { return *model_; }
  engine::Model* operator->() const { return model_; }
  const std::string& name() const { return name_; }            // the model serving
  const std::string& requested() const { return requested_; }  // the model asked for
  bool degraded() const { return name_ != requested_; }        // a fallback serves
  // A request served under this lease (one that joined a running batch) brings its own
  // keep-alive: the latest one wins, as it would have at Acquire.
  void SetKeepAlive(KeepAlive keep_alive);
  void Release();

 private:
  friend class ModelManager;
  ModelManager* manager_ = nullptr;
  void* entry_ = nullptr;
  engine::Model* model_ = nullptr;
  std::string name_, requested_;
};

// Keeps a loaded adapter resident (see ModelManager::AcquireAdapter). Must not outlive the
// ModelLease of its base.
class AdapterLease {
 public:
  AdapterLease() = default;
  AdapterLease(AdapterLease&& o) noexcept { *this = std::move(o); }
  AdapterLease& operator=(AdapterLease&& o) noexcept;
  AdapterLease(const AdapterLease&) = delete;
  AdapterLease& operator=(const AdapterLease&) = delete;
  ~AdapterLease() { Release(); }

  explicit operator bool() const { return manager_ != nullptr; }
  int32_t id() const { return id_; }         // for engine::SequenceRequest::adapter
  float scale() const { return scale_; }     // the spec's default scale
  void Release();

 private:
  friend class ModelManager;
  ModelManager* manager_ = nullptr;
  void* adapter_ = nullptr;
  int32_t id_ = -1;
  float scale_ = 1.0f;
};

class ModelManager {
 public:
  explicit ModelManager(ManagerOptions options = {}, std::vector<ModelSpec> specs = {});
  ~ModelManager();
  ModelManager(const ModelManager&) = delete;
  ModelManager& operator=(const ModelManager&) = delete;

  // Adds (or, for a model not loaded, replaces) a spec. Errors: empty name or path, a fallback
  // naming the model itself.
  Status Register(ModelSpec spec);

  // Adds an adapter of a registered model. Errors: unknown base, an empty name or path, a name
  // with ':', a name the base already has.
  Status RegisterAdapter(AdapterSpec spec);
  // The registered adapters of `base` (every base when empty), in registration order.
  std::vector<AdapterSpec> Adapters(const std::string& base = {}) const;
  bool HasAdapter(const std::string& base, const std::string& adapter) const;
  // Leases adapter `adapter` of the lease's model, loading it into the model first if needed
  // (see the contract). Call from the thread that uses the lease's model. Errors: kNotFound
  // (no such adapter of that model; the message lists its adapters), the file's load error
  // (naming the file), kResourceExhausted (cannot fit).
  Result<AdapterLease> AcquireAdapter(const ModelLease& lease, const std::string& adapter);

  // Preloads (preload or pinned specs, in registration order) and starts the reaper thread.
  // Returns the first preload error (the others still load).
  Status Start();
  // Stops the reaper and unloads every idle model (pinned included).
  void Stop();

  // Leases model `name`, loading it if needed. keep_alive overrides the spec's for this request.
  Result<ModelLease> Acquire(const std::string& name, std::optional<KeepAlive> keep_alive = std::nullopt);

  // True when a spec of this name is registered.
  bool Has(const std::string& name) const;

  // Unloads `name` now if idle; if in use it unloads when its last lease is released.
  Status Unload(const std::string& name);

  // Unloads idle models whose keep-alive has expired (the reaper calls this); returns how many.
  size_t ReapExpired();

  std::vector<LoadedModelInfo> Snapshot() const;  // loaded and loading models, by name
  ManagerStats Stats(const std::string& name) const;
  uint64_t in_use_bytes() const;     // held by loading and loaded models, plus external_bytes
  uint64_t EffectiveBudget() const;  // min(budget, OS offer + held) now
  uint64_t gpu_in_use_bytes() const; // device estimates held by models placed on the GPU
  uint64_t gpu_budget_bytes() const { return gpu_budget_; }  // 0 without a usable GPU
  const runtime::CudaDeviceInfo& gpu() const { return gpu_; }  // as queried when the manager was made
  void PublishMemory() const;        // memory gauges to the metrics now (external bytes change alone)

 private:
  struct Entry;
  struct AdapterState;
  friend class ModelLease;
  friend class AdapterLease;

  Result<ModelLease> AcquireOne(Entry* e, const std::string& requested, std::optional<KeepAlive> keep_alive);
  Status LoadEntry(Entry* e, std::unique_lock<std::mutex>& lk, bool warm_forward);
  // Bytes of unloaded models not yet destroyed (still counted in committed_ / gpu_committed_).
  struct Freed {
    uint64_t ram = 0, gpu = 0;
  };
  enum class Pool { kRam, kGpu };
  // `load_label` names the load in errors ("" = e's model).
  Status Reserve(Entry* e, uint64_t need, Pool pool, bool may_wait, std::unique_lock<std::mutex>& lk,
                 std::vector<std::unique_ptr<engine::Model>>* victims, Freed* freed, bool* evicted_any,
                 std::string_view load_label = {});
  // Under mu_: unloads idle adapter a of loaded model e (freed->ram gets its bytes); false when
  // the engine still runs a sequence with it.
  bool DetachAdapter(Entry* e, AdapterState* a, const char* reason, Freed* freed);
  void ReleaseAdapter(AdapterState* a);
  Status PreloadAdapters();
  void Release(Entry* e);
  void SetKeepAlive(Entry* e, KeepAlive keep_alive);
  // Under mu_: unloads e (the caller destroys the model outside the lock, then subtracts *freed's
  // bytes from committed_ / gpu_committed_ with FinishFree).
  std::unique_ptr<engine::Model> Detach(Entry* e, const char* reason, Freed* freed);
  void FinishFree(const Freed& f);  // under mu_
  void Log(const std::string& line) const;
  uint64_t EffectiveBudgetLocked() const;
  uint64_t ExternalBytes() const { return options_.external_bytes ? options_.external_bytes() : 0; }
  void PublishMemoryLocked() const;
  void ReaperLoop();
  ManagerClock::time_point Now() const;

  ManagerOptions options_;
  Metrics* metrics_;
  mutable std::mutex mu_;
  std::condition_variable released_cv_;  // a lease was released or memory was freed
  std::condition_variable reaper_cv_;
  std::map<std::string, std::unique_ptr<Entry>> entries_;
  std::vector<std::string> order_;       // registration order
  uint64_t committed_ = 0;               // estimates of loading + loaded models + being freed
  uint64_t freeing_ = 0;                 // part of committed_: evicted for a load, not yet destroyed
  runtime::CudaDeviceInfo gpu_;          // queried at construction
  uint64_t gpu_budget_ = 0;              // resolved at construction (0: no usable GPU)
  uint64_t gpu_committed_ = 0;           // device estimates of loading + loaded GPU models + being freed
  uint64_t gpu_freeing_ = 0;             // part of gpu_committed_ being freed
  bool stopping_ = false;
  bool reaper_running_ = false;
  std::thread reaper_;
};

}  // namespace qwenmux::orchestrator
