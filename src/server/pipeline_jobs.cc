#include "server/pipeline_jobs.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "server/api_common.h"

namespace qwenmux::server {

namespace fs = std::filesystem;

struct PipelineJobs::Entry {
  std::string id, pipeline, dir, results_path;
  int64_t created_at = 0, seq = 0;
  bool writes_store = false;  // an embed stage stores into a collection (one such job at a time)
  std::unique_ptr<pipeline::Job> job;
  std::thread waiter;  // Wait()s for the job, then records the outcome
  // Guarded by PipelineJobs::mu_.
  bool finished = false;
  Json summary;
  std::string error;

  ~Entry() {
    if (waiter.joinable()) waiter.join();
  }
};

namespace {

std::string DefaultWorkDir() {
  std::error_code ec;
  fs::path tmp = fs::temp_directory_path(ec);
  if (ec) tmp = "/tmp";
  return (tmp / fmt::format("qwenmux-jobs-{}", static_cast<unsigned>(::getuid()))).string();
}

Status MakePrivateDir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Error(StatusCode::kIo, "pipeline jobs: cannot create {}: {}", dir, ec.message());
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  return Status::Ok();
}

Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  if (!out) return Error(StatusCode::kIo, "pipeline jobs: cannot write {}", path);
  return Status::Ok();
}

}  // namespace

PipelineJobs::PipelineJobs(PipelineJobOptions options, orchestrator::ModelManager* manager,
                           const orchestrator::Config* config, std::string models_dir, size_t threads,
                           orchestrator::Scheduler* scheduler, std::map<std::string, pipeline::ServedModelRef> served)
    : options_(std::move(options)), manager_(manager), scheduler_(scheduler), served_(std::move(served)),
      config_(config), models_dir_(std::move(models_dir)), threads_(threads) {
  work_dir_ = options_.work_dir.empty() ? DefaultWorkDir() : options_.work_dir;
  options_.max_running = std::max(1, options_.max_running);
  options_.keep_finished = std::max(1, options_.keep_finished);
}

PipelineJobs::~PipelineJobs() { Shutdown(); }

int32_t PipelineJobs::running() const {
  std::lock_guard<std::mutex> lk(mu_);
  return active_;
}

std::shared_ptr<PipelineJobs::Entry> PipelineJobs::Find(const std::string& id) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : it->second;
}

