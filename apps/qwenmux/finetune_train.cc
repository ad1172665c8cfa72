// qwenmux finetune train BASE.gguf DATA.jsonl -o OUT.gguf [--rank 8] [--alpha 16] [--dropout 0]
//     [--targets all|q,k,v,o,gate,up,down] [--lr 1e-4] [--steps 100] [--batch 4] [--accum 1]
//     [--warmup 0] [--schedule constant|linear|cosine] [--clip 0] [--weight-decay 0]
//     [--eval-every N] [--valid 0.1] [--max-tokens 2048] [--truncate] [--seed 1]
//     [--checkpoint-every N] [--checkpoint FILE] [--resume] [--stop-after K] [--init ADAPTER]
//     [--log-json FILE] [--exact-match] [--json] [-t N]
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "commands.h"
#include "finetune/train.h"

namespace qwenmux::apps {

namespace {

struct TrainArgs {
  finetune::TrainOptions o;
  std::string schedule = "constant";
  bool json = false;
  int threads = 0;
};

int RunTrain(TrainArgs a) {
  auto sched = finetune::ParseSchedule(a.schedule);
  if (!sched.ok()) return ReportError(sched.status());
  a.o.optim.schedule = *sched;
  ThreadPool pool(a.threads > 0 ? static_cast<size_t>(a.threads) : 0);
  auto r = finetune::Train(a.o, &pool, stderr);
  if (!r.ok()) return ReportError(r.status());
  if (a.json) {
    fmt::print("{}\n", r->ToJson().dump(2));
  } else {
    fmt::print("{} steps, final loss {:.4f}{}, {:.0f} tok/s{}\n", r->steps_done,
               r->losses.empty() ? 0.0 : r->losses.back(),
               r->valid_loss >= 0 ? fmt::format(", valid loss {:.4f}", r->valid_loss) : "", r->tokens_per_s,
               r->exact_match >= 0 ? fmt::format(", exact match {:.1f}%", 100 * r->exact_match) : "");
  }
  return 0;
}

}  // namespace

void RegisterFinetuneTrain(CLI::App* finetune, int* exit_code) {
  auto a = std::make_shared<TrainArgs>();
  auto& o = a->o;
  auto* c = finetune->add_subcommand("train", "Train a LoRA adapter on JSONL chat data (CPU, f32)");
  c->add_option("base", o.base, "Base model GGUF (any type the engine runs; frozen)")->required();
  c->add_option("data", o.data, "JSONL: messages / instruction-input-output / prompt-completion")->required();
  c->add_option("-o,--out", o.out, "Adapter GGUF to write")->required();
  c->add_option("--peft", o.peft_dir, "Also write a PEFT directory (adapter_config.json, adapter_model.safetensors)");
  c->add_option("--init", o.init, "Start from this adapter instead of a fresh one");
  c->add_option("--rank", o.rank, "LoRA rank")->capture_default_str()->check(CLI::Range(1, 4096));
  c->add_option("--alpha", o.alpha, "LoRA alpha (scale alpha/rank)")->capture_default_str();
  c->add_option("--dropout", o.dropout, "LoRA dropout")->capture_default_str();
  c->add_flag("--checkpointing", o.checkpointing,
              "Activation checkpointing: keep layer inputs only, recompute in the backward (less memory)");
  c->add_option("--targets", o.targets, "Projections: all, or a list of q,k,v,o,gate,up,down")->capture_default_str();
  c->add_option("--lr", o.optim.lr, "Peak learning rate")->capture_default_str();
  c->add_option("--weight-decay", o.optim.weight_decay, "AdamW weight decay")->capture_default_str();
  c->add_option("--clip", o.optim.grad_clip, "Gradient clipping (global L2 norm; 0: off)")->capture_default_str();
  c->add_option("--warmup", o.optim.warmup_steps, "Warmup steps")->capture_default_str();
  c->add_option("--schedule", a->schedule, "constant, linear or cosine")->capture_default_str();
  c->add_option("--steps", o.steps, "Optimizer steps")->capture_default_str();
  c->add_option("--batch", o.batch, "Examples per micro-batch")->capture_default_str();
  c->add_option("--accum", o.accum, "Gradient accumulation (micro-batches per step)")->capture_default_str();
  c->add_option("--eval-every", o.eval_every, "Validation loss every N steps (0: at the end)")->capture_default_str();
  c->add_option("--early-stop", o.early_stop, "Stop after N evaluations without a better validation loss (0: off)")
      ->capture_default_str();
  c->add_option("--valid", o.data_options.valid_fraction, "Validation share of the data")->capture_default_str();
  c->add_option("--max-tokens", o.data_options.max_tokens, "Longest example (tokens)")->capture_default_str();
  c->add_flag("--truncate", o.data_options.truncate, "Truncate over-long examples instead of dropping them");
  c->add_option("--seed", o.seed, "Seed of the split, shuffles, dropout and initialisation")->capture_default_str();
  c->add_option("--checkpoint-every", o.checkpoint_every, "Checkpoint every N steps")->capture_default_str();
  c->add_option("--checkpoint", o.checkpoint, "Checkpoint file (default OUT.ckpt)");
  c->add_flag("--resume", o.resume, "Continue from the checkpoint when it exists");
  c->add_option("--stop-after", o.stop_after, "Stop after this many steps, writing a checkpoint");
  c->add_option("--log-json", o.log_json, "Append per-step JSON records to this file");
  c->add_flag("--exact-match", o.exact_match, "Report exact match on the training examples at the end");
  c->add_flag("--json", a->json, "Print the report as JSON");
  c->add_option("-t,--threads", a->threads, "Threads (0: all)")->capture_default_str();
  c->callback([=] {
    a->o.data_options.seed = a->o.seed;
    *exit_code = RunTrain(*a);
  });
}

}  // namespace qwenmux::apps
