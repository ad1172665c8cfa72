// Device-side addressing of the paged KV cache (KvLayer, cuda_kernels.h).
#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/cuda/cuda_kernels.h"

namespace qwenmux::runtime::cuda {

// Elements from the layer's base to the 128-value row of (seq, kv head, pos).
__device__ __forceinline__ size_t KvRow(const KvLayer& kv, int32_t seq, int kvh, int32_t pos) {
  const int32_t b = __ldg(kv.blocks + static_cast<size_t>(seq) * kv.max_blocks + pos / kKvBlock);
  return ((static_cast<size_t>(b) * kv.n_head_kv + kvh) * kKvBlock + pos % kKvBlock) * 128;
}

}  // namespace qwenmux::runtime::cuda
