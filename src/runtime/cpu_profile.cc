#include "runtime/cpu_profile.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include <nlohmann/json.hpp>

namespace qwenmux::runtime {
namespace {

constexpr int kPhases = static_cast<int>(CpuPhase::kCount);
constexpr const char* kNames[kPhases] = {"embed",     "norm",    "qkv",      "qk_norm_rope", "kv_store",
                                         "attention", "attn_out", "residual", "ffn_gate_up",  "swiglu",
                                         "ffn_down",  "moe",     "lora",     "lm_head"};

struct Totals {
  std::atomic<int64_t> ns[kPhases];
  std::atomic<int64_t> calls[kPhases];
  std::atomic<uint64_t> bytes[kPhases];
  std::atomic<int64_t> steps, tokens;
};
Totals g_totals[2];  // decode, prefill (zero-initialised: static storage)

std::atomic<bool>& Flag() {
  static std::atomic<bool> on{[] {
    const char* e = std::getenv("QWENMUX_CPU_PROFILE");
    return e != nullptr && std::strcmp(e, "1") == 0;
  }()};
  return on;
}

}  // namespace

void SetCpuProfile(bool on) { Flag().store(on, std::memory_order_relaxed); }
bool CpuProfileOn() { return Flag().load(std::memory_order_relaxed); }

void CpuProfileReset() {
  for (Totals& t : g_totals) {
    for (int i = 0; i < kPhases; ++i) {
      t.ns[i] = 0;
      t.calls[i] = 0;
      t.bytes[i] = 0;
    }
    t.steps = 0;
    t.tokens = 0;
  }
}

void CpuProfileAdd(CpuPhase phase, bool prefill, int64_t ns, uint64_t bytes) {
  Totals& t = g_totals[prefill ? 1 : 0];
  const int i = static_cast<int>(phase);
  t.ns[i].fetch_add(ns, std::memory_order_relaxed);
  t.calls[i].fetch_add(1, std::memory_order_relaxed);
  t.bytes[i].fetch_add(bytes, std::memory_order_relaxed);
}

void CpuProfileStep(bool prefill, int64_t tokens) {
  Totals& t = g_totals[prefill ? 1 : 0];
  t.steps.fetch_add(1, std::memory_order_relaxed);
  t.tokens.fetch_add(tokens, std::memory_order_relaxed);
}

std::string CpuProfileJson() {
  nlohmann::json j;
  for (int k = 0; k < 2; ++k) {
    const Totals& t = g_totals[k];
    nlohmann::json phases = nlohmann::json::object();
    for (int i = 0; i < kPhases; ++i) {
      if (t.calls[i] == 0) continue;
      phases[kNames[i]] = {{"ms", static_cast<double>(t.ns[i].load()) / 1e6},
                           {"calls", t.calls[i].load()},
                           {"bytes", t.bytes[i].load()}};
    }
    j[k == 0 ? "decode" : "prefill"] = {{"steps", t.steps.load()}, {"tokens", t.tokens.load()}, {"phases", phases}};
  }
  return j.dump();
}

}  // namespace qwenmux::runtime
