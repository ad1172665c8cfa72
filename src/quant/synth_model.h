// Random-weight models with the exact tensor shapes and metadata of a real Qwen3 model
// (`qwenmux synth`): for benchmarks, memory plans and tests at real sizes without downloading
// the real weights.
//
// The tensor list and hyper-parameters come from model::ModelShape (src/model/shapes.h), the
// tokenizer.* keys are copied from a vocab GGUF, each tensor's type follows the same llama.cpp
// mix as `qwenmux quantize` (PlanQuantization), and the weights are drawn so activations stay
// finite and of realistic size:
//   - RMSNorm weights (all *_norm.weight): 1 + 0.05·N(0,1)
//   - token_embd: N(0,1)/sqrt(n_embd) (unit-RMS logits when tied, sane RMSNorm input)
//   - every other matrix (projections, experts, MoE router, output, cls.output): N(0, 1/fan_in),
//     fan_in = ne[0]. Quantized types (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) are not quantized from
//     floats: random valid blocks are written directly, with scales chosen for that spread
//     (std 1/sqrt(fan_in), mean ~0; the formulas are in synth_model.cc), which is what makes an
//     8B or a 30B-A3B take seconds to tens of seconds instead of many minutes. F16/BF16/F32
//     tensors (and the norms) are drawn as floats as below.
// Row r of tensor i is drawn from its own generator seeded from (seed, i, r) (splitmix64, then
// a tabulated inverse normal CDF with linear interpolation: N(0,1) truncated at about ±3.5σ), so the file is a pure function of (shape, type, layers, seed, vocab file) whatever
// the thread count, and rows are generated in parallel. Tensors are generated, quantized and
// written a chunk of rows at a time through gguf::Writer (temporary file, renamed on success), so
// memory stays at a few tens of MB plus the vocab metadata whatever the model size.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/status.h"
#include "model/shapes.h"
#include "quant/quantize_model.h"

namespace qwenmux::quant {

struct SynthProgress {
  size_t tensor = 0, n_tensors = 0;
  const TensorPlan* plan = nullptr;
  uint64_t elements_done = 0, elements_total = 0;  // over the whole model
};

struct SynthOptions {
  FileType ftype = FileType::kQ8_0;
  std::string vocab_path;  // GGUF whose tokenizer.* keys are copied (e.g. qwen3-vocab.gguf)
  uint64_t seed = 0;
  size_t threads = 0;      // 0: one per hardware thread
  uint32_t n_layer = 0;    // 0: the shape's own layer count; fewer makes small test files
  // Quantize random floats for every type (the slower way synth worked before it wrote random
  // blocks directly); for comparisons.
  bool quantize_floats = false;
  // Called after each chunk of rows; may be empty.
  std::function<void(const SynthProgress&)> progress;
};

// Writes a model of `shape` to `out_path`. On error nothing is left at `out_path`.
Status SynthesizeModel(const model::ModelShape& shape, const std::string& out_path, const SynthOptions& options);

// The standard normal values row `row` of tensor `tensor_index` is drawn from (before scaling);
// exposed for tests. Fills n values.
void SynthNormalRow(uint64_t seed, uint64_t tensor_index, uint64_t row, float* out, int64_t n);

}  // namespace qwenmux::quant
