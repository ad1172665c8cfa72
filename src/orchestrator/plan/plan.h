// `qwenmux plan`: for every catalog model and quantization, the memory it needs at a context,
// whether it fits this machine's budget, and how fast it would decode and prefill here (speed.h);
// then a suggested tier assignment for this machine.
//
// Memory: memory_estimate.h's estimate (weights, KV cache at context x sequences, compute,
// metadata) from the model's shape (model/shapes.h) and the quantization's per-tensor types
// (quant::PlanQuantization, the same mix `qwenmux quantize`/`synth` write; Q5_0, which the engine
// cannot run, as Q5_0 matrices with a Q6_K output head), with the metadata of the Qwen3 vocab
// (Qwen3VocabMetadataBytes()). A model fits when its estimate is within the budget. On the GPU:
// the device-memory estimate (EstimateDeviceMemory) against the GPU budget (90% of the free
// device memory by default), each model alone; tiers are picked for RAM as before.
//
// Tier suggestion ("the best model for each tier that fits the budget with room for the others"):
// the fast tier stays resident (it routes and classifies), so
//   qwen3-fast:     the first of 1.7B Q4_K_M, 0.6B Q8_0, 0.6B Q4_K_M that fits the budget;
//   qwen3-balanced: the first of 8B Q8_0, Q6_K, Q5_K_M, Q4_K_M, 4B Q8_0, Q4_K_M,
//   qwen3-quality:  the first of 14B Q8_0, Q6_K, Q5_K_M, Q4_K_M,
//   qwen3-max:      the first of 30B-A3B Q8_0, Q6_K, Q5_K_M, Q4_K_M,
// that fits together with the fast tier's model; a tier where none fits takes the tier below's
// model (noted), and nothing if even the fast tier cannot fit.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "orchestrator/catalog/catalog.h"
#include "orchestrator/manager/memory_estimate.h"
#include "orchestrator/plan/speed.h"

namespace qwenmux::orchestrator {

struct CatalogModelCost {
  uint64_t weight_bytes = 0;              // tensor data as stored
  std::vector<TensorCost> costs;          // per-token costs of the matrices
  bool engine_supported = true;           // every tensor type runs in the engine
};
// The weights of a catalog entry as its quantization would store them.
Result<CatalogModelCost> CatalogCost(const CatalogEntry& entry);
// The estimate for a catalog entry (not on disk) at `options`.
Result<MemoryEstimate> EstimateCatalogMemory(const CatalogEntry& entry, const engine::LoadOptions& options);
// Parsed metadata and tokenizer tables of the Qwen3 vocab (151,936 tokens, 151,387 merges) as
// memory_estimate.cc counts them (plan_test checks it against a file with the real vocab).
uint64_t Qwen3VocabMetadataBytes();

struct PlanOptions {
  uint32_t context = 8192;
  int32_t n_seq = 1;
  uint64_t total_ram = 0;
  uint64_t budget_bytes = 0;
  runtime::CudaDeviceInfo gpu;          // QueryCudaDevice() (not available: no GPU columns fit)
  uint64_t gpu_budget_bytes = 0;        // ResolveGpuBudget(config's gpu_budget, gpu)
  const MachineSpeed* speed = nullptr;  // nullptr: speeds unknown
  std::string speed_note;               // where the speeds came from ("cached 2026-..."), shown
};

struct PlanRow {
  const CatalogEntry* entry = nullptr;
  model::ParameterCounts params;
  MemoryEstimate memory;
  bool fits = false;
  DeviceMemoryEstimate device_memory;  // placed on the GPU (memory_estimate.h)
  bool fits_gpu = false;               // device_memory within the GPU budget (alone)
  bool engine_supported = true;
  SpeedEstimate speed;
};

struct TierPick {
  std::string tier;
  const PlanRow* row = nullptr;  // nullptr: nothing fits
  std::string note;              // "", or why it is not the tier's default
};

// Move-only: the tier picks point into rows.
struct Plan {
  Plan() = default;
  Plan(Plan&&) = default;
  Plan& operator=(Plan&&) = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;

  PlanOptions options;
  std::vector<PlanRow> rows;     // catalog order
  std::vector<TierPick> tiers;   // fast, balanced, quality, max
};

Result<Plan> BuildPlan(const PlanOptions& options);
nlohmann::json PlanToJson(const Plan& plan);
std::string PlanToText(const Plan& plan);

}  // namespace qwenmux::orchestrator
