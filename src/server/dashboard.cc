#include "server/dashboard.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <prometheus/metric_family.h>

#include "server/service.h"

namespace qwenmux::server {

namespace {

int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string ModelLabel(const prometheus::ClientMetric& m) {
  for (const auto& l : m.label) {
    if (l.name == "model") return l.value;
  }
  return "";
}

double Get(const std::map<std::string, double>& m, const std::string& k) {
  auto it = m.find(k);
  return it == m.end() ? 0.0 : it->second;
}

// after - before of one model's histogram (a model new since `before` counts from zero).
Dashboard::Totals::Hist HistDelta(const std::map<std::string, Dashboard::Totals::Hist>& before,
                                  const Dashboard::Totals::Hist& after, const std::string& model) {
  Dashboard::Totals::Hist d = after;
  auto it = before.find(model);
  if (it == before.end() || it->second.cumulative.size() != after.cumulative.size()) return d;
  for (size_t i = 0; i < d.cumulative.size(); ++i) d.cumulative[i] = std::max(0.0, d.cumulative[i] - it->second.cumulative[i]);
  d.count = std::max(0.0, after.count - it->second.count);
  d.sum = std::max(0.0, after.sum - it->second.sum);
  return d;
}

Json Opt(const std::optional<double>& v) { return v ? Json(*v) : Json(nullptr); }

}  // namespace

std::optional<double> HistogramQuantile(double p, const std::vector<double>& bounds, const std::vector<double>& cumulative) {
  if (cumulative.size() != bounds.size() + 1 || bounds.empty()) return std::nullopt;
  const double total = cumulative.back();
  if (!(total > 0)) return std::nullopt;
  const double rank = std::clamp(p, 0.0, 1.0) * total;
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (cumulative[i] >= rank) {
      const double lo_bound = i == 0 ? 0.0 : bounds[i - 1];
      const double lo_count = i == 0 ? 0.0 : cumulative[i - 1];
      const double in_bucket = cumulative[i] - lo_count;
      if (in_bucket <= 0) return bounds[i];
      return lo_bound + (bounds[i] - lo_bound) * (rank - lo_count) / in_bucket;
    }
  }
  return bounds.back();  // in the +Inf bucket
}

Dashboard::Dashboard(Service* service, DashboardOptions options)
    : service_(service), options_(options),
      capacity_(static_cast<size_t>(std::max<int64_t>(
          1, std::chrono::duration_cast<std::chrono::milliseconds>(options.window).count() /
                 std::max<int64_t>(1, options.sample_period.count())))) {}

Dashboard::~Dashboard() { Stop(); }

Dashboard::Totals Dashboard::Read() const {
  Totals t;
  for (const prometheus::MetricFamily& f : service_->metrics().registry().Collect()) {
    std::map<std::string, double>* counter = nullptr;
    std::map<std::string, Totals::Hist>* hist = nullptr;
    if (f.name == "qwenmux_generated_tokens_total") counter = &t.generated;
    else if (f.name == "qwenmux_generation_seconds_total") counter = &t.gen_seconds;
    else if (f.name == "qwenmux_requests_completed_total") counter = &t.completed;
    else if (f.name == "qwenmux_requests_failed_total") counter = &t.failed;
    else if (f.name == "qwenmux_model_loads_total") counter = &t.loads;
    else if (f.name == "qwenmux_model_evictions_total") counter = &t.evictions;
    else if (f.name == "qwenmux_time_to_first_token_seconds") hist = &t.ttft;
    else if (f.name == "qwenmux_inter_token_latency_seconds") hist = &t.itl;
    else if (f.name == "qwenmux_model_load_seconds") hist = &t.load;
    else if (f.name == "qwenmux_model_switch_seconds") hist = &t.sw;
    else continue;
    for (const prometheus::ClientMetric& m : f.metric) {
      const std::string model = ModelLabel(m);
      if (counter) {
        (*counter)[model] += m.counter.value;  // several reasons of one model add up
        continue;
      }
      Totals::Hist h;
      for (const auto& b : m.histogram.bucket) {
        if (std::isfinite(b.upper_bound)) h.bounds.push_back(b.upper_bound);
        h.cumulative.push_back(static_cast<double>(b.cumulative_count));
      }
      if (h.cumulative.size() != h.bounds.size() + 1) continue;  // no +Inf bucket: not a histogram we know
      h.count = static_cast<double>(m.histogram.sample_count);
      h.sum = m.histogram.sample_sum;
      (*hist)[model] = std::move(h);
    }
  }
  return t;
}

