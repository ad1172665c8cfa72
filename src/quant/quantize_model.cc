#include "quant/quantize_model.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <vector>

#include "base/thread_pool.h"
#include "quant/quant.h"

namespace qwenmux::quant {

namespace {

using gguf::TensorType;

bool Contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

bool IsQuantizedType(TensorType t) {
  return t != TensorType::kF32 && t != TensorType::kF16 && t != TensorType::kBF16;
}

TensorType DefaultType(FileType f) {
  switch (f) {
    case FileType::kF16: return TensorType::kF16;
    case FileType::kBF16: return TensorType::kBF16;
    case FileType::kQ4_0: return TensorType::kQ4_0;
    case FileType::kQ8_0: return TensorType::kQ8_0;
    case FileType::kQ4_K_M: return TensorType::kQ4_K;
    case FileType::kQ5_K_M: return TensorType::kQ5_K;
    case FileType::kQ6_K: return TensorType::kQ6_K;
  }
  return TensorType::kQ8_0;
}

// llama.cpp's use_more_bits: the first and last eighth of the layers and every third between.
bool UseMoreBits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

int LayerFromName(const std::string& name, int fallback) {
  int layer = 0;
  if (std::sscanf(name.c_str(), "blk.%d.", &layer) == 1) return layer;
  return fallback;
}

// Whether llama-quantize quantizes this tensor at all.
bool ShouldQuantize(const gguf::TensorInfo& t) {
  const std::string_view n = t.name;
  if (n.size() < 6 || n.substr(n.size() - 6) != "weight") return false;
  if (t.n_dims < 2) return false;  // norms, biases
  if (Contains(n, "ffn_gate_inp.weight")) return false;  // MoE router stays F32
  if (Contains(n, "_norm.weight")) return false;
  return true;
}

// Replaces a block type that does not divide the row length.
TensorType CompatibleType(TensorType t, uint64_t ne0) {
  if (ne0 % static_cast<uint64_t>(BlockSize(t)) == 0) return t;
  if (ne0 % 32 == 0) return TensorType::kQ8_0;
  return TensorType::kF16;
}

}  // namespace

Result<FileType> ParseFileType(std::string_view name) {
  std::string s(name);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "q8_0") return FileType::kQ8_0;
  if (s == "q4_0") return FileType::kQ4_0;
  if (s == "q4_k_m") return FileType::kQ4_K_M;
  if (s == "q5_k_m") return FileType::kQ5_K_M;
  if (s == "q6_k") return FileType::kQ6_K;
  if (s == "f16") return FileType::kF16;
  if (s == "bf16") return FileType::kBF16;
  return Error(StatusCode::kInvalidArgument,
               "quantize: unknown type '{}' (expected q8_0, q4_0, q4_k_m, q5_k_m, q6_k, f16, bf16)",
               name);
}

const char* FileTypeName(FileType t) {
  switch (t) {
    case FileType::kF16: return "F16";
    case FileType::kBF16: return "BF16";
    case FileType::kQ4_0: return "Q4_0";
    case FileType::kQ8_0: return "Q8_0";
    case FileType::kQ4_K_M: return "Q4_K_M";
    case FileType::kQ5_K_M: return "Q5_K_M";
    case FileType::kQ6_K: return "Q6_K";
  }
  return "?";
}

Result<std::vector<TensorPlan>> PlanQuantization(const gguf::File& in, FileType ftype) {
  uint64_t n_expert = 0;
  if (auto arch = in.GetOptional<std::string>("general.architecture"); arch.ok() && arch->has_value()) {
    if (in.Find(**arch + ".expert_count") != nullptr) {
      auto e = in.GetUInt(**arch + ".expert_count");
      if (!e.ok()) return e.status();
      n_expert = *e;
    }
  }
  return PlanQuantization(in.tensors(), n_expert, ftype);
}

std::vector<TensorPlan> PlanQuantization(std::span<const gguf::TensorInfo> tensors, uint64_t n_expert,
                                         FileType ftype) {
  const TensorType def = DefaultType(ftype);
  const bool mix = IsQuantizedType(def);
  bool has_output = false;
  for (const auto& t : tensors) has_output = has_output || t.name == "output.weight";
  int n_attention_wv = 0, n_ffn_down = 0;
  for (const auto& t : tensors) {
    if (Contains(t.name, "attn_v.weight") || Contains(t.name, "attn_qkv.weight")) ++n_attention_wv;
    if (Contains(t.name, "ffn_down")) ++n_ffn_down;
  }
  int i_attention_wv = 0, i_ffn_down = 0;
  std::vector<TensorPlan> plan;
  plan.reserve(tensors.size());
  for (const auto& t : tensors) {
    TensorPlan p{t.name, t.type, t.type};
    if (!ShouldQuantize(t)) {
      plan.push_back(p);
      continue;
    }
    TensorType nt = def;
    const bool k_m = ftype == FileType::kQ4_K_M || ftype == FileType::kQ5_K_M;
    if (mix) {
      const std::string& n = t.name;
      if (n == "output.weight" || (!has_output && n == "token_embd.weight")) {
        if (t.ne[0] % 256 != 0) nt = TensorType::kQ8_0;
        else if (nt != TensorType::kQ8_0) nt = TensorType::kQ6_K;
      } else if (Contains(n, "attn_v.weight")) {
        if (k_m && UseMoreBits(i_attention_wv, n_attention_wv)) nt = TensorType::kQ6_K;
        if (n_expert == 8) nt = TensorType::kQ8_0;
        ++i_attention_wv;
      } else if (Contains(n, "attn_k.weight")) {
        if (n_expert == 8) nt = TensorType::kQ8_0;
      } else if (Contains(n, "ffn_down")) {
        const int i_layer = LayerFromName(n, i_ffn_down);
        if (k_m && UseMoreBits(i_layer, n_ffn_down)) nt = TensorType::kQ6_K;
        ++i_ffn_down;
      } else if (Contains(n, "attn_output.weight")) {
        if (n_expert == 8 && ftype == FileType::kQ4_K_M) nt = TensorType::kQ5_K;
      } else if (Contains(n, "attn_qkv.weight")) {
        if (ftype == FileType::kQ4_K_M) nt = TensorType::kQ5_K;
        else if (ftype == FileType::kQ5_K_M) nt = TensorType::kQ6_K;
      }
    }
    p.to = CompatibleType(nt, t.ne[0]);
    plan.push_back(p);
  }
  return plan;
}

