#include "server/pipeline_jobs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "rag/ingest.h"
#include "rag/store.h"
#include "server/api_common.h"

namespace qwenmux::server {

namespace fs = std::filesystem;

struct PipelineJobs::Entry {
  std::string id, pipeline, dir, results_path;
  int64_t created_at = 0, seq = 0;
  bool writes_store = false;  // an embed stage stores into the server's store (one such job at a time)
  std::string store_dir;      // where its embed stages store ("" = none store)
  std::vector<std::string> collections;  // the collections they name
  std::unique_ptr<pipeline::Job> job;
  std::thread waiter;  // Wait()s for the job, then records the outcome
  // Guarded by PipelineJobs::mu_.
  bool finished = false;
  Json summary;
  std::string error;
  bool purge_pending = false;    // DELETE ?purge=true while running: purge when the workers stop
  std::optional<int64_t> purged;  // documents removed from the server's store
  std::string purge_error;

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

}  // namespace

// Creates `dir` (mode 0700) unless it exists, then opens it without following a symbolic link
// and checks, on the open descriptor (no race with a swap of the path), that it is a directory
// owned by this user; its mode is set to 0700 through the descriptor too.
Status MakePrivateDir(const std::string& dir) {
  const std::string hint = "remove it, or start serve with --work-dir DIR";
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) return Error(StatusCode::kIo, "pipeline jobs: cannot inspect {}: {}", dir, std::strerror(errno));
    std::error_code ec;
    const fs::path parent = fs::path(dir).parent_path();
    if (!parent.empty()) fs::create_directories(parent, ec);  // an operator's --work-dir may be nested
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return Error(StatusCode::kIo, "pipeline jobs: cannot create {}: {}", dir, std::strerror(errno));
    }
  }
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (::lstat(dir.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
      return Error(StatusCode::kIo, "pipeline jobs: {} is a symbolic link; refusing to follow it ({})", dir, hint);
    }
    if (err == ENOTDIR) return Error(StatusCode::kIo, "pipeline jobs: {} is not a directory ({})", dir, hint);
    return Error(StatusCode::kIo, "pipeline jobs: cannot open {}: {}", dir, std::strerror(err));
  }
  Status out = Status::Ok();
  if (::fstat(fd, &st) != 0) {
    out = Error(StatusCode::kIo, "pipeline jobs: cannot inspect {}: {}", dir, std::strerror(errno));
  } else if (st.st_uid != ::geteuid()) {
    out = Error(StatusCode::kIo, "pipeline jobs: {} is owned by uid {}, not by this user (uid {}); refusing to use it ({})",
                dir, static_cast<unsigned>(st.st_uid), static_cast<unsigned>(::geteuid()), hint);
  } else if ((st.st_mode & 07777) != 0700 && ::fchmod(fd, 0700) != 0) {
    out = Error(StatusCode::kIo, "pipeline jobs: cannot make {} private (mode 0700): {}", dir, std::strerror(errno));
  }
  ::close(fd);
  return out;
}

namespace {

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
  options_.max_running = std::max(0, options_.max_running);  // 0: jobs are off
  options_.keep_finished = std::max(1, options_.keep_finished);
}

PipelineJobs::~PipelineJobs() { Shutdown(); }

