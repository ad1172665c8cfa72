// Whole-model quantization: `qwenmux quantize IN.gguf OUT.gguf TYPE`.
//
// Picks each tensor's type with llama.cpp's llama-quant mix rules for the supported file types
// (output / tied token_embd at Q6_K, part of attn_v / ffn_down at Q6_K for *_K_M, 8-expert
// models' attn_k/attn_v at Q8_0 and attn_output at Q5_K, norms and the MoE router kept as they
// are), streams tensor by tensor through gguf::Writer (temporary file, renamed on success) and
// sets general.file_type / general.quantization_version.
//
// Known deviation: a K-quant tensor whose rows are not a multiple of 256 falls back to Q8_0
// (llama.cpp uses Q5_0/Q5_1 for Q4_K/Q5_K, which qwenmux does not implement), or F16 when rows
// are not a multiple of 32 either.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "gguf/gguf.h"

namespace qwenmux::quant {

// LLAMA_FTYPE numbers, as written to general.file_type.
enum class FileType : uint32_t {
  kF16 = 1, kQ4_0 = 2, kQ8_0 = 7, kQ4_K_M = 15, kQ5_K_M = 17, kQ6_K = 18, kBF16 = 32,
};

// "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k", "f16", "bf16" (case-insensitive).
Result<FileType> ParseFileType(std::string_view name);
const char* FileTypeName(FileType t);

struct TensorPlan {
  std::string name;
  gguf::TensorType from;
  gguf::TensorType to;
};

// GGML_QNT_VERSION, written as general.quantization_version.
inline constexpr uint32_t kQuantizationVersion = 2;

// The type of every tensor of `in` after quantizing to `ftype` (no I/O besides reading `in`).
Result<std::vector<TensorPlan>> PlanQuantization(const gguf::File& in, FileType ftype);

// The same plan from a tensor list alone (name, n_dims, ne and current type of each; offsets
// unused), for a model that has no input file yet. `n_expert` is {arch}.expert_count (0 for a
// dense model); the 8-expert rules depend on it.
std::vector<TensorPlan> PlanQuantization(std::span<const gguf::TensorInfo> tensors, uint64_t n_expert,
                                         FileType ftype);

struct QuantizeModelOptions {
  FileType ftype = FileType::kQ4_K_M;
  size_t threads = 0;  // 0: one per hardware thread
  // Re-encoding a tensor that is already quantized (Q8_0 -> Q4_K, ...) loses precision twice;
  // without this flag QuantizeModel refuses it (llama.cpp's --allow-requantize). Float tensors
  // (F32/F16/BF16) and tensors whose type does not change never need it.
  bool allow_requantize = false;
  // Called before each tensor (index, count, plan entry); may be empty.
  std::function<void(size_t, size_t, const TensorPlan&)> progress;
};

// Refuses an output that is the input file (same device and inode, whatever the path: a
// symlink or hard link to it included), since the result would replace the original.
Status QuantizeModel(const std::string& in_path, const std::string& out_path,
                     const QuantizeModelOptions& options);

}  // namespace qwenmux::quant
