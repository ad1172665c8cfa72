// The metrics registry of the orchestrator: one prometheus-cpp Registry holding every series the
// server exports, with typed helpers so call sites stay one line. Every name starts with
// `qwenmux_`; per-model series carry the label `model` (failed requests also `reason`).
//
//   qwenmux_prompt_tokens_total{model}             counter   prompt tokens processed
//   qwenmux_prompt_seconds_total{model}            counter   time spent in prefill
//   qwenmux_generated_tokens_total{model}          counter   tokens generated
//   qwenmux_generation_seconds_total{model}        counter   time spent decoding
//     (tokens/s = rate(tokens_total) / rate(seconds_total))
//   qwenmux_time_to_first_token_seconds{model}     histogram TTFT
//   qwenmux_inter_token_latency_seconds{model}     histogram time between streamed tokens
//   qwenmux_memory_in_use_bytes                    gauge     bytes the manager has committed
//   qwenmux_memory_budget_bytes                    gauge     the manager's effective budget
//   qwenmux_gpu_memory_in_use_bytes                gauge     device-memory estimates of models on the GPU
//   qwenmux_gpu_memory_budget_bytes                gauge     the manager's GPU budget (0: no usable GPU)
//   qwenmux_model_memory_bytes{model}              gauge     estimate of one loaded model, RAM + GPU (0 when unloaded)
//   qwenmux_model_load_seconds{model}              histogram Model::Load + warm-up
//   qwenmux_model_switch_seconds{model}            histogram a load that had to evict: unloading the
//                                                            victims + Model::Load + warm-up (a
//                                                            preload's warm-up includes one token;
//                                                            a request's first token is its TTFT)
//   qwenmux_model_loads_total{model}               counter   successful loads
//   qwenmux_model_load_failures_total{model}       counter   failed loads
//   qwenmux_model_evictions_total{model,reason}    counter   unloads: reason lru|keep_alive|explicit
//   qwenmux_queue_depth{model}                     gauge     requests waiting for the model
//   qwenmux_requests_completed_total{model}        counter
//   qwenmux_requests_failed_total{model,reason}    counter
//
// Thread-safety: every method may be called from any thread (prometheus-cpp metrics and
// families are internally synchronised). Global() lives for the whole process; a Metrics made
// by a test is independent of it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace qwenmux::orchestrator {

class Metrics {
 public:
  Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // The process-wide registry the server exports.
  static Metrics& Global();

  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> shared_registry() { return registry_; }

  // Request side (engine/scheduler).
  void AddPrompt(const std::string& model, uint64_t tokens, double seconds);
  void AddGenerated(const std::string& model, uint64_t tokens, double seconds);
  void ObserveTimeToFirstToken(const std::string& model, double seconds);
  void ObserveInterToken(const std::string& model, double seconds);
  void SetQueueDepth(const std::string& model, int64_t depth);
  void RequestCompleted(const std::string& model);
  void RequestFailed(const std::string& model, const std::string& reason);

  // Model manager side.
  void SetMemory(uint64_t in_use_bytes, uint64_t budget_bytes);
  void SetGpuMemory(uint64_t in_use_bytes, uint64_t budget_bytes);
  void SetModelMemory(const std::string& model, uint64_t bytes);
  void ObserveLoad(const std::string& model, double seconds);
  void ObserveSwitch(const std::string& model, double seconds);
  void LoadFailed(const std::string& model);
  void Evicted(const std::string& model, const std::string& reason);
  // The server's compiled JSON-schema / tool-call constraints (grammars + mask caches).
  void SetConstraintCache(uint64_t bytes, uint64_t max_bytes, uint64_t entries);

  // Prometheus text exposition format (version 0.0.4) of every series.
  std::string RenderText() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* prompt_tokens_;
  prometheus::Family<prometheus::Counter>* prompt_seconds_;
  prometheus::Family<prometheus::Counter>* generated_tokens_;
  prometheus::Family<prometheus::Counter>* generation_seconds_;
  prometheus::Family<prometheus::Histogram>* ttft_;
  prometheus::Family<prometheus::Histogram>* inter_token_;
  prometheus::Gauge* memory_in_use_;
  prometheus::Gauge* memory_budget_;
  prometheus::Gauge* gpu_in_use_;
  prometheus::Gauge* gpu_budget_;
  prometheus::Family<prometheus::Gauge>* model_memory_;
  prometheus::Family<prometheus::Histogram>* load_seconds_;
  prometheus::Family<prometheus::Histogram>* switch_seconds_;
  prometheus::Family<prometheus::Counter>* loads_;
  prometheus::Family<prometheus::Counter>* load_failures_;
  prometheus::Family<prometheus::Counter>* evictions_;
  prometheus::Family<prometheus::Gauge>* queue_depth_;
  prometheus::Family<prometheus::Counter>* completed_;
  prometheus::Family<prometheus::Counter>* failed_;
  prometheus::Gauge* constraint_bytes_;
  prometheus::Gauge* constraint_max_bytes_;
  prometheus::Gauge* constraint_entries_;
};

}  // namespace qwenmux::orchestrator
