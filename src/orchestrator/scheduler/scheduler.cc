// TEMPORARY stand-in for the scheduler (branch `sched` owns the real one; this file is replaced
// by theirs on merge): one worker per model, one request at a time, through Model::Generate.
#include "orchestrator/scheduler/scheduler.h"

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <variant>

namespace qwenmux::orchestrator {

namespace {

struct Handle : RequestHandle {
  std::atomic<bool> cancelled{false};
  void Cancel() override { cancelled.store(true); }
};

struct Job {
  std::variant<GenerationRequest, EmbedRequest, RerankRequest> req;
  std::shared_ptr<Handle> handle;
  std::chrono::steady_clock::time_point submitted = std::chrono::steady_clock::now();
};

}  // namespace

struct Scheduler::Impl {
  ModelManager* manager;
  SchedulerOptions options;
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  struct Worker {
    std::deque<Job> queue;
    int32_t running = 0;
    std::thread thread;
  };
  std::map<std::string, Worker> workers;

  void Loop(const std::string& model) {
    std::optional<ModelLease> lease;
    std::unique_lock<std::mutex> lk(mu);
    for (;;) {
      Worker& w = workers[model];
      if (w.queue.empty()) {
        if (lease) {
          lk.unlock();
          lease.reset();
          lk.lock();
          continue;
        }
        if (stopping) return;
        cv.wait(lk);
        continue;
      }
      Job job = std::move(w.queue.front());
      w.queue.pop_front();
      w.running = 1;
      const bool stop = stopping;
      lk.unlock();
      Run(model, job, lease, stop);
      lk.lock();
      workers[model].running = 0;
    }
  }

  void Run(const std::string& model, Job& job, std::optional<ModelLease>& lease, bool stop) {
    auto fail = [&](Status s) {
      std::visit([&](auto& r) { r.on_done(s); }, job.req);
    };
    if (stop || job.handle->cancelled.load()) {
      if (auto* g = std::get_if<GenerationRequest>(&job.req)) {
        GenerationResult res;
        res.model = model;
        res.finish_reason = "cancelled";
        g->on_done(res);
      } else {
        fail(Status(StatusCode::kCancelled, "scheduler: cancelled"));
      }
      return;
    }
    if (!lease) {
      std::optional<KeepAlive> ka;
      std::visit([&](auto& r) { ka = r.keep_alive; }, job.req);
      auto l = manager->Acquire(model, ka);
      if (!l.ok()) return fail(l.status());
      lease.emplace(std::move(*l));
    }
    engine::Model& m = lease->model();
    if (auto* g = std::get_if<GenerationRequest>(&job.req)) {
      const auto t0 = job.submitted;
      const auto admitted = std::chrono::steady_clock::now();
      bool first = true;
      double ttft = 0;
      auto res = m.Generate(g->prompt, g->options, [&](std::string_view text) {
        if (first) {
          first = false;
          ttft = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        }
        if (job.handle->cancelled.load()) return false;
        TokenEvent ev;
        ev.text = text;
        return !g->on_token || g->on_token(ev);
      });
      if (!res.ok()) return fail(res.status());
      GenerationResult out;
      out.model = lease->name();
      out.degraded = lease->degraded();
      out.text = res->text;
      out.tokens = res->tokens;
      out.finish_reason = job.handle->cancelled.load() ? "cancelled" : res->finish_reason;
      out.prompt_tokens = res->prompt_tokens;
      out.completion_tokens = static_cast<int32_t>(res->tokens.size());
      out.queue_seconds = std::chrono::duration<double>(admitted - t0).count();
      out.ttft_seconds = ttft;
      out.total_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      g->on_done(std::move(out));
    } else if (auto* e = std::get_if<EmbedRequest>(&job.req)) {
      e->on_done(m.Embed(e->inputs, e->dims));
    } else if (auto* r = std::get_if<RerankRequest>(&job.req)) {
      r->on_done(m.RerankScores(r->inputs));
    }
  }

  template <typename R>
  Result<std::shared_ptr<RequestHandle>> Submit(R request) {
    if (request.model.empty()) return Error(StatusCode::kInvalidArgument, "scheduler: no model");
    auto h = std::make_shared<Handle>();
    std::lock_guard<std::mutex> lk(mu);
    if (stopping) return Error(StatusCode::kUnavailable, "scheduler: shutting down");
    Worker& w = workers[request.model];
    if (static_cast<int32_t>(w.queue.size()) >= options.max_queue) {
      return Error(StatusCode::kUnavailable, "scheduler: queue for {} is full ({} waiting)", request.model,
                   w.queue.size());
    }
    const std::string model = request.model;
    w.queue.push_back(Job{std::move(request), h});
    if (!w.thread.joinable()) w.thread = std::thread([this, model] { Loop(model); });
    cv.notify_all();
    return std::shared_ptr<RequestHandle>(h);
  }
};

Scheduler::Scheduler(ModelManager* manager, SchedulerOptions options)
    : options_(options), impl_(std::make_unique<Impl>()) {
  impl_->manager = manager;
  impl_->options = options;
}

Scheduler::~Scheduler() { Shutdown(); }

Result<std::shared_ptr<RequestHandle>> Scheduler::Submit(GenerationRequest request) {
  if (request.prompt.empty()) return Error(StatusCode::kInvalidArgument, "scheduler: empty prompt");
  return impl_->Submit(std::move(request));
}
Result<std::shared_ptr<RequestHandle>> Scheduler::Submit(EmbedRequest request) { return impl_->Submit(std::move(request)); }
Result<std::shared_ptr<RequestHandle>> Scheduler::Submit(RerankRequest request) {
  return impl_->Submit(std::move(request));
}

std::vector<QueueInfo> Scheduler::Queues() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  std::vector<QueueInfo> out;
  for (auto& [name, w] : impl_->workers) out.push_back({name, static_cast<int32_t>(w.queue.size()), w.running});
  return out;
}

int32_t Scheduler::QueueDepth(const std::string& model) const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  auto it = impl_->workers.find(model);
  return it == impl_->workers.end() ? 0 : static_cast<int32_t>(it->second.queue.size()) + it->second.running;
}

void Scheduler::Shutdown() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    if (impl_->stopping) return;
    impl_->stopping = true;
    for (auto& [_, w] : impl_->workers) {
      for (auto& j : w.queue) j.handle->Cancel();
    }
    impl_->cv.notify_all();
  }
  // Running jobs see cancellation through their handles only when cancelled; stop them too.
  for (;;) {
    std::unique_lock<std::mutex> lk(impl_->mu);
    for (auto& [_, w] : impl_->workers) {
      if (w.thread.joinable()) threads.push_back(std::move(w.thread));
    }
    break;
  }
  for (auto& t : threads) t.join();
}

}  // namespace qwenmux::orchestrator