KpiSample Dashboard::Difference(const Totals& before, const Totals& after) {
  KpiSample s;
  std::set<std::string> names;
  for (const auto* m : {&after.generated, &after.completed, &after.failed}) {
    for (const auto& [k, v] : *m) names.insert(k);
  }
  for (const std::string& name : names) {
    ModelKpi k;
    k.generated_tokens = std::max(0.0, Get(after.generated, name) - Get(before.generated, name));
    const double secs = std::max(0.0, Get(after.gen_seconds, name) - Get(before.gen_seconds, name));
    k.decode_tokens_per_s = secs > 0 ? k.generated_tokens / secs : 0.0;
    k.completed = std::max(0.0, Get(after.completed, name) - Get(before.completed, name));
    k.failed = std::max(0.0, Get(after.failed, name) - Get(before.failed, name));
    if (auto it = after.ttft.find(name); it != after.ttft.end()) {
      const Totals::Hist d = HistDelta(before.ttft, it->second, name);
      k.ttft_p50 = HistogramQuantile(0.5, d.bounds, d.cumulative);
      k.ttft_p95 = HistogramQuantile(0.95, d.bounds, d.cumulative);
    }
    if (auto it = after.itl.find(name); it != after.itl.end()) {
      const Totals::Hist d = HistDelta(before.itl, it->second, name);
      k.itl_p50 = HistogramQuantile(0.5, d.bounds, d.cumulative);
      k.itl_p95 = HistogramQuantile(0.95, d.bounds, d.cumulative);
    }
    s.completed += k.completed;
    s.failed += k.failed;
    s.models[name] = k;
  }
  for (const auto& [name, h] : after.load) {
    const Totals::Hist d = HistDelta(before.load, h, name);
    s.loads += d.count;
    s.load_seconds += d.sum;
  }
  for (const auto& [name, h] : after.sw) {
    const Totals::Hist d = HistDelta(before.sw, h, name);
    s.switches += d.count;
    s.switch_seconds += d.sum;
  }
  for (const auto& [name, v] : after.evictions) s.evictions += std::max(0.0, v - Get(before.evictions, name));
  return s;
}

void Dashboard::SampleNow() {
  Totals now = Read();
  const auto at = std::chrono::steady_clock::now();
  orchestrator::ModelManager& mgr = service_->manager();
  std::vector<orchestrator::QueueInfo> queues = service_->scheduler().Queues();
  std::lock_guard<std::mutex> lk(mu_);
  if (!have_last_) {  // the first reading is the baseline
    last_ = std::move(now);
    last_at_ = at;
    have_last_ = true;
    return;
  }
  KpiSample s = Difference(last_, now);
  s.unix_ms = UnixMs();
  s.period_s = std::chrono::duration<double>(at - last_at_).count();
  for (auto& [name, k] : s.models) k.tokens_per_s = s.period_s > 0 ? k.generated_tokens / s.period_s : 0.0;
  for (const ServedModel& m : service_->models()) s.models.try_emplace(m.name);
  for (const orchestrator::QueueInfo& q : queues) {
    ModelKpi& k = s.models[q.model];
    k.queue_waiting = q.waiting;
    k.queue_running = q.running;
  }
  s.memory_in_use = mgr.in_use_bytes();
  s.memory_budget = mgr.EffectiveBudget();
  s.gpu_in_use = mgr.gpu_in_use_bytes();
  s.gpu_budget = mgr.gpu_budget_bytes();
  last_ = std::move(now);
  last_at_ = at;
  samples_.push_back(std::move(s));
  while (samples_.size() > capacity_) samples_.pop_front();
}

