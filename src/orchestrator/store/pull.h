// `qwenmux pull NAME`: resolves a catalog name, tier or "hf:REPO/FILE", downloads the GGUF
// from the hub (resumable, SHA-256 verified) and records it in the store.
//
// Thread-safety: as ModelStore (the manifest is locked); two pulls of one blob at the same time
// are not coordinated (both write the same .partial) - don't.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"
#include "orchestrator/store/hub.h"
#include "orchestrator/store/model_store.h"

namespace qwenmux::orchestrator {

struct PullSpec {
  std::string store_name;    // name in the store ("qwen3:8b-q8_0" or "hf:REPO/FILE")
  std::string alias;         // a tier name when pulled by tier, else ""
  std::string repo, file;    // on the hub
  std::string quantization;  // "Q8_0" or "" (guessed from the file name for hf:)
  std::string role;          // "chat"... ("" for hf:)
};

// Parses NAME without any network access: refuses bad repo/file names ("../x", "/etc/passwd").
Result<PullSpec> ResolvePullName(std::string_view name);

struct PullResult {
  StoredModel model;
  bool already_present = false;  // the blob was in the store; nothing downloaded
  DownloadStats stats;
};

Result<PullResult> Pull(ModelStore& store, std::string_view name, const HubOptions& opt);

}  // namespace qwenmux::orchestrator
