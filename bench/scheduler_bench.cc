// Continuous batching throughput through the scheduler: one greedy request alone, then N
// (default 4) concurrent requests of the same model, same max_tokens, different prompts. Reports
// the total decode tokens/s of each run and their ratio (issue 5's bar: >= 2.5x for 4), and
// whether each batched request produced exactly the tokens it produces alone.
// Decode throughput = tokens after each request's first one / (last token of any request -
// first token of any request); the prompts are prefilled together in the first step.
// The model is a Qwen3-0.6B-shaped random-weight Q8_0 file synthesized once into --dir (or
// --model PATH).
// Usage: scheduler_bench [--model PATH] [--shape qwen3-0.6b] [--type q8_0] [--dir /tmp]
//                        [--tokens 64] [--concurrency 4] [--threads 0] [--n-ctx 1024]
//                        [--vocab ../shared/testdata/models/qwen3-vocab.gguf]
// (run from the project root so the default vocab path resolves)
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "base/sysinfo.h"
#include "base/thread_pool.h"
#include "model/shapes.h"
#include "nlohmann/json.hpp"
#include "orchestrator/manager/model_manager.h"
#include "orchestrator/scheduler/scheduler.h"
#include "quant/synth_model.h"

namespace {

using namespace qwenmux;
using namespace qwenmux::orchestrator;
using Clock = std::chrono::steady_clock;

double Sec(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

int Fail(const std::string& what) {
  std::fprintf(stderr, "scheduler_bench: %s\n", what.c_str());
  return 1;
}

struct Run {
  std::vector<std::vector<int32_t>> tokens;
  double decode_tokens_per_s = 0, wall_s = 0, ttft_mean_s = 0;
  int64_t decode_tokens = 0;
  bool ok = true;
  std::string error;
};

// Submits one request per prompt at once and waits for all of them.
Run RunBatch(Scheduler& sched, const std::vector<std::vector<int32_t>>& prompts, int32_t max_tokens) {
  const size_t n = prompts.size();
  std::mutex mu;
  std::condition_variable cv;
  size_t done = 0;
  Run run;
  run.tokens.resize(n);
  std::vector<Clock::time_point> first(n), last(n);
  std::vector<double> ttft(n);
  const auto t0 = Clock::now();
  for (size_t i = 0; i < n; ++i) {
    GenerationRequest r;
    r.model = "m";
    r.prompt = prompts[i];
    r.options.sampler.temperature = 0;
    r.options.max_tokens = max_tokens;
    r.options.stop_on_eos = false;
    r.on_token = [&, i](const TokenEvent& e) {
      const auto now = Clock::now();
      std::lock_guard lk(mu);
      if (run.tokens[i].empty()) first[i] = now;
      last[i] = now;
      run.tokens[i].push_back(e.token);
      return true;
    };
    r.on_done = [&, i](Result<GenerationResult> res) {
      std::lock_guard lk(mu);
      if (!res.ok()) {
        run.ok = false;
        run.error = res.status().ToString();
      } else {
        ttft[i] = res->ttft_seconds;
      }
      ++done;
      cv.notify_all();
    };
    auto h = sched.Submit(std::move(r));
    if (!h.ok()) {
      run.ok = false;
      run.error = h.status().ToString();
      return run;
    }
  }
  std::unique_lock lk(mu);
  cv.wait(lk, [&] { return done == n; });
  run.wall_s = Sec(t0, Clock::now());
  if (!run.ok) return run;
  const auto begin = *std::min_element(first.begin(), first.end());
  const auto end = *std::max_element(last.begin(), last.end());
  for (size_t i = 0; i < n; ++i) {
    run.decode_tokens += static_cast<int64_t>(run.tokens[i].size()) - 1;
    run.ttft_mean_s += ttft[i] / static_cast<double>(n);
  }
  run.decode_tokens_per_s = static_cast<double>(run.decode_tokens) / Sec(begin, end);
  return run;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path, type = "q8_0", shape_name = "qwen3-0.6b", dir = "/tmp";
  std::string vocab = "../shared/testdata/models/qwen3-vocab.gguf";
  int32_t tokens = 64, concurrency = 4, n_ctx = 1024;
  size_t threads = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--model") model_path = next();
    else if (a == "--type") type = next();
    else if (a == "--shape") shape_name = next();
    else if (a == "--dir") dir = next();
    else if (a == "--vocab") vocab = next();
    else if (a == "--tokens") tokens = std::max(2, std::atoi(next().c_str()));
    else if (a == "--concurrency") concurrency = std::max(1, std::atoi(next().c_str()));
    else if (a == "--n-ctx") n_ctx = std::atoi(next().c_str());
    else if (a == "--threads") threads = static_cast<size_t>(std::atoi(next().c_str()));
    else return Fail("unknown argument " + a);
  }
  double synth_s = 0;
  if (model_path.empty()) {
    auto ftype = quant::ParseFileType(type);
    if (!ftype.ok()) return Fail(ftype.status().ToString());
    auto shape = model::FindShape(shape_name);
    if (!shape.ok()) return Fail(shape.status().ToString());
    model_path = dir + "/qwenmux-sched-" + shape_name + "-" + type + ".gguf";
    if (!std::filesystem::exists(model_path)) {
      std::fprintf(stderr, "scheduler_bench: synthesizing %s ...\n", model_path.c_str());
      quant::SynthOptions so;
      so.ftype = *ftype;
      so.vocab_path = vocab;
      so.seed = 5;
      const auto t0 = Clock::now();
      Status s = quant::SynthesizeModel(**shape, model_path, so);
      if (!s.ok()) return Fail(s.ToString());
      synth_s = Sec(t0, Clock::now());
    }
  }

  Metrics metrics;
  ModelSpec spec;
  spec.name = "m";
  spec.path = model_path;
  spec.load.n_ctx = n_ctx;
  spec.load.n_seq = concurrency;
  spec.load.n_batch = 512;
  spec.load.n_threads = threads;
  spec.keep_alive = kKeepForever;
  ManagerOptions mo;
  mo.metrics = &metrics;
  ModelManager manager(mo, {spec});
  SchedulerOptions so;
  so.metrics = &metrics;
  Scheduler sched(&manager, so);

  // Distinct prompts of similar length (ordinary token ids).
  std::vector<std::vector<int32_t>> prompts;
  for (int32_t i = 0; i < concurrency; ++i) {
    std::vector<int32_t> p;
    for (int32_t k = 0; k < 16; ++k) p.push_back(1000 + 37 * i + 101 * k);
    prompts.push_back(p);
  }
  // Warm-up: load the model, touch the weights.
  Run warm = RunBatch(sched, {prompts[0]}, 4);
  if (!warm.ok) return Fail(warm.error);

  Run single = RunBatch(sched, {prompts[0]}, tokens);
  if (!single.ok) return Fail(single.error);
  Run batched = RunBatch(sched, prompts, tokens);
  if (!batched.ok) return Fail(batched.error);
  // Each batched request alone, for the token comparison (greedy output must not change).
  bool match = batched.tokens[0] == single.tokens[0];
  for (int32_t i = 1; i < concurrency; ++i) {
    Run alone = RunBatch(sched, {prompts[i]}, tokens);
    if (!alone.ok) return Fail(alone.error);
    match = match && alone.tokens[0] == batched.tokens[i];
  }

  nlohmann::json j;
  j["bench"] = "scheduler";
  j["model"] = model_path;
  j["file_bytes"] = std::filesystem::file_size(model_path);
  j["threads"] = threads == 0 ? ThreadPool::DefaultThreadCount() : threads;
  j["max_tokens"] = tokens;
  j["prompt_tokens"] = prompts[0].size();
  j["synth_seconds"] = synth_s;
  j["single"] = {{"decode_tokens", single.decode_tokens},
                 {"decode_tokens_per_s", single.decode_tokens_per_s},
                 {"ttft_s", single.ttft_mean_s},
                 {"wall_s", single.wall_s}};
  j["batched"] = {{"requests", concurrency},
                  {"decode_tokens", batched.decode_tokens},
                  {"decode_tokens_per_s", batched.decode_tokens_per_s},
                  {"ttft_mean_s", batched.ttft_mean_s},
                  {"wall_s", batched.wall_s}};
  j["ratio"] = batched.decode_tokens_per_s / single.decode_tokens_per_s;
  j["bar"] = 2.5;
  j["meets_bar"] = batched.decode_tokens_per_s >= 2.5 * single.decode_tokens_per_s;
  j["batched_tokens_match_alone"] = match;
  j["peak_rss_bytes"] = PeakRssBytes();
  std::printf("%s\n", j.dump(2).c_str());
  return 0;
}
