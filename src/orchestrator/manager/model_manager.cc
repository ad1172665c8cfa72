#include "orchestrator/manager/model_manager.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <future>
#include <limits>
#include <sstream>

#include "base/page_memory.h"
#include "orchestrator/manager/manager_entry.h"

namespace qwenmux::orchestrator {

namespace {

constexpr uint64_t kUnlimited = std::numeric_limits<uint64_t>::max();

uint64_t SatAdd(uint64_t a, uint64_t b) { return a > kUnlimited - b ? kUnlimited : a + b; }

std::string ReadSmallFile(const char* path) {
  std::ifstream in(path);
  if (!in) return {};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Destroys unloaded models (a unique_ptr or a vector of them; call outside the lock) and gives
// the freed memory back to the OS, so that eviction really lowers RSS.
template <class Holder>
void DestroyModels(Holder& models) {
  models = Holder{};
  ReturnFreeMemoryToOs();
}

}  // namespace

std::optional<uint64_t> ParseMemAvailable(std::string_view meminfo) {
  const std::string_view key = "MemAvailable:";
  const size_t at = meminfo.find(key);
  if (at == std::string_view::npos) return std::nullopt;
  size_t i = at + key.size();
  while (i < meminfo.size() && meminfo[i] == ' ') ++i;
  uint64_t kib = 0;
  const auto r = std::from_chars(meminfo.data() + i, meminfo.data() + meminfo.size(), kib);
  if (r.ec != std::errc() || r.ptr == meminfo.data() + i) return std::nullopt;
  if (kib > kUnlimited / 1024) return std::nullopt;
  return kib * 1024;
}

std::optional<uint64_t> ParseCgroupBytes(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  uint64_t v = 0;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || r.ec != std::errc() || r.ptr != text.data() + text.size()) return std::nullopt;
  return v;
}

uint64_t ReadSystemAvailableBytes() {
  uint64_t avail = kUnlimited;
  if (auto m = ParseMemAvailable(ReadSmallFile("/proc/meminfo"))) avail = *m;
  const auto limit = ParseCgroupBytes(ReadSmallFile("/sys/fs/cgroup/memory.max"));
  const auto current = ParseCgroupBytes(ReadSmallFile("/sys/fs/cgroup/memory.current"));
  if (limit && current) avail = std::min(avail, *limit > *current ? *limit - *current : 0);
  return avail;
}

// ---------------------------------------------------------------------------------------------
// ModelLease

ModelLease& ModelLease::operator=(ModelLease&& o) noexcept {
  if (this != &o) {
    Release();
    manager_ = std::exchange(o.manager_, nullptr);
    entry_ = std::exchange(o.entry_, nullptr);
    model_ = std::exchange(o.model_, nullptr);
    name_ = std::move(o.name_);
    requested_ = std::move(o.requested_);
  }
  return *this;
}

void ModelLease::SetKeepAlive(KeepAlive keep_alive) {
  if (manager_) manager_->SetKeepAlive(static_cast<ModelManager::Entry*>(entry_), keep_alive);
}

void ModelLease::Release() {
  if (manager_ != nullptr && entry_ != nullptr) {
    manager_->Release(static_cast<ModelManager::Entry*>(entry_));
  }
  manager_ = nullptr;
  entry_ = nullptr;
  model_ = nullptr;
}

// ---------------------------------------------------------------------------------------------
// ModelManager

ModelManager::ModelManager(ManagerOptions options, std::vector<ModelSpec> specs)
    : options_(std::move(options)), metrics_(options_.metrics ? options_.metrics : &Metrics::Global()) {
  gpu_ = options_.query_device ? options_.query_device(options_.gpu_index) : runtime::QueryCudaDevice(options_.gpu_index);
  gpu_budget_ = ResolveGpuBudget(options_.gpu_budget, gpu_);
  for (ModelSpec& s : specs) {
    // Invalid specs are reported by Register; here they are skipped (the constructor cannot fail).
    (void)Register(std::move(s));
  }
  std::lock_guard lk(mu_);
  PublishMemoryLocked();
}

ModelManager::~ModelManager() { Stop(); }

ManagerClock::time_point ModelManager::Now() const { return options_.now ? options_.now() : ManagerClock::now(); }

void ModelManager::Log(const std::string& line) const {
  if (options_.log) {
    options_.log(line);
  } else {
    fmt::print(stderr, "{}\n", line);
  }
}

Status ModelManager::Register(ModelSpec spec) {
  if (spec.name.empty() || spec.path.empty()) {
    return Error(StatusCode::kInvalidArgument, "model manager: a model needs a name and a path (got '{}', '{}')",
                 spec.name, spec.path);
  }
  for (const std::string& f : spec.fallbacks) {
    if (f == spec.name) {
      return Error(StatusCode::kInvalidArgument, "model manager: model '{}' lists itself as a fallback", spec.name);
    }
  }
  spec.load.device_index = options_.gpu_index;
  std::lock_guard lk(mu_);
  auto it = entries_.find(spec.name);
  if (it != entries_.end()) {
    if (it->second->state != Entry::State::kUnloaded) {
      return Error(StatusCode::kInvalidArgument, "model manager: model '{}' is loaded; unload it before replacing it",
                   spec.name);
    }
    it->second->spec = std::move(spec);
    it->second->estimate.reset();
    return Status::Ok();
  }
  auto e = std::make_unique<Entry>();
  e->keep_alive = spec.keep_alive;
  e->spec = std::move(spec);
  order_.push_back(e->spec.name);
  entries_.emplace(e->spec.name, std::move(e));
  return Status::Ok();
}

Status ModelManager::Start() {
  {
    std::lock_guard lk(mu_);
    if (reaper_running_ || stopping_) {
      return Error(StatusCode::kInvalidArgument, "model manager: Start() called twice or after Stop()");
    }
    reaper_running_ = true;
    reaper_ = std::thread([this] { ReaperLoop(); });
  }
  Status first;
  std::unique_lock lk(mu_);
  for (const std::string& name : order_) {
    Entry* e = entries_.at(name).get();
    if (!(e->spec.preload || e->spec.pinned) || e->state != Entry::State::kUnloaded) continue;
    Status s = LoadEntry(e, lk, /*warm_forward=*/true);
    if (!s.ok() && first.ok()) first = s.WithContext(fmt::format("preload of '{}'", name));
  }
  lk.unlock();
  Status a = PreloadAdapters();
  return first.ok() ? a : first;
}

void ModelManager::Stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  reaper_cv_.notify_all();
  released_cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();
  std::vector<std::unique_ptr<engine::Model>> freed;
  std::unique_lock lk(mu_);
  Freed bytes;
  for (auto& [name, e] : entries_) {
    if (e->state == Entry::State::kLoaded && e->in_use == 0 && e->waiters == 0) {
      freed.push_back(Detach(e.get(), "explicit", &bytes));
    }
  }
  lk.unlock();
  DestroyModels(freed);
  lk.lock();
  FinishFree(bytes);
  PublishMemoryLocked();
}

