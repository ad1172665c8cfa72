// The scheduler: per-model FIFO queues and one worker thread per model that runs a continuous
// batch (see scheduler.h for the contract).
#include "orchestrator/scheduler/scheduler.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "orchestrator/scheduler/sequence.h"

namespace qwenmux::orchestrator {

using internal::Clock;
using internal::Handle;
using internal::Job;
using internal::PromptJob;
using internal::Sequence;

namespace {

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

Status CancelledStatus() { return Error(StatusCode::kCancelled, "scheduler: request cancelled"); }

}  // namespace

// One model's queue and worker thread.
class Worker {
 public:
  Worker(std::string name, ModelManager* manager, Metrics* metrics) : name_(std::move(name)), manager_(manager), metrics_(metrics) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Worker() { Stop(); }

  // Enqueues unless the queue is full or the scheduler stops; returns kUnavailable then.
  Status Enqueue(std::unique_ptr<Job> job, int32_t max_queue, std::chrono::seconds retry_after) {
    std::lock_guard lk(mu_);
    if (stopping_) return Error(StatusCode::kUnavailable, "scheduler: shutting down");
    if (static_cast<int32_t>(queue_.size()) >= max_queue) {
      metrics_->RequestFailed(name_, "queue_full");
      return Error(StatusCode::kUnavailable, "scheduler: the queue of model '{}' is full ({} waiting); retry after {} s",
                   name_, queue_.size(), retry_after.count());
    }
    queue_.push_back(std::move(job));
    metrics_->SetQueueDepth(name_, static_cast<int64_t>(queue_.size()));
    cv_.notify_all();
    return Status::Ok();
  }

  void Wake() {
    std::lock_guard lk(mu_);
    cv_.notify_all();
  }

