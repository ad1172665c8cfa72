#include "orchestrator/router/router.h"

#include <algorithm>
#include <cctype>
#include <tuple>

#include <fmt/format.h>

#include "base/ascii.h"
#include "orchestrator/config/units.h"

namespace qwenmux::orchestrator {

namespace {

constexpr const char* kTierNames[] = {"qwen3-fast", "qwen3-balanced", "qwen3-quality", "qwen3-max"};
constexpr int kMaxRank = 3;

std::string FormatParams(uint64_t p) {
  if (p >= 1'000'000'000) return fmt::format("{:.1f}B", static_cast<double>(p) / 1e9);
  return fmt::format("{}M", (p + 500'000) / 1'000'000);
}

std::string Label(const RouterCandidate& c) {
  if (!c.label.empty()) return c.label;
  std::string s = c.params ? FormatParams(c.params) : "";
  if (!c.quantization.empty()) s += (s.empty() ? "" : " ") + c.quantization;
  return s;
}

std::string NameWithLabel(const RouterCandidate& c) {
  std::string l = Label(c);
  return l.empty() ? c.name : fmt::format("{} ({})", c.name, l);
}

// One candidate as the decision sees it.
struct View {
  const RouterCandidate* c = nullptr;
  int rank = 0;
  bool loaded = false;
  int queue = 0;
  bool can_serve = false;   // loaded, or fits in free + evictable
  bool fits_free = false;   // fits without evicting anything
  bool latency_ok = true;
  double ttft_ms = -1;      // estimate; -1 unknown
};

bool Deep(const View& v, const RouterPolicy& p) { return p.deep_queue > 0 && v.queue >= p.deep_queue; }

// Ordering of step 4 (see router.h); `use_queue` false ranks as if every queue were empty.
auto Key(const View& v, int target, const RouterPolicy& p, bool use_queue) {
  return std::make_tuple(use_queue && Deep(v, p) ? 1 : 0, v.loaded ? 0 : 1, v.rank - target,
                         use_queue ? v.queue : 0, v.c->memory_bytes, v.c->name);
}

std::string MemoryClause(const View& v, const RouterState& s) {
  const uint64_t room = s.free_bytes + s.evictable_bytes;
  if (v.loaded) return fmt::format("{} loaded", v.c->name);
  if (v.fits_free)
    return fmt::format("{} not loaded; needs {} of {} free", v.c->name, FormatSize(v.c->memory_bytes),
                       FormatSize(s.free_bytes));
  if (v.can_serve)
    return fmt::format("{} not loaded; needs {}: {} free, evicting idle models for the rest", v.c->name,
                       FormatSize(v.c->memory_bytes), FormatSize(s.free_bytes));
  return fmt::format("{} not loaded and would need {} > {} free{}", v.c->name, FormatSize(v.c->memory_bytes),
                     FormatSize(room), s.evictable_bytes ? " (with idle models evicted)" : "");
}

std::string LatencyText(const RequestFeatures& f, const RouterPolicy& p) {
  switch (f.latency.cls) {
    case LatencyClass::kLow: return "latency low";
    case LatencyClass::kBudget: return fmt::format("latency budget {} ms", f.latency.budget_ms);
    case LatencyClass::kNormal: return fmt::format("TTFT target {} ms", p.ttft_target_ms);
    case LatencyClass::kRelaxed: return "latency relaxed";
  }
  return "";
}

const RouterCandidate* FindByName(std::span<const RouterCandidate> cands, std::string_view name, bool* via_alias) {
  for (const RouterCandidate& c : cands)
    if (c.name == name) {
      *via_alias = false;
      return &c;
    }
  std::string l = AsciiLower(name);
  for (const RouterCandidate& c : cands) {
    for (const std::string& a : c.aliases)
      if (a == name || AsciiLower(a) == l) {
        *via_alias = TierRank(a) >= 0;
        return &c;
      }
  }
  // A tier alias that no candidate carries: the candidate whose tier it is.
  for (const RouterCandidate& c : cands)
    if (!c.tier.empty() && AsciiLower(c.tier) == l) {
      *via_alias = true;
      return &c;
    }
  return nullptr;
}

Status NotFound(std::string_view requested, std::span<const RouterCandidate> cands) {
  std::string names, tiers;
  for (const RouterCandidate& c : cands) {
    names += (names.empty() ? "" : ", ") + c.name;
    if (!c.tier.empty() && c.tier != c.name) tiers += (tiers.empty() ? "" : ", ") + c.tier;
  }
  return Error(StatusCode::kNotFound, "router: no model \"{}\" (models: {}{}; or \"auto\")", requested,
               names.empty() ? "none configured" : names, tiers.empty() ? "" : "; tiers: " + tiers);
}

RouteDecision Direct(const RouterCandidate& c, RouteReason reason, std::string_view requested,
                     const RequestFeatures& f, const RouterState& s) {
  RouteDecision d;
  d.model = c.name;
  d.tier = c.tier;
  d.reason = reason;
  d.complexity = f.complexity;
  bool loaded = false;
  for (const RouterModelState& m : s.models)
    if (m.name == c.name) loaded = m.loaded;
  d.switch_needed = !loaded;
  const char* why = reason == RouteReason::kExplicit ? "requested by name"
                    : reason == RouteReason::kAlias  ? "tier alias"
                                                     : "no model in the request: the router's default";
  d.explanation = fmt::format("{} -> {}: {}{}", requested.empty() ? "(none)" : requested, NameWithLabel(c),
                              why, loaded ? "" : " (not loaded)");
  return d;
}

Result<RouteDecision> Auto(const RequestFeatures& f, std::span<const RouterCandidate> cands,
                           const RouterState& s, const RouterPolicy& p) {
  std::vector<View> views;
  for (const RouterCandidate& c : cands) {
    if (c.role != f.role) continue;
    View v;
    v.c = &c;
    v.rank = std::clamp(c.rank(), 0, kMaxRank);
    for (const RouterModelState& m : s.models)
      if (m.name == c.name) {
        v.loaded = m.loaded;
        v.queue = std::max(0, m.queue_depth);
      }
    v.fits_free = v.loaded || c.memory_bytes <= s.free_bytes;
    v.can_serve = v.fits_free || c.memory_bytes <= s.free_bytes + s.evictable_bytes;
    if (c.prefill_tok_s > 0) {
      v.ttft_ms = 1000.0 * static_cast<double>(f.prompt_tokens) / c.prefill_tok_s;
      if (!v.loaded && p.load_bytes_per_s > 0) v.ttft_ms += 1000.0 * static_cast<double>(c.memory_bytes) / p.load_bytes_per_s;
    }
    switch (f.latency.cls) {
      case LatencyClass::kLow: v.latency_ok = v.rank == 0; break;
      case LatencyClass::kBudget:
        if (v.ttft_ms >= 0) v.latency_ok = v.ttft_ms <= static_cast<double>(f.latency.budget_ms);
        else v.latency_ok = v.rank <= (f.latency.budget_ms <= 1000 ? 0 : f.latency.budget_ms <= 4000 ? 1 : kMaxRank);
        break;
      case LatencyClass::kNormal:
        v.latency_ok = v.ttft_ms < 0 || v.ttft_ms <= static_cast<double>(p.ttft_target_ms);
        break;
      case LatencyClass::kRelaxed: v.latency_ok = true; break;
    }
    views.push_back(v);
  }
  if (views.empty()) {
    return Error(StatusCode::kNotFound, "router: no {} model is configured", ModelRoleName(f.role));
  }

  RouteDecision d;
  d.complexity = f.complexity;
  std::string head = fmt::format("{} => {} complexity", f.summary, ComplexityName(f.complexity));
  if (f.classified && *f.classified != f.rule_complexity)
    head = fmt::format("{} => {} complexity (fast-model classification; rules said {})", f.summary,
                       ComplexityName(f.complexity), ComplexityName(f.rule_complexity));
  auto finish = [&](const View& v, RouteReason r, const std::string& clause) {
    d.model = v.c->name;
    d.tier = v.c->tier;
    d.reason = r;
    d.switch_needed = !v.loaded;
    d.explanation = fmt::format("auto -> {}: {}{}{}", NameWithLabel(*v.c), head, clause.empty() ? "" : "; ", clause);
    return d;
  };

  if (f.role != ModelRole::kChat) {
    // Embedding and reranker requests: the loaded one, else the first configured.
    const View* best = &views[0];
    for (const View& v : views)
      if (v.loaded && !best->loaded) best = &v;
    head = fmt::format("{} request", ModelRoleName(f.role));
    return finish(*best, RouteReason::kDefault, best->loaded ? "loaded" : "not loaded");
  }

  const int need = static_cast<int>(f.complexity);
  const int cap = f.latency.cls == LatencyClass::kLow ? 0 : kMaxRank;
  const int target = std::min(need, cap);

  // Step 4.
  const View* best = nullptr;
  const View* best_ignoring_queue = nullptr;
  for (const View& v : views) {
    if (!v.can_serve || !v.latency_ok || v.rank < target || v.rank > cap) continue;
    if (!best || Key(v, target, p, true) < Key(*best, target, p, true)) best = &v;
    if (!best_ignoring_queue || Key(v, target, p, false) < Key(*best_ignoring_queue, target, p, false))
      best_ignoring_queue = &v;
  }
  // The model the need alone would pick (for explanations): the closest rank >= target, then
  // the smallest.
  const View* wanted = nullptr;
  for (const View& v : views) {
    if (v.rank < target) continue;
    if (!wanted || std::make_tuple(v.rank, v.c->memory_bytes, v.c->name) <
                       std::make_tuple(wanted->rank, wanted->c->memory_bytes, wanted->c->name))
      wanted = &v;
  }
  if (best) {
    if (best != best_ignoring_queue) {
      return finish(*best, RouteReason::kQueue,
                    fmt::format("{} has {} requests queued; {} has {}", best_ignoring_queue->c->name,
                                best_ignoring_queue->queue, best->c->name, best->queue));
    }
    if (target < need) {
      return finish(*best, RouteReason::kLatency,
                    fmt::format("{} caps the choice at {}; {}", LatencyText(f, p), kTierNames[cap], MemoryClause(*best, s)));
    }
    if (best->loaded && wanted && best->rank > wanted->rank && !wanted->loaded) {
      return finish(*best, RouteReason::kLoaded,
                    fmt::format("{} is loaded and meets the need; {} is not loaded (no switch)", best->c->name,
                                wanted->c->name));
    }
    std::string clause = MemoryClause(*best, s);
    if (best->ttft_ms >= 0) clause += fmt::format(" (est. time to first token {:.0f} ms)", best->ttft_ms);
    return finish(*best, RouteReason::kComplexity, clause);
  }

  // Step 5: degrade below the target.
  const View* lower = nullptr;
  for (const View& v : views) {
    if (!v.can_serve || !v.latency_ok || v.rank >= target) continue;
    if (!lower || std::make_tuple(-v.rank, v.loaded ? 0 : 1, v.queue, v.c->memory_bytes, v.c->name) <
                      std::make_tuple(-lower->rank, lower->loaded ? 0 : 1, lower->queue, lower->c->memory_bytes,
                                      lower->c->name))
      lower = &v;
  }
  // Was a model at or above the target excluded by latency (and not by memory)?
  const View* too_slow = nullptr;
  const View* too_big = nullptr;
  for (const View& v : views) {
    if (v.rank < target || v.rank > cap) continue;
    if (v.can_serve && !v.latency_ok && (!too_slow || v.rank < too_slow->rank)) too_slow = &v;
    if (!v.can_serve && (!too_big || v.rank < too_big->rank)) too_big = &v;
  }
  if (lower) {
    if (too_slow && !too_big) {
      std::string est = too_slow->ttft_ms >= 0 ? fmt::format(" (est. {:.0f} ms)", too_slow->ttft_ms) : "";
      return finish(*lower, RouteReason::kLatency,
                    fmt::format("{} rules out {}{}; {}", LatencyText(f, p), too_slow->c->name, est, MemoryClause(*lower, s)));
    }
    const View& blocked = too_big ? *too_big : (wanted ? *wanted : *lower);
    return finish(*lower, RouteReason::kMemory, MemoryClause(blocked, s));
  }
  const View* smallest = &views[0];
  for (const View& v : views)
    if (std::make_tuple(v.c->memory_bytes, v.c->name) < std::make_tuple(smallest->c->memory_bytes, smallest->c->name))
      smallest = &v;
  return finish(*smallest, RouteReason::kNoFit, "nothing fits: " + MemoryClause(*smallest, s));
}

}  // namespace

int TierRank(std::string_view name) {
  std::string l = AsciiLower(name);
  for (int i = 0; i <= kMaxRank; ++i)
    if (l == kTierNames[i]) return i;
  return -1;
}

int RankFromParams(uint64_t params) {
  if (params < 3'000'000'000ull) return 0;
  if (params < 10'000'000'000ull) return 1;
  if (params < 20'000'000'000ull) return 2;
  return 3;
}

const char* RouteReasonName(RouteReason r) {
  switch (r) {
    case RouteReason::kExplicit: return "explicit";
    case RouteReason::kAlias: return "alias";
    case RouteReason::kDefault: return "default";
    case RouteReason::kComplexity: return "complexity";
    case RouteReason::kLoaded: return "loaded";
    case RouteReason::kLatency: return "latency";
    case RouteReason::kMemory: return "memory";
    case RouteReason::kQueue: return "queue";
    case RouteReason::kNoFit: return "no_fit";
  }
  return "?";
}

Result<RouteDecision> Route(std::string_view requested, const RequestFeatures& features,
                            std::span<const RouterCandidate> candidates, const RouterState& state,
                            const RouterPolicy& policy) {
  std::string_view name = requested;
  bool is_default = false;
  if (name.empty() && !policy.default_model.empty()) {
    name = policy.default_model;
    is_default = true;
  }
  if (name.empty() || AsciiLower(name) == "auto") return Auto(features, candidates, state, policy);
  bool via_alias = false;
  const RouterCandidate* c = FindByName(candidates, name, &via_alias);
  if (!c) {
    if (is_default) return NotFound(name, candidates).WithContext("router.default");
    return NotFound(name, candidates);
  }
  return Direct(*c, is_default ? RouteReason::kDefault : via_alias ? RouteReason::kAlias : RouteReason::kExplicit,
                name, features, state);
}

}  // namespace qwenmux::orchestrator