std::unique_ptr<engine::Model> ModelManager::Detach(Entry* e, const char* reason, Freed* freed) {
  if (options_.on_event) options_.on_event({"unload", e->spec.name, reason, 0, e->reserved, ""});
  for (auto& [an, a] : e->adapters) {  // its adapters go with the model
    if (a.id < 0) continue;
    if (options_.on_event) options_.on_event({"adapter_unload", e->spec.name + ":" + an, reason, 0, a.bytes, ""});
    freed->ram += a.bytes;
    a.id = -1;
    a.bytes = 0;
  }
  std::unique_ptr<engine::Model> m = std::move(e->model);
  freed->ram += e->reserved;
  freed->gpu += e->gpu_reserved;
  e->state = Entry::State::kUnloaded;
  e->reserved = 0;  // the caller subtracts the bytes from committed_ once `m` is destroyed
  e->gpu_reserved = 0;
  e->unload_on_release = false;
  e->stats.evictions++;
  metrics_->Evicted(e->spec.name, reason);
  metrics_->SetModelMemory(e->spec.name, 0);
  return m;
}

void ModelManager::FinishFree(const Freed& f) {
  committed_ -= f.ram;
  gpu_committed_ -= f.gpu;
}

uint64_t ModelManager::EffectiveBudgetLocked() const {
  uint64_t cap = options_.budget_bytes != 0 ? options_.budget_bytes : kUnlimited;
  if (options_.respect_system_memory) {
    const uint64_t avail = options_.system_available ? options_.system_available() : ReadSystemAvailableBytes();
    cap = std::min(cap, SatAdd(SatAdd(committed_, ExternalBytes()), avail));
  }
  return cap;
}

