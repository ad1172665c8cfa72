// qwenmux inspect FILE.gguf [--json]: architecture, hyper-parameters, tokenizer summary, tensor
// table, totals by type, and the memory the weights need.
#include <cstdio>
#include <map>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "model_ref_flag.h"
#include "gguf/gguf.h"
#include "model/config.h"
#include "orchestrator/config/units.h"
#include "orchestrator/manager/memory_estimate.h"
#include "runtime/device_select.h"

namespace qwenmux::apps {

namespace {

nlohmann::json ConfigJson(const model::ModelConfig& c) {
  nlohmann::json j = {{"architecture", c.arch_name},
                      {"block_count", c.n_layer},
                      {"embedding_length", c.n_embd},
                      {"feed_forward_length", c.n_ff},
                      {"head_count", c.n_head},
                      {"head_count_kv", c.n_head_kv},
                      {"head_dim", c.head_dim},
                      {"context_length", c.n_ctx_train},
                      {"vocab_size", c.n_vocab},
                      {"rms_eps", c.rms_eps},
                      {"rope_freq_base", c.rope_freq_base},
                      {"tied_embeddings", c.tied_embeddings},
                      {"kv_cache_bytes_per_token_f16", model::KvBytesPerToken(c)}};
  if (c.is_moe()) {
    j["expert_count"] = c.n_expert;
    j["expert_used_count"] = c.n_expert_used;
    j["expert_feed_forward_length"] = c.n_ff_exp;
  }
  if (c.rope_yarn) {
    j["rope_scaling"] = {{"type", "yarn"}, {"factor", c.rope_scale_factor}, {"original_context_length", c.rope_orig_ctx}};
  }
  if (c.pooling != model::PoolingType::kNone) j["pooling_type"] = static_cast<int>(c.pooling);
  return j;
}

nlohmann::json TokenizerJson(const gguf::File& f) {
  nlohmann::json j = nlohmann::json::object();
  if (auto m = f.GetOptional<std::string>("tokenizer.ggml.model"); m.ok() && m->has_value()) j["model"] = **m;
  if (auto p = f.GetOptional<std::string>("tokenizer.ggml.pre"); p.ok() && p->has_value()) j["pre"] = **p;
  if (auto t = f.GetArray("tokenizer.ggml.tokens", gguf::ValueType::kString); t.ok()) j["tokens"] = (*t)->items.size();
  if (auto m = f.GetArray("tokenizer.ggml.merges", gguf::ValueType::kString); m.ok()) j["merges"] = (*m)->items.size();
  for (const char* k : {"bos_token_id", "eos_token_id", "padding_token_id"}) {
    if (auto v = f.GetUInt(std::string("tokenizer.ggml.") + k); v.ok()) j[k] = *v;
  }
  j["has_chat_template"] = f.Find("tokenizer.chat_template") != nullptr;
  return j;
}

struct Args {
  std::string path, models_dir;
  bool json = false;
  int32_t ctx = 4096, parallel = 1;
  std::string gpu_memory_budget = "90%";
};

// RAM and GPU memory of the model at ctx x parallel, the GPU and whether the model fits its budget.
Result<nlohmann::json> MemoryJson(const gguf::File& f, const model::ModelConfig& c, const Args& a) {
  engine::LoadOptions lo;
  lo.n_ctx = a.ctx;
  lo.n_seq = a.parallel;
  QM_ASSIGN_OR_RETURN(orchestrator::MemoryAmount budget, orchestrator::ParseMemoryAmount(a.gpu_memory_budget));
  const orchestrator::MemoryEstimate ram = orchestrator::EstimateMemory(f, c, lo);
  const orchestrator::DeviceMemoryEstimate dev = orchestrator::EstimateDeviceMemory(c, model::WeightBytes(f), lo);
  const runtime::CudaDeviceInfo gpu = runtime::QueryCudaDevice(0);
  const uint64_t gpu_budget = orchestrator::ResolveGpuBudget(budget, gpu);
  nlohmann::json g = {{"available", gpu.available}, {"describe", runtime::DescribeCudaDevice(gpu)}};
  if (gpu.available) {
    g["name"] = gpu.name;
    g["total_bytes"] = gpu.total_bytes;
    g["free_bytes"] = gpu.free_bytes;
    g["budget_bytes"] = gpu_budget;
  }
  return nlohmann::json{
      {"context", std::min<uint32_t>(static_cast<uint32_t>(a.ctx), c.n_ctx_train)},
      {"sequences", a.parallel},
      {"ram_bytes", ram.total()},
      {"ram", {{"weights", ram.weights}, {"kv_cache", ram.kv_cache}, {"compute", ram.compute}, {"metadata", ram.metadata}}},
      {"device_bytes", dev.total()},
      {"device", {{"weights", dev.weights}, {"kv_cache", dev.kv_cache}, {"scratch", dev.scratch}}},
      {"gpu", g},
      {"fits_gpu", gpu.available && dev.total() <= gpu_budget},
      {"text", fmt::format("RAM (on the CPU) {}\n  GPU memory (on the GPU) {}\n  GPU: {}{}", ram.ToString(), dev.ToString(),
                           runtime::DescribeCudaDevice(gpu),
                           gpu.available ? fmt::format(", budget {}: {}", orchestrator::FormatSize(gpu_budget),
                                                       dev.total() <= gpu_budget ? "fits" : "does not fit")
                                         : "")}};
}

int Run(Args a) {
  if (Status r = ResolveModelRefs({&a.path}, a.models_dir); !r.ok()) return ReportError(r);
  const std::string& path = a.path;
  const bool json = a.json;
  auto file = gguf::File::Open(path);
  if (!file.ok()) {
    return ReportError(file.status());
  }
  const gguf::File& f = *file;
  const bool has_tensors = !f.tensors().empty();
  nlohmann::json out;
  out["file"] = path;
  out["gguf_version"] = f.version();
  out["file_bytes"] = f.file_size();
  out["metadata_count"] = f.metadata().size();
  if (auto a = f.GetOptional<std::string>("general.architecture"); a.ok() && a->has_value()) out["architecture"] = **a;
  if (has_tensors) {
    auto cfg = model::ReadConfig(f);
    if (cfg.ok()) {
      out["hparams"] = ConfigJson(*cfg);
      auto mem = MemoryJson(f, *cfg, a);
      if (!mem.ok()) return ReportError(mem.status().WithContext("--gpu-memory-budget"));
      out["memory"] = std::move(*mem);
    } else {
      out["hparams_error"] = cfg.status().ToString();
    }
  }
  out["tokenizer"] = TokenizerJson(f);
  nlohmann::json tensors = nlohmann::json::array();
  std::map<std::string, std::pair<uint64_t, uint64_t>> by_type;  // name -> (count, bytes)
  uint64_t total = 0, params = 0;
  for (const auto& t : f.tensors()) {
    tensors.push_back({{"name", t.name},
                       {"type", gguf::TensorTypeName(t.type)},
                       {"shape", std::vector<uint64_t>(t.ne, t.ne + t.n_dims)},
                       {"bytes", t.n_bytes}});
    auto& e = by_type[gguf::TensorTypeName(t.type)];
    e.first++;
    e.second += t.n_bytes;
    total += t.n_bytes;
    params += t.n_elements();
  }
  nlohmann::json totals = nlohmann::json::object();
  for (const auto& [name, e] : by_type) totals[name] = {{"tensors", e.first}, {"bytes", e.second}};
  out["tensors"] = tensors;
  out["totals_by_type"] = totals;
  out["parameters"] = params;
  out["weights_bytes"] = total;

  std::string memory_text;
  if (out.contains("memory")) {
    memory_text = out["memory"]["text"].get<std::string>();
    out["memory"].erase("text");
  }
  if (json) {
    fmt::print("{}\n", out.dump(2));
    return 0;
  }
  fmt::print("file:          {}\n", path);
  fmt::print("gguf version:  {}  ({} metadata keys, {} tensors, {})\n", f.version(), f.metadata().size(),
             f.tensors().size(), orchestrator::FormatSize(f.file_size()));
  if (out.contains("architecture")) fmt::print("architecture:  {}\n", out["architecture"].get<std::string>());
  if (out.contains("hparams")) {
    fmt::print("\nhyper-parameters:\n");
    for (const auto& [k, v] : out["hparams"].items()) fmt::print("  {:<30} {}\n", k, v.dump());
  } else if (out.contains("hparams_error")) {
    fmt::print("\nhyper-parameters: {}\n", out["hparams_error"].get<std::string>());
  }
  fmt::print("\ntokenizer:\n");
  for (const auto& [k, v] : out["tokenizer"].items()) fmt::print("  {:<30} {}\n", k, v.dump());
  if (has_tensors) {
    fmt::print("\n{:<40} {:<8} {:<24} {:>12}\n", "tensor", "type", "shape", "bytes");
    for (const auto& t : f.tensors()) {
      fmt::print("{:<40} {:<8} {:<24} {:>12}\n", t.name, gguf::TensorTypeName(t.type), t.ShapeString(), t.n_bytes);
    }
    fmt::print("\ntotals by type:\n");
    for (const auto& [name, e] : by_type) {
      fmt::print("  {:<8} {:>5} tensors  {:>12}\n", name, e.first, orchestrator::FormatSize(e.second));
    }
  }
  fmt::print("\nparameters:    {}\nweights need:  {} ({} bytes)\n", params, orchestrator::FormatSize(total), total);
  if (!memory_text.empty()) {
    fmt::print("memory at context {} x {} sequence(s):\n  {}\n", out["memory"]["context"].get<uint32_t>(),
               out["memory"]["sequences"].get<int32_t>(), memory_text);
  }
  return 0;
}

}  // namespace

void RegisterInspect(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("inspect", "Show a GGUF file: hyper-parameters, tokenizer, tensors, memory");
  auto a = std::make_shared<Args>();
  AddModelRef(cmd, "file", &a->path, &a->models_dir)->required();
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->add_option("-c,--ctx", a->ctx, "Context (tokens per sequence) for the memory figures")
      ->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--parallel", a->parallel, "Sequences (KV-cache slots) for the memory figures")
      ->capture_default_str()->check(CLI::Range(1, 256));
  cmd->add_option("--gpu-memory-budget", a->gpu_memory_budget, "GPU budget: a size (20GiB) or a share of free device memory")
      ->capture_default_str();
  cmd->callback([=] { *exit_code = Run(*a); });
}

}  // namespace qwenmux::apps
