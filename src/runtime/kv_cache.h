// KV cache for several sequences: f16 keys (post q/k-norm, post-RoPE) and raw values.
// Layout: [layer][seq][kv_head][pos][head_dim], so one head's keys over positions are contiguous.
// Memory is reserved untouched (pages are committed as positions are written) and given back to
// the OS on destruction (base/page_memory.h).
//
// Thread-safety: not synchronised; the forward pass writes disjoint (seq, pos) slots from its
// worker threads, and callers serialise batches.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "base/page_memory.h"
#include "base/status.h"
#include "model/config.h"

namespace qwenmux::runtime {

class KvCache {
 public:
  KvCache() = default;
  KvCache(KvCache&&) noexcept = default;
  KvCache& operator=(KvCache&&) noexcept = default;

  static Result<KvCache> Create(const model::ModelConfig& c, int32_t n_ctx, int32_t n_seq);
  static uint64_t BytesFor(const model::ModelConfig& c, int32_t n_ctx, int32_t n_seq);

  int32_t n_ctx() const { return n_ctx_; }
  int32_t n_seq() const { return n_seq_; }
  uint64_t bytes() const { return size_ * 2 * sizeof(uint16_t); }

  uint16_t* K(int32_t layer, int32_t seq, int32_t head, int32_t pos) { return k_.data() + Index(layer, seq, head, pos); }
  uint16_t* V(int32_t layer, int32_t seq, int32_t head, int32_t pos) { return v_.data() + Index(layer, seq, head, pos); }

  // Positions [0, length) of `seq` hold valid entries (maintained by the caller: the engine).
  int32_t length(int32_t seq) const { return lengths_[seq]; }
  void set_length(int32_t seq, int32_t n) { lengths_[seq] = n; }

 private:
  size_t Index(int32_t layer, int32_t seq, int32_t head, int32_t pos) const {
    return ((((static_cast<size_t>(layer) * n_seq_ + seq) * n_head_kv_ + head) * n_ctx_ + pos) * head_dim_);
  }
  int32_t n_layer_ = 0, n_seq_ = 0, n_head_kv_ = 0, n_ctx_ = 0, head_dim_ = 0;
  size_t size_ = 0;
  PageArray<uint16_t> k_, v_;  // own pages: freed memory leaves the process
  std::vector<int32_t> lengths_;
};

}  // namespace qwenmux::runtime