uint64_t ModelManager::EffectiveBudget() const {
  std::lock_guard lk(mu_);
  return EffectiveBudgetLocked();
}

uint64_t ModelManager::in_use_bytes() const {
  std::lock_guard lk(mu_);
  return SatAdd(committed_ - freeing_, ExternalBytes());
}

void ModelManager::PublishMemory() const {
  std::lock_guard lk(mu_);
  PublishMemoryLocked();
}

uint64_t ModelManager::gpu_in_use_bytes() const {
  std::lock_guard lk(mu_);
  return gpu_committed_ - gpu_freeing_;
}

void ModelManager::PublishMemoryLocked() const {
  metrics_->SetMemory(SatAdd(committed_ - freeing_, ExternalBytes()), options_.budget_bytes != 0 ? options_.budget_bytes : EffectiveBudgetLocked());
  metrics_->SetGpuMemory(gpu_committed_ - gpu_freeing_, gpu_budget_);
}

// Makes room for `need` bytes in `pool` (RAM or GPU), evicting idle unpinned models that hold
// bytes there, least recently used first. Victims (detached, to be destroyed by the caller) and
// their bytes in both pools go to *victims / *freed; bytes already in *freed count as free.
Status ModelManager::Reserve(Entry* e, uint64_t need, Pool pool, bool may_wait, std::unique_lock<std::mutex>& lk,
                             std::vector<std::unique_ptr<engine::Model>>* victims, Freed* freed, bool* evicted_any,
                             std::string_view load_label) {
  const bool gpu = pool == Pool::kGpu;
  const std::string label = load_label.empty() ? e->spec.name : std::string(load_label);
  // A model's bytes in the pool: on the RAM side with its loaded adapters.
  const auto held = [gpu](const Entry* x) {
    if (gpu) return x->gpu_reserved;
    uint64_t n = x->reserved;
    for (const auto& [an, a] : x->adapters) n += a.id >= 0 ? a.bytes : 0;
    return n;
  };
  const auto deadline = std::chrono::steady_clock::now() + (may_wait ? options_.busy_wait : KeepAlive(0));
  while (true) {
    if (stopping_) return Error(StatusCode::kInternal, "model manager: stopping");
    const uint64_t cap = gpu ? gpu_budget_ : EffectiveBudgetLocked();
    const uint64_t committed = gpu ? gpu_committed_ - freed->gpu : committed_ - freed->ram;
    const uint64_t external = gpu ? 0 : ExternalBytes();  // held outside the models (compiled constraints)
    // Eviction candidates: idle unpinned models (with their adapters) and, for RAM, idle adapters
    // of any loaded model (no lease, no running sequence), least recently used first.
    struct Candidate {
      Entry* model;
      AdapterState* adapter;  // null: the model itself
      ManagerClock::time_point last_used;
    };
    std::vector<Candidate> idle;
    uint64_t idle_bytes = 0, pinned_bytes = 0;
    for (auto& [name, x] : entries_) {
      if (x->state != Entry::State::kLoaded) continue;
      const bool model_idle = x.get() != e && !x->spec.pinned && x->in_use == 0 && x->waiters == 0 && held(x.get()) > 0;
      if (!gpu) {
        for (auto& [an, a] : x->adapters) {
          if (a.id < 0 || a.in_use > 0 || a.loading || x->model->adapter_users(a.id) > 0) continue;
          idle.push_back({x.get(), &a, a.last_used});
          if (!model_idle) idle_bytes += a.bytes;  // an idle model's adapters count with it
        }
      }
      if (x.get() == e || held(x.get()) == 0) continue;
      if (x->spec.pinned) {
        pinned_bytes += gpu ? x->gpu_reserved : x->reserved;
      } else if (model_idle) {
        idle.push_back({x.get(), nullptr, x->last_used});
        idle_bytes += held(x.get());
      }
    }
    if (SatAdd(SatAdd(committed, external), need) <= SatAdd(cap, idle_bytes)) {
      std::stable_sort(idle.begin(), idle.end(),
                       [](const Candidate& a, const Candidate& b) { return a.last_used < b.last_used; });
      uint64_t freed_here = 0;
      for (const Candidate& c : idle) {
        if (SatAdd(SatAdd(committed - freed_here, external), need) <= cap) break;
        if (c.model->state != Entry::State::kLoaded) continue;  // went with its model already
        if (c.adapter != nullptr) {
          if (c.adapter->id < 0) continue;
          const uint64_t b = c.adapter->bytes;
          if (DetachAdapter(c.model, c.adapter, "lru", freed)) freed_here += b;
        } else {
          freed_here += held(c.model);
          victims->push_back(Detach(c.model, "lru", freed));
        }
        *evicted_any = true;
      }
      // committed_ keeps the victims' bytes until the caller has destroyed them.
      return Status::Ok();
    }
    // Would fit once busy models are released: wait (bounded).
    const bool could_fit_later = SatAdd(SatAdd(need, pinned_bytes), external) <= cap;
    if (could_fit_later && std::chrono::steady_clock::now() < deadline) {
      released_cv_.wait_until(lk, deadline);
      continue;
    }
    std::string holders;
    for (auto& [name, x] : entries_) {
      if (x.get() == e || held(x.get()) == 0) continue;
      const char* what = x->spec.pinned ? "pinned" : x->state == Entry::State::kLoading ? "loading"
                         : (x->in_use > 0 || x->waiters > 0) ? "in use" : "idle";
      holders += fmt::format("{}{} ({}, {})", holders.empty() ? "" : ", ", name, FormatBytes(held(x.get())), what);
    }
    if (gpu) {
      return Error(StatusCode::kResourceExhausted,
                   "model manager: cannot fit {} on the GPU: needs {} of device memory, GPU budget {} ({}), in use {} by [{}]{}",
                   label, FormatBytes(need), FormatBytes(cap), DescribeCudaDevice(gpu_), FormatBytes(committed),
                   holders, could_fit_later ? " (fits once models in use are released)" : "");
    }
    if (external > 0) holders += fmt::format("{}compiled constraints ({})", holders.empty() ? "" : ", ", FormatBytes(external));
    const uint64_t budget = options_.budget_bytes != 0 ? options_.budget_bytes : cap;
    return Error(StatusCode::kResourceExhausted,
                 "model manager: cannot fit {}: needs {}, budget {}{}, in use {} by [{}]{}", label,
                 FormatBytes(need), FormatBytes(budget), cap < budget ? fmt::format(" (the OS offers {})", FormatBytes(cap)) : "",
                 FormatBytes(SatAdd(committed, external)), holders,
                 could_fit_later ? " (fits once models in use are released)" : "");
  }
}

