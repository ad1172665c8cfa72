// LoRA adapters as the forward pass applies them: per layer and per projection, A ([r, in]) and B
// ([out, r]) in f32, applied unmerged after the base product:
//
//   y = x·Wᵀ + scale·(alpha/r)·(x·Aᵀ)·Bᵀ
//
// (llama.cpp and PEFT conventions; ../shared/testdata/README.md, "LoRA"). Reading the files
// (GGUF, PEFT) and checking them against a base model is engine/lora.h; this is the in-memory form
// and the CPU delta. A batch entry names its adapter by pointer (runtime::BatchEntry::lora), so one
// batch mixes tokens of several adapters and of none.
//
// Lifetime and thread-safety: an adapter is immutable once loaded and must outlive every batch
// that names it (engine::Model owns them); concurrent const access is safe.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/thread_pool.h"
#include "gguf/gguf.h"
#include "kernels/matmul.h"

namespace qwenmux::runtime {

struct BatchEntry;

// The seven projections an adapter may target, in the order of the forward pass.
enum class LoraTarget : int { kAttnQ, kAttnK, kAttnV, kAttnOutput, kFfnGate, kFfnUp, kFfnDown };
inline constexpr int kLoraTargets = 7;
// "attn_q", ... as in GGUF tensor names (blk.N.<name>.weight).
std::string_view LoraTargetGgufName(LoraTarget t);
// "self_attn.q_proj", ... as in PEFT / transformers module paths (model.layers.N.<name>).
std::string_view LoraTargetPeftName(LoraTarget t);

// Where an adapter's f32 data lives: f32 GGUF tensors stay in the file's memory map (no copy, so
// loading costs no more than parsing), everything converted is owned here. Moving it keeps every
// span into it valid.
struct LoraStorage {
  std::shared_ptr<const gguf::File> file;
  std::vector<std::vector<float>> owned;

  std::span<const float> Own(std::vector<float> v) {
    owned.push_back(std::move(v));
    return owned.back();
  }
};

// One projection's low-rank pair; a and b point into the adapter's LoraStorage.
struct LoraPair {
  int32_t rank = 0;
  int64_t in = 0, out = 0;
  float factor = 1.0f;        // alpha / rank (1 when the file gives no alpha, as llama.cpp)
  std::span<const float> a;   // [rank, in]  (torch layout of lora_A)
  std::span<const float> b;   // [out, rank] (torch layout of lora_B)

  kernels::WeightView A() const;  // rows = rank, cols = in, f32
  kernels::WeightView B() const;  // rows = out, cols = rank, f32
};

// A number no other adapter of this process gets (the GPU backend keys its device copies by it:
// an address can come back after an unload).
uint64_t NewLoraSerial();

struct LoraAdapter {
  std::string name;    // file or directory it came from
  uint64_t serial = NewLoraSerial();
  float alpha = 0;     // adapter.lora.alpha / lora_alpha (0: none given)
  LoraStorage storage;  // what the pairs point into
  // [n_layer][kLoraTargets]; nullopt where the adapter leaves the projection alone.
  std::vector<std::array<std::optional<LoraPair>, kLoraTargets>> layers;

  const LoraPair* Find(int32_t layer, LoraTarget t) const {
    const auto& p = layers[static_cast<size_t>(layer)][static_cast<size_t>(t)];
    return p ? &*p : nullptr;
  }
  uint64_t bytes() const;      // A and B in f32 (owned or mapped from the file)
  int32_t max_rank() const;
  int32_t n_pairs() const;
};

// Per-forward grouping of a batch's rows by adapter (Punica / S-LoRA style segments): the rows of
// each adapter gathered together, with each row's user scale. Built once per forward, used by all
// projections of all layers.
struct LoraSegments {
  struct Segment {
    const LoraAdapter* adapter = nullptr;
    std::vector<int64_t> rows;   // [m] batch rows using it
    std::vector<float> scales;   // [m] user scale of each row
    bool contiguous = false;     // rows are [rows[0], rows[0] + m)
  };
  std::vector<Segment> segments;  // only adapters that some row uses

  void Build(std::span<const BatchEntry> batch);
  bool empty() const { return segments.empty(); }
};

// Scratch of ApplyLora, grown on demand.
struct LoraScratch {
  std::vector<float> in;   // [m, in] gathered input rows
  std::vector<float> mid;  // [m, r] x·Aᵀ, scaled
  std::vector<float> out;  // [m, out] delta rows
};

// y[rows] += scale·factor·(x[rows]·Aᵀ)·Bᵀ for the rows of every segment whose adapter has a pair
// for (layer, target). x: [n, in] with row stride ldx; y: [n, out] with row stride ldy.
void ApplyLora(const LoraSegments& seg, int32_t layer, LoraTarget target, const float* x, int64_t ldx, float* y,
               int64_t ldy, LoraScratch* scratch, ThreadPool* pool);

}  // namespace qwenmux::runtime
