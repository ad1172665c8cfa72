#include "finetune/peft.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

namespace qwenmux::finetune {

Status WritePeftDir(const LoraParams& p, float dropout, const std::string& dir) {
  if (p.pairs.empty()) return Error(StatusCode::kInvalidArgument, "finetune: no LoRA pairs to write to {}", dir);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Error(StatusCode::kIo, "finetune: cannot create {}: {}", dir, ec.message());
  // safetensors: u64 header size, JSON header (padded with spaces to 8 bytes), then the data.
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  std::vector<const std::vector<float>*> data;
  uint64_t off = 0;
  std::vector<std::string> modules;
  for (const LoraParam& q : p.pairs) {
    const std::string peft(runtime::LoraTargetPeftName(q.target));
    const std::string base = fmt::format("base_model.model.model.layers.{}.{}", q.layer, peft);
    const std::string module = peft.substr(peft.find('.') + 1);
    if (std::find(modules.begin(), modules.end(), module) == modules.end()) modules.push_back(module);
    for (bool is_a : {true, false}) {
      const std::vector<float>& v = is_a ? q.a : q.b;
      const uint64_t bytes = v.size() * sizeof(float);
      header[base + (is_a ? ".lora_A.weight" : ".lora_B.weight")] = {
          {"dtype", "F32"},
          {"shape", is_a ? std::vector<int64_t>{q.rank, q.in} : std::vector<int64_t>{q.out, q.rank}},
          {"data_offsets", {off, off + bytes}}};
      off += bytes;
      data.push_back(&v);
    }
  }
  std::string h = header.dump();
  h.resize((h.size() + 7) / 8 * 8, ' ');
  const std::string st = dir + "/adapter_model.safetensors";
  {
    std::ofstream f(st, std::ios::binary | std::ios::trunc);
    const uint64_t n = h.size();
    f.write(reinterpret_cast<const char*>(&n), sizeof(n));
    f.write(h.data(), static_cast<std::streamsize>(h.size()));
    for (const auto* v : data) f.write(reinterpret_cast<const char*>(v->data()), static_cast<std::streamsize>(v->size() * sizeof(float)));
    if (!f) return Error(StatusCode::kIo, "finetune: error writing {}", st);
  }
  const int32_t r = p.pairs[0].rank;
  nlohmann::ordered_json cfg = {{"peft_type", "LORA"},
                                {"task_type", "CAUSAL_LM"},
                                {"r", r},
                                {"lora_alpha", p.alpha > 0 ? p.alpha : static_cast<float>(r)},
                                {"lora_dropout", dropout},
                                {"target_modules", modules},
                                {"bias", "none"},
                                {"fan_in_fan_out", false},
                                {"inference_mode", true},
                                {"base_model_name_or_path", ""}};
  const std::string cp = dir + "/adapter_config.json";
  std::ofstream c(cp, std::ios::trunc);
  c << cfg.dump(2) << "\n";
  if (!c) return Error(StatusCode::kIo, "finetune: error writing {}", cp);
  return Status::Ok();
}

}  // namespace qwenmux::finetune