Status ModelManager::LoadEntry(Entry* e, std::unique_lock<std::mutex>& lk, bool warm_forward) {
  std::promise<Status> promise;
  e->load = promise.get_future().share();
  e->state = Entry::State::kLoading;
  ModelSpec spec = e->spec;
  const std::optional<ModelEstimates> cached = e->estimate;
  auto finish = [&](Status s) {  // under lk
    e->load = {};
    promise.set_value(s);
    released_cv_.notify_all();
    return s;
  };
  auto fail = [&](Status s) {  // under lk
    e->state = Entry::State::kUnloaded;
    committed_ -= e->reserved;
    gpu_committed_ -= e->gpu_reserved;
    e->reserved = 0;
    e->gpu_reserved = 0;
    e->stats.load_failures++;
    metrics_->LoadFailed(spec.name);
    PublishMemoryLocked();
    Status failed = s.WithContext(fmt::format("model manager: loading '{}'", spec.name));
    if (options_.on_event)
      options_.on_event({"load_failed", spec.name, warm_forward ? "preload" : "request", 0, 0, failed.message()});
    return finish(failed);
  };

  lk.unlock();
  Result<ModelEstimates> est = cached ? Result<ModelEstimates>(*cached) : EstimateModelMemories(spec.path, spec.load);
  lk.lock();
  if (!est.ok()) return fail(est.status());
  e->estimate = *est;

  // Device: the spec's choice against the GPU this manager saw; then the GPU budget.
  Result<runtime::DeviceSelection> sel = runtime::SelectDevice(spec.load.device, gpu_);
  if (!sel.ok()) return fail(sel.status().WithContext(fmt::format("model '{}'", spec.name)));
  std::vector<std::unique_ptr<engine::Model>> victims;
  bool evicted = false;
  Freed victim_bytes;
  uint64_t gpu_need = 0;
  std::string placement = sel->why;
  if (sel->device == runtime::Device::kCuda) {
    const bool must = spec.load.device == runtime::DeviceChoice::kCuda;
    Status g = Reserve(e, est->device.total(), Pool::kGpu, /*may_wait=*/must, lk, &victims, &victim_bytes, &evicted);
    if (g.ok()) {
      gpu_need = est->device.total();
    } else if (must) {
      e->state = Entry::State::kUnloaded;
      e->stats.load_failures++;
      metrics_->LoadFailed(spec.name);
      return finish(g);
    } else {
      sel->device = runtime::Device::kCpu;
      placement = "auto chose cpu: " + g.message();
      Log(fmt::format("model manager: {}: {}", spec.name, placement));
    }
  }
  if (sel->device == runtime::Device::kCuda && spec.load.device == runtime::DeviceChoice::kAuto) {
    Log(fmt::format("model manager: {}: {}; device memory {}", spec.name, placement, est->device.ToString()));
  }
  // RAM: the whole estimate on the CPU; on the GPU only the metadata and host-side buffers.
  const uint64_t need = gpu_need > 0 ? est->ram.metadata + est->ram.compute : est->ram.total();
  e->gpu_reserved = gpu_need;
  gpu_committed_ += gpu_need;
  Status reserved = Reserve(e, need, Pool::kRam, /*may_wait=*/true, lk, &victims, &victim_bytes, &evicted);
  if (!reserved.ok()) {
    // Victims of the GPU pass are detached already: destroy them before failing.
    freeing_ += victim_bytes.ram;
    gpu_freeing_ += victim_bytes.gpu;
    lk.unlock();
    DestroyModels(victims);
    lk.lock();
    FinishFree(victim_bytes);
    freeing_ -= victim_bytes.ram;
    gpu_freeing_ -= victim_bytes.gpu;
    gpu_committed_ -= e->gpu_reserved;
    e->gpu_reserved = 0;
    e->state = Entry::State::kUnloaded;
    e->stats.load_failures++;
    metrics_->LoadFailed(spec.name);
    PublishMemoryLocked();
    if (options_.on_event)
      options_.on_event({"load_failed", spec.name, warm_forward ? "preload" : "request", 0, need, reserved.message()});
    return finish(reserved);
  }
  e->reserved = need;
  committed_ += need;             // still counts the victims until they are destroyed below,
  freeing_ += victim_bytes.ram;   // as bytes on their way out (not "in use")
  gpu_freeing_ += victim_bytes.gpu;
  PublishMemoryLocked();
  lk.unlock();

  const auto t0 = std::chrono::steady_clock::now();
  if (!victims.empty()) {
    DestroyModels(victims);  // unload outside the lock
    lk.lock();
    FinishFree(victim_bytes);
    freeing_ -= victim_bytes.ram;
    gpu_freeing_ -= victim_bytes.gpu;
    PublishMemoryLocked();
    lk.unlock();
    released_cv_.notify_all();
  }

  const auto t_load = std::chrono::steady_clock::now();
  spec.load.device = sel->device == runtime::Device::kCuda ? runtime::DeviceChoice::kCuda : runtime::DeviceChoice::kCpu;
  Result<std::unique_ptr<engine::Model>> model =
      options_.load_model ? options_.load_model(spec.path, spec.load) : engine::Model::Load(spec.path, spec.load);
  // Warm-up: map every weight page in one go (cheaper than the first forward faulting them in
  // one by one; a GPU model reads its weights once, for the upload); preloads also run one token.
  ReturnFreeMemoryToOs();  // what parsing the file left behind (vocabulary strings and such)
  if (model.ok() && spec.warm_up && gpu_need == 0) (void)TouchWeights((*model)->file());
  if (model.ok() && spec.warm_up && warm_forward) {
    std::vector<float> logits;
    const int32_t token = 0;
    Status s = (*model)->Prefill(0, std::span<const int32_t>(&token, 1), &logits);
    (*model)->ResetSequence(0);
    if (!s.ok()) model = s.WithContext("warm-up");
  }
  const double load_s = SecondsSince(t_load), switch_s = SecondsSince(t0);
  lk.lock();
  if (!model.ok()) return fail(model.status());
  e->model = std::move(model).value();
  e->state = Entry::State::kLoaded;
  e->device = sel->device;
  if (gpu_need > 0 && e->model->backend().device() == runtime::Device::kCuda) {
    // On the GPU for real: account what the backend allocated there (weights, KV cache,
    // scratch) instead of the estimate. An injected loader that keeps the model on the CPU
    // (tests) leaves the estimate in place.
    const uint64_t real = e->model->backend().memory().device_bytes;
    if (real > 0 && real != gpu_need) {
      gpu_committed_ = gpu_committed_ - gpu_need + real;
      e->gpu_reserved = real;
      gpu_need = real;
    }
  }
  e->placement = placement;
  e->stats.loads++;
  e->last_used = Now();
  e->keep_alive = spec.keep_alive;
  e->expires = spec.keep_alive.count() < 0 ? ManagerClock::time_point::max() : e->last_used + spec.keep_alive;
  metrics_->ObserveLoad(spec.name, load_s);
  if (options_.on_event) options_.on_event({"load", spec.name, warm_forward ? "preload" : "request", load_s, need, ""});
  if (evicted) metrics_->ObserveSwitch(spec.name, switch_s);
  metrics_->SetModelMemory(spec.name, need + gpu_need);
  PublishMemoryLocked();
  reaper_cv_.notify_all();
  return finish(Status::Ok());
}

