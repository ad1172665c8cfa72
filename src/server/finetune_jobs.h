// Fine-tuning jobs of the server (POST /v1/fine_tuning/jobs, see finetune_api.cc): LoRA training
// (finetune::Train) of a served Qwen3 model (dense or MoE) on a background thread per job, at most
// max_running at once (more: kUnavailable, 429), and on success the adapter registered with the
// model manager and the service, so requests use it at once as model "<base>:<adapter>" (the
// naming rule of serve --adapter, service.h ServedAdapter).
//
// Every job lives in <work_dir>/<id>/ (mode 0700, as the pipeline jobs' directories):
//   job.json       the job (request, resolved files, state), rewritten (temp + rename) on each change
//   events.jsonl   one line per event (appended: step metrics, validation, messages)
//   adapter.gguf   the trained adapter (succeeded jobs)
//   checkpoint     step, f32 master weights and AdamW moments (every checkpoint_every steps, and
//                  when training stops for a cancel or a shutdown)
// Restore() (at startup) reads every job directory: a succeeded job's adapter is registered again;
// a job that was running when the server stopped (shutdown, crash, kill -9) resumes from its
// checkpoint when its base model is still served from the same file (the loss curve continues as
// an uninterrupted run's: finetune::Train's exact resume), else it is marked failed with the reason.
//
// States (OpenAI's names): running -> succeeded | failed | cancelled. Cancel stops training before
// its next step.
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "finetune/train.h"
#include "orchestrator/manager/model_manager.h"

namespace qwenmux::server {

class Service;

struct FinetuneJobOptions {
  std::string work_dir;            // job directories ("" = jobs are off); App: <pipeline work dir>/fine_tuning
  int32_t max_running = 1;         // jobs training at once; more: 429; 0: off
  size_t threads = 0;              // training threads per job (0: one per hardware thread)
  int64_t checkpoint_every = 10;   // steps between checkpoints (a request may choose its own)
  int32_t max_events = 2000;       // events kept in memory per job (the newest; all are in events.jsonl)
};

// What a request asks for, checked (finetune_api.cc parses it).
struct FinetuneRequest {
  std::string base;             // the served model's name
  std::string base_file;        // its GGUF
  std::string training_file;    // canonical paths under a data root
  std::string validation_file;  // "" = none (a share of training_file validates: hyperparameters.valid_fraction)
  std::string suffix;           // "" = none
  nlohmann::ordered_json hyperparameters = nlohmann::ordered_json::object();  // as given (job.json keeps them)
  nlohmann::ordered_json metadata;  // echoed (null = none)
};

// The hyperparameters object -> TrainOptions fields (steps / epochs, batch, learning rate, rank,
// alpha, dropout, targets, ...). Errors (kInvalidArgument) name the field in *param
// ("hyperparameters.n_epochs"). `checkpoint_every` is the server's default.
Status ApplyHyperparameters(const nlohmann::ordered_json& h, int64_t checkpoint_every, finetune::TrainOptions* o,
                            std::string* param);

class FinetuneJobs {
 public:
  // `service` and `manager` must outlive this object.
  FinetuneJobs(FinetuneJobOptions options, Service* service, orchestrator::ModelManager* manager);
  ~FinetuneJobs();  // Shutdown()

  bool enabled() const { return options_.max_running > 0 && !options_.work_dir.empty(); }
  const FinetuneJobOptions& options() const { return options_; }
  // Creates the work directory, then reads the jobs found there (see the header comment).
  // Messages about restored jobs go to `log`.
  Status Restore(const std::function<void(const std::string&)>& log);

  // Starts a job; returns its JSON. Errors: kUnavailable (max_running jobs train), kCancelled
  // (shutting down), kInvalidArgument (hyperparameters; *param names the field), kIo.
  Result<nlohmann::ordered_json> Submit(FinetuneRequest r, std::string* param);
  // {"object": "fine_tuning.job", "id", "model", "created_at", "finished_at", "status",
  //  "fine_tuned_model", "training_file", "validation_file", "hyperparameters", "suffix",
  //  "trained_tokens", "error", "result_files", plus "step", "total_steps", "train_loss",
  //  "valid_loss", "tokens_per_s", "data"}. Errors: kNotFound.
  Result<nlohmann::ordered_json> Describe(const std::string& id) const;
  nlohmann::ordered_json List() const;  // {"object": "list", "data": [...newest first], "has_more": false}
  // {"object": "list", "data": [events, newest first, at most `limit`], "has_more"}.
  Result<nlohmann::ordered_json> Events(const std::string& id, size_t limit) const;
  // A running job: cancelled (state "cancelled" at once; training stops before its next step).
  // A finished one: its JSON unchanged. Errors: kNotFound.
  Result<nlohmann::ordered_json> Cancel(const std::string& id);

  int32_t running() const;
  // Stops every running job (each writes its checkpoint; job.json keeps "running", so the next
  // start resumes it) and joins their threads.
  void Shutdown();

 private:
  struct Job;
  std::shared_ptr<Job> Find(const std::string& id) const;
  nlohmann::ordered_json DescribeLocked(const Job& j) const;
  Status Save(const Job& j) const;  // job.json, under mu_
  void AddEvent(Job& j, std::string level, std::string type, std::string message, nlohmann::ordered_json data);
  void Start(const std::shared_ptr<Job>& j, bool resume);  // under mu_
  void Run(std::shared_ptr<Job> j, bool resume);
  Status RegisterAdapter(const Job& j);

  FinetuneJobOptions options_;
  Service* service_;
  orchestrator::ModelManager* manager_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Job>> jobs_;
  int32_t active_ = 0;
  bool shut_down_ = false;
};

class HttpServer;
// The /v1/fine_tuning routes (finetune_api.cc); `data_roots` as serve --data-root. Errors: a data
// root that is not a directory.
Status RegisterFinetuneRoutes(Service& service, FinetuneJobs& jobs, HttpServer& http,
                              const std::vector<std::string>& data_roots);

}  // namespace qwenmux::server
