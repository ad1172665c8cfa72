// How fast models run on this machine, without running them: per weight type, the rate of the
// engine's own matmul kernels measured on synthesized tensors of real Qwen3 shapes, cached per
// machine; from those, a model's decode and prefill tokens/s from its tensor list.
//
// Measurement (MeasureMachineSpeed, `qwenmux plan --measure`): for each weight type (Q4_K, Q5_K,
// Q6_K, Q8_0, F16, BF16) a ring of matrices of Qwen3-0.6B's FFN shape [3072 x 1024], filled by
// tiling rows quantized from random normals, far larger in all than the CPU's caches (default
// 512 MiB: on the 2-core EPYC VM this was written on, a 64 MiB ring still read at 3x DRAM speed
// though lscpu says 32 MiB of L3). Decode: kernels::MatMul with one token over every matrix of the ring (best of several
// passes) -> bytes/s of weight read. Prefill: 64 tokens at once over part of the ring ->
// multiply-adds/s. The machine's streaming read bandwidth (MeasureReadBandwidth) is measured as
// well; decode rate / bandwidth is each type's efficiency. Takes a few seconds on 2 cores.
// Not measured: attention over the KV cache, norms, RoPE, sampling (small next to the matmuls at
// short contexts), so estimates are upper bounds that hold for prompts of a few thousand tokens.
//
// Estimates (EstimateSpeed): decode time per token = sum over weight tensors of the bytes read
// per token (MoE expert tensors: n_expert_used / n_expert of them; the embedding table only when
// it is also the output head) / the type's decode rate; prefill time per token = multiply-adds
// per token / the type's prefill rate, without the output head (a prompt needs the logits of its
// last position only). With only the bandwidth known: decode = bandwidth x 0.7 /
// bytes per token (kAssumedDecodeEfficiency), prefill unknown. Decode also pays a fixed cost per
// matmul call (thread-pool dispatch and join; measured on a tiny matrix), which dominates small
// models on a busy machine.
//
// Robustness: every figure is the best of several repeats (interference only slows a run), the
// spread between repeats and the load average are recorded, and a busy or noisy measurement is
// said by plan and kept an hour instead of a week (MachineSpeed::ExpiredReason).
//
// Cache: $XDG_CACHE_HOME/qwenmux/plan-speed.json (else ~/.cache/qwenmux/), one entry per machine
// key (CPU model name, logical CPUs, threads used), replaced by each measurement; it expires
// (age, another qwenmux build).
//
// Thread-safety: pure functions, except that MeasureMachineSpeed uses the whole machine.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "gguf/gguf.h"

namespace qwenmux::orchestrator {

constexpr double kAssumedDecodeEfficiency = 0.7;

struct TypeRate {
  double decode_GBps = 0;    // weight bytes read per second at one token (best repeat)
  double prefill_GMACs = 0;  // multiply-adds per second at 64 tokens (best repeat)
  // How far the repeats spread: slowest / fastest time - 1 (0: they agreed; 0.5: the slowest
  // took 50% longer). Interference (another process on the cores) shows here.
  double decode_spread = 0, prefill_spread = 0;
};

struct MachineSpeed {
  std::string machine;                    // MachineKey(threads)
  size_t threads = 0;
  double read_GBps = 0;                   // streaming read bandwidth (0: not measured)
  double call_overhead_us = 0;            // fixed cost of one matmul call (dispatch, sync)
  std::map<std::string, TypeRate> types;  // by ggml type name ("q4_K"); empty: bandwidth only
  int64_t measured_unix = 0;
  // How busy the machine was when measured: the 1-minute load average (/proc/loadavg, -1:
  // unknown) before and after measuring (the larger), and the CPUs. A busy machine measures low
  // (a build running beside it).
  double load_1m = -1;
  size_t cpus = 0;
  double spread = 0;   // the largest spread between repeats of any figure (TypeRate)
  std::string binary;  // the measuring program (BinaryId()): another build re-measures