Result<ModelLease> ModelManager::AcquireOne(Entry* e, const std::string& requested, std::optional<KeepAlive> keep_alive) {
  std::unique_lock lk(mu_);
  while (true) {
    if (stopping_) return Error(StatusCode::kInternal, "model manager: stopped");
    switch (e->state) {
      case Entry::State::kLoaded: {
        e->in_use++;
        e->last_used = Now();
        e->keep_alive = keep_alive.value_or(e->spec.keep_alive);
        ModelLease lease;
        lease.manager_ = this;
        lease.entry_ = e;
        lease.model_ = e->model.get();
        lease.name_ = e->spec.name;
        lease.requested_ = requested;
        return lease;
      }
      case Entry::State::kLoading: {
        std::shared_future<Status> f = e->load;
        e->waiters++;
        lk.unlock();
        Status s = f.get();
        lk.lock();
        e->waiters--;
        if (!s.ok()) return s;
        continue;
      }
      case Entry::State::kUnloaded: {
        // The waiters count also protects the freshly loaded model from eviction before this
        // request takes its lease (another loader could otherwise pick it as idle).
        e->waiters++;
        Status s = LoadEntry(e, lk, /*warm_forward=*/false);  // the request's own forward follows
        e->waiters--;
        if (!s.ok()) return s;
        continue;
      }
    }
  }
}