  void Stop() {
    {
      std::lock_guard lk(mu_);
      stopping_ = true;
      cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
  }

  QueueInfo Info() const {
    std::lock_guard lk(mu_);
    return {name_, static_cast<int32_t>(queue_.size()), running_};
  }

 private:
  void Run();
  void Serve(ModelLease& lease);
  void ServeExclusive(engine::Model& model, std::unique_ptr<Job> job);
  // Ends an embed/rerank request (its sequences leave the batch), counts it out and calls its
  // on_done with the result (status ok) or the error.
  void EndPromptJob(std::unique_ptr<PromptJob>& job, const Status& status, engine::Batch& batch,
                    std::vector<std::pair<PromptJob*, size_t>>& prompt_of);
  // Moves the queued jobs that were cancelled into *out (under mu_).
  void TakeCancelledLocked(std::vector<std::unique_ptr<Job>>* out);
  // Counts a running request out (before its on_done, so that QueueDepth() no longer counts it
  // once the caller has its answer).
  void Retire() {
    std::lock_guard lk(mu_);
    --running_;
  }
  void FinishSequence(std::unique_ptr<Sequence>& seq) {
    Retire();
    seq->Complete(metrics_, name_);
    seq.reset();
  }
  void FailQueued(std::vector<std::unique_ptr<Job>>& jobs, const Status& status, const char* reason) {
    for (auto& j : jobs) {
      metrics_->RequestFailed(name_, reason);
      if (j->kind == Job::Kind::kGenerate && status.code() == StatusCode::kCancelled) {
        // A generation cancelled before it ran ends like one cancelled while running.
        GenerationResult r;
        r.model = name_;
        r.finish_reason = "cancelled";
        r.prompt_tokens = static_cast<int32_t>(j->gen.prompt.size());
        r.queue_seconds = r.total_seconds = Seconds(j->submitted, Clock::now());
        if (j->gen.on_done) j->gen.on_done(std::move(r));
      } else {
        j->Fail(status);
      }
    }
    jobs.clear();
  }

  const std::string name_;
  ModelManager* const manager_;
  Metrics* const metrics_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> queue_;
  int32_t running_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

void Worker::TakeCancelledLocked(std::vector<std::unique_ptr<Job>>* out) {
  const size_t before = queue_.size();
  for (auto it = queue_.begin(); it != queue_.end();) {
    if ((*it)->handle->cancelled()) {
      out->push_back(std::move(*it));
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  if (queue_.size() != before) metrics_->SetQueueDepth(name_, static_cast<int64_t>(queue_.size()));
}

void Worker::Run() {
  while (true) {
    std::optional<KeepAlive> keep_alive;
    std::vector<std::unique_ptr<Job>> cancelled;
    bool stop = false;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
      TakeCancelledLocked(&cancelled);
      stop = stopping_;
      if (stop) {
        for (auto& j : queue_) cancelled.push_back(std::move(j));
        queue_.clear();
        metrics_->SetQueueDepth(name_, 0);
      }
      // The latest request's keep-alive wins (as with the manager's own per-request override).
      for (const auto& j : queue_) {
        if (j->keep_alive()) keep_alive = j->keep_alive();
      }
    }
    FailQueued(cancelled, CancelledStatus(), "cancelled");
    if (stop) return;
    {
      std::lock_guard lk(mu_);
      if (queue_.empty()) continue;
    }
    Result<ModelLease> lease = manager_->Acquire(name_, keep_alive);
    if (!lease.ok()) {
      // Every request waiting now shared this load: each gets its outcome.
      std::vector<std::unique_ptr<Job>> failed;
      {
        std::lock_guard lk(mu_);
        for (auto& j : queue_) failed.push_back(std::move(j));
        queue_.clear();
        metrics_->SetQueueDepth(name_, 0);
      }
      FailQueued(failed, lease.status(), "load");
      continue;
    }
    Serve(*lease);
    lease->Release();
  }
}

void Worker::ServeExclusive(engine::Model& model, std::unique_ptr<Job> job) {
  job->exclusive.run(&model);  // returns when the caller is done with the model
  Retire();
  metrics_->RequestCompleted(name_);
}

void Worker::EndPromptJob(std::unique_ptr<PromptJob>& job, const Status& status, engine::Batch& batch,
                          std::vector<std::pair<PromptJob*, size_t>>& prompt_of) {
  for (size_t id = 0; id < prompt_of.size(); ++id) {
    if (prompt_of[id].first != job.get()) continue;
    batch.Remove(static_cast<int32_t>(id));
    prompt_of[id] = {nullptr, 0};
  }
  Retire();
  if (status.ok()) {
    metrics_->RequestCompleted(name_);
  } else {
    metrics_->RequestFailed(name_, status.code() == StatusCode::kCancelled ? "cancelled"
                                   : status.code() == StatusCode::kInvalidArgument || status.code() == StatusCode::kOutOfRange
                                       ? "invalid_request" : "error");
  }
  job->Finish(status);
  job.reset();
}

// The continuous batch: each step admits queued requests into free KV slots of the model's engine
// batch (FIFO) and runs one engine step (decode tokens of the running sequences beside prompt
// chunks of the newly admitted ones); the engine samples and applies the stop rules, the worker
// streams and completes the requests. Embed and rerank requests join the same batch as prompt-only
// sequences (PromptJob), one per input.
void Worker::Serve(ModelLease& lease) {
  engine::Model& model = lease.model();
  engine::Batch batch(model);  // the lease's sequences
  const int32_t n_seq = model.n_seq();
  const int32_t n_ctx = model.n_ctx();
  const int64_t n_vocab = model.config().n_vocab;
  std::vector<std::unique_ptr<Sequence>> seqs(static_cast<size_t>(n_seq));  // by engine sequence id
  // Embed/rerank requests in the batch (in arrival order) and, by engine sequence id, the request
  // and input of a prompt-only sequence (nullptr: none).
  std::vector<std::unique_ptr<PromptJob>> prompt_jobs;
  std::vector<std::pair<PromptJob*, size_t>> prompt_of(static_cast<size_t>(n_seq), {nullptr, 0});
  std::vector<engine::SequenceEvent> events;
  std::vector<std::unique_ptr<Job>> admitted, joined, cancelled;

  while (true) {
    std::unique_ptr<Job> side;
    bool stop = false;
    const int32_t active = batch.active();
    std::optional<KeepAlive> joined_keep_alive;
    {
      std::lock_guard lk(mu_);
      TakeCancelledLocked(&cancelled);
      stop = stopping_;
      if (!stop) {
        // The inputs of embed/rerank requests already taken have the first claim on free slots
        // (FIFO); while some of them wait, nothing behind them is taken.
        int32_t free_slots = n_seq - active;
        bool blocked = false;
        for (const auto& pj : prompt_jobs) {
          blocked = blocked || pj->waiting() > free_slots;
          free_slots -= std::min(free_slots, pj->waiting());
        }
        while (!blocked && !queue_.empty()) {
          Job* front = queue_.front().get();
          if (front->kind == Job::Kind::kGenerate) {
            if (free_slots == 0) break;
            --free_slots;
            admitted.push_back(std::move(queue_.front()));
          } else if (front->kind == Job::Kind::kExclusive) {
            // Exclusive use lends the whole model: it runs when the batch has drained.
            if (active > 0 || !admitted.empty() || !joined.empty() || !prompt_jobs.empty()) break;
            side = std::move(queue_.front());
          } else {
            // Embeddings and reranking join the batch: one prompt-only sequence per input,
            // admitted as slots free up (beside a running generation when the model has a free
            // slot).
            const int32_t inputs = static_cast<int32_t>(
                front->kind == Job::Kind::kEmbed ? front->embed.inputs.size() : front->rerank.inputs.size());
            blocked = inputs > free_slots;
            free_slots -= std::min(free_slots, inputs);
            joined.push_back(std::move(queue_.front()));
          }
          queue_.pop_front();
          ++running_;
          // A request joining this lease brings its keep-alive (keep_alive: 0 unloads the model
          // when the lease ends, whichever request the lease was taken for); applied below,
          // outside this lock.
          if (front->keep_alive()) joined_keep_alive = front->keep_alive();
          if (side) break;
        }
        metrics_->SetQueueDepth(name_, static_cast<int64_t>(queue_.size()));
      }
    }
    if (joined_keep_alive) lease.SetKeepAlive(*joined_keep_alive);
    FailQueued(cancelled, CancelledStatus(), "cancelled");
    if (stop) {
      for (auto& s : seqs) {
        if (!s) continue;
        s->End("cancelled");
        FinishSequence(s);
      }
      for (auto& j : joined) prompt_jobs.push_back(std::make_unique<PromptJob>(std::move(j), model));
      joined.clear();
      for (auto& pj : prompt_jobs) EndPromptJob(pj, CancelledStatus(), batch, prompt_of);
      return;
    }
    if (side) {
      ServeExclusive(model, std::move(side));
      continue;
    }
    for (auto& j : joined) {
      auto pj = std::make_unique<PromptJob>(std::move(j), model);
      if (Status st = pj->Prepare(); !st.ok()) {
        EndPromptJob(pj, st, batch, prompt_of);
        continue;
      }
      prompt_jobs.push_back(std::move(pj));
    }
    joined.clear();
    // Admission: check the prompt against this model, take a free slot of the engine's batch.
    const Clock::time_point now = Clock::now();
    for (auto& job : admitted) {
      Status bad;
      const auto& p = job->gen.prompt;
      if (static_cast<int64_t>(p.size()) > n_ctx) {
        bad = Error(StatusCode::kOutOfRange, "scheduler: prompt of {} tokens does not fit the context of {} tokens",
                    p.size(), n_ctx);
      }
      for (int32_t t : p) {
        if (bad.ok() && (t < 0 || t >= n_vocab)) {
          bad = Error(StatusCode::kInvalidArgument, "scheduler: token id {} out of range [0, {})", t, n_vocab);
        }
      }
      AdapterLease adapter;
      if (bad.ok() && !job->gen.adapter.empty()) {
        // The adapter loads on first use, here on the worker, between steps of the batch.
        Result<AdapterLease> a = lease.degraded()
            ? Result<AdapterLease>(Error(StatusCode::kResourceExhausted,
                                         "scheduler: model '{}' cannot be served ({} serves as a fallback), so its "
                                         "adapter '{}' cannot either", lease.requested(), lease.name(), job->gen.adapter))
            : manager_->AcquireAdapter(lease, job->gen.adapter);
        if (a.ok()) {
          job->gen.options.adapter = a->id();
          job->gen.options.adapter_scale = job->gen.adapter_scale.value_or(a->scale());
          adapter = std::move(*a);
        } else {
          bad = a.status();
        }
      }
      std::unique_ptr<Sequence> seq;
      if (bad.ok()) {
        const std::string served = job->gen.adapter.empty() ? lease.name() : lease.name() + ":" + job->gen.adapter;
        seq = std::make_unique<Sequence>(std::move(job), served, lease.degraded(), now);
        seq->HoldAdapter(std::move(adapter));
        Result<int32_t> id = batch.Admit(seq->EngineRequest());
        if (id.ok()) {
          seqs[*id] = std::move(seq);
          continue;
        }
        bad = id.status();
      }
      Retire();
      metrics_->RequestFailed(name_, bad.code() == StatusCode::kInvalidArgument || bad.code() == StatusCode::kOutOfRange
                                         ? "invalid_request" : "load");
      const auto& on_done = seq ? seq->job().gen.on_done : job->gen.on_done;
      if (on_done) on_done(bad);
    }
    admitted.clear();
    // The inputs of embed/rerank requests, as slots are free; a request cancelled meanwhile leaves.
    for (auto& pj : prompt_jobs) {
      Status bad = pj->cancelled() ? CancelledStatus() : Status::Ok();
      while (bad.ok() && pj->waiting() > 0 && batch.free_slots() > 0) {
        auto [input, req] = pj->Next();
        Result<int32_t> id = batch.Admit(std::move(req));
        if (!id.ok()) {
          bad = id.status().WithContext(fmt::format("input {}", input));
          break;
        }
        prompt_of[*id] = {pj.get(), input};
      }
      if (!bad.ok()) EndPromptJob(pj, bad, batch, prompt_of);
    }
    std::erase(prompt_jobs, nullptr);
    if (batch.active() == 0) {
      std::lock_guard lk(mu_);
      if (queue_.empty()) return;  // idle: release the model
      continue;
    }

    engine::StepStats stats;
    Status st = batch.Step(&events, &stats);
    if (!st.ok()) {
      // The KV slots of these sequences are undefined now (the engine dropped them): fail them all.
      for (auto& s : seqs) {
        if (!s) continue;
        s->Abort(st);
        FinishSequence(s);
      }
      for (auto& pj : prompt_jobs) EndPromptJob(pj, st, batch, prompt_of);
      prompt_jobs.clear();
      continue;
    }
    for (engine::SequenceEvent& ev : events) {
      if (seqs[ev.id]) {
        if (!seqs[ev.id]->OnEvent(ev, metrics_, name_)) batch.Remove(ev.id);  // cancelled by its callback
        continue;
      }
      auto [pj, input] = prompt_of[ev.id];
      if (!pj) continue;  // its request has ended
      if (ev.finished) prompt_of[ev.id] = {nullptr, 0};
      Status st = ev.error;
      if (st.ok() && !ev.row.empty()) {
        st = pj->OnRow(input, ev.row);
      } else if (st.ok() && ev.finished) {
        st = Error(StatusCode::kInternal, "scheduler: input {} ended ({}) without its row", input, ev.finish_reason);
      }
      if (!st.ok() || pj->complete()) {
        auto it = std::find_if(prompt_jobs.begin(), prompt_jobs.end(), [&](const auto& p) { return p.get() == pj; });
        EndPromptJob(*it, st, batch, prompt_of);
      }
    }
    std::erase(prompt_jobs, nullptr);
    const double total = static_cast<double>(stats.n_decode + stats.n_prompt);
    if (stats.n_prompt > 0) {
      metrics_->AddPrompt(name_, static_cast<uint64_t>(stats.n_prompt), stats.forward_seconds * stats.n_prompt / total);
    }
    if (stats.generated > 0) {
      metrics_->AddGenerated(name_, static_cast<uint64_t>(stats.generated), stats.forward_seconds * stats.n_decode / total);
    }
    for (auto& s : seqs) {
      if (s && s->finished()) FinishSequence(s);
    }
  }
}

struct Scheduler::Impl {
  ModelManager* manager;
  Metrics* metrics;
  std::mutex mu;
  std::map<std::string, std::shared_ptr<Worker>> workers;
  bool shutdown = false;

  Result<std::shared_ptr<RequestHandle>> Enqueue(const std::string& model, std::unique_ptr<Job> job,
                                                 const SchedulerOptions& options) {
    std::shared_ptr<Worker> w;
    {
      std::lock_guard lk(mu);
      if (shutdown) return Error(StatusCode::kUnavailable, "scheduler: shutting down");
      if (!manager->Has(model)) return Error(StatusCode::kNotFound, "scheduler: unknown model '{}'", model);
      auto& slot = workers[model];
      if (!slot) slot = std::make_shared<Worker>(model, manager, metrics);
      w = slot;
    }
    std::weak_ptr<Worker> weak = w;
    job->handle = std::make_shared<Handle>([weak] {
      if (auto p = weak.lock()) p->Wake();
    });
    job->submitted = Clock::now();
    std::shared_ptr<RequestHandle> handle = job->handle;
    QM_RETURN_IF_ERROR(w->Enqueue(std::move(job), options.max_queue, options.retry_after));
    return handle;
  }
};

Scheduler::Scheduler(ModelManager* manager, SchedulerOptions options) : options_(options), impl_(std::make_unique<Impl>()) {
  impl_->manager = manager;
  impl_->metrics = options.metrics ? options.metrics : &Metrics::Global();
}

Scheduler::~Scheduler() { Shutdown(); }

Result<std::shared_ptr<RequestHandle>> Scheduler::Submit(GenerationRequest request) {
  if (request.prompt.empty()) return Error(StatusCode::kInvalidArgument, "scheduler: empty prompt");
  QM_RETURN_IF_ERROR(request.options.sampler.Validate());
  if (request.options.max_tokens < 0) {
    return Error(StatusCode::kInvalidArgument, "scheduler: max_tokens {} < 0", request.options.max_tokens);
  }
  if (request.top_logprobs < 0 || request.top_logprobs > 20) {
    return Error(StatusCode::kInvalidArgument, "scheduler: top_logprobs {} not in 0..20", request.top_logprobs);
  }
  if (request.adapter_scale && !std::isfinite(*request.adapter_scale)) {
    return Error(StatusCode::kInvalidArgument, "scheduler: lora_scale {} is not finite", *request.adapter_scale);
  }
  if (!request.adapter.empty() && impl_->manager->Has(request.model) &&
      !impl_->manager->HasAdapter(request.model, request.adapter)) {
    std::string names;
    for (const AdapterSpec& a : impl_->manager->Adapters(request.model)) names += (names.empty() ? "" : ", ") + a.base + ":" + a.name;
    return Error(StatusCode::kNotFound, "scheduler: model '{}' has no adapter '{}'; its adapters: {}", request.model,
                 request.adapter, names.empty() ? "(none)" : names);
  }
  auto job = std::make_unique<Job>();
  job->kind = Job::Kind::kGenerate;
  const std::string model = request.model;
  job->gen = std::move(request);
  return impl_->Enqueue(model, std::move(job), options_);
}

Result<std::shared_ptr<RequestHandle>> Scheduler::Submit(EmbedRequest request) {
  if (request.inputs.empty()) return Error(StatusCode::kInvalidArgument, "scheduler: no inputs to embed");
  if (request.dims < 0) return Error(StatusCode::kInvalidArgument, "scheduler: dimensions {} < 0", request.dims);
  auto job = std::make_unique<Job>();
  job->kind = Job::Kind::kEmbed;
  const std::string model = request.model;
  job->embed = std::move(request);
  return impl_->Enqueue(model, std::move(job), options_);
}

Result<std::shared_ptr<RequestHandle>> Scheduler::Submit(ExclusiveRequest request) {
  if (!request.run) return Error(StatusCode::kInvalidArgument, "scheduler: exclusive request without a function");
  auto job = std::make_unique<Job>();
  job->kind = Job::Kind::kExclusive;
  const std::string model = request.model;
  job->exclusive = std::move(request);
  return impl_->Enqueue(model, std::move(job), options_);
}

Result<std::shared_ptr<RequestHandle>> Scheduler::Submit(RerankRequest request) {
  if (request.inputs.empty()) return Error(StatusCode::kInvalidArgument, "scheduler: no inputs to rerank");
  for (const auto& in : request.inputs) {
    if (in.empty()) return Error(StatusCode::kInvalidArgument, "scheduler: empty rerank input");
  }
  auto job = std::make_unique<Job>();
  job->kind = Job::Kind::kRerank;
  const std::string model = request.model;
  job->rerank = std::move(request);
  return impl_->Enqueue(model, std::move(job), options_);
}

std::vector<QueueInfo> Scheduler::Queues() const {
  std::vector<std::shared_ptr<Worker>> ws;
  {
    std::lock_guard lk(impl_->mu);
    for (const auto& [name, w] : impl_->workers) ws.push_back(w);
  }
  std::vector<QueueInfo> out;
  for (const auto& w : ws) out.push_back(w->Info());
  return out;
}

int32_t Scheduler::QueueDepth(const std::string& model) const {
  std::shared_ptr<Worker> w;
  {
    std::lock_guard lk(impl_->mu);
    auto it = impl_->workers.find(model);
    if (it == impl_->workers.end()) return 0;
    w = it->second;
  }
  const QueueInfo q = w->Info();
  return q.waiting + q.running;
}

void Scheduler::Shutdown() {
  std::vector<std::shared_ptr<Worker>> ws;
  {
    std::lock_guard lk(impl_->mu);
    impl_->shutdown = true;
    for (const auto& [name, w] : impl_->workers) ws.push_back(w);
  }
  for (const auto& w : ws) w->Stop();
}

}  // namespace qwenmux::orchestrator
