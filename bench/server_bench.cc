// server_bench: the cost of the HTTP server on top of the engine, printed as JSON.
//   1. throughput: one greedy generation of N tokens three ways, interleaved: direct
//      engine::Model::Generate, the scheduler without HTTP, and the same request streamed through
//      `POST /v1/completions` on loopback (end to end: prefill + decode), best of R runs each;
//      overhead = 1 - server_tok_s / direct_tok_s (and / scheduler_tok_s: the HTTP layer's part).
//   2. TTFT (submit -> first streamed token) p50/p99 with 1, 8 and 64 concurrent streaming
//      clients (each sends `--rounds` requests back to back).
// Usage: server_bench [MODEL.gguf] [--tokens 128] [--threads 2] [--parallel 4] [--runs 3] [--rounds 4]
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <utility>  // boost 1.74 asio/awaitable.hpp uses std::exchange without it

#include <boost/asio.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "http_stream.h"

#include "engine/engine.h"
#include "server/app.h"

namespace {

using namespace qwenmux::bench;  // Clock, Seconds, Stream, Percentile
using nlohmann::json;


}  // namespace

int main(int argc, char** argv) {
  std::string model_path = "../shared/testdata/models/tiny-dense.q8_0.gguf";
  int tokens = 128, threads = 2, parallel = 4, runs = 3, rounds = 4;
  for (int i = 1; i < argc; ++i) {
    auto next = [&] { return i + 1 < argc ? std::atoi(argv[++i]) : 0; };
    if (!std::strcmp(argv[i], "--tokens")) tokens = next();
    else if (!std::strcmp(argv[i], "--threads")) threads = next();
    else if (!std::strcmp(argv[i], "--parallel")) parallel = next();
    else if (!std::strcmp(argv[i], "--runs")) runs = next();
    else if (!std::strcmp(argv[i], "--rounds")) rounds = next();
    else model_path = argv[i];
  }
  const std::string prompt = "Write a long story about a lighthouse keeper who finds a message in a bottle.";

  // The same greedy generation three ways, interleaved run by run (the machine's load drifts):
  // streamed through the HTTP server, direct engine, and the scheduler without HTTP.
  qwenmux::engine::LoadOptions lo;
  lo.n_ctx = 1024;
  lo.n_threads = static_cast<size_t>(threads);
  auto m = qwenmux::engine::Model::Load(model_path, lo);
  if (!m.ok()) {
    fmt::print(stderr, "error: {}\n", m.status().ToString());
    return 1;
  }
  const auto ids = (*m)->tokenizer().Encode(prompt);
  qwenmux::engine::GenerateOptions go;
  go.max_tokens = tokens;
  go.sampler.temperature = 0;

  qwenmux::server::AppOptions o;
  o.model_flags = {model_path + "=bench"};
  o.http.port = 0;
  o.models.n_ctx = 1024;
  o.models.parallel = parallel;
  o.models.threads = static_cast<size_t>(threads);
  o.scheduler.max_queue = 1024;
  auto app = qwenmux::server::App::Create(o, [](const std::string&) {});
  if (!app.ok() || !(*app)->Start().ok()) {
    fmt::print(stderr, "error: server did not start\n");
    return 1;
  }
  const uint16_t port = (*app)->port();
  const std::string body = json{{"model", "bench"}, {"prompt", prompt}, {"max_tokens", tokens}, {"temperature", 0},
                                {"stream", true}}.dump();
  double direct_best = 0, sched_best = 0, server_best = 0;
  int direct_tokens = 0, sched_tokens = 0, server_tokens = 0;
  for (int r = 0; r < runs + 1; ++r) {  // run 0 warms up
    const StreamTiming st = Stream(port, "/v1/completions", body);
    if (!st.ok) {
      fmt::print(stderr, "error: stream failed\n");
      return 1;
    }
    server_tokens = st.tokens;
    if (r > 0) server_best = std::max(server_best, st.tokens / st.total);

    auto t0 = Clock::now();
    auto res = (*m)->Generate(ids, go, [](std::string_view) { return true; });
    if (!res.ok()) return 1;
    direct_tokens = static_cast<int>(res->tokens.size());
    if (r > 0) direct_best = std::max(direct_best, direct_tokens / Seconds(t0, Clock::now()));

    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    qwenmux::orchestrator::GenerationRequest req;
    req.model = "bench";
    req.prompt = ids;
    req.options = go;
    req.on_token = [](const qwenmux::orchestrator::TokenEvent&) { return true; };
    req.on_done = [&](qwenmux::Result<qwenmux::orchestrator::GenerationResult> g) {
      std::lock_guard<std::mutex> lk(mu);
      sched_tokens = g.ok() ? g->completion_tokens : -1;
      done = true;
      cv.notify_all();
    };
    t0 = Clock::now();
    if (!(*app)->service().scheduler().Submit(std::move(req)).ok()) return 1;
    {
      std::unique_lock<std::mutex> lk(mu);
      cv.wait(lk, [&] { return done; });
    }
    if (r > 0) sched_best = std::max(sched_best, sched_tokens / Seconds(t0, Clock::now()));

  }

  json ttft = json::object();
  const std::string short_body = json{{"model", "bench"}, {"prompt", prompt}, {"max_tokens", 16}, {"temperature", 0},
                                      {"stream", true}}.dump();
  for (int clients : {1, 8, 64}) {
    std::mutex mu;
    std::vector<double> samples;
    int failed = 0;
    const auto t0 = Clock::now();
    std::vector<std::thread> th;
    for (int c = 0; c < clients; ++c) {
      th.emplace_back([&] {
        for (int k = 0; k < rounds; ++k) {
          const StreamTiming t = Stream(port, "/v1/completions", short_body);
          std::lock_guard<std::mutex> lk(mu);
          if (t.ok) samples.push_back(t.ttft * 1e3);
          else ++failed;
        }
      });
    }
    for (auto& t : th) t.join();
    ttft[std::to_string(clients)] = {{"requests", samples.size()}, {"failed", failed},
                                     {"p50_ms", Percentile(samples, 0.5)}, {"p99_ms", Percentile(samples, 0.99)},
                                     {"wall_s", Seconds(t0, Clock::now())}};
  }
  (*app)->Shutdown();

  json out{{"model", model_path},
           {"threads", threads},
           {"parallel", parallel},
           {"throughput", {{"tokens_direct", direct_tokens},
                           {"tokens_scheduler", sched_tokens},
                           {"tokens_server", server_tokens},
                           {"direct_tok_s", direct_best},
                           {"scheduler_tok_s", sched_best},
                           {"server_tok_s", server_best},
                           {"overhead_vs_direct_pct", direct_best > 0 ? 100.0 * (1.0 - server_best / direct_best) : 0.0},
                           {"http_overhead_vs_scheduler_pct", sched_best > 0 ? 100.0 * (1.0 - server_best / sched_best) : 0.0}}},
           {"ttft", ttft}};
  fmt::print("{}\n", out.dump(2));
  return 0;
}
