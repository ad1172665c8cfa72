#include "orchestrator/store/model_ref.h"

#include <sys/stat.h>

#include "orchestrator/catalog/catalog.h"
#include "orchestrator/store/model_store.h"

namespace qwenmux::orchestrator {

Result<std::string> ResolveModelRef(std::string_view ref, const std::string& models_dir) {
  const std::string path(ref);
  if (path.empty()) return Error(StatusCode::kInvalidArgument, "model: empty name or path");
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) return path;
  std::string why = "--models-dir";
  const std::string dir = models_dir.empty() ? DefaultModelsDir(&why) : models_dir;
  const bool in_catalog = FindInCatalog(ref).ok();
  if (CheckStoreName(ref).ok()) {
    struct stat ds {};
    if (::stat(dir.c_str(), &ds) == 0) {  // don't create a store just to look in it
      QM_ASSIGN_OR_RETURN(ModelStore store, ModelStore::Open(dir));
      auto m = store.Find(ref);
      if (!m.ok() && in_catalog) m = store.Find((*FindInCatalog(ref))->name);  // "qwen3:8b", a tier
      if (m.ok()) return store.BlobPath(m->sha256);
    }
  }
  if (in_catalog) {
    return Error(StatusCode::kNotFound,
                 "model {}: no such file, and not in the model store {} ({}); download it with `qwenmux pull {}`", ref,
                 dir, why, ref);
  }
  return Error(StatusCode::kNotFound,
               "model {}: no such file, and no model of that name in the store {} ({}; `qwenmux list` shows it)", ref,
               dir, why);
}

}  // namespace qwenmux::orchestrator