Result<Json> PipelineJobs::Submit(JobSubmission s, SubmitError* error) {
  auto fail = [&](Status st, bool conflict = false) -> Status {
    if (error) *error = {st, conflict};
    return st;
  };
  std::shared_ptr<Entry> replaced;  // a finished job of the same id (dropped outside the lock)
  bool writes_store = false;
  for (const pipeline::StageDef& st : s.def.stages) writes_store |= !st.collection.empty();
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (shut_down_) return fail(Error(StatusCode::kCancelled, "the server is shutting down"));
    if (s.id.empty()) {
      do s.id = NewId("job-");
      while (jobs_.count(s.id) || starting_.count(s.id));
    }
    auto it = jobs_.find(s.id);
    if (starting_.count(s.id) || (it != jobs_.end() && !it->second->finished)) {
      return fail(Error(StatusCode::kInvalidArgument, "job {} is still running (cancel it with DELETE first)", s.id), true);
    }
    if (active_ >= options_.max_running) {
      return fail(Error(StatusCode::kUnavailable, "{} pipeline job(s) are running, the limit (serve --max-jobs); "
                        "try again later", active_));
    }
    // The RAG store takes one writer at a time (rag/store.h).
    if (writes_store && (storing_ > 0)) {
      return fail(Error(StatusCode::kUnavailable, "another pipeline job is writing to the document store; try again later"));
    }
    if (it != jobs_.end()) {
      replaced = std::move(it->second);
      jobs_.erase(it);
    }
    starting_[s.id] = true;
    ++active_;
    if (writes_store) ++storing_;
  }
  replaced.reset();  // joins its (finished) waiter

  auto e = std::make_shared<Entry>();
  e->id = s.id;
  e->pipeline = s.def.name;
  e->dir = (fs::path(work_dir_) / s.id).string();
  e->results_path = e->dir + "/results.jsonl";
  e->created_at = UnixNow();
  e->writes_store = writes_store;
  std::error_code ec;
  const bool resumed = fs::exists(e->dir, ec);
  auto started = [&]() -> Status {
    QM_RETURN_IF_ERROR(MakePrivateDir(work_dir_));
    QM_RETURN_IF_ERROR(MakePrivateDir(e->dir));
    pipeline::RunOptions run;
    run.inputs = std::move(s.inputs);
    if (!s.documents.empty()) {
      QM_RETURN_IF_ERROR(MakePrivateDir(e->dir + "/docs"));
      for (const InlineDocument& d : s.documents) {
        const std::string path = e->dir + "/docs/" + d.name;
        QM_RETURN_IF_ERROR(WriteFile(path, d.text));
        run.inputs.push_back(path);
      }
    }
    run.models = std::move(s.models);
    run.config = config_;
    run.models_dir = models_dir_;
    run.results_path = e->results_path;
    run.store_dir = options_.store_dir.empty() ? work_dir_ + "/store" : options_.store_dir;
    run.threads = threads_;
    run.manager = manager_;
    run.scheduler = scheduler_;
    run.served = served_;
    QM_ASSIGN_OR_RETURN(e->job, pipeline::Job::Start(std::move(s.def), std::move(run)));
    return Status::Ok();
  }();
  std::vector<std::shared_ptr<Entry>> pruned;
  {
    std::lock_guard<std::mutex> lk(mu_);
    starting_.erase(s.id);
    if (started.ok() && shut_down_) started = Error(StatusCode::kCancelled, "the server is shutting down");
    if (!started.ok()) {
      --active_;
      if (writes_store) --storing_;
      if (!resumed) fs::remove_all(e->dir, ec);
      return fail(started);
    }
    e->seq = ++seq_;
    jobs_[e->id] = e;
    Entry* raw = e.get();
    e->waiter = std::thread([this, raw] {
      auto summary = raw->job->Wait();
      std::lock_guard<std::mutex> lk2(mu_);
      raw->finished = true;
      if (summary.ok()) {
        raw->summary = std::move(*summary);
      } else {
        raw->error = summary.status().message();
      }
      --active_;
      if (raw->writes_store) --storing_;
    });
    pruned = PruneLocked();
  }
  for (auto& p : pruned) fs::remove_all(p->dir, ec);
  pruned.clear();
  std::lock_guard<std::mutex> lk(mu_);
  return DescribeEntry(*e);
}

std::vector<std::shared_ptr<PipelineJobs::Entry>> PipelineJobs::PruneLocked() {
  std::vector<std::shared_ptr<Entry>> finished;
  for (auto& [_, e] : jobs_) {
    if (e->finished) finished.push_back(e);
  }
  std::vector<std::shared_ptr<Entry>> out;
  if (finished.size() <= static_cast<size_t>(options_.keep_finished)) return out;
  std::sort(finished.begin(), finished.end(), [](const auto& a, const auto& b) { return a->seq < b->seq; });
  finished.resize(finished.size() - static_cast<size_t>(options_.keep_finished));
  for (auto& e : finished) {
    jobs_.erase(e->id);
    out.push_back(std::move(e));
  }
  return out;
}

Json PipelineJobs::DescribeEntry(const Entry& e) const {  // under mu_
  Json j = {{"id", e.id}, {"object", "pipeline.job"}, {"pipeline", e.pipeline}, {"created_at", e.created_at}};
  const Json p = e.job->Progress().ToJson();
  for (auto it = p.begin(); it != p.end(); ++it) j[it.key()] = it.value();
  if (!e.error.empty()) {
    j["state"] = "error";
    j["error"] = e.error;
  }
  j["finished"] = e.finished;  // every worker stopped (a cancelled job may still end its batch)
  const std::string url = "/v1/pipelines/jobs/" + e.id;
  j["progress_url"] = url;
  j["results_url"] = url + "/results";
  if (e.finished && !e.summary.is_null()) j["summary"] = e.summary;
  return j;
}

Result<Json> PipelineJobs::Describe(const std::string& id) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return Error(StatusCode::kNotFound, "no pipeline job {}", id);
  return DescribeEntry(*it->second);
}

Json PipelineJobs::List() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<const Entry*> all;
  for (const auto& [_, e] : jobs_) all.push_back(e.get());
  std::sort(all.begin(), all.end(), [](const Entry* a, const Entry* b) { return a->seq > b->seq; });
  Json data = Json::array();
  for (const Entry* e : all) data.push_back(DescribeEntry(*e));
  return Json{{"object", "list"}, {"data", std::move(data)}};
}

