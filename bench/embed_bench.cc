// Embedding throughput for RAG ingest: chunks of exactly --tokens tokens (256 by default) through
// Model::Embed, one chunk per call (n_seq 1) against batches that share forward passes across
// n_seq KV sequences, for each --seqs x --batch setting. Prints JSON: chunks/min per setting, the
// best, its speed-up over one-at-a-time, and the seed's target (> 1000 chunks/min).
// Usage: embed_bench --model FILE.gguf [--chunks 16] [--single 4] [--tokens 256]
//                    [--seqs 1,4,8] [--batch 512,2048] [--threads 0]
// Make a Qwen3-Embedding-0.6B-shaped model first (in /tmp):
//   qwenmux synth --shape qwen3-embedding-0.6b --type q8_0
//     --vocab ../shared/testdata/models/qwen3-vocab.gguf -o /tmp/rag-qwen3-embedding-0.6b-q8_0.gguf
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <thread>

#include "engine/engine.h"

namespace {

using namespace qwenmux;
using Clock = std::chrono::steady_clock;

std::vector<int> ParseList(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');) out.push_back(std::stoi(x));
  return out;
}

double ProcessCpuS() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

double LoadAverage() {
  double l[1] = {0};
  return getloadavg(l, 1) == 1 ? l[0] : -1;
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "embed_bench: %s\n", what.c_str());
  return 1;
}

// Chunks of exactly `tokens` ids, from random English-like text through the model's tokenizer.
std::vector<std::vector<int32_t>> MakeChunks(const engine::Model& m, int n, int tokens) {
  static const char* kWords[] = {"the",    "river",  "model",    "engine", "store",   "vector", "memory",  "quantized",
                                 "server", "answer", "document", "paris",  "weather", "energy", "protocol", "garden",
                                 "music",  "history", "kernel",  "cache",  "budget",  "router", "token",   "context"};
  std::mt19937 g(42);
  std::vector<std::vector<int32_t>> out;
  for (int i = 0; i < n; ++i) {
    std::string text;
    std::vector<int32_t> ids;
    while (static_cast<int>(ids.size()) < tokens) {
      for (int w = 0; w < 64; ++w) text += std::string(kWords[g() % std::size(kWords)]) + (w % 11 == 10 ? ". " : " ");
      ids = m.tokenizer().Encode(text);
    }
    ids.resize(static_cast<size_t>(tokens));
    out.push_back(std::move(ids));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path, seqs_s = "1,4,8", batch_s = "512,2048";
  int chunks = 16, single = 4, tokens = 256;
  size_t threads = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--model") model_path = next();
    else if (a == "--chunks") chunks = std::stoi(next());
    else if (a == "--single") single = std::stoi(next());
    else if (a == "--tokens") tokens = std::stoi(next());
    else if (a == "--seqs") seqs_s = next();
    else if (a == "--batch") batch_s = next();
    else if (a == "--threads") threads = static_cast<size_t>(std::stoul(next()));
    else return Fail("unknown argument " + a);
  }
  if (model_path.empty()) return Fail("--model FILE.gguf is required");
  const int32_t n_ctx = tokens + 8;

  const size_t n_threads = threads ? threads : std::thread::hardware_concurrency();
  // chunks/min by the wall clock, and as it would be with the threads' cores to itself
  // (process CPU time / threads: the machine may be shared).
  struct Rate {
    double wall, cpu;
  };
  auto run = [&](int32_t n_seq, int32_t n_batch, int n, bool one_at_a_time) -> Result<Rate> {
    engine::LoadOptions o;
    o.n_ctx = n_ctx;
    o.n_seq = n_seq;
    o.n_batch = n_batch;
    o.n_threads = threads;
    QM_ASSIGN_OR_RETURN(auto m, engine::Model::Load(model_path, o));
    const auto inputs = MakeChunks(*m, n, tokens);
    QM_RETURN_IF_ERROR(m->Embed({inputs.front()}).status());  // warm-up: page in the weights
    const auto t0 = Clock::now();
    const double c0 = ProcessCpuS();
    if (one_at_a_time) {
      for (const auto& in : inputs) QM_RETURN_IF_ERROR(m->Embed({in}).status());
    } else {
      QM_RETURN_IF_ERROR(m->Embed(inputs).status());
    }
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    const double cpu = (ProcessCpuS() - c0) / static_cast<double>(n_threads);
    return Rate{n / s * 60.0, n / cpu * 60.0};
  };

  nlohmann::json j{{"bench", "embed"}, {"model", model_path}, {"tokens_per_chunk", tokens},
                   {"threads", n_threads}, {"load_average_1m", LoadAverage()}};
  auto base = run(1, 512, single, true);
  if (!base.ok()) return Fail(base.status().ToString());
  j["one_at_a_time"] = {{"chunks", single}, {"chunks_per_min", base->wall}, {"tok_s", base->wall * tokens / 60},
                        {"chunks_per_min_cpu", base->cpu}};
  double best = 0, best_cpu = 0;
  nlohmann::json best_cfg;
  nlohmann::json runs = nlohmann::json::array();
  for (int s : ParseList(seqs_s)) {
    for (int b : ParseList(batch_s)) {
      auto r = run(s, b, chunks, false);
      if (!r.ok()) return Fail(r.status().ToString());
      nlohmann::json row{{"n_seq", s}, {"n_batch", b}, {"chunks", chunks}, {"chunks_per_min", r->wall},
                         {"tok_s", r->wall * tokens / 60}, {"chunks_per_min_cpu", r->cpu}};
      std::fprintf(stderr, "n_seq %d n_batch %d: %.1f chunks/min (%.1f by CPU time)\n", s, b, r->wall, r->cpu);
      runs.push_back(row);
      if (r->wall > best) best = r->wall, best_cfg = row;
      best_cpu = std::max(best_cpu, r->cpu);
    }
  }
  j["batched"] = runs;
  j["best"] = best_cfg;
  j["speedup_vs_one_at_a_time"] = best / base->wall;
  j["speedup_vs_one_at_a_time_cpu"] = best_cpu / base->cpu;
  j["target_chunks_per_min"] = 1000;
  j["meets_target"] = best > 1000;
  j["meets_target_cpu"] = best_cpu > 1000;
  j["meets_speedup_3x"] = best / base->wall >= 3;
  std::printf("%s\n", j.dump(2).c_str());
  return 0;
}