  // Load above half the CPUs, or repeats that disagreed by more than kNoisySpread: the figures
  // may read low.
  static constexpr double kNoisySpread = 0.3;
  bool LoadHigh() const { return load_1m >= 0 && cpus > 0 && load_1m > 0.5 * static_cast<double>(cpus); }
  bool Noisy() const { return spread > kNoisySpread; }
  bool Busy() const { return LoadHigh() || Noisy(); }
  // Why the calibration is not to be trusted at `now_unix` by the program `binary` ("" to skip
  // that check), "" when it is: older than a week, older than an hour when measured on a busy
  // machine, taken by another build of qwenmux, or dated in the future (the clock moved).
  std::string ExpiredReason(int64_t now_unix, const std::string& binary = "") const;
  bool Expired(int64_t now_unix, const std::string& binary = "") const { return !ExpiredReason(now_unix, binary).empty(); }
  // Weight types whose decode rate is above the read bandwidth, by name: a kernel cannot read
  // faster than memory, so the bandwidth (or that rate) was mis-measured. Shown capped at 100%.
  std::vector<std::string> SuspiciousTypes() const;

  nlohmann::json ToJson() const;
  static Result<MachineSpeed> FromJson(const nlohmann::json& j);
};

// "Intel(R) Xeon(R) ... | 2 cpus | 2 threads".
std::string MachineKey(size_t threads);
// The running program's identity: "<size>-<mtime seconds>.<nanoseconds>" of /proc/self/exe ("" if unknown).
std::string BinaryId();

struct MeasureOptions {
  size_t threads = 0;                     // 0: all hardware threads
  uint64_t ring_bytes = 512ull << 20;     // per type; far larger than the caches
  int decode_passes = 3;                  // repeats of each figure (after one warm-up): the best is kept
  int prefill_tokens = 64;
  bool kernels = true;                    // false: the bandwidth only
  std::vector<gguf::TensorType> types = {gguf::TensorType::kQ4_K, gguf::TensorType::kQ5_K,
                                         gguf::TensorType::kQ6_K, gguf::TensorType::kQ8_0,
                                         gguf::TensorType::kF16,  gguf::TensorType::kBF16};
};
Result<MachineSpeed> MeasureMachineSpeed(const MeasureOptions& options);

// $XDG_CACHE_HOME/qwenmux, else $HOME/.cache/qwenmux.
std::string DefaultCacheDir();
std::string SpeedCachePath(const std::string& cache_dir);  // <dir>/plan-speed.json
// The entry for `machine`, nullopt if the file or the entry is missing; errors for a corrupt file.
Result<std::optional<MachineSpeed>> LoadSpeedCache(const std::string& path, const std::string& machine);
// Adds or replaces speed.machine's entry (creating the directory; written atomically).
Status SaveSpeedCache(const std::string& path, const MachineSpeed& speed);

// What one weight tensor costs per token.
struct TensorCost {
  gguf::TensorType type = gguf::TensorType::kF32;
  uint64_t bytes_per_token = 0;  // bytes read per decoded token
  uint64_t macs_per_token = 0;   // multiply-adds per token
  uint32_t calls = 1;            // matmul calls per decoded token (MoE experts: n_expert_used)
  bool head = false;             // the output head (logits): run for a prompt's last position only
};
// Costs of a model's tensors (matrices only; 1-D norms are ignored). token_embd counts only
// when it is also the output head (no output.weight); MoE expert tensors (*_exps.*) count
// n_expert_used / n_expert of their bytes and multiply-adds.
std::vector<TensorCost> ModelCosts(std::span<const gguf::TensorInfo> tensors, uint32_t n_expert,
                                   uint32_t n_expert_used);

struct SpeedEstimate {
  double decode_tok_s = 0;   // 0: unknown
  double prefill_tok_s = 0;  // 0: unknown
  std::string source;        // "measured" (kernel rates), "bandwidth" (assumed efficiency), ""
};
SpeedEstimate EstimateSpeed(std::span<const TensorCost> costs, const MachineSpeed* speed);

}  // namespace qwenmux::orchestrator
