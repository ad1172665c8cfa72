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

// Makes every page of the file's tensor data resident and mapped (madvise MADV_POPULATE_READ, or
// reading one byte per page where the kernel lacks it); returns a value derived from the bytes
// read (so the reads cannot be optimised away).
uint64_t TouchWeights(const gguf::File& file);

// "1.5 GiB" / "12.0 MiB" / "512 B".
std::string FormatBytes(uint64_t bytes);

}  // namespace qwenmux::orchestrator
