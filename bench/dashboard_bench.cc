// dashboard_bench: the server's serving throughput with the dashboard open and polling against
// without, side by side in one run, printed as JSON (issue 19's bar: within 2%).
//   `--clients` closed-loop clients send greedy /v1/completions of `--tokens` tokens to the
//   in-process server for `--phase-s` seconds; phases alternate off / on for `--rounds` rounds
//   (the machine's load drifts: interleaving spreads it over both). "on" runs `--pages` emulated
//   dashboard pages, each polling what web/app.js polls at its rates (overview and routing every
//   2 s, kpis every sample period, jobs and collections every 5 s), and the KPI sampler runs at
//   `--sample-ms` (it always runs, as in `qwenmux serve`). Throughput = completion tokens / phase
//   time; ratio = on / off of the medians; overhead_pct = (1 - ratio) * 100.
// Usage: dashboard_bench [MODEL.gguf] [--clients 2] [--tokens 48] [--threads 1] [--rounds 3]
//                        [--phase-s 6] [--pages 1] [--sample-ms 5000]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <utility>  // boost 1.74 asio/awaitable.hpp uses std::exchange without it

#include <boost/asio.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "server/app.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
namespace net = boost::asio;

// One request on a fresh connection; returns (status, body). Status 0: no answer.
std::pair<int, std::string> Request(uint16_t port, const std::string& method, const std::string& path,
                                    const std::string& body) {
  net::io_context ioc;
  net::ip::tcp::socket sock(ioc);
  boost::system::error_code ec;
  sock.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
  if (ec) return {0, ""};
  const std::string req = fmt::format(
      "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
      method, path, body.size(), body);
  net::write(sock, net::buffer(req), ec);
  std::string got;
  char buf[16384];
  for (;;) {
    const size_t n = sock.read_some(net::buffer(buf), ec);
    if (n > 0) got.append(buf, n);
    if (ec) break;
  }
  if (got.size() < 12 || got.compare(0, 9, "HTTP/1.1 ") != 0) return {0, ""};
  const size_t head = got.find("\r\n\r\n");
  return {std::atoi(got.c_str() + 9), head == std::string::npos ? "" : got.substr(head + 4)};
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path = "../shared/testdata/models/tiny-dense.q8_0.gguf";
  int clients = 2, tokens = 48, threads = 1, rounds = 3, pages = 1, sample_ms = 5000;
  double phase_s = 6;
  for (int i = 1; i < argc; ++i) {
    auto next = [&] { return i + 1 < argc ? std::atof(argv[++i]) : 0.0; };
    if (!std::strcmp(argv[i], "--clients")) clients = static_cast<int>(next());
    else if (!std::strcmp(argv[i], "--tokens")) tokens = static_cast<int>(next());
    else if (!std::strcmp(argv[i], "--threads")) threads = static_cast<int>(next());
    else if (!std::strcmp(argv[i], "--rounds")) rounds = static_cast<int>(next());
    else if (!std::strcmp(argv[i], "--phase-s")) phase_s = next();
    else if (!std::strcmp(argv[i], "--pages")) pages = static_cast<int>(next());
    else if (!std::strcmp(argv[i], "--sample-ms")) sample_ms = static_cast<int>(next());
    else model_path = argv[i];
  }
  if (clients < 1 || tokens < 1 || rounds < 1 || phase_s <= 0 || pages < 0 || sample_ms < 100) {
    fmt::print(stderr, "dashboard_bench: bad arguments (see the usage at the top of bench/dashboard_bench.cc)\n");
    return 2;
  }

  qwenmux::server::AppOptions o;
  o.model_flags = {model_path + "=bench"};
  o.http.port = 0;
  o.models.n_ctx = 1024;
  o.models.parallel = clients;
  o.models.threads = static_cast<size_t>(threads);
  o.scheduler.max_queue = 1024;
  o.log.quiet = true;
  o.dashboard.sample_period = std::chrono::milliseconds(sample_ms);
  auto app = qwenmux::server::App::Create(o, [](const std::string&) {});
  if (!app.ok() || !(*app)->Start().ok()) {
    fmt::print(stderr, "error: server did not start: {}\n", app.ok() ? "" : app.status().ToString());
    return 1;
  }
  const uint16_t port = (*app)->port();
  const std::string body = json{{"model", "bench"},
                                {"prompt", "Write a long story about a lighthouse keeper who finds a message in a bottle."},
                                {"max_tokens", tokens},
                                {"temperature", 0}}.dump();
  if (Request(port, "POST", "/v1/completions", body).first != 200) {  // loads the model (warm-up)
    fmt::print(stderr, "error: warm-up request failed\n");
    return 1;
  }

  std::atomic<int64_t> poll_requests{0}, poll_failures{0};
  // One phase: the clients' throughput in completion tokens per second.
  auto phase = [&](bool dashboard_on) {
    std::atomic<bool> stop{false};
    std::atomic<int64_t> generated{0}, failed{0};
    std::vector<std::thread> ts;
    for (int p = 0; dashboard_on && p < pages; ++p) {
      ts.emplace_back([&] {
        auto last = Clock::now() - std::chrono::hours(1);
        auto last_kpi = last, last_jobs = last;
        while (!stop.load()) {
          const auto now = Clock::now();
          std::vector<std::string> gets;
          if (now - last >= std::chrono::seconds(2)) {
            gets = {"/dashboard/api/overview", "/dashboard/api/routing?limit=50"};
            last = now;
          }
          if (now - last_kpi >= std::chrono::milliseconds(std::max(1000, sample_ms))) {
            gets.push_back("/dashboard/api/kpis?since=0");  // the first poll of a page: the whole window
            last_kpi = now;
          }
          if (now - last_jobs >= std::chrono::seconds(5)) {
            gets.push_back("/v1/pipelines/jobs");
            gets.push_back("/dashboard/api/collections");
            last_jobs = now;
          }
          for (const std::string& g : gets) {
            ++poll_requests;
            if (Request(port, "GET", g, "").first != 200) ++poll_failures;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      });
    }
    const auto t0 = Clock::now();
    for (int c = 0; c < clients; ++c) {
      ts.emplace_back([&] {
        while (!stop.load()) {
          auto [status, text] = Request(port, "POST", "/v1/completions", body);
          if (status != 200) {
            ++failed;
            continue;
          }
          generated += json::parse(text)["usage"]["completion_tokens"].get<int64_t>();
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(phase_s));
    stop.store(true);
    for (auto& t : ts) t.join();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    if (failed.load() > 0) fmt::print(stderr, "warning: {} failed requests\n", failed.load());
    return generated.load() / secs;
  };

  std::vector<double> off, on;
  for (int r = 0; r < rounds; ++r) {
    // Alternate which goes first, so neither side always follows the other.
    if (r % 2 == 0) {
      off.push_back(phase(false));
      on.push_back(phase(true));
    } else {
      on.push_back(phase(true));
      off.push_back(phase(false));
    }
  }
  // What one page's polling costs the server, measured apart from the noise of the throughput
  // phases: the ring filled to its 15 minutes, each endpoint timed over `kCalls` requests (wall
  // time of a request on loopback, an upper bound of the server's CPU time for it); a page polls
  // overview and routing every 2 s, kpis every sample period (the whole window only on its first
  // poll; timed here with the whole window, the worst case), jobs and collections every 5 s.
  qwenmux::server::Dashboard& dash = (*app)->dashboard();
  for (size_t i = 0; i < dash.capacity(); ++i) dash.SampleNow();
  constexpr int kCalls = 200;
  json poll_ms = json::object();
  double page_ms_per_s = 0;
  const double kpi_period_s = std::max(1.0, sample_ms / 1000.0);
  for (const auto& [path, per_s] : std::vector<std::pair<std::string, double>>{
           {"/dashboard/api/overview", 0.5}, {"/dashboard/api/routing?limit=50", 0.5},
           {"/dashboard/api/kpis?since=0", 1.0 / kpi_period_s}, {"/v1/pipelines/jobs", 0.2},
           {"/dashboard/api/collections", 0.2}}) {
    const auto t0 = Clock::now();
    for (int i = 0; i < kCalls; ++i) {
      if (Request(port, "GET", path, "").first != 200) ++poll_failures;
    }
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / kCalls;
    poll_ms[path] = ms;
    page_ms_per_s += ms * per_s;
  }
  const double off_m = Median(off), on_m = Median(on);
  const double ratio = off_m > 0 ? on_m / off_m : 0;
  json out{{"bench", "dashboard"},
           {"model", model_path},
           {"clients", clients},
           {"tokens", tokens},
           {"threads", threads},
           {"rounds", rounds},
           {"phase_s", phase_s},
           {"pages", pages},
           {"sample_ms", sample_ms},
           {"off_tok_s", off},
           {"on_tok_s", on},
           {"off_median_tok_s", off_m},
           {"on_median_tok_s", on_m},
           {"ratio", ratio},
           {"overhead_pct", (1 - ratio) * 100},
           {"poll_requests", poll_requests.load()},
           {"poll_failures", poll_failures.load()},
           {"kpi_samples_full_window", dash.SamplesJson(0)["samples"].size()},
           {"kpis_full_window_bytes", dash.SamplesJson(0).dump().size()},
           {"poll_ms", poll_ms},
           // Milliseconds of request handling per second of one open page: its share of one core.
           {"page_poll_ms_per_s", page_ms_per_s},
           {"page_poll_core_pct", page_ms_per_s / 10.0}};
  fmt::print("{}\n", out.dump());
  (*app)->Shutdown();
  return poll_failures.load() == 0 ? 0 : 1;
}
