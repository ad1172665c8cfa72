// Wall time per phase of the CPU forward pass, for finding where a decode or prefill step spends
// its time (`qwenmux bench --profile`). Off unless SetCpuProfile(true) or QWENMUX_CPU_PROFILE=1;
// when off a phase costs one branch. Totals are process-wide (atomics), kept apart for decode
// steps (<= 8 tokens) and prefill steps, with the weight bytes each matrix phase read, so the
// report shows each kernel's GB/s next to the machine's read bandwidth.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace qwenmux::runtime {

enum class CpuPhase : int {
  kEmbed,
  kNorm,        // RMSNorm before attention and FFN, and the final norm
  kQkv,         // q, k, v projections (one MatMulMany)
  kQkNormRope,  // per-head q/k norm + RoPE
  kKvStore,     // f32 -> f16 into the cache
  kAttention,
  kAttnOut,
  kResidual,
  kFfnGateUp,
  kSwiGlu,
  kFfnDown,
  kMoe,         // router, expert products and combine
  kLora,        // adapter deltas
  kLmHead,
  kCount
};

void SetCpuProfile(bool on);
bool CpuProfileOn();
void CpuProfileReset();
// {"decode": {"steps": N, "tokens": T, "phases": {NAME: {"ms": .., "calls": .., "bytes": ..}}},
//  "prefill": {...}}
std::string CpuProfileJson();
void CpuProfileAdd(CpuPhase phase, bool prefill, int64_t ns, uint64_t bytes);
void CpuProfileStep(bool prefill, int64_t tokens);

// Adds the time from construction to destruction to `phase` when profiling is on.
class CpuPhaseTimer {
 public:
  CpuPhaseTimer(CpuPhase phase, bool prefill, uint64_t bytes = 0)
      : on_(CpuProfileOn()), phase_(phase), prefill_(prefill), bytes_(bytes) {
    if (on_) t0_ = std::chrono::steady_clock::now();
  }
  ~CpuPhaseTimer() {
    if (!on_) return;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0_);
    CpuProfileAdd(phase_, prefill_, ns.count(), bytes_);
  }
  CpuPhaseTimer(const CpuPhaseTimer&) = delete;
  CpuPhaseTimer& operator=(const CpuPhaseTimer&) = delete;

 private:
  bool on_;
  CpuPhase phase_;
  bool prefill_;
  uint64_t bytes_;
  std::chrono::steady_clock::time_point t0_{};
};

}  // namespace qwenmux::runtime