void Dashboard::Start() {
  SampleNow();  // baseline
  std::lock_guard<std::mutex> lk(loop_mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void Dashboard::Stop() {
  {
    std::lock_guard<std::mutex> lk(loop_mu_);
    stop_ = true;
  }
  loop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Dashboard::Loop() {
  std::unique_lock<std::mutex> lk(loop_mu_);
  auto next = std::chrono::steady_clock::now() + options_.sample_period;
  while (!stop_) {
    if (loop_cv_.wait_until(lk, next, [this] { return stop_; })) break;
    lk.unlock();
    SampleNow();
    lk.lock();
    next += options_.sample_period;
    const auto now = std::chrono::steady_clock::now();
    if (next < now) next = now + options_.sample_period;  // fell behind (suspended): no burst
  }
}

void Dashboard::Record(RoutingEntry entry) {
  if (entry.unix_ms == 0) entry.unix_ms = UnixMs();
  std::lock_guard<std::mutex> lk(mu_);
  routing_.push_front(std::move(entry));
  while (routing_.size() > options_.routing_entries) routing_.pop_back();
}

Json Dashboard::SamplesJson(int64_t since_ms) const {
  Json samples = Json::array();
  std::lock_guard<std::mutex> lk(mu_);
  for (const KpiSample& s : samples_) {
    if (s.unix_ms <= since_ms) continue;
    Json models = Json::object();
    for (const auto& [name, k] : s.models) {
      models[name] = Json{{"tokens_per_s", k.tokens_per_s},
                          {"decode_tokens_per_s", k.decode_tokens_per_s},
                          {"generated_tokens", k.generated_tokens},
                          {"ttft_p50_s", Opt(k.ttft_p50)},
                          {"ttft_p95_s", Opt(k.ttft_p95)},
                          {"itl_p50_s", Opt(k.itl_p50)},
                          {"itl_p95_s", Opt(k.itl_p95)},
                          {"queue_waiting", k.queue_waiting},
                          {"queue_running", k.queue_running},
                          {"completed", k.completed},
                          {"failed", k.failed}};
    }
    const double requests = s.completed + s.failed;
    samples.push_back(Json{
        {"t", s.unix_ms},
        {"period_s", s.period_s},
        {"memory", {{"in_use_bytes", s.memory_in_use},
                    {"budget_bytes", s.memory_budget},
                    {"utilization", s.memory_budget ? Json(static_cast<double>(s.memory_in_use) / s.memory_budget) : Json(nullptr)},
                    {"gpu_in_use_bytes", s.gpu_in_use},
                    {"gpu_budget_bytes", s.gpu_budget}}},
        {"requests", {{"completed", s.completed}, {"failed", s.failed},
                      {"error_rate", requests > 0 ? Json(s.failed / requests) : Json(nullptr)}}},
        {"loads", {{"count", s.loads},
                   {"mean_s", s.loads > 0 ? Json(s.load_seconds / s.loads) : Json(nullptr)},
                   {"switches", s.switches},
                   {"switch_mean_s", s.switches > 0 ? Json(s.switch_seconds / s.switches) : Json(nullptr)},
                   {"evictions", s.evictions}}},
        {"models", std::move(models)}});
  }
  return Json{{"period_s", std::chrono::duration<double>(options_.sample_period).count()},
              {"window_s", options_.window.count()},
              {"capacity", capacity_},
              {"memory_line", options_.memory_line},
              {"samples", std::move(samples)}};
}

Json Dashboard::RoutingJson(size_t limit) const {
  Json entries = Json::array();
  std::lock_guard<std::mutex> lk(mu_);
  for (const RoutingEntry& e : routing_) {
    if (entries.size() >= limit) break;
    entries.push_back(Json{{"t", e.unix_ms},
                           {"kind", e.kind},
                           {"requested", e.requested},
                           {"chosen", e.chosen},
                           {"served", e.served},
                           {"reason", e.reason},
                           {"explanation", e.explanation},
                           {"degraded", e.degraded},
                           {"ok", e.ok},
                           {"error", e.error},
                           {"latency_ms", e.latency_ms},
                           {"ttft_ms", e.ttft_ms >= 0 ? Json(e.ttft_ms) : Json(nullptr)},
                           {"prompt_tokens", e.prompt_tokens},
                           {"completion_tokens", e.completion_tokens}});
  }
  return Json{{"entries", std::move(entries)}};
}

}  // namespace qwenmux::server
