// Document-pipeline jobs of the server (POST /v1/pipelines/jobs, see pipeline_api.cc): the
// running and recently finished pipeline::Jobs, their directories under the work dir, the cap on
// jobs running at once and the number of finished jobs kept.
//
// Every job runs in its own directory <work_dir>/<id>/: inline documents under docs/, result
// lines in results.jsonl (appended and flushed per document, so GET .../results reads the file
// as it grows). Submitting again with the same id resumes: documents with a line in the results
// file are skipped (pipeline::Job's resume). Jobs share the server's ModelManager, so the memory
// budget governs the pipeline models together with the served ones.
//
// Where embed stages store (`collection:`). By default a job writes into a store of its own,
// <work_dir>/<id>/store, never into the server's RAG store that POST /v1/rag answers from: any
// client that may submit a job could otherwise plant text that RAG then cites. The operator
// allows named collections of the server's store with `serve --jobs-write-collections kb,docs`
// (write_collections); a job whose embed stages all name allowed collections writes into
// store_dir (one such job at a time: the store takes one writer), one that names none of them
// writes into its own store (a definition has one embed stage; a job naming both kinds would be
// refused, 400). Collection names are
// checked (rag::ValidateCollectionName). Deleting a finished job removes its directory and with
// it its own store; `purge` also removes the documents it added to the server's store (those
// whose result line names the collection and whose stored content hash is still the job's).
//
// The work directory (default <temp dir>/qwenmux-jobs-<uid>) and each job's directory are
// created with mode 0700 and must be real directories owned by the server's user: a symbolic
// link or another user's directory is refused (kPermissionDenied-like kIo error naming it), so a
// planted link in a shared temp dir cannot redirect the server's writes.
//
// max_running = 0 turns jobs off (Submit answers kUnsupported: 403 over HTTP).
//
// Finished jobs (done, cancelled, error) stay listed until more than keep_finished of them
// exist; then the oldest are dropped and their directories removed.
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "orchestrator/config/config.h"
#include "server/http_server.h"
#include "orchestrator/manager/model_manager.h"
#include "pipeline/definition.h"
#include "pipeline/job.h"

namespace qwenmux::server {

struct PipelineJobOptions {
  std::vector<std::string> data_roots;     // server-side inputs must lie under one (none: inline only)
  std::vector<std::string> pipeline_dirs;  // where pipeline names are looked up
  std::string work_dir;                    // job directories ("" = <temp dir>/qwenmux-jobs-<uid>)
  std::string store_dir;                   // the server's RAG store (serve passes its --store, where POST
                                           // /v1/rag reads); jobs write there only into write_collections
  std::vector<std::string> write_collections;  // collections of store_dir jobs may write (none: jobs
                                               // write only into their own <work_dir>/<id>/store)
  int32_t max_running = 2;                 // jobs running at once; more: 429; 0: jobs are off
  int32_t keep_finished = 32;              // finished jobs kept (listed, results readable)
  int32_t max_streams = 16;                // open event streams
};

struct InlineDocument {
  std::string name;  // a plain file name with a readable extension (checked by the caller)
  std::string text;
};

struct JobSubmission {
  std::string id;                          // "" = a new id; an id seen before resumes that job
  pipeline::PipelineDef def;
  std::vector<std::string> inputs;         // checked server-side files (absolute)
  std::vector<InlineDocument> documents;
  std::map<std::string, std::string> models;  // tier/name -> GGUF file (already resolved)
};

class PipelineJobs {
 public:
  // `config` (may be null), `manager` and `scheduler` (may be null) must outlive this object.
  // `served` (file -> served model): files the scheduler serves; a job's stage on one runs
  // on that instance (pipeline::RunOptions::served) instead of loading the file again.
  PipelineJobs(PipelineJobOptions options, orchestrator::ModelManager* manager, const orchestrator::Config* config,
               std::string models_dir, size_t threads, orchestrator::Scheduler* scheduler = nullptr,
               std::map<std::string, pipeline::ServedModelRef> served = {});
  ~PipelineJobs();  // Shutdown()

  const PipelineJobOptions& options() const { return options_; }
  const std::string& work_dir() const { return work_dir_; }
  bool enabled() const { return options_.max_running > 0; }
  // Creates the work directory (mode 0700) or checks the existing one: a real directory owned
  // by this user, never a symbolic link. Called at start-up (serve refuses to start otherwise)
  // and again before each job.
  Status PrepareWorkDir() const;
  // Backend models for the jobs' stages (pipeline::RunOptions::backend); set before serving.
  void SetBackend(rag::BackendAccess backend) { backend_ = std::move(backend); }