Status PipelineJobs::PrepareWorkDir() const { return MakePrivateDir(work_dir_); }

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
  if (!enabled()) return fail(Error(StatusCode::kUnsupported, "pipeline jobs are off on this server (serve --max-jobs 0)"));
  std::shared_ptr<Entry> replaced;  // a finished job of the same id (dropped outside the lock)
  // Which store: the server's for allowed collections only, else the job's own.
  std::set<std::string> named, allowed_named, other_named;
  for (const pipeline::StageDef& st : s.def.stages) {
    if (st.collection.empty()) continue;
    if (Status v = rag::ValidateCollectionName(st.collection); !v.ok()) return fail(v.WithContext("stage " + st.name));
    named.insert(st.collection);
    const auto& allow = options_.write_collections;
    (std::find(allow.begin(), allow.end(), st.collection) != allow.end() ? allowed_named : other_named).insert(st.collection);
  }
  if (!allowed_named.empty() && !other_named.empty()) {
    return fail(Error(StatusCode::kInvalidArgument,
                      "embed stages store into {} (allowed in the server's document store) and {} (not allowed: these "
                      "go to the job's own store); one job writes to one store",
                      fmt::join(allowed_named, ", "), fmt::join(other_named, ", ")));
  }
  const bool writes_store = !allowed_named.empty();
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
  e->collections.assign(named.begin(), named.end());
  if (!named.empty()) {
    e->store_dir = !writes_store                    ? e->dir + "/store"
                   : options_.store_dir.empty() ? work_dir_ + "/store"
                                                : options_.store_dir;
  }
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
    run.store_dir = e->store_dir;
    run.threads = threads_;
    run.manager = manager_;
    run.scheduler = scheduler_;
    run.served = served_;
    run.backend = backend_;
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
      std::unique_lock<std::mutex> lk2(mu_);
      if (raw->purge_pending) {  // still counted in storing_: no other writer meanwhile
        lk2.unlock();
        auto n = Purge(*raw);
        lk2.lock();
        if (n.ok()) raw->purged = *n;
        else raw->purge_error = n.status().message();
        raw->purge_pending = false;
      }
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
  if (!e.collections.empty()) {
    j["collections"] = e.collections;
    j["store"] = e.writes_store ? "server" : "job";  // the server's RAG store, or the job's own
  }
  if (e.purge_pending) j["purge"] = "pending";
  if (e.purged) j["purged"] = *e.purged;
  if (!e.purge_error.empty()) j["purge_error"] = e.purge_error;
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

Result<Json> PipelineJobs::Delete(const std::string& id, bool purge) {
  std::shared_ptr<Entry> e;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return Error(StatusCode::kNotFound, "no pipeline job {}", id);
    if (!it->second->finished) {
      if (purge && it->second->writes_store) it->second->purge_pending = true;  // its waiter purges
      it->second->job->Cancel();  // takes only the job's own lock; its waiter records the end
      return DescribeEntry(*it->second);
    }
    e = it->second;
    purge = purge && e->writes_store;  // a job's own store goes with its directory
    if (purge) {
      if (storing_ > 0) {
        return Error(StatusCode::kUnavailable, "another pipeline job is writing to the document store; purge later");
      }
      ++storing_;  // the purge is the store's one writer meanwhile
    }
  }
  std::optional<int64_t> purged;
  if (purge) {
    auto n = Purge(*e);
    std::lock_guard<std::mutex> lk(mu_);
    --storing_;
    if (!n.ok()) return n.status().WithContext("pipeline job " + id + ": purge");
    purged = *n;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = jobs_.find(id);
    if (it != jobs_.end() && it->second == e) jobs_.erase(it);
  }
  const std::string dir = e->dir;
  e.reset();  // joins the (finished) waiter unless a reader still holds it
  std::error_code ec;
  fs::remove_all(dir, ec);
  Json out{{"id", id}, {"object", "pipeline.job"}, {"deleted", true}};
  if (purged) out["purged"] = *purged;
  return out;
}

Result<int64_t> PipelineJobs::Purge(const Entry& e) const {
  if (!e.writes_store || e.store_dir.empty()) return int64_t{0};
  std::ifstream in(e.results_path, std::ios::binary);
  if (!in) return int64_t{0};  // nothing finished, nothing stored
  QM_ASSIGN_OR_RETURN(std::unique_ptr<rag::Store> store, rag::Store::Open(e.store_dir));
  int64_t n = 0;
  std::string line;
  while (std::getline(in, line)) {
    const Json r = Json::parse(line, nullptr, false);
    if (r.is_discarded() || !r.is_object() || !r.contains("collection") || !r["collection"].is_string() ||
        !r.contains("document") || !r["document"].is_string()) {
      continue;
    }
    auto coll = store->GetCollection(r["collection"].get<std::string>());
    if (!coll.ok()) {
      if (coll.status().code() == StatusCode::kNotFound) continue;  // deleted meanwhile
      return coll.status();
    }
    const std::string doc_id = rag::DocumentId(r["document"].get<std::string>());
    QM_ASSIGN_OR_RETURN(std::optional<rag::DocumentRecord> rec, store->FindDocument(*coll, doc_id));
    // Only what this job stored: a document replaced since (other content) is left alone.
    if (!rec || (r.contains("hash") && r["hash"].is_string() && rec->content_hash != r["hash"].get<std::string>())) continue;
    QM_RETURN_IF_ERROR(store->DeleteDocument(*coll, doc_id));
    ++n;
  }
  QM_RETURN_IF_ERROR(store->Flush());
  return n;
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
