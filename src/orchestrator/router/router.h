// The router: which configured model serves a request. A pure, deterministic function of the
// request's features (features.h), the candidate models and a snapshot of the server's state;
// it returns the model, a machine-readable reason code and a one-line explanation that the
// server returns with the response and logs, e.g.
//   auto -> qwen3-balanced (8B Q8_0): code markers + ~1.2k-token prompt => medium complexity;
//   qwen3-quality not loaded and would need 15.1 GiB > 9.8 GiB free
//
// `model` in a request:
//   - a candidate's name or alias (aliases include its tier, e.g. "qwen3-balanced", and its
//     catalog name): that model (reason "explicit", or "alias" for a tier name);
//   - "auto": the decision below (reason "complexity", "loaded", "latency", "memory", "queue" or
//     "no_fit");
//   - "" (none given): the policy's default model if set, else "auto";
//   - anything else: kNotFound listing the models, tiers and "auto".
//
// "auto" (candidates of the request's role only; non-chat roles take their first model):
//   1. need = the complexity level as a tier rank: simple -> 0 (fast), medium -> 1 (balanced),
//      complex -> 2 (quality), hardest -> 3 (max). A candidate's rank is its tier's, or for an
//      untiered model, from its parameter count (< 3B: 0, < 10B: 1, < 20B: 2, else 3).
//   2. latency: "low" caps the rank at 0; a time budget keeps candidates whose estimated time
//      to first token (prompt / prefill tok/s, plus loading at policy.load_bytes_per_s if not
//      loaded) is within it, or, where a candidate's speed is unknown, caps the rank at 0
//      (<= 1 s) or 1 (<= 4 s); "normal" applies policy.ttft_target_ms to candidates with known
//      speeds only; "relaxed" applies nothing. The target is min(need, cap).
//   3. memory: a candidate can serve if it is loaded (or loading), or its estimated bytes fit
//      in free + evictable bytes under the budget.
//   4. among the candidates that can serve, whose rank is in [target, cap] and that meet the
//      latency: prefer (a) a queue shallower than policy.deep_queue, (b) loaded over a switch,
//      (c) the rank closest to the target, (d) the shorter queue, (e) fewer bytes, (f) the name.
//   5. none: the highest-ranked candidate below the target that can serve and meets the
//      latency (degradation, reason "memory"); none of those either: the smallest candidate
//      (reason "no_fit"; the model manager will then report exactly why it cannot load).
//
// The four cases of the seed document's select_optimal_model(task complexity, available memory,
// latency requirement), as this router reads them (router_test.cc, SeedCases):
//   (1) a tight latency requirement          -> qwen3-fast
//   (2) a complex task with ample memory     -> qwen3-quality
//   (3) a medium task                         -> qwen3-balanced
//   (4) low memory (the wanted tier can't fit) -> the largest tier that fits, down to qwen3-fast
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "orchestrator/catalog/catalog.h"
#include "orchestrator/router/features.h"

namespace qwenmux::orchestrator {

// Tier names in rank order: qwen3-fast 0, qwen3-balanced 1, qwen3-quality 2, qwen3-max 3; -1 if
// `name` is not a tier.
int TierRank(std::string_view name);
// The rank of an untiered model from its parameter count.
int RankFromParams(uint64_t params);

struct RouterCandidate {
  std::string name;                  // what requests use; unique
  std::vector<std::string> aliases;  // other names (config aliases, its tier, catalog name)
  std::string tier;                  // "qwen3-balanced" or ""
  ModelRole role = ModelRole::kChat;
  uint64_t params = 0;               // total parameters
  std::string label;                 // "8B Q8_0" (for explanations; "" = from params/quant)
  std::string quantization;          // "Q8_0"
  uint64_t memory_bytes = 0;         // estimated footprint when loaded (memory_estimate.h)
  double decode_tok_s = 0;           // measured or estimated; 0 = unknown
  double prefill_tok_s = 0;          // 0 = unknown

  int rank() const { return tier.empty() ? RankFromParams(params) : TierRank(tier); }
};

struct RouterModelState {
  std::string name;
  bool loaded = false;     // or loading
  int queue_depth = 0;     // requests waiting or running on it
};

struct RouterState {
  std::vector<RouterModelState> models;  // models not listed are not loaded, queue 0
  uint64_t free_bytes = 0;       // budget minus what loaded/loading models hold
  uint64_t evictable_bytes = 0;  // held by idle, unpinned loaded models (can be unloaded)
};

struct RouterPolicy {
  std::string default_model;        // for requests naming no model ("" = auto)
  int64_t ttft_target_ms = 2000;    // "normal" latency, where speeds are known
  int deep_queue = 4;               // a queue this deep is avoided when another model can serve
  double load_bytes_per_s = 2e9;    // to estimate a load's share of the time to first token
};

enum class RouteReason {
  kExplicit,    // the request named the model
  kAlias,       // the request named a tier alias
  kDefault,     // no model named: the configured default
  kComplexity,  // auto: the tier the task needs
  kLoaded,      // auto: a loaded model that meets the need, instead of a switch
  kLatency,     // auto: capped by the latency asked for
  kMemory,      // auto: the wanted tier cannot fit; the largest that fits
  kQueue,       // auto: the preferred model's queue is deep; an equal one is less busy
  kNoFit,       // auto: nothing fits; the smallest model (its load will report why)
};
const char* RouteReasonName(RouteReason r);  // "explicit", "alias", ..., "no_fit"

struct RouteDecision {
  std::string model;        // the candidate's name
  std::string tier;         // its tier ("" if none)
  RouteReason reason = RouteReason::kExplicit;
  std::string explanation;  // one line, see above
  Complexity complexity = Complexity::kSimple;
  bool switch_needed = false;  // the model is not loaded
  const char* reason_code() const { return RouteReasonName(reason); }
};

// Errors: kNotFound for an unknown model name (listing what exists); kNotFound when there is
// no candidate of the request's role.
Result<RouteDecision> Route(std::string_view requested, const RequestFeatures& features,
                            std::span<const RouterCandidate> candidates, const RouterState& state,
                            const RouterPolicy& policy = {});

}  // namespace qwenmux::orchestrator
