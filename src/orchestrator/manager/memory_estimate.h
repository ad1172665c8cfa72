// How many bytes a model takes once loaded, before loading it (the model manager's budget unit).
//
// What "loaded" means here: the peak resident footprint of an engine::Model serving its full
// context: every weight page touched (the weights are memory-mapped, so they count in RSS once
// read; the manager's warm-up touches all of them), the KV cache written at every position of
// every sequence (n_ctx x n_seq; the cache is reserved untouched and grows as positions are
// written, so a fresh model is smaller; budgeting the peak means a long request can never push
// the process past the budget), the forward pass's scratch at a full n_batch chunk, and the
// parsed metadata and tokenizer tables. It is what RSS grows by from before Model::Load to after
// prefilling the whole context once (memory_estimate_test checks this within 10%).
//
// Parts:
//   weights  : all tensor data as stored in the file (WeightBytes), plus the f32 copies of norms.
//   kv_cache : 2 (K,V) x n_layer x n_head_kv x head_dim x n_ctx x n_seq x 2 bytes (f16).
//   compute  : forward scratch (runtime/forward.cc): x, a, tmp [n_batch, n_embd]; q, attn
//              [n_batch, q_dim]; k, v [n_batch, kv_dim]; gate, up, hid [n_batch, n_ff] (dense) or
//              router [n_batch, n_expert] + per-expert in/out [n_batch, n_embd] and gate/up
//              [n_batch, n_ff_exp] (MoE); per-thread attention scores [threads, n_ctx]; the
//              matmul's quantized activations [n_batch, max cols] x 1.25 B; the logits rows
//              [n_seq, n_vocab] f32.
//   metadata : the file's header pages (read while parsing: data_offset bytes), the parsed
//              metadata (gguf::Value per array item, heap blocks of long strings), and the
//              tokenizer's tables (token strings twice, the text->id hash map, the merge-pair
//              table) and the transients of building them (a copy of the merges, a view->id map:
//              freed after the load but left resident between live heap blocks), counted with
//              libstdc++/glibc sizes.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "engine/engine.h"
#include "gguf/gguf.h"
#include "model/config.h"
#include "orchestrator/config/units.h"
#include "runtime/cuda/cuda_device.h"

namespace qwenmux::orchestrator {

struct MemoryEstimate {
  uint64_t weights = 0;
  uint64_t kv_cache = 0;
  uint64_t compute = 0;
  uint64_t metadata = 0;
  uint64_t total() const { return weights + kv_cache + compute + metadata; }
  std::string ToString() const;  // "1.23 GiB (weights ..., kv ..., compute ..., metadata ...)"
};

// Estimate for a parsed file. `options` as given to engine::Model::Load (n_ctx is clipped to the
// training context as Load does; n_threads 0 means the hardware thread count).
MemoryEstimate EstimateMemory(const gguf::File& file, const model::ModelConfig& config,
                              const engine::LoadOptions& options);

// The same from the parts a file would give: a model not on disk (`qwenmux plan`: the weight
// bytes from model/shapes.h and the quantization plan, the metadata bytes of the Qwen3 vocab).
MemoryEstimate EstimateMemory(const model::ModelConfig& config, uint64_t weight_bytes, uint64_t metadata_bytes,
                              const engine::LoadOptions& options);

// Opens the GGUF at `path` (header only is read) and estimates it; errors name the file.
Result<MemoryEstimate> EstimateModelMemory(const std::string& path, const engine::LoadOptions& options);

// Device (GPU) memory of a model placed on the GPU: what the model manager holds against the GPU
// budget, beside the RAM estimate above. It counts what the CUDA backend allocates for the model:
//   weights  : every tensor as uploaded: the file's tensor data, byte for byte (the CUDA backend
//              repacks quantized blocks into planes of the same total size; norms are f32 in the
//              file already)
//   kv_cache : f16 K and V for n_ctx x n_seq positions: 2 x 2 B x n_layer x kv_dim x n_ctx x n_seq
//              (n_ctx clipped to the training context, as Load does)
//   scratch  : what CudaForward::Create allocates for an n_batch chunk: batch ids [4, n_batch]
//              int32; x, a [n_batch, n_embd], q, attn [n_batch, q_dim], k, v [n_batch, kv_dim],
//              gate, up [n_batch, n_ff (MoE: n_ff_exp)] f32; MoE router [n_batch, n_expert], expert
//              in/out [n_batch, n_embd], routing ids and weights [n_batch, n_expert_used]; logits
//              [min(64, n_batch), n_vocab] f32; split-KV partials [min(32, n_batch), n_head,
//              n_ctx / chunk, 130] f32 (chunk: n_ctx / 64 rounded up to 32, at least 32); for
//              n_batch > 32 (tensor-core products) f16 activations [n_batch, max cols] and a f16
//              weight slice of the largest matrix (at most 64 Mi elements); plus a fixed
//              kDeviceFixedBytes per model (allocation granularity, RoPE table, staging, graphs).
// Not counted: the CUDA context itself (per process, a few hundred MiB, already gone from the
// free memory the default GPU budget is taken from).
struct DeviceMemoryEstimate {
  uint64_t weights = 0;
  uint64_t kv_cache = 0;
  uint64_t scratch = 0;
  uint64_t total() const { return weights + kv_cache + scratch; }
  std::string ToString() const;  // "5.60 GiB (weights ..., kv cache ..., scratch ...)"
};
inline constexpr uint64_t kDeviceFixedBytes = uint64_t{64} << 20;

DeviceMemoryEstimate EstimateDeviceMemory(const model::ModelConfig& config, uint64_t weight_bytes,
                                          const engine::LoadOptions& options);

// Both estimates of the GGUF at `path` (header only is read); errors name the file.
struct ModelEstimates {
  MemoryEstimate ram;
  DeviceMemoryEstimate device;
};
Result<ModelEstimates> EstimateModelMemories(const std::string& path, const engine::LoadOptions& options);

// The GPU budget on `gpu`: `budget` as a size, or as a share of its free memory; never above the
// free memory; 0 when the GPU is not usable. (The model manager's and `plan`/`inspect`'s.)
uint64_t ResolveGpuBudget(const MemoryAmount& budget, const runtime::CudaDeviceInfo& gpu);

// Makes every page of the file's tensor data resident and mapped (madvise MADV_POPULATE_READ, or
// reading one byte per page where the kernel lacks it); returns a value derived from the bytes
// read (so the reads cannot be optimised away).
uint64_t TouchWeights(const gguf::File& file);

// "1.5 GiB" / "12.0 MiB" / "512 B".
std::string FormatBytes(uint64_t bytes);

}  // namespace qwenmux::orchestrator
