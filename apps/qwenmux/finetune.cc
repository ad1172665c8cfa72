// qwenmux finetune check BASE.gguf REF.json --section S --lora INIT.gguf [--grads GRADS.gguf] [--json]
//     runs a LoRA training reference section and compares loss, gradients and loss curve
// qwenmux finetune eval BASE.gguf DATA.jsonl --lora ADAPTER [--split valid|train|all] [--json]
//     base against base + adapter: loss, perplexity, exact match
// qwenmux finetune train BASE.gguf DATA.jsonl -o OUT.gguf [flags]   (finetune_train.cc)
// qwenmux finetune prepare MODEL.gguf --store DIR --collection NAME -o OUT.jsonl [flags]
//     question/answer pairs about a RAG collection's chunks (pipeline/qa_gen.h), resumable
#include <memory>

#include <fmt/format.h>

#include "commands.h"
#include "finetune/check.h"
#include "finetune/eval.h"
#include "pipeline/qa_gen.h"
#include "rag/store.h"

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

struct PrepareArgs {
  std::string model, store, out, device = "auto";
  pipeline::QaGenOptions o;
  int32_t ctx = 2048;
  bool json = false;
  int threads = 0;
};

int Prepare(const PrepareArgs& a) {
  auto device = runtime::ParseDeviceChoice(a.device);
  if (!device.ok()) return ReportError(device.status());
  auto store = rag::Store::Open(a.store);
  if (!store.ok()) return ReportError(store.status());
  engine::LoadOptions lo;
  lo.n_ctx = a.ctx;
  lo.n_seq = a.o.batch;
  lo.n_threads = a.threads > 0 ? static_cast<size_t>(a.threads) : 0;
  lo.device = *device;
  auto model = engine::Model::Load(a.model, lo);
  if (!model.ok()) return ReportError(model.status());
  auto r = pipeline::GenerateQaPairs(**model, **store, a.o, a.out);
  if (!r.ok()) return ReportError(r.status());
  if (a.json) {
    fmt::print("{}\n", r->ToJson());
  } else {
    fmt::print("{} chunks ({} done before): {} pairs written, {} kept; dropped {} ungrounded, {} duplicate, {} empty; "
               "{} chunks without a parseable answer; {} tokens -> {}\n",
               r->chunks, r->skipped_done, r->pairs_generated, r->kept, r->dropped_ungrounded, r->dropped_duplicate,
               r->dropped_empty, r->chunks_failed, r->tokens, a.out);
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
  auto p = std::make_shared<PrepareArgs>();
  auto* prep = cmd->add_subcommand("prepare", "Question/answer training pairs about a RAG collection's chunks, written "
                                              "by a stage model as schema-checked JSON (appends; resumes)");
  prep->add_option("model", p->model, "Stage model GGUF that writes the pairs")->required();
  prep->add_option("--store", p->store, "RAG store directory")->required();
  prep->add_option("--collection", p->o.collection, "Collection whose chunks to use")->required();
  prep->add_option("-o,--output", p->out, "Output JSONL (the `messages` shape `train` reads)")->required();
  prep->add_option("--pairs", p->o.pairs_per_chunk, "Pairs asked per chunk (1..8)")->capture_default_str();
  prep->add_option("--max-chunks", p->o.max_chunks, "Chunks to use (0: all)")->capture_default_str();
  prep->add_option("--max-tokens", p->o.max_tokens, "Generation budget per chunk")->capture_default_str();
  prep->add_option("--min-grounding", p->o.min_grounding, "Share of an answer's words that must occur in the chunk")
      ->capture_default_str();
  prep->add_flag("--with-context", p->o.with_context, "Put the chunk before the question in the user turn");
  prep->add_option("--system", p->o.system, "System turn of every example");
  prep->add_option("--batch", p->o.batch, "Chunks generated together")->capture_default_str();
  prep->add_option("--ctx", p->ctx, "Context size of the stage model")->capture_default_str();
  prep->add_option("--device", p->device, "cpu, cuda or auto")->capture_default_str();
  prep->add_flag("--json", p->json, "Print the report as JSON");
  prep->add_option("-t,--threads", p->threads, "Threads (0: all)")->capture_default_str();
  prep->callback([=] { *exit_code = Prepare(*p); });
  RegisterFinetuneTrain(cmd, exit_code);
}

}  // namespace qwenmux::apps
