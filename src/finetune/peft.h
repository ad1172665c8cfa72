// Writes a trained adapter as a PEFT directory (adapter_config.json + adapter_model.safetensors,
// F32, names base_model.model.model.layers.N.<self_attn.q_proj|...>.lora_A/.lora_B.weight), the
// form transformers / PEFT load and `qwenmux lora convert` reads back.
//
// Thread-safety: a free function.
#pragma once

#include <string>

#include "base/status.h"
#include "finetune/lora_params.h"

namespace qwenmux::finetune {

Status WritePeftDir(const LoraParams& p, float dropout, const std::string& dir);

}  // namespace qwenmux::finetune
