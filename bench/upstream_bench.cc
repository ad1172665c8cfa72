// upstream_bench: the cost of routing through a backend (issue 18), printed as JSON. A front
// qwenmux serves "up/tiny" from an upstream qwenmux on loopback (OpenAI dialect, streams passed
// through); the same streamed /v1/completions request goes straight to the upstream ("direct")
// and through the front ("proxy"), interleaved round by round, at 1 and 32 concurrent streams:
//   ttft_p50_ms (submit -> first streamed token) direct vs proxy and the difference;
//   tok_s (all streams' tokens / wall time of the round) direct vs proxy and their ratio;
//   bars: whether the bars hold (added TTFT p50 <= 2 ms, tok/s ratio >= 0.98).
// Usage: upstream_bench [MODEL.gguf] [--tokens 64] [--rounds 3] [--threads 2] [--parallel 4]
#include <algorithm>
#include <chrono>
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

#include "server/app.h"

namespace {

using namespace qwenmux::bench;  // Clock, Seconds, Stream, Percentile
using nlohmann::json;

constexpr double kTtftAddedMsMax = 2.0;  // issue 18's bars
constexpr double kTokSRatioMin = 0.98;



struct Round {
  std::vector<double> ttft;
  double tokens = 0, wall = 0;
  int failed = 0;
};

Round RunRound(uint16_t port, const std::string& body, int streams) {
  Round r;
  std::mutex mu;
  std::vector<std::thread> threads;
  const auto t0 = Clock::now();
  for (int i = 0; i < streams; ++i) {
    threads.emplace_back([&] {
      const StreamTiming t = Stream(port, "/v1/completions", body);
      std::lock_guard lock(mu);
      if (!t.ok) {
        ++r.failed;
        return;
      }
      r.ttft.push_back(t.ttft);
      r.tokens += t.tokens;
    });
  }
  for (auto& t : threads) t.join();
  r.wall = Seconds(t0, Clock::now());
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path = "../shared/testdata/models/tiny-dense.q8_0.gguf";
  int tokens = 64, rounds = 3, threads = 2, parallel = 4;
  for (int i = 1; i < argc; ++i) {
    auto next = [&] { return i + 1 < argc ? std::atoi(argv[++i]) : 0; };
    if (!std::strcmp(argv[i], "--tokens")) tokens = next();
    else if (!std::strcmp(argv[i], "--rounds")) rounds = next();
    else if (!std::strcmp(argv[i], "--threads")) threads = next();
    else if (!std::strcmp(argv[i], "--parallel")) parallel = next();
    else model_path = argv[i];
  }
  auto quiet = [](const std::string&) {};
  qwenmux::server::AppOptions uo;
  uo.model_flags = {model_path + "=tiny"};
  uo.http.port = 0;
  uo.models.n_ctx = 4096;
  uo.models.threads = static_cast<size_t>(threads);
  uo.models.parallel = parallel;
  auto up = qwenmux::server::App::Create(std::move(uo), quiet);
  if (!up.ok() || !(*up)->Start().ok()) {
    fmt::print(stderr, "error: upstream: {}\n", up.ok() ? "start failed" : up.status().ToString());
    return 1;
  }
  qwenmux::server::AppOptions fo;
  fo.backend_flags = {fmt::format("up=http://127.0.0.1:{}", (*up)->port())};
  fo.http.port = 0;
  auto front = qwenmux::server::App::Create(std::move(fo), quiet);
  if (!front.ok() || !(*front)->Start().ok()) {
    fmt::print(stderr, "error: front: {}\n", front.ok() ? "start failed" : front.status().ToString());
    return 1;
  }
  auto body = [&](const std::string& model) {
    return json{{"model", model}, {"prompt", "Write a long story about a lighthouse keeper."}, {"max_tokens", tokens},
                {"temperature", 0}, {"stream", true}, {"stream_options", {{"include_usage", true}}}}
        .dump();
  };
  // Warm up (the model loads on first use; discovery finds "up/tiny").
  for (int i = 0; i < 200 && !Stream((*front)->port(), "/v1/completions", body("up/tiny")).ok; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  Stream((*up)->port(), "/v1/completions", body("tiny"));
  json out{{"bench", "upstream"}, {"model", model_path}, {"tokens", tokens}, {"rounds", rounds}, {"threads", threads},
           {"parallel", parallel}, {"results", json::array()}};
  for (const int streams : {1, 32}) {
    Round direct, proxy;
    for (int r = 0; r < rounds; ++r) {  // interleaved: the machine's load drifts
      for (const bool via : {false, true}) {
        const Round x = RunRound(via ? (*front)->port() : (*up)->port(), body(via ? "up/tiny" : "tiny"), streams);
        Round& acc = via ? proxy : direct;
        acc.ttft.insert(acc.ttft.end(), x.ttft.begin(), x.ttft.end());
        acc.tokens += x.tokens;
        acc.wall += x.wall;
        acc.failed += x.failed;
      }
    }
    const double d50 = Percentile(direct.ttft, 0.5) * 1e3, p50 = Percentile(proxy.ttft, 0.5) * 1e3;
    const double dtok = direct.wall > 0 ? direct.tokens / direct.wall : 0, ptok = proxy.wall > 0 ? proxy.tokens / proxy.wall : 0;
    out["results"].push_back(json{{"streams", streams},
                                  {"ttft_p50_ms", {{"direct", d50}, {"proxy", p50}, {"added", p50 - d50}}},
                                  {"tok_s", {{"direct", dtok}, {"proxy", ptok}, {"ratio", dtok > 0 ? ptok / dtok : 0}}},
                                  {"failed", {{"direct", direct.failed}, {"proxy", proxy.failed}}},
                                  // The bars: TTFT p50 within 2 ms of direct, tokens/s >= 0.98x direct.
                                  {"bars", {{"ttft_added_ms_max", kTtftAddedMsMax},
                                            {"tok_s_ratio_min", kTokSRatioMin},
                                            {"ttft_met", p50 - d50 <= kTtftAddedMsMax},
                                            {"tok_s_met", dtok > 0 && ptok / dtok >= kTokSRatioMin}}}});
  }
  fmt::print("{}\n", out.dump(2));
  return 0;
}
