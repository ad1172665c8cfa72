// Compares the engine with a reference file (format: ../shared/testdata/README.md): per-position
// logsumexp, top ids/logits, probe logits, 16 greedy tokens; embeddings; reranker scores.
// Used by `qwenmux refcheck` and by the golden tests.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "engine/engine.h"

namespace qwenmux::engine {

struct RefCheckOptions {
  bool pair = false;  // run the sequences two at a time sharing each batch (needs n_seq >= 2)
  int32_t adapter = -1;        // every token through this LoRA adapter (Model::LoadAdapter's id)
  float adapter_scale = 1.0f;
};

struct RefCheckResult {
  double top1 = 0;          // share of positions whose argmax matches the reference's
  double probe_rms = 0;     // RMS of probe-logit differences
  double probe_max = 0;
  double lse_max = 0;       // max |logsumexp difference|
  int greedy_match = 0;     // greedy tokens matched before the first difference, summed
  int greedy_total = 0;
  int positions = 0;
  double embedding_min_cos = 1;  // over the reference's embeddings (if any)
  int embeddings = 0;
  double rerank_max_diff = 0;    // over the reference's rerank cases (if any)
  int reranks = 0;
  nlohmann::json dump;      // our own outputs in the reference format

  nlohmann::json ToJson() const;
};

Result<RefCheckResult> RunRefCheck(Model& model, const nlohmann::json& ref, const RefCheckOptions& options);

}  // namespace qwenmux::engine