Result<ModelLease> ModelManager::Acquire(const std::string& name, std::optional<KeepAlive> keep_alive) {
  Entry* e = nullptr;
  std::vector<Entry*> fallbacks;
  {
    std::lock_guard lk(mu_);
    auto it = entries_.find(name);
    if (it == entries_.end()) return Error(StatusCode::kNotFound, "model manager: unknown model '{}'", name);
    e = it->second.get();
    for (const std::string& f : e->spec.fallbacks) {
      auto fit = entries_.find(f);
      if (fit != entries_.end()) fallbacks.push_back(fit->second.get());
    }
  }
  Result<ModelLease> r = AcquireOne(e, name, keep_alive);
  if (r.ok() || r.status().code() != StatusCode::kResourceExhausted || fallbacks.empty()) return r;
  std::string tried;
  for (Entry* f : fallbacks) {
    Result<ModelLease> fr = AcquireOne(f, name, keep_alive);
    if (fr.ok()) return fr;
    tried += fmt::format("; fallback '{}': {}", f->spec.name, fr.status().message());
  }
  return Status(r.status().code(), r.status().message() + tried);
}

void ModelManager::SetKeepAlive(Entry* e, KeepAlive keep_alive) {
  std::lock_guard lk(mu_);
  e->keep_alive = keep_alive;
}

void ModelManager::Release(Entry* e) {
  std::unique_ptr<engine::Model> victim;
  std::unique_lock lk(mu_);
  e->in_use--;
  e->last_used = Now();
  if (e->in_use == 0 && e->waiters == 0 && !e->spec.pinned &&
      (e->unload_on_release || e->keep_alive.count() == 0)) {
    Freed bytes;
    victim = Detach(e, e->unload_on_release ? "explicit" : "keep_alive", &bytes);
    lk.unlock();
    DestroyModels(victim);
    lk.lock();
    FinishFree(bytes);
    PublishMemoryLocked();
  } else if (e->in_use == 0) {
    e->expires = e->keep_alive.count() < 0 ? ManagerClock::time_point::max() : e->last_used + e->keep_alive;
  }
  lk.unlock();
  released_cv_.notify_all();
  reaper_cv_.notify_all();
}

