// The model manager's LoRA adapters: registration, loading on first use into the base's
// engine::Model, leases, LRU eviction (with Reserve in model_manager.cc) and preloading. See the
// contract in model_manager.h.
#include <algorithm>

#include "base/page_memory.h"
#include "orchestrator/manager/manager_entry.h"

namespace qwenmux::orchestrator {

AdapterLease& AdapterLease::operator=(AdapterLease&& o) noexcept {
  if (this != &o) {
    Release();
    manager_ = std::exchange(o.manager_, nullptr);
    adapter_ = std::exchange(o.adapter_, nullptr);
    id_ = std::exchange(o.id_, -1);
    scale_ = o.scale_;
  }
  return *this;
}

void AdapterLease::Release() {
  if (manager_ != nullptr && adapter_ != nullptr) {
    manager_->ReleaseAdapter(static_cast<ModelManager::AdapterState*>(adapter_));
  }
  manager_ = nullptr;
  adapter_ = nullptr;
  id_ = -1;
}

Status ModelManager::RegisterAdapter(AdapterSpec spec) {
  if (spec.name.empty() || spec.path.empty()) {
    return Error(StatusCode::kInvalidArgument, "model manager: an adapter needs a name and a file (got '{}', '{}')",
                 spec.name, spec.path);
  }
  if (spec.name.find(':') != std::string::npos) {
    return Error(StatusCode::kInvalidArgument,
                 "model manager: adapter name '{}' contains ':' (requests name it '<model>:<adapter>')", spec.name);
  }
  std::lock_guard lk(mu_);
  auto it = entries_.find(spec.base);
  if (it == entries_.end()) {
    return Error(StatusCode::kNotFound, "model manager: adapter '{}' names unknown base model '{}'", spec.name,
                 spec.base);
  }
  Entry* e = it->second.get();
  if (e->adapters.count(spec.name) > 0) {
    return Error(StatusCode::kInvalidArgument, "model manager: model '{}' has two adapters named '{}'", spec.base,
                 spec.name);
  }
  e->adapter_order.push_back(spec.name);
  AdapterState st;
  st.spec = std::move(spec);
  e->adapters.emplace(st.spec.name, std::move(st));
  return Status::Ok();
}

std::vector<AdapterSpec> ModelManager::Adapters(const std::string& base) const {
  std::vector<AdapterSpec> out;
  std::lock_guard lk(mu_);
  for (const std::string& name : order_) {
    if (!base.empty() && name != base) continue;
    const Entry& e = *entries_.at(name);
    for (const std::string& an : e.adapter_order) out.push_back(e.adapters.at(an).spec);
  }
  return out;
}

bool ModelManager::HasAdapter(const std::string& base, const std::string& adapter) const {
  std::lock_guard lk(mu_);
  auto it = entries_.find(base);
  return it != entries_.end() && it->second->adapters.count(adapter) > 0;
}

bool ModelManager::DetachAdapter(Entry* e, AdapterState* a, const char* reason, Freed* freed) {
  if (a->id < 0 || !e->model) return false;
  if (!e->model->UnloadAdapter(a->id).ok()) return false;  // a sequence still runs with it
  if (options_.on_event) options_.on_event({"adapter_unload", e->spec.name + ":" + a->spec.name, reason, 0, a->bytes, ""});
  freed->ram += a->bytes;
  a->id = -1;
  a->bytes = 0;
  return true;
}

Result<AdapterLease> ModelManager::AcquireAdapter(const ModelLease& lease, const std::string& adapter) {
  if (!lease || lease.manager_ != this) {
    return Error(StatusCode::kInvalidArgument, "model manager: adapter '{}' asked for without a model lease", adapter);
  }
  Entry* e = static_cast<Entry*>(lease.entry_);
  std::unique_lock lk(mu_);
  auto it = e->adapters.find(adapter);
  if (it == e->adapters.end()) {
    std::string names;
    for (const std::string& n : e->adapter_order) names += (names.empty() ? "" : ", ") + e->spec.name + ":" + n;
    return Error(StatusCode::kNotFound, "model manager: model '{}' has no adapter '{}'; its adapters: {}", e->spec.name,
                 adapter, names.empty() ? "(none)" : names);
  }
  AdapterState* a = &it->second;
  const std::string label = e->spec.name + ":" + adapter;
  released_cv_.wait(lk, [&] { return !a->loading || stopping_; });
  if (stopping_) return Error(StatusCode::kInternal, "model manager: stopping");
  if (a->id < 0) {
    a->loading = true;
    const std::string path = a->spec.path;
    lk.unlock();
    const auto t0 = std::chrono::steady_clock::now();
    Result<int32_t> id = e->model->LoadAdapter(path);  // outside the lock: the lease keeps the model
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    lk.lock();
    a->loading = false;
    released_cv_.notify_all();
    if (!id.ok()) {
      Status failed = id.status().WithContext(fmt::format("model manager: loading adapter '{}' from {}", label, path));
      if (options_.on_event) options_.on_event({"adapter_load_failed", label, "request", 0, 0, failed.message()});
      return failed;
    }
    const runtime::LoraAdapter* loaded = e->model->adapter(*id);
    const uint64_t bytes = loaded ? loaded->bytes() : 0;
    std::vector<std::unique_ptr<engine::Model>> victims;
    Freed freed;
    bool evicted = false;
    Status room = Reserve(e, bytes, Pool::kRam, /*may_wait=*/false, lk, &victims, &freed, &evicted,
                          fmt::format("adapter {}", label));
    if (!room.ok()) {
      (void)e->model->UnloadAdapter(*id);
      if (options_.on_event) options_.on_event({"adapter_load_failed", label, "request", 0, bytes, room.message()});
      return room;
    }
    a->id = *id;
    a->bytes = bytes;
    committed_ += bytes;
    freeing_ += freed.ram;
    gpu_freeing_ += freed.gpu;
    if (!victims.empty() || freed.ram > 0) {
      lk.unlock();
      victims.clear();  // models evicted for the adapter: destroyed outside the lock
      ReturnFreeMemoryToOs();
      lk.lock();
    }
    FinishFree(freed);
    freeing_ -= freed.ram;
    gpu_freeing_ -= freed.gpu;
    if (options_.on_event) options_.on_event({"adapter_load", label, "request", seconds, bytes, ""});
    PublishMemoryLocked();
  }
  a->in_use++;
  a->last_used = Now();
  AdapterLease out;
  out.manager_ = this;
  out.adapter_ = a;
  out.id_ = a->id;
  out.scale_ = a->spec.scale;
  return out;
}

void ModelManager::ReleaseAdapter(AdapterState* a) {
  {
    std::lock_guard lk(mu_);
    a->in_use--;
    a->last_used = Now();
  }
  released_cv_.notify_all();
}

Status ModelManager::PreloadAdapters() {
  Status first;
  for (const AdapterSpec& spec : Adapters()) {
    if (!spec.preload) continue;
    Result<ModelLease> lease = Acquire(spec.base);
    Status s = lease.status();
    if (lease.ok()) s = AcquireAdapter(*lease, spec.name).status();
    if (!s.ok() && first.ok()) first = s.WithContext(fmt::format("preload of adapter '{}:{}'", spec.base, spec.name));
  }
  return first;
}

}  // namespace qwenmux::orchestrator
