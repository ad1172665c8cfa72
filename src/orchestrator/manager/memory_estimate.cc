#include "orchestrator/manager/memory_estimate.h"

#include <sys/mman.h>

#include <algorithm>
#include <string>
#include <thread>

namespace qwenmux::orchestrator {

namespace {

constexpr uint64_t kPage = 4096;

// glibc malloc: a request of n bytes takes a chunk of max(32, round_up(n + 8, 16)).
uint64_t MallocChunk(uint64_t n) { return std::max<uint64_t>(32, (n + 8 + 15) / 16 * 16); }

// Heap bytes behind a std::string of length `len` (libstdc++ keeps up to 15 chars inline).
uint64_t StringHeap(uint64_t len) { return len <= 15 ? 0 : MallocChunk(len + 1); }

// Bytes of a parsed gguf::Value beyond its own sizeof (arrays and long strings).
uint64_t ValueHeap(const gguf::Value& v) {
  if (const auto* s = std::get_if<std::string>(&v.v)) return StringHeap(s->size());
  if (const auto* a = std::get_if<gguf::Array>(&v.v)) {
    uint64_t n = a->items.empty() ? 0 : MallocChunk(a->items.size() * sizeof(gguf::Value));
    for (const gguf::Value& item : a->items) n += ValueHeap(item);
    return n;
  }
  return 0;
}

uint64_t Pow2AtLeast(uint64_t n) {
  uint64_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

// The tokenizer's tables (tokenizer.cc Impl) for `n_tokens` tokens whose strings take
// `string_heap` heap bytes, and `n_merges` merges.
uint64_t TokenizerBytes(uint64_t n_tokens, uint64_t string_heap, uint64_t n_merges, uint64_t merge_heap) {
  uint64_t b = 0;
  // Transients of building it (freed after the load, but left resident in the heap between live
  // blocks, so part of the load's peak and of RSS afterwards): the copy of the merges and the
  // string_view -> id map (node: next, view, id, cached hash).
  b += n_merges * sizeof(std::string) + merge_heap;
  b += n_tokens * (MallocChunk(8 + 16 + 8 + 8) + 8);
  b += 2 * (n_tokens * sizeof(std::string) + string_heap);  // strings (as in GGUF) and decoded bytes
  b += n_tokens * 4;                                        // types
  // unordered_map<std::string, int32_t>: one node (next, string, int, cached hash) per token, a
  // copy of the string, and the bucket array (about one bucket per element).
  b += n_tokens * (MallocChunk(8 + sizeof(std::string) + 8 + 8) + 8) + string_heap;
  // PairTable: open addressing, 16-byte slots, load factor <= 0.6, power of two.
  uint64_t slots = 16;
  while (slots * 6 / 10 < n_merges + 1) slots <<= 1;
  b += slots * 16;
  return b;
}

uint64_t MetadataBytes(const gguf::File& f) {
  uint64_t b = (f.data_offset() + kPage - 1) / kPage * kPage;  // header pages read while parsing
  b += f.metadata().size() * sizeof(gguf::KeyValue);
  b += f.tensors().size() * (sizeof(gguf::TensorInfo) + 64);  // tensor table (+ name heap, index)
  uint64_t token_heap = 0, merge_heap = 0, n_tokens = 0, n_merges = 0;
  for (const gguf::KeyValue& kv : f.metadata()) {
    b += StringHeap(kv.key.size()) + ValueHeap(kv.value);
    const auto* a = std::get_if<gguf::Array>(&kv.value.v);
    if (a == nullptr) continue;
    if (kv.key == "tokenizer.ggml.tokens") {
      n_tokens = a->items.size();
      for (const gguf::Value& item : a->items) token_heap += ValueHeap(item);
    } else if (kv.key == "tokenizer.ggml.merges") {
      n_merges = a->items.size();
      for (const gguf::Value& item : a->items) merge_heap += ValueHeap(item);
    }
  }
  b += Pow2AtLeast(f.metadata().size()) * 8 + f.metadata().size() * 32;  // key index
  b += TokenizerBytes(n_tokens, token_heap, n_merges, merge_heap);
  return b;
}

}  // namespace

std::string FormatBytes(uint64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (bytes >= (uint64_t{1} << 30)) return fmt::format("{:.2f} GiB", b / (1 << 30));
  if (bytes >= (uint64_t{1} << 20)) return fmt::format("{:.1f} MiB", b / (1 << 20));
  if (bytes >= (uint64_t{1} << 10)) return fmt::format("{:.1f} KiB", b / (1 << 10));
  return fmt::format("{} B", bytes);
}

std::string MemoryEstimate::ToString() const {
  return fmt::format("{} (weights {}, kv cache {}, compute {}, metadata {})", FormatBytes(total()),
                     FormatBytes(weights), FormatBytes(kv_cache), FormatBytes(compute), FormatBytes(metadata));
}

MemoryEstimate EstimateMemory(const gguf::File& file, const model::ModelConfig& c, const engine::LoadOptions& o) {
  return EstimateMemory(c, model::WeightBytes(file), MetadataBytes(file), o);
}

MemoryEstimate EstimateMemory(const model::ModelConfig& c, uint64_t weight_bytes, uint64_t metadata_bytes,
                              const engine::LoadOptions& o) {
  MemoryEstimate e;
  const uint64_t n_ctx = static_cast<uint64_t>(std::clamp<int64_t>(o.n_ctx, 1, std::max<uint32_t>(c.n_ctx_train, 1)));
  const uint64_t n_seq = static_cast<uint64_t>(std::max(o.n_seq, 1));
  const uint64_t n = static_cast<uint64_t>(std::max(o.n_batch, 1));
  uint64_t threads = o.n_threads != 0 ? o.n_threads : std::max(1u, std::thread::hardware_concurrency());
  const uint64_t E = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim();

  e.weights = weight_bytes;
  // f32 copies of the norms: attn/ffn [n_embd] and q/k [head_dim] per layer, output [n_embd].
  e.weights += c.n_layer * 2 * (MallocChunk(4 * E) + MallocChunk(4 * c.head_dim)) + MallocChunk(4 * E);

  e.kv_cache = uint64_t{2} * 2 * c.n_layer * n_seq * kvd * n_ctx;

  uint64_t floats = 3 * n * E + 2 * n * qd + 2 * n * kvd;
  uint64_t max_cols = std::max(E, qd);
  if (c.is_moe()) {
    floats += n * c.n_expert + 2 * n * E + 2 * n * c.n_ff_exp;
    max_cols = std::max<uint64_t>(max_cols, c.n_ff_exp);
  } else {
    floats += 3 * n * c.n_ff;
    max_cols = std::max<uint64_t>(max_cols, c.n_ff);
  }
  floats += threads * n_ctx;         // attention scores per thread
  floats += n_seq * c.n_vocab;       // logits rows
  e.compute = floats * 4 + n * max_cols * 5 / 4;  // + quantized activations (int8, scales, sums)

  e.metadata = metadata_bytes;
  return e;
}

Result<MemoryEstimate> EstimateModelMemory(const std::string& path, const engine::LoadOptions& options) {
  auto file = gguf::File::Open(path);
  if (!file.ok()) return file.status().WithContext("memory estimate");
  auto config = model::ReadConfig(*file);
  if (!config.ok()) return config.status().WithContext(fmt::format("memory estimate: {}", path));
  return EstimateMemory(*file, *config, options);
}

std::string DeviceMemoryEstimate::ToString() const {
  return fmt::format("{} (weights {}, kv cache {}, scratch {})", FormatBytes(total()), FormatBytes(weights),
                     FormatBytes(kv_cache), FormatBytes(scratch));
}

DeviceMemoryEstimate EstimateDeviceMemory(const model::ModelConfig& c, uint64_t weight_bytes,
                                          const engine::LoadOptions& o) {
  DeviceMemoryEstimate e;
  const uint64_t n_ctx = static_cast<uint64_t>(std::clamp<int64_t>(o.n_ctx, 1, std::max<uint32_t>(c.n_ctx_train, 1)));
  const uint64_t n_seq = static_cast<uint64_t>(std::max(o.n_seq, 1));
  const uint64_t n = static_cast<uint64_t>(std::max(o.n_batch, 1));
  const uint64_t E = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim();
  e.weights = weight_bytes;
  e.kv_cache = uint64_t{2} * 2 * c.n_layer * n_seq * kvd * ((n_ctx + 63) / 64 * 64);  // blocks of 64 positions
  const uint64_t ff = c.is_moe() ? c.n_ff_exp : c.n_ff;
  uint64_t words = 6 * n + n_seq * ((n_ctx + 63) / 64);            // batch ids, attention tiles, block table
  words += 2 * n * E + 2 * n * qd + 2 * n * kvd + 2 * n * ff;      // activations
  if (c.is_moe()) words += n * c.n_expert + 2 * n * E + 2 * n * c.n_expert_used;
  words += std::min<uint64_t>(64, n) * c.n_vocab;                 // logits rows
  const uint64_t chunk = std::max<uint64_t>(32, (n_ctx + 63) / 64 + 31) / 32 * 32;
  words += std::min<uint64_t>(32, n) * c.n_head * ((n_ctx + chunk - 1) / chunk) * 130;  // split-KV partials
  e.scratch = words * 4 + kDeviceFixedBytes;
  if (n > 32) {
    const uint64_t max_cols = std::max({E, qd, ff});
    uint64_t biggest = std::max({uint64_t{c.n_vocab} * E, ff * E, qd * E});
    biggest = std::min<uint64_t>(biggest, uint64_t{64} << 20);
    e.scratch += n * max_cols * 2 + biggest * 2;
  }
  return e;
}

Result<ModelEstimates> EstimateModelMemories(const std::string& path, const engine::LoadOptions& options) {
  auto file = gguf::File::Open(path);
  if (!file.ok()) return file.status().WithContext("memory estimate");
  auto config = model::ReadConfig(*file);
  if (!config.ok()) return config.status().WithContext(fmt::format("memory estimate: {}", path));
  return ModelEstimates{EstimateMemory(*file, *config, options), EstimateDeviceMemory(*config, model::WeightBytes(*file), options)};
}

uint64_t ResolveGpuBudget(const MemoryAmount& budget, const runtime::CudaDeviceInfo& gpu) {
  if (!gpu.available) return 0;
  return std::min(budget.Resolve(gpu.free_bytes), gpu.free_bytes);
}

uint64_t TouchWeights(const gguf::File& file) {
  const auto bytes = file.bytes();
  uint64_t sum = 0;
#if defined(__linux__)
  // One system call maps every page that is in the page cache (and reads the rest): ~1.5x faster
  // than faulting page by page. Linux >= 5.14; older kernels fall back to the loop below.
  constexpr int kPopulateRead = 22;  // MADV_POPULATE_READ
  const auto base = reinterpret_cast<uintptr_t>(bytes.data());
  const uintptr_t begin = (base + file.data_offset()) & ~static_cast<uintptr_t>(kPage - 1);
  const uintptr_t end = base + bytes.size();
  if (end > begin && madvise(reinterpret_cast<void*>(begin), end - begin, kPopulateRead) == 0) {
    return bytes.empty() ? 0 : bytes[bytes.size() - 1];
  }
#endif
  for (uint64_t i = file.data_offset(); i < bytes.size(); i += kPage) sum += bytes[i];
  return sum;
}

}  // namespace qwenmux::orchestrator