bool ModelManager::Has(const std::string& name) const {
  std::lock_guard lk(mu_);
  return entries_.count(name) > 0;
}

Status ModelManager::Unload(const std::string& name) {
  std::unique_lock lk(mu_);
  auto it = entries_.find(name);
  if (it == entries_.end()) return Error(StatusCode::kNotFound, "model manager: unknown model '{}'", name);
  Entry* e = it->second.get();
  if (e->state != Entry::State::kLoaded) return Status::Ok();
  if (e->in_use > 0 || e->waiters > 0) {
    e->unload_on_release = true;
    return Status::Ok();
  }
  Freed bytes;
  std::unique_ptr<engine::Model> victim = Detach(e, "explicit", &bytes);
  lk.unlock();
  DestroyModels(victim);
  lk.lock();
  FinishFree(bytes);
  PublishMemoryLocked();
  lk.unlock();
  released_cv_.notify_all();
  return Status::Ok();
}

size_t ModelManager::ReapExpired() {
  std::vector<std::unique_ptr<engine::Model>> victims;
  Freed bytes;
  std::unique_lock lk(mu_);
  const auto now = Now();
  for (auto& [name, e] : entries_) {
    if (e->state == Entry::State::kLoaded && e->in_use == 0 && e->waiters == 0 && !e->spec.pinned &&
        e->expires <= now) {
      victims.push_back(Detach(e.get(), "keep_alive", &bytes));
    }
  }
  if (victims.empty()) return 0;
  lk.unlock();
  const size_t n = victims.size();
  DestroyModels(victims);
  lk.lock();
  FinishFree(bytes);
  PublishMemoryLocked();
  lk.unlock();
  released_cv_.notify_all();
  return n;
}

void ModelManager::ReaperLoop() {
  std::unique_lock lk(mu_);
  while (!stopping_) {
    lk.unlock();
    ReapExpired();
    lk.lock();
    if (stopping_) break;
    // Sleep until the earliest expiry (by the manager's clock), at most reaper_interval.
    auto wait = std::chrono::duration_cast<std::chrono::steady_clock::duration>(options_.reaper_interval);
    const auto now = Now();
    for (auto& [name, e] : entries_) {
      if (e->state != Entry::State::kLoaded || e->in_use > 0 || e->spec.pinned) continue;
      if (e->expires == ManagerClock::time_point::max()) continue;
      wait = std::min<std::chrono::steady_clock::duration>(wait, std::max(e->expires - now, ManagerClock::duration::zero()) +
                                                                     std::chrono::milliseconds(1));
    }
    reaper_cv_.wait_for(lk, wait);
  }
}

std::vector<LoadedModelInfo> ModelManager::Snapshot() const {
  std::vector<LoadedModelInfo> out;
  std::lock_guard lk(mu_);
  const auto now = Now();
  for (const auto& [name, e] : entries_) {
    if (e->state == Entry::State::kUnloaded) continue;
    LoadedModelInfo i;
    i.name = name;
    i.path = e->spec.path;
    i.bytes = e->reserved;
    i.vram_bytes = e->gpu_reserved;
    i.device = e->device;
    i.placement = e->placement;
    i.loading = e->state == Entry::State::kLoading;
    i.pinned = e->spec.pinned;
    i.in_use = e->in_use;
    i.last_used = e->last_used;
    if (!i.loading && !i.pinned && e->expires != ManagerClock::time_point::max()) {
      if (e->in_use > 0) {
        i.keep_alive_left = e->keep_alive;
      } else {
        i.keep_alive_left = std::max(KeepAlive(0), std::chrono::duration_cast<KeepAlive>(e->expires - now));
      }
    }
    if (e->in_use > 0 && e->keep_alive.count() < 0) i.keep_alive_left.reset();
    for (const std::string& an : e->adapter_order) {
      const AdapterState& a = e->adapters.at(an);
      if (a.id >= 0) i.adapters.push_back({an, name, a.spec.path, a.bytes, a.in_use, a.last_used});
    }
    out.push_back(std::move(i));
  }
  return out;
}

ManagerStats ModelManager::Stats(const std::string& name) const {
  std::lock_guard lk(mu_);
  auto it = entries_.find(name);
  return it == entries_.end() ? ManagerStats{} : it->second->stats;
}

}  // namespace qwenmux::orchestrator
