// The web dashboard's server side (issue 19): a ring buffer of KPI samples taken by the server
// itself every sample period (15 minutes of them by default), and a log of the most recent
// routing decisions. The samples are differences of the metrics registry's own series
// (orchestrator/metrics: tokens, seconds, TTFT / inter-token histograms, loads, switches,
// completed / failed requests) between two samples, plus the model manager's memory and the
// scheduler's queues at the sample time; nothing is counted twice. dashboard_api.cc serves them
// as JSON under /dashboard/api/ and the page (web/, embedded at build time) at /.
//
// Thread-safety: every public method may be called from any thread. The sampler thread runs
// between Start() and Stop().
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "server/api_common.h"

namespace qwenmux::server {

class Service;

struct DashboardOptions {
  std::chrono::milliseconds sample_period{5000};  // serve --dashboard-sample-ms
  std::chrono::seconds window{15 * 60};          // samples kept: window / sample_period
  size_t routing_entries = 200;                  // routing log length
  double memory_line = 0.8;                      // the budget fraction the page marks (the seed's 80%)
};

// One finished (or refused) generation request as the routing log shows it.
struct RoutingEntry {
  int64_t unix_ms = 0;
  std::string kind;         // "chat" or "completion"
  std::string requested;    // the request's `model` ("auto", "", a name, an alias)
  std::string chosen;       // the route's model (an adapter as "<base>:<adapter>")
  std::string served;       // the model that served (a fallback when degraded; "" on error)
  std::string reason;       // the router's code ("explicit", "complexity", ...)
  std::string explanation;
  bool degraded = false;
  bool ok = true;
  std::string error;        // the error message when !ok
  double latency_ms = 0;    // submit -> last token (or error)
  double ttft_ms = -1;      // -1: no token
  int32_t prompt_tokens = 0, completion_tokens = 0;
};

// Per-model figures of one sample period (differences of the registry's series).
struct ModelKpi {
  double generated_tokens = 0;
  double tokens_per_s = 0;         // generated tokens / sample period (throughput)
  double decode_tokens_per_s = 0;  // generated tokens / decode seconds (speed while decoding); 0: none
  std::optional<double> ttft_p50, ttft_p95, itl_p50, itl_p95;  // seconds; none without observations
  int64_t queue_waiting = 0, queue_running = 0;                 // at the sample time
  double completed = 0, failed = 0;
};

struct KpiSample {
  int64_t unix_ms = 0;
  double period_s = 0;             // seconds since the previous sample
  uint64_t memory_in_use = 0, memory_budget = 0, gpu_in_use = 0, gpu_budget = 0;
  double completed = 0, failed = 0;
  double loads = 0, load_seconds = 0;        // loads finished in the period and their total time
  double switches = 0, switch_seconds = 0;   // loads that had to evict
  double evictions = 0;
  std::map<std::string, ModelKpi> models;
};

// The p-quantile (0..1) of the observations a histogram's bucket deltas hold, interpolated
// linearly inside the bucket as Prometheus' histogram_quantile does. `bounds` are the finite
// upper bounds, ascending; `cumulative` has one count per bound plus the +Inf bucket last. An
// answer in the +Inf bucket is the largest finite bound. None when there is no observation.
std::optional<double> HistogramQuantile(double p, const std::vector<double>& bounds, const std::vector<double>& cumulative);

class Dashboard {
 public:
  Dashboard(Service* service, DashboardOptions options);
  ~Dashboard();  // Stop()
  Dashboard(const Dashboard&) = delete;
  Dashboard& operator=(const Dashboard&) = delete;

  // The configured models' pinned flags (the manager's snapshot only has loaded ones). Before Start.
  void SetPinned(std::set<std::string> pinned) { pinned_ = std::move(pinned); }
  const std::set<std::string>& pinned() const { return pinned_; }

  // Takes a first reading (the baseline of the first sample) and starts the sampler thread.
  void Start();
  void Stop();
  // One sample now (the sampler does this every period; tests call it directly).
  void SampleNow();

  void Record(RoutingEntry entry);

  // {"period_s", "window_s", "memory_line", "samples": [...]}: samples newer than since_ms.
  Json SamplesJson(int64_t since_ms) const;
  // {"entries": [...]} newest first, at most `limit`.
  Json RoutingJson(size_t limit) const;
  size_t capacity() const { return capacity_; }
  const DashboardOptions& options() const { return options_; }

  // The registry's totals at one moment (internal; public for the sample arithmetic's tests).
  struct Totals {
    struct Hist {
      std::vector<double> bounds, cumulative;  // cumulative: bounds.size() + 1 counts
      double count = 0, sum = 0;
    };
    std::map<std::string, double> generated, gen_seconds, completed, failed, loads, evictions;
    std::map<std::string, Hist> ttft, itl, load, sw;
  };
  static KpiSample Difference(const Totals& before, const Totals& after);

 private:
  Totals Read() const;
  void Loop();

  Service* service_;
  DashboardOptions options_;
  size_t capacity_;
  std::set<std::string> pinned_;

  mutable std::mutex mu_;
  std::deque<KpiSample> samples_;          // oldest first, at most capacity_
  std::deque<RoutingEntry> routing_;       // newest first
  Totals last_;
  std::chrono::steady_clock::time_point last_at_{};
  bool have_last_ = false;

  std::mutex loop_mu_;
  std::condition_variable loop_cv_;
  bool stop_ = false;
  std::thread thread_;
};

class HttpServer;

// dashboard_api.cc: the page, its assets and the JSON endpoints (listed there).
void RegisterDashboardRoutes(Service& service, Dashboard& dashboard, HttpServer& http);
// The paths that need no API key (the static page and assets; they hold no data).
std::vector<std::string> DashboardOpenPaths();

}  // namespace qwenmux::server
