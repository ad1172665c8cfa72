// qwenmux finetune check BASE.gguf REF.json --section S --lora INIT.gguf [--grads GRADS.gguf] [--json]
//     runs a LoRA training reference section and compares loss, gradients and loss curve
// qwenmux finetune eval BASE.gguf DATA.jsonl --lora ADAPTER [--split valid|train|all] [--json]
//     base against base + adapter: loss, perplexity, exact match
// qwenmux finetune train BASE.gguf DATA.jsonl -o OUT.gguf [flags]   (finetune_train.cc)
#include <memory>

#include <fmt/format.h>

#include "commands.h"
#include "finetune/check.h"
#include "finetune/eval.h"

namespace qwenmux::apps {

void RegisterFinetuneTrain(CLI::App* finetune, int* exit_code);  // finetune_train.cc

namespace {

struct CheckArgs {
  finetune::CheckOptions o;
  bool json = false;
  int threads = 0;
};

int Check(const CheckArgs& a) {
  ThreadPool pool(a.threads > 0 ? static_cast<size_t>(a.threads) : 0);
  auto r = finetune::RunCheck(a.o, &pool);
  if (!r.ok()) return ReportError(r.status());
  if (a.json) {
    fmt::print("{}\n", r->ToJson().dump(2));
  } else {
    fmt::print("{}", r->ToText());
  }
  return r->pass ? 0 : 3;
}

struct EvalArgs {
  finetune::EvalOptions o;
  bool json = false;
  int threads = 0;
};

int Eval(EvalArgs a) {
  ThreadPool pool(a.threads > 0 ? static_cast<size_t>(a.threads) : 0);
  auto r = finetune::RunEval(a.o, &pool);
  if (!r.ok()) return ReportError(r.status());
  if (a.json) {
    fmt::print("{}\n", r->ToJson().dump(2));
  } else {
    fmt::print("{}", r->ToText());
  }
  return 0;
}

}  // namespace

void RegisterFinetune(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("finetune", "LoRA fine-tuning on the CPU: train, check against a reference");
  cmd->require_subcommand(1);
  auto a = std::make_shared<CheckArgs>();
  auto* check = cmd->add_subcommand("check", "Run a LoRA training reference section; exit 3 when a bar is missed");
  check->add_option("base", a->o.base, "Base model GGUF")->required();
  check->add_option("ref", a->o.ref, "Reference JSON (tiny-dense.lora.json)")->required();
  check->add_option("--section", a->o.section, "Reference section: training or training_q8_0_base")->required();
  check->add_option("--lora", a->o.lora, "Initial adapter (GGUF or PEFT directory)")->required();
  check->add_option("--grads", a->o.grads, "Step-0 gradients GGUF to compare with");
  check->add_flag("--json", a->json, "Print JSON");
  check->add_option("-t,--threads", a->threads, "Threads (0: all)")->capture_default_str();
  check->callback([=] { *exit_code = Check(*a); });
  auto e = std::make_shared<EvalArgs>();
  auto* ev = cmd->add_subcommand("eval", "Base model against base + adapter on a data split: loss, perplexity, exact match");
  ev->add_option("base", e->o.base, "Base model GGUF")->required();
  ev->add_option("data", e->o.data, "JSONL data (split as `train` splits it: same --seed and --valid)")->required();
  ev->add_option("--lora", e->o.lora, "Adapter (GGUF or PEFT directory)")->required();
  ev->add_option("--split", e->o.split, "valid, train or all")->capture_default_str();
  ev->add_option("--valid", e->o.data_options.valid_fraction, "Validation share")->capture_default_str();
  ev->add_option("--seed", e->o.data_options.seed, "Seed of the split")->capture_default_str();
  ev->add_option("--max-tokens", e->o.data_options.max_tokens, "Longest example (tokens)")->capture_default_str();
  ev->add_flag("--truncate", e->o.data_options.truncate, "Truncate over-long examples instead of dropping them");
  ev->add_flag("--json", e->json, "Print JSON");
  ev->add_option("-t,--threads", e->threads, "Threads (0: all)")->capture_default_str();
  ev->callback([=] { *exit_code = Eval(*e); });
  RegisterFinetuneTrain(cmd, exit_code);
}

}  // namespace qwenmux::apps
