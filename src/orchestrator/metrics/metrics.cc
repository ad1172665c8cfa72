#include "orchestrator/metrics/metrics.h"

#include <prometheus/text_serializer.h>

namespace qwenmux::orchestrator {

namespace {

using prometheus::Histogram;

// Latency buckets in seconds: 1 ms .. 60 s.
Histogram::BucketBoundaries LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}
// Inter-token latency: 1 ms .. 2 s.
Histogram::BucketBoundaries TokenBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2};
}

prometheus::Family<prometheus::Counter>* Counter(prometheus::Registry& r, const char* name, const char* help) {
  return &prometheus::BuildCounter().Name(name).Help(help).Register(r);
}
prometheus::Family<prometheus::Gauge>* Gauge(prometheus::Registry& r, const char* name, const char* help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(r);
}
prometheus::Family<Histogram>* Hist(prometheus::Registry& r, const char* name, const char* help) {
  return &prometheus::BuildHistogram().Name(name).Help(help).Register(r);
}

}  // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  prompt_tokens_ = Counter(r, "qwenmux_prompt_tokens_total", "Prompt tokens processed (prefill).");
  prompt_seconds_ = Counter(r, "qwenmux_prompt_seconds_total", "Seconds spent in prefill.");
  generated_tokens_ = Counter(r, "qwenmux_generated_tokens_total", "Tokens generated.");
  generation_seconds_ = Counter(r, "qwenmux_generation_seconds_total", "Seconds spent generating (decode).");
  ttft_ = Hist(r, "qwenmux_time_to_first_token_seconds", "Time from request start to the first generated token.");
  inter_token_ = Hist(r, "qwenmux_inter_token_latency_seconds", "Time between consecutive generated tokens.");
  memory_in_use_ = &Gauge(r, "qwenmux_memory_in_use_bytes", "Bytes committed to loaded and loading models.")->Add({});
  memory_budget_ = &Gauge(r, "qwenmux_memory_budget_bytes", "Effective memory budget of the model manager.")->Add({});
  gpu_in_use_ = &Gauge(r, "qwenmux_gpu_memory_in_use_bytes", "Device-memory estimates of models placed on the GPU.")->Add({});
  gpu_budget_ = &Gauge(r, "qwenmux_gpu_memory_budget_bytes", "GPU memory budget of the model manager (0: no usable GPU).")->Add({});
  model_memory_ = Gauge(r, "qwenmux_model_memory_bytes", "Estimated bytes of a loaded model (0 when not loaded).");
  load_seconds_ = Hist(r, "qwenmux_model_load_seconds", "Seconds to load and warm up a model.");
  switch_seconds_ = Hist(r, "qwenmux_model_switch_seconds",
                         "Seconds of a model switch: evicting other models, loading, and the first token.");
  loads_ = Counter(r, "qwenmux_model_loads_total", "Successful model loads.");
  load_failures_ = Counter(r, "qwenmux_model_load_failures_total", "Failed model loads.");
  evictions_ = Counter(r, "qwenmux_model_evictions_total", "Models unloaded, by reason (lru, keep_alive, explicit).");
  queue_depth_ = Gauge(r, "qwenmux_queue_depth", "Requests waiting for a model.");
  completed_ = Counter(r, "qwenmux_requests_completed_total", "Requests completed.");
  failed_ = Counter(r, "qwenmux_requests_failed_total", "Requests failed, by reason.");
  constraint_bytes_ = &Gauge(r, "qwenmux_constraint_cache_bytes",
                             "Bytes held by compiled JSON-schema/tool-call constraints (grammars and mask caches); "
                             "part of qwenmux_memory_in_use_bytes.")->Add({});
  constraint_max_bytes_ = &Gauge(r, "qwenmux_constraint_cache_max_bytes", "Byte cap of the compiled-constraint cache.")->Add({});
  constraint_entries_ = &Gauge(r, "qwenmux_constraint_cache_entries", "Compiled constraints in the cache.")->Add({});
}

Metrics& Metrics::Global() {
  static Metrics* m = new Metrics();  // never destroyed: usable from any static destructor
  return *m;
}

void Metrics::AddPrompt(const std::string& model, uint64_t tokens, double seconds) {
  prompt_tokens_->Add({{"model", model}}).Increment(static_cast<double>(tokens));
  prompt_seconds_->Add({{"model", model}}).Increment(seconds);
}

void Metrics::AddGenerated(const std::string& model, uint64_t tokens, double seconds) {
  generated_tokens_->Add({{"model", model}}).Increment(static_cast<double>(tokens));
  generation_seconds_->Add({{"model", model}}).Increment(seconds);
}

void Metrics::ObserveTimeToFirstToken(const std::string& model, double seconds) {
  ttft_->Add({{"model", model}}, LatencyBuckets()).Observe(seconds);
}

void Metrics::ObserveInterToken(const std::string& model, double seconds) {
  inter_token_->Add({{"model", model}}, TokenBuckets()).Observe(seconds);
}

void Metrics::SetQueueDepth(const std::string& model, int64_t depth) {
  queue_depth_->Add({{"model", model}}).Set(static_cast<double>(depth));
}

void Metrics::RequestCompleted(const std::string& model) { completed_->Add({{"model", model}}).Increment(); }

void Metrics::RequestFailed(const std::string& model, const std::string& reason) {
  failed_->Add({{"model", model}, {"reason", reason}}).Increment();
}

void Metrics::SetMemory(uint64_t in_use_bytes, uint64_t budget_bytes) {
  memory_in_use_->Set(static_cast<double>(in_use_bytes));
  memory_budget_->Set(static_cast<double>(budget_bytes));
}

void Metrics::SetGpuMemory(uint64_t in_use_bytes, uint64_t budget_bytes) {
  gpu_in_use_->Set(static_cast<double>(in_use_bytes));
  gpu_budget_->Set(static_cast<double>(budget_bytes));
}

void Metrics::SetConstraintCache(uint64_t bytes, uint64_t max_bytes, uint64_t entries) {
  constraint_bytes_->Set(static_cast<double>(bytes));
  constraint_max_bytes_->Set(static_cast<double>(max_bytes));
  constraint_entries_->Set(static_cast<double>(entries));
}

void Metrics::SetModelMemory(const std::string& model, uint64_t bytes) {
  model_memory_->Add({{"model", model}}).Set(static_cast<double>(bytes));
}

void Metrics::ObserveLoad(const std::string& model, double seconds) {
  load_seconds_->Add({{"model", model}}, LatencyBuckets()).Observe(seconds);
  loads_->Add({{"model", model}}).Increment();
}

void Metrics::ObserveSwitch(const std::string& model, double seconds) {
  switch_seconds_->Add({{"model", model}}, LatencyBuckets()).Observe(seconds);
}

void Metrics::LoadFailed(const std::string& model) { load_failures_->Add({{"model", model}}).Increment(); }

void Metrics::Evicted(const std::string& model, const std::string& reason) {
  evictions_->Add({{"model", model}, {"reason", reason}}).Increment();
}

std::string Metrics::RenderText() const { return prometheus::TextSerializer().Serialize(registry_->Collect()); }

}  // namespace qwenmux::orchestrator
