// LoRA training throughput and memory on the CPU (issue 17's bar): a random-weight model of a
// real shape (qwen3-0.6b Q8_0 by default, synthesized once into --dir), a fresh adapter of rank
// --rank on all seven projections, one sequence of --seq tokens per step (every position a
// label), --steps AdamW steps. Prints JSON: tokens/s (all steps, and without the first), seconds
// per step, peak RSS, the weights' size, and peak RSS minus weights (the bar: <= 2 GB).
// Usage: finetune_bench [--shape qwen3-0.6b] [--type q8_0] [--dir /tmp] [--rank 16] [--seq 512]
//                       [--steps 3] [--threads 0] [--checkpointing] [--vocab ../shared/testdata/models/qwen3-vocab.gguf]
// (run from the project root so the default vocab path resolves)
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "base/sysinfo.h"
#include "finetune/rng.h"
#include "finetune/step.h"
#include "model/shapes.h"
#include "nlohmann/json.hpp"
#include "quant/synth_model.h"

namespace {

using namespace qwenmux;
using Clock = std::chrono::steady_clock;

int Fail(const std::string& m) {
  std::fprintf(stderr, "finetune_bench: %s\n", m.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string shape_name = "qwen3-0.6b", type = "q8_0", dir = "/tmp", vocab = "../shared/testdata/models/qwen3-vocab.gguf";
  int64_t rank = 16, seq = 512, steps = 3, threads = 0;
  bool checkpointing = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--shape") shape_name = next();
    else if (a == "--type") type = next();
    else if (a == "--dir") dir = next();
    else if (a == "--vocab") vocab = next();
    else if (a == "--rank") rank = std::stoll(next());
    else if (a == "--seq") seq = std::stoll(next());
    else if (a == "--steps") steps = std::stoll(next());
    else if (a == "--threads") threads = std::stoll(next());
    else if (a == "--checkpointing") checkpointing = true;
    else return Fail("unknown argument " + a);
  }
  if (type != "q8_0" && type != "q4_k_m" && type != "f16") return Fail("--type: q8_0, q4_k_m or f16");
  auto shape = model::FindShape(shape_name);
  if (!shape.ok()) return Fail(shape.status().ToString());
  const std::string path = dir + "/qwenmux-finetune-" + shape_name + "-" + type + ".gguf";
  if (!std::filesystem::exists(path)) {
    quant::SynthOptions so;
    so.ftype = type == "q8_0" ? quant::FileType::kQ8_0 : type == "f16" ? quant::FileType::kF16 : quant::FileType::kQ4_K_M;
    so.vocab_path = vocab;
    if (Status s = quant::SynthesizeModel(**shape, path, so); !s.ok()) return Fail(s.ToString());
  }
  ThreadPool pool(static_cast<size_t>(threads));
  auto model = finetune::TrainModel::Open(path, &pool);
  if (!model.ok()) return Fail(model.status().ToString());
  (*model)->set_checkpointing(checkpointing);
  std::vector<runtime::LoraTarget> all;
  for (int k = 0; k < runtime::kLoraTargets; ++k) all.push_back(static_cast<runtime::LoraTarget>(k));
  finetune::LoraParams params = finetune::InitParams((*model)->config(), static_cast<int32_t>(rank),
                                                     static_cast<float>(2 * rank), all, 1);
  finetune::Example ex;
  finetune::SplitMix64 rng(7);
  for (int64_t t = 0; t < seq; ++t) {
    ex.ids.push_back(static_cast<int32_t>(rng.Next() % 150000));
    ex.mask.push_back(t > 0);
  }
  const finetune::Example* batch[1] = {&ex};
  finetune::OptimConfig oc;
  oc.lr = 1e-4f;
  std::vector<double> secs;
  double loss0 = 0;
  for (int64_t s = 0; s < steps; ++s) {
    const auto t0 = Clock::now();
    auto r = finetune::TrainStep(**model, params, batch, oc, s, finetune::Dropout{});
    if (!r.ok()) return Fail(r.status().ToString());
    if (s == 0) loss0 = r->loss;
    secs.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  double total = 0, warm = 0;
  for (size_t i = 0; i < secs.size(); ++i) total += secs[i], warm += i > 0 ? secs[i] : 0;
  const double weights = static_cast<double>(std::filesystem::file_size(path));
  const double peak = static_cast<double>(PeakRssBytes());
  nlohmann::json j = {
      {"bench", "finetune"}, {"shape", shape_name}, {"type", type}, {"rank", rank}, {"targets", 7}, {"seq", seq}, {"checkpointing", checkpointing},
      {"steps", steps}, {"threads", pool.size()}, {"trainable_params", params.n_params()}, {"loss0", loss0},
      {"seconds_per_step", secs}, {"tokens_per_s", static_cast<double>(seq * steps) / total},
      {"tokens_per_s_warm", steps > 1 ? static_cast<double>(seq * (steps - 1)) / warm : 0.0},
      {"peak_rss_mb", peak / 1048576.0}, {"weights_mb", weights / 1048576.0},
      {"peak_rss_over_weights_mb", (peak - weights) / 1048576.0}};
  std::printf("%s\n", j.dump(2).c_str());
  return 0;
}