  // Starts a job; returns its JSON (Describe). Errors: kUnavailable (max_running jobs run, or
  // another job writing to the RAG store runs while this one would too),
  // kCancelled (shutting down), an id whose job still runs (conflict set), kIo (the job
  // directory), and Job::Start's errors (a stage model that cannot be resolved...).
  struct SubmitError {
    Status status;
    bool conflict = false;  // the id names a running job (409)
  };
  Result<nlohmann::ordered_json> Submit(JobSubmission s, SubmitError* error);

  // The job's JSON: {"id", "object", "pipeline", "created_at", "state", "documents", "skipped",
  // "done", "ok", "failed", "retried", "seconds", "stages", "finished", "progress_url",
  // "results_url"} plus "summary" once it finished and "error" when it stopped on an internal
  // error. "finished" turns true when every worker has stopped: the state says "cancelled" at
  // once, while the job's workers may still end the batch they are in (and count as running).
  Result<nlohmann::ordered_json> Describe(const std::string& id) const;
  nlohmann::ordered_json List() const;  // newest first
  // The results file's complete lines (a line still being written is left out).
  Result<std::string> Results(const std::string& id) const;
  // A running job: cancels it (state "cancelled" at once); a finished one: forgets it and
  // removes its directory. Returns the job's JSON ({"id", "deleted": true} for a finished one).
  // purge: also removes the documents the job added to the server's store ("purged": N); for a
  // running job the purge runs when its workers stop ("purge": "pending", then "purged": N in
  // its JSON). Errors: kNotFound, kUnavailable (another job writes the server's store).
  Result<nlohmann::ordered_json> Delete(const std::string& id, bool purge = false);

  // Server-sent events until the job finishes or the client goes: "progress" (the job's JSON,
  // when it changed, at most every 250 ms), "result" (each new result line), and a last "done"
  // (the final JSON). Each stream has its own thread (at most max_streams; more: kUnavailable).
  // Errors come before anything is sent: kNotFound, kUnavailable, kCancelled.
  Status Stream(const std::string& id, std::shared_ptr<Responder> r);

  int32_t running() const;
  // Cancels every running job and waits for its workers (each finishes the batch it is in).
  void Shutdown();

 private:
  struct Entry;
  std::shared_ptr<Entry> Find(const std::string& id) const;
  nlohmann::ordered_json DescribeEntry(const Entry& e) const;
  // Takes the finished entries beyond keep_finished out of the map (under mu_).
  std::vector<std::shared_ptr<Entry>> PruneLocked();
  // Removes from store_dir the documents `e` added there (its result lines); returns how many.
  Result<int64_t> Purge(const Entry& e) const;

  PipelineJobOptions options_;
  orchestrator::ModelManager* manager_;
  orchestrator::Scheduler* scheduler_;
  std::map<std::string, pipeline::ServedModelRef> served_;
  rag::BackendAccess backend_;
  const orchestrator::Config* config_;
  std::string models_dir_;
  size_t threads_;
  std::string work_dir_;

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Entry>> jobs_;
  std::map<std::string, bool> starting_;  // ids being started (not yet in jobs_)
  int32_t active_ = 0;                    // starting + running jobs
  int32_t storing_ = 0;                   // of those, jobs writing to the RAG store
  int64_t seq_ = 0;                       // submission order
  bool shut_down_ = false;
  struct StreamThread {
    std::thread thread;
    bool done = false;  // under mu_
  };
  std::list<StreamThread> streams_;
  std::condition_variable stop_cv_;  // wakes streams at shutdown
  void StreamLoop(const std::string& id, const std::shared_ptr<Responder>& r);
};

class HttpServer;
class Service;
// Server-side paths a request names (pipeline_api.cc; pipeline and fine-tuning jobs): `roots`
// are the canonical --data-root directories. CheckDataPath takes a relative path relative to the
// first root, resolves symbolic links and returns 0 with the canonical path in *out when it lies
// under a root; else the HTTP status (400: not a path; 403: outside the roots, or no roots) and
// the reason in *why.
bool UnderDataRoots(const std::filesystem::path& p, const std::vector<std::filesystem::path>& roots);
int CheckDataPath(const std::string& path, const std::vector<std::filesystem::path>& roots, std::string* out,
                  std::string* why);
// Creates `dir` (mode 0700) or checks the existing one: a real directory owned by this user,
// never a symbolic link (pipeline_jobs.cc; the work directories of both kinds of job).
Status MakePrivateDir(const std::string& dir);
// The /v1/pipelines routes (pipeline_api.cc). Errors: a data root that is not a directory.
Status RegisterPipelineRoutes(Service& service, PipelineJobs& jobs, HttpServer& http, std::string models_dir,
                              const orchestrator::Config* config);

}  // namespace qwenmux::server
