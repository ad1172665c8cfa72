#include "orchestrator/store/pull.h"

#include <sys/stat.h>

#include "orchestrator/catalog/catalog.h"

namespace qwenmux::orchestrator {

Result<PullSpec> ResolvePullName(std::string_view name) {
  PullSpec spec;
  if (name.starts_with("hf:")) {
    std::string_view rest = name.substr(3);
    // hf:OWNER/REPO/PATH/IN/REPO.gguf
    size_t first = rest.find('/');
    size_t second = first == std::string_view::npos ? first : rest.find('/', first + 1);
    if (second == std::string_view::npos)
      return Error(StatusCode::kInvalidArgument, "pull: \"{}\": want hf:OWNER/REPO/FILE.gguf", name);
    spec.repo = std::string(rest.substr(0, second));
    spec.file = std::string(rest.substr(second + 1));
    QM_RETURN_IF_ERROR(CheckRepoAndFile(spec.repo, spec.file).WithContext("pull"));
    spec.store_name = std::string(name);
    spec.quantization = QuantizationFromFileName(spec.file);
    return spec;
  }
  QM_ASSIGN_OR_RETURN(const CatalogEntry* e, FindInCatalog(name));
  if (e->hf_repo.empty())
    return Error(StatusCode::kUnsupported,
                 "pull: {}: no known GGUF source for this model; pull a file with hf:OWNER/REPO/FILE "
                 "and name it with `qwenmux tag`", e->name);
  spec.store_name = e->name;
  spec.repo = e->hf_repo;
  spec.file = e->hf_file;
  spec.quantization = e->quantization;
  spec.role = ModelRoleName(e->role);
  for (const Tier& t : DefaultTiers()) {
    std::string lower(name);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower == t.name) spec.alias = t.name;
  }
  QM_RETURN_IF_ERROR(CheckRepoAndFile(spec.repo, spec.file).WithContext("pull"));
  return spec;
}

Result<PullResult> Pull(ModelStore& store, std::string_view name, const HubOptions& opt) {
  QM_ASSIGN_OR_RETURN(PullSpec spec, ResolvePullName(name));
  QM_ASSIGN_OR_RETURN(HubFileInfo info, HeadHubFile(opt, spec.repo, spec.file));
  PullResult result;
  std::string blob = store.BlobPath(info.sha256);
  struct stat st {};
  if (::stat(blob.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) == info.size) {
    result.already_present = true;  // verified when it was stored
  } else {
    // Only a file that parses as GGUF enters the store: a hub or proxy that answers with an HTML
    // error page under the model's name must not leave an entry that `serve` then trips over.
    QM_ASSIGN_OR_RETURN(result.stats, DownloadVerified(opt, info, store.PartialPath(info.sha256), blob,
                                                       CheckGgufFile));
  }
  StoredModel& m = result.model;
  m.name = spec.store_name;
  if (!spec.alias.empty()) m.aliases.push_back(spec.alias);
  m.sha256 = info.sha256;
  m.size = info.size;
  m.quantization = spec.quantization;
  m.role = spec.role;
  m.source = "hf:" + spec.repo + "/" + spec.file;
  QM_RETURN_IF_ERROR(store.Add(m));
  QM_ASSIGN_OR_RETURN(result.model, store.Find(m.name));
  return result;
}

}  // namespace qwenmux::orchestrator