Status QuantizeModel(const std::string& in_path, const std::string& out_path,
                     const QuantizeModelOptions& options) {
  struct stat in_st {}, out_st {};
  if (::stat(in_path.c_str(), &in_st) == 0 && ::stat(out_path.c_str(), &out_st) == 0 &&
      in_st.st_dev == out_st.st_dev && in_st.st_ino == out_st.st_ino) {
    return Error(StatusCode::kInvalidArgument,
                 "quantize: output {} is the input file {}; write to a new file", out_path, in_path);
  }
  QM_ASSIGN_OR_RETURN(gguf::File in, gguf::File::Open(in_path));
  QM_ASSIGN_OR_RETURN(std::vector<TensorPlan> plan, PlanQuantization(in, options.ftype));
  for (const auto& p : plan) {
    if (p.from != p.to && !IsSupported(p.from)) {
      return Error(StatusCode::kUnsupported, "quantize: tensor {}: cannot convert from {}", p.name,
                   gguf::TensorTypeName(p.from));
    }
    if (p.from != p.to && IsQuantizedType(p.from) && !options.allow_requantize) {
      return Error(StatusCode::kInvalidArgument,
                   "quantize: {}: tensor {} is already quantized ({}); re-quantizing to {} loses "
                   "precision twice (pass --allow-requantize to do it anyway)",
                   in_path, p.name, gguf::TensorTypeName(p.from), gguf::TensorTypeName(p.to));
    }
  }
  gguf::Writer w;
  w.SetAlignment(in.alignment());
  for (const auto& kv : in.metadata()) w.AddKeyValue(kv.key, kv.value);
  w.SetKeyValue("general.quantization_version", gguf::Value(kQuantizationVersion));
  w.SetKeyValue("general.file_type", gguf::Value(static_cast<uint32_t>(options.ftype)));
  for (size_t i = 0; i < plan.size(); ++i) {
    const auto& t = in.tensors()[i];
    auto r = w.AddTensor(t.name, plan[i].to, std::span<const uint64_t>(t.ne, t.n_dims));
    if (!r.ok()) return r.status().WithContext("quantize: tensor " + t.name);
  }
  QM_RETURN_IF_ERROR(w.Open(out_path));
  ThreadPool pool(options.threads);
  std::vector<uint8_t> out;
  std::vector<float> rows_f32;
  for (size_t i = 0; i < plan.size(); ++i) {
    const auto& t = in.tensors()[i];
    const TensorPlan& p = plan[i];
    if (options.progress) options.progress(i, plan.size(), p);
    auto src = in.TensorData(t);
    if (p.from == p.to) {
      QM_RETURN_IF_ERROR(w.WriteTensorData(i, src));
      continue;
    }
    const int64_t n = static_cast<int64_t>(t.ne[0]);
    const int64_t rows = static_cast<int64_t>(t.rows());
    const size_t in_rb = RowSize(p.from, n), out_rb = RowSize(p.to, n);
    out.resize(out_rb * static_cast<size_t>(rows));
    // Rows in chunks of about 16M values so huge expert tensors need no full float copy.
    const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 24) / std::max<int64_t>(1, n));
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
      const int64_t nr = std::min(chunk, rows - r0);
      rows_f32.resize(static_cast<size_t>(nr * n));
      Status s = DequantizeTensor(p.from, src.data() + static_cast<size_t>(r0) * in_rb,
                                  rows_f32.data(), nr, n, &pool);
      if (s.ok()) {
        s = QuantizeTensor(p.to, rows_f32.data(), out.data() + static_cast<size_t>(r0) * out_rb, nr, n,
                           &pool);
      }
      if (!s.ok()) return s.WithContext("quantize: tensor " + t.name);
    }
    QM_RETURN_IF_ERROR(w.WriteTensorData(i, out));
  }
  return w.Finish();
}

}  // namespace qwenmux::quant
