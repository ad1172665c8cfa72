// qwenmux lora convert PEFT_DIR OUT.gguf      PEFT adapter -> GGUF adapter (llama.cpp layout)
// qwenmux lora synth MODEL.gguf OUT.gguf [--rank 16] [--alpha 32] [--seed 1]
//                                           a random adapter on every projection (benchmarks)
#include <memory>

#include <fmt/format.h>

#include "commands.h"
#include "model_ref_flag.h"
#include "engine/lora.h"

namespace qwenmux::apps {

namespace {

struct Args {
  std::string in, out, model, models_dir;
  int32_t rank = 16;
  float alpha = 32;
  uint64_t seed = 1;
};

int Convert(const Args& a) {
  auto t = engine::ReadLoraPeft(a.in);
  if (!t.ok()) return ReportError(t.status());
  if (Status s = engine::WriteLoraGguf(*t, a.out); !s.ok()) return ReportError(s);
  fmt::print("{}: {} projections, alpha {} -> {}\n", a.in, t->pairs.size(), t->alpha, a.out);
  return 0;
}

int Synth(Args a) {
  if (Status r = ResolveModelRefs({&a.model}, a.models_dir); !r.ok()) return ReportError(r);
  auto f = gguf::File::Open(a.model);
  if (!f.ok()) return ReportError(f.status());
  auto c = model::ReadConfig(*f);
  if (!c.ok()) return ReportError(c.status());
  auto t = engine::SynthLora(*f, *c, a.rank, a.alpha, a.seed);
  if (!t.ok()) return ReportError(t.status());
  if (Status s = engine::WriteLoraGguf(*t, a.out); !s.ok()) return ReportError(s);
  fmt::print("{}: rank {} on {} projections -> {}\n", a.model, a.rank, t->pairs.size(), a.out);
  return 0;
}

}  // namespace

void RegisterLora(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("lora", "LoRA adapter tools");
  cmd->require_subcommand(1);
  auto* conv = cmd->add_subcommand("convert", "Convert a PEFT adapter directory to a GGUF adapter");
  conv->add_option("dir", a->in, "PEFT directory (adapter_config.json, adapter_model.safetensors)")->required();
  conv->add_option("out", a->out, "Output GGUF file")->required();
  conv->callback([=] { *exit_code = Convert(*a); });
  auto* synth = cmd->add_subcommand("synth", "Write a random adapter for a model (benchmarks)");
  AddModelRef(synth, "model", &a->model, &a->models_dir, "Base model")->required();
  synth->add_option("out", a->out, "Output GGUF file")->required();
  synth->add_option("--rank", a->rank, "Rank")->capture_default_str()->check(CLI::Range(1, 4096));
  synth->add_option("--alpha", a->alpha, "alpha")->capture_default_str();
  synth->add_option("--seed", a->seed, "Random seed")->capture_default_str();
  synth->callback([=] { *exit_code = Synth(*a); });
}

}  // namespace qwenmux::apps
