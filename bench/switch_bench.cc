// Model switch latency through the model manager: two models of the same shape (random weights,
// qwen3-1.7b by default) under a byte budget that holds only one, acquired alternately, each
// followed by one generated token. A switch = unloading the other model + loading this one
// (Model::Load + warm-up: every weight page touched, one forward) + the first token of the request.
// Files are synthesized once into --dir and reused; after the first pass they sit in the page
// cache. Prints JSON: p50/p90 of switch, load and first-token ms, and the manager's own
// qwenmux_model_switch_seconds histogram sum/count.
// Usage: switch_bench [--type q4_k_m|q8_0] [--shape qwen3-1.7b] [--dir /tmp] [--switches 10]
//                     [--n-ctx 4096] [--threads 0] [--vocab ../shared/testdata/models/qwen3-vocab.gguf]
// (run from the project root so the default vocab path resolves)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "base/sysinfo.h"
#include "model/shapes.h"
#include "nlohmann/json.hpp"
#include "orchestrator/manager/model_manager.h"
#include "quant/synth_model.h"

namespace {

using namespace qwenmux;
using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double idx = p * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(idx);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (idx - static_cast<double>(lo));
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "switch_bench: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string type = "q4_k_m", shape_name = "qwen3-1.7b", dir = "/tmp";
  std::string vocab = "../shared/testdata/models/qwen3-vocab.gguf";  // from the project root
  int switches = 10;
  int32_t n_ctx = 4096;
  size_t threads = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--type") type = next();
    else if (a == "--shape") shape_name = next();
    else if (a == "--dir") dir = next();
    else if (a == "--vocab") vocab = next();
    else if (a == "--switches") switches = std::max(2, std::atoi(next().c_str()));
    else if (a == "--n-ctx") n_ctx = std::atoi(next().c_str());
    else if (a == "--threads") threads = static_cast<size_t>(std::atoi(next().c_str()));
    else return Fail("unknown argument " + a);
  }
  auto ftype = quant::ParseFileType(type);
  if (!ftype.ok()) return Fail(ftype.status().ToString());
  auto shape = model::FindShape(shape_name);
  if (!shape.ok()) return Fail(shape.status().ToString());

  std::vector<std::string> paths;
  double synth_s = 0;
  for (int k = 0; k < 2; ++k) {
    const std::string path = dir + "/qwenmux-switch-" + shape_name + "-" + type + "-" + std::to_string(k) + ".gguf";
    if (!std::filesystem::exists(path)) {
      std::fprintf(stderr, "switch_bench: synthesizing %s ...\n", path.c_str());
      quant::SynthOptions so;
      so.ftype = *ftype;
      so.vocab_path = vocab;
      so.seed = 100 + k;
      const auto t0 = Clock::now();
      Status s = quant::SynthesizeModel(**shape, path, so);
      if (!s.ok()) return Fail(s.ToString());
      synth_s += Ms(t0, Clock::now()) / 1000;
    }
    paths.push_back(path);
  }

  orchestrator::Metrics metrics;
  std::vector<orchestrator::ModelSpec> specs;
  for (int k = 0; k < 2; ++k) {
    orchestrator::ModelSpec s;
    s.name = "m" + std::to_string(k);
    s.path = paths[k];
    s.load.n_ctx = n_ctx;
    s.load.n_threads = threads;
    s.keep_alive = orchestrator::kKeepForever;
    specs.push_back(s);
  }
  auto est = orchestrator::EstimateModelMemory(paths[0], specs[0].load);
  if (!est.ok()) return Fail(est.status().ToString());
  orchestrator::ManagerOptions o;
  o.budget_bytes = est->total() + est->total() / 2;  // one fits, two do not
  o.metrics = &metrics;
  orchestrator::ModelManager manager(o, specs);

  // Warm the page cache: load each model once (not timed).
  for (int k = 0; k < 2; ++k) {
    auto l = manager.Acquire(specs[k].name);
    if (!l.ok()) return Fail(l.status().ToString());
  }
  std::vector<double> switch_ms, acquire_ms, first_token_ms;
  const int32_t prompt[] = {9707, 11, 1879, 0};  // a few ordinary token ids
  engine::GenerateOptions g;
  g.max_tokens = 1;
  g.stop_on_eos = false;
  g.sampler.temperature = 0;
  for (int i = 0; i < switches; ++i) {
    const auto& name = specs[i % 2].name;
    const auto t0 = Clock::now();
    auto l = manager.Acquire(name);
    if (!l.ok()) return Fail(l.status().ToString());
    const auto t1 = Clock::now();
    auto r = (*l)->Generate(prompt, g);
    if (!r.ok()) return Fail(r.status().ToString());
    const auto t2 = Clock::now();
    acquire_ms.push_back(Ms(t0, t1));
    first_token_ms.push_back(Ms(t1, t2));
    switch_ms.push_back(Ms(t0, t2));
  }
  // The manager's own switch histogram (evict + load + warm-up) from the Prometheus text.
  const std::string text = metrics.RenderText();
  auto series = [&](const std::string& key) {
    double sum = 0;
    for (size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + 1)) {
      const size_t sp = text.find(' ', text.find('}', at));
      sum += std::atof(text.c_str() + sp + 1);
    }
    return sum;
  };
  nlohmann::json j;
  j["bench"] = "switch";
  j["shape"] = shape_name;
  j["type"] = type;
  j["file_bytes"] = std::filesystem::file_size(paths[0]);
  j["estimate_bytes"] = est->total();
  j["estimate"] = est->ToString();
  j["budget_bytes"] = o.budget_bytes;
  j["n_ctx"] = n_ctx;
  j["switches"] = switches;
  j["synth_seconds"] = synth_s;
  j["switch_ms"] = {{"p50", Percentile(switch_ms, 0.5)}, {"p90", Percentile(switch_ms, 0.9)}};
  j["unload_load_warmup_ms"] = {{"p50", Percentile(acquire_ms, 0.5)}, {"p90", Percentile(acquire_ms, 0.9)}};
  j["first_token_ms"] = {{"p50", Percentile(first_token_ms, 0.5)}, {"p90", Percentile(first_token_ms, 0.9)}};
  const double n_sw = series("qwenmux_model_switch_seconds_count{");
  j["metric_switch_mean_ms"] = n_sw > 0 ? 1000 * series("qwenmux_model_switch_seconds_sum{") / n_sw : 0;
  j["metric_switch_count"] = n_sw;
  j["peak_rss_bytes"] = PeakRssBytes();
  std::printf("%s\n", j.dump(2).c_str());
  return 0;
}
