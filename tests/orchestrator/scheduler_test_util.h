// Shared helpers of the scheduler tests: a request collector (tokens, events, the one on_done),
// a latch that holds a model's worker inside a callback, and a fixture with the tiny models.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/engine.h"
#include "orchestrator/manager_test_util.h"
#include "orchestrator/scheduler/scheduler.h"

namespace qwenmux::orchestrator::test {

struct Event {
  std::string text;
  int32_t token = 0;
  float logprob = 0;
  std::vector<TokenLogprob> top;
};

// Collects one generation request's callbacks. Thread-safe.
class Collector {
 public:
  // Installs on_token/on_done into `r`. `hook` (optional) runs in on_token after the event is
  // recorded, with the number of tokens so far; its result is on_token's.
  void Attach(GenerationRequest& r, std::function<bool(int)> hook = nullptr) {
    r.on_token = [this, hook](const TokenEvent& e) {
      int n;
      {
        std::lock_guard lk(mu_);
        events_.push_back({std::string(e.text), e.token, e.logprob, e.top});
        n = static_cast<int>(events_.size());
        cv_.notify_all();
      }
      return hook ? hook(n) : true;
    };
    r.on_done = [this](Result<GenerationResult> res) {
      std::lock_guard lk(mu_);
      ++done_calls_;
      done_.emplace(std::move(res));
      cv_.notify_all();
    };
  }
  // Waits for on_done (up to 60 s) and returns its argument.
  Result<GenerationResult> Wait() {
    std::unique_lock lk(mu_);
    if (!cv_.wait_for(lk, std::chrono::seconds(60), [&] { return done_.has_value(); })) {
      return Error(StatusCode::kInternal, "test: on_done was not called within 60 s");
    }
    return *done_;
  }
  bool WaitTokens(int n) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, std::chrono::seconds(60), [&] { return static_cast<int>(events_.size()) >= n || done_; });
  }
  std::vector<Event> events() const {
    std::lock_guard lk(mu_);
    return events_;
  }
  int token_count() const {
    std::lock_guard lk(mu_);
    return static_cast<int>(events_.size());
  }
  int done_calls() const {
    std::lock_guard lk(mu_);
    return done_calls_;
  }
  bool done() const {
    std::lock_guard lk(mu_);
    return done_.has_value();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Event> events_;
  std::optional<Result<GenerationResult>> done_;
  int done_calls_ = 0;
};

// A gate a callback waits on (holding the model's worker) until the test opens it.
class Gate {
 public:
  void Enter() {
    std::unique_lock lk(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait_for(lk, std::chrono::seconds(60), [&] { return open_; });
  }
  bool WaitEntered() {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, std::chrono::seconds(60), [&] { return entered_; });
  }
  void Open() {
    std::lock_guard lk(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false, open_ = false;
};

inline ModelSpec BatchSpec(const std::string& name, int32_t n_seq, const std::string& file = "tiny-dense.q8_0.gguf") {
  ModelSpec s = TinySpec(name, 256, file);
  s.load.n_seq = n_seq;
  s.load.n_batch = 32;
  s.load.n_threads = 2;
  return s;
}

inline GenerationRequest Greedy(const std::string& model, std::vector<int32_t> prompt, int32_t max_tokens) {
  GenerationRequest r;
  r.model = model;
  r.prompt = std::move(prompt);
  r.options.sampler.temperature = 0;
  r.options.max_tokens = max_tokens;
  r.options.stop_on_eos = false;
  return r;
}

}  // namespace qwenmux::orchestrator::test
