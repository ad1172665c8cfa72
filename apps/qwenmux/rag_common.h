// Flags and helpers shared by the RAG commands (ingest, collection, ask, eval).
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "engine/engine.h"
#include "engine_flags.h"
#include "orchestrator/config/config.h"
#include "orchestrator/store/model_ref.h"
#include "orchestrator/store/model_store.h"
#include "rag/model_set.h"
#include "rag/models.h"
#include "rag/store.h"

namespace qwenmux::apps {

// $QWENMUX_HOME/rag, else ~/.qwenmux/rag (rag/model_set.h).
inline std::string DefaultRagStoreDir() { return rag::DefaultRagStoreDir(); }

struct RagCommon {
  std::string store_dir;
  std::string config_path;  // qwenmux.yaml (stage -> model assignments)
  std::string models_dir;
  int32_t threads = 0;
  runtime::DeviceChoice device = runtime::DeviceChoice::kAuto;  // --device
  int device_index = 0;

  void AddStoreFlag(CLI::App* cmd) {
    cmd->add_option("--store", store_dir, "Document store directory (default: $QWENMUX_HOME/rag or ~/.qwenmux/rag)");
  }
  void AddModelFlags(CLI::App* cmd) {
    cmd->add_option("--config", config_path, "qwenmux.yaml with a `rag:` pipeline (stage -> model)");
    cmd->add_option("--models-dir", models_dir, "Model store for catalog names (default: ~/.qwenmux/models)");
    cmd->add_option("-t,--threads", threads, "Worker threads (0: all cores)")->capture_default_str();
    AddDeviceFlags(cmd, &device, &device_index);
  }
  // Resolves --device for a model this command loads itself (see ResolveLoadDevice).
  Status ApplyDevice(engine::LoadOptions* o) const {
    o->device = device;
    o->device_index = device_index;
    return ResolveLoadDevice(o);
  }
  std::string StoreDir() const { return store_dir.empty() ? rag::DefaultRagStoreDir() : store_dir; }

  // stage -> GGUF path, from flags (overrides), the config and the model store.
  // A model `backend` owns ("NAME/MODEL", issue 18) stays as it is: the stage runs on the backend.
  Result<std::map<std::string, std::string>> Models(const std::map<std::string, std::string>& overrides,
                                                    const std::vector<std::string>& needed,
                                                    const rag::BackendAccess& backend = {}) const {
    std::unique_ptr<orchestrator::Config> cfg;
    if (!config_path.empty()) {
      QM_ASSIGN_OR_RETURN(orchestrator::Config c, orchestrator::LoadConfig(config_path));
      cfg = std::make_unique<orchestrator::Config>(std::move(c));
    }
    std::string dir = models_dir;
    if (dir.empty()) dir = cfg && !cfg->models_dir.empty() ? cfg->models_dir : orchestrator::DefaultModelsDir();
    // A flag's model is a path or a store name, as for every command (ResolveModelRef).
    std::map<std::string, std::string> files = overrides;
    for (auto& [stage, ref] : files) {
      if (ref.empty() || backend.Owns(ref)) continue;
      QM_ASSIGN_OR_RETURN(ref, orchestrator::ResolveModelRef(ref, dir));
    }
    return rag::ResolveRagModels(cfg.get(), dir, files, needed);
  }
};

// With no --embed-model (*embed_model empty): the file `collection` was ingested with, recorded by
// ingest, if it is still readable (else a warning, and the configured/default model is used).
inline Status UseRecordedEmbedModel(rag::Store& store, const std::string& collection, std::string* embed_model) {
  if (!embed_model->empty()) return Status::Ok();
  QM_ASSIGN_OR_RETURN(rag::CollectionInfo info, store.GetCollection(collection));
  QM_ASSIGN_OR_RETURN(std::string recorded, store.EmbedFile(info));
  if (recorded.empty()) return Status::Ok();
  if (access(recorded.c_str(), R_OK) == 0) {
    *embed_model = recorded;
  } else {
    fmt::print(stderr, "warning: collection {} was ingested with {}, which is gone; using the configured model\n",
               collection, recorded);
  }
  return Status::Ok();
}

// Loads each distinct path once (a file may serve several stages), with the largest context,
// sequence count and batch any of its uses asked for (Want), on first Get.
class ModelPool {
 public:
  ModelPool() = default;
  explicit ModelPool(const RagCommon* common) : common_(common) {}  // applies its --device

  void Want(const std::string& path, const engine::LoadOptions& o) {
    auto [it, fresh] = wants_.try_emplace(path, o);
    if (fresh) return;
    engine::LoadOptions& w = it->second;
    w.n_ctx = std::max(w.n_ctx, o.n_ctx);
    w.n_seq = std::max(w.n_seq, o.n_seq);
    w.n_batch = std::max(w.n_batch, o.n_batch);
  }
  Result<engine::Model*> Get(const std::string& path) {
    auto it = models_.find(path);
    if (it != models_.end()) return it->second.get();
    auto w = wants_.find(path);
    engine::LoadOptions o = w == wants_.end() ? engine::LoadOptions{} : w->second;
    if (common_ != nullptr) QM_RETURN_IF_ERROR(common_->ApplyDevice(&o));
    QM_ASSIGN_OR_RETURN(auto m, engine::Model::Load(path, o));
    engine::Model* raw = m.get();
    models_[path] = std::move(m);
    return raw;
  }

 private:
  const RagCommon* common_ = nullptr;
  std::map<std::string, engine::LoadOptions> wants_;
  std::map<std::string, std::unique_ptr<engine::Model>> models_;
};

// CLI11 check of a collection name (rag::ValidateCollectionName), so a bad one is refused before
// any model or store is opened.
inline CLI::Validator CollectionName() {
  return CLI::Validator(
      [](std::string& name) {
        Status s = rag::ValidateCollectionName(name);
        return s.ok() ? std::string() : s.message();
      },
      "NAME");
}

}  // namespace qwenmux::apps