Result<std::string> PipelineJobs::Results(const std::string& id) const {
  std::shared_ptr<Entry> e = Find(id);
  if (!e) return Error(StatusCode::kNotFound, "no pipeline job {}", id);
  std::ifstream in(e->results_path, std::ios::binary);
  if (!in) return std::string();  // nothing written yet
  std::stringstream ss;
  ss << in.rdbuf();
  std::string all = ss.str();
  const size_t nl = all.rfind('\n');
  all.resize(nl == std::string::npos ? 0 : nl + 1);
  return all;
}

Result<Json> PipelineJobs::Delete(const std::string& id) {
  std::shared_ptr<Entry> e;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return Error(StatusCode::kNotFound, "no pipeline job {}", id);
    if (!it->second->finished) {
      it->second->job->Cancel();  // takes only the job's own lock; its waiter records the end
      return DescribeEntry(*it->second);
    }
    e = std::move(it->second);
    jobs_.erase(it);
  }
  const std::string dir = e->dir;
  e.reset();  // joins the (finished) waiter unless a reader still holds it
  std::error_code ec;
  fs::remove_all(dir, ec);
  return Json{{"id", id}, {"object", "pipeline.job"}, {"deleted", true}};
}

Status PipelineJobs::Stream(const std::string& id, std::shared_ptr<Responder> r) {
  std::list<StreamThread> ended;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (shut_down_) return Error(StatusCode::kCancelled, "the server is shutting down");
    if (!jobs_.count(id)) return Error(StatusCode::kNotFound, "no pipeline job {}", id);
    for (auto it = streams_.begin(); it != streams_.end();) {  // reap ended streams
      auto next = std::next(it);
      if (it->done) ended.splice(ended.end(), streams_, it);
      it = next;
    }
    if (streams_.size() >= static_cast<size_t>(std::max(1, options_.max_streams))) {
      return Error(StatusCode::kUnavailable, "{} event streams are open, the limit; poll {} instead", streams_.size(),
                   "/v1/pipelines/jobs/" + id);
    }
    streams_.emplace_back();
    StreamThread* st = &streams_.back();
    st->thread = std::thread([this, id, r = std::move(r), st] {
      StreamLoop(id, r);
      std::lock_guard<std::mutex> lk2(mu_);
      st->done = true;
    });
  }
  for (auto& t : ended) t.thread.join();
  return Status::Ok();
}

void PipelineJobs::StreamLoop(const std::string& id, const std::shared_ptr<Responder>& r) {
  r->StartStream(200, "text/event-stream");
  size_t offset = 0;  // bytes of the results file already sent
  std::string last;
  auto event = [&](const char* name, const std::string& data) {
    return r->Write(fmt::format("event: {}\ndata: {}\n\n", name, data));
  };
  for (;;) {
    // Finished is read before the results, so the last pass sends every line.
    auto j = Describe(id);
    if (!j.ok()) break;  // forgotten (DELETE)
    const bool finished = (*j)["finished"].get<bool>();
    auto lines = Results(id);
    if (lines.ok() && lines->size() > offset) {
      size_t pos = offset;
      bool ok = true;
      while (ok && pos < lines->size()) {
        const size_t nl = lines->find('\n', pos);
        ok = event("result", lines->substr(pos, nl - pos));
        pos = nl + 1;
      }
      if (!ok) return r->End();
      offset = lines->size();
    }
    const std::string now = Dump(*j);
    if (finished) {
      event("done", now);
      break;
    }
    if (now != last && !event("progress", now)) break;
    last = now;
    std::unique_lock<std::mutex> lk(mu_);
    if (stop_cv_.wait_for(lk, std::chrono::milliseconds(250), [&] { return shut_down_ || r->cancelled(); })) break;
  }
  r->End();
}

void PipelineJobs::Shutdown() {
  std::map<std::string, std::shared_ptr<Entry>> all;
  std::list<StreamThread> streams;
  {
    std::lock_guard<std::mutex> lk(mu_);
    shut_down_ = true;
    all.swap(jobs_);
  }
  stop_cv_.notify_all();
  {
    // Stream threads end within one wait; they set `done` under mu_, so join outside it.
    std::lock_guard<std::mutex> lk(mu_);
    streams.swap(streams_);
  }
  for (auto& t : streams) t.thread.join();
  for (auto& [_, e] : all) e->job->Cancel();
  all.clear();  // each entry joins its waiter, which joins the job's workers
}

}  // namespace qwenmux::server
