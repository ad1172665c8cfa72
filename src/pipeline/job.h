// Running a pipeline over documents: the library API behind `qwenmux pipeline run` and the HTTP
// job endpoint.
//
//   auto job = pipeline::Job::Start(def, options, on_result);   // returns at once; work runs in threads
//   job->Progress();   // snapshot: documents done/failed, per-stage items, time, tokens
//   job->Results();    // result lines produced so far (this run)
//   job->Cancel();     // stop soon; unfinished documents get no result line (a rerun redoes them)
//   job->Wait();       // the summary (JSON), after every worker has stopped
//
// Flow. Every stage has its own worker thread(s) and input queue, so stages run concurrently:
// while classification works on one batch, extraction works on earlier documents. Model stages
// take up to `batch` queued documents per model call (batched forward passes). Models are leased
// from an orchestrator::ModelManager (the memory budget decides which can be resident together;
// a stage whose model cannot fit waits until another stage releases its lease after a batch).
// Two stages on the same model file share one loaded model; calls on it are serialised.
//
// Failures never stop other documents: a document that fails a stage (unreadable, corrupt or
// binary file, prompt too long, incomplete extraction, validation verdict "fail") is reported with
// the stage and reason. A document with no text (an empty file) gets a "skipped" line (reason
// "empty document"), counted as `empty`, not as a failure. Extraction and validation failures are retried once with the extraction on
// the next tier up (fast < balanced < quality < max) when that tier is mapped to a model; then the
// document is reported as failed.
//
// Results. Each finished document (ok or failed) is one JSON line appended (and flushed) to
// RunOptions::results_path:
//   {"document": PATH, "hash": SHA256, "status": "ok"|"failed"|"skipped", "class": LABEL, "confidence": P,
//    "scores": {LABEL: P...}, "extracted": OBJECT, "validation": {"verdict": "pass"|"fail",
//    "schema_valid": B, "score": P, "reasons": [...]}, "attempts": N, "models": {STAGE: FILE},
//    "chunks": N, "embedding_dim": D, "collection": C, "stage": STAGE, "error": MESSAGE, "seconds": S}
// (keys absent when the stage did not run). Resume: documents whose (path, content SHA-256) pair
// already has an "ok" or "skipped" line in results_path are skipped, so a killed run restarted
// with the same arguments does only the unfinished documents; documents whose line says "failed"
// are retried (a new line is appended; the last line of a document is its result). A partial
// last line (a kill mid-write) is cut.
//
// Backend models. A stage naming "NAME/MODEL" of a backend RunOptions::backend reaches runs on
// it through its chat or embeddings endpoint, one request per document (embed: per batch):
//   extract   the same prompt, constrained by the schema through `response_format` (greedy);
//             a "length" finish is an incomplete output
//   classify  the same prompt, the answer constrained to {"label": one of the labels}: a backend
//             gives no log-probabilities, so confidence is 1 and scores are 1 / 0
//   embed     the backend's embeddings (collection identity "NAME/MODEL:E<dim>")
//   chunk, validate  refused at Start naming the stage and the backend: chunk counts tokens with
//             the model's tokenizer, validate weighs P(yes) from log-probabilities against its
//             threshold; a backend gives neither
// A backend that fails (down, timeout, bad answer) fails the documents of that call with reason
// "backend error" and its message, like any stage failure; the job goes on.
//
// Thread-safety: Progress(), Results(), Cancel() may be called from any thread while the job
// runs; Wait() from one thread. The on_result callback runs on worker threads, serialised.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "runtime/backend.h"
#include "orchestrator/config/config.h"
#include "orchestrator/manager/model_manager.h"
#include "orchestrator/scheduler/scheduler.h"
#include "pipeline/definition.h"
#include "rag/backend_model.h"

namespace qwenmux::pipeline {

// A model a server serves: its name and the context it is loaded with.
struct ServedModelRef {
  std::string name;
  int32_t n_ctx = 0;
};

struct RunOptions {
  std::vector<std::string> inputs;  // files and directories (directories: txt/md/html/pdf inside, recursively)
  // Model mapping: key = a tier ("fast", "qwen3-fast") or a stage's model name; value = GGUF file.
  std::map<std::string, std::string> models;
  const orchestrator::Config* config = nullptr;  // qwenmux.yaml: configured models (and a pipeline
                                                 // of the same name overriding stage -> model)
  std::string models_dir;                        // model store for catalog names ("" = default)
  std::string results_path;                      // JSONL output and resume state ("" = none)
  uint64_t memory_budget = 0;                    // bytes for this job's own manager (0: the OS limit)
  size_t threads = 0;                            // engine threads per model (0: all cores)
  runtime::DeviceChoice device = runtime::DeviceChoice::kAuto;  // --device: where an own manager's
  int device_index = 0;                                         // models run (a shared one: its own)
  // Share a server's manager instead of an own one: the job registers one spec per (file, context,
  // sequences, threads), named "pipeline:FILE#ctx=..,seq=..,threads=..", which jobs asking for the
  // same thing share (calls on a shared model are serialised across jobs). Its busy_wait applies:
  // a stage whose model cannot fit beside models in use fails its batch instead of waiting.
  orchestrator::ModelManager* manager = nullptr;
  // With a server's manager: its scheduler and the files it serves. A stage on a served file whose
  // served context is at least the pipeline's runs on that instance, lent by its scheduler worker
  // between batches (orchestrator::ExclusiveRequest), so the file is loaded and counted once.
  orchestrator::Scheduler* scheduler = nullptr;
  std::map<std::string, ServedModelRef> served;  // file -> served model
  std::string store_dir;                         // RAG store of embed stages with `collection:`
                                                 // (required when a stage has one)
  // Other engines' models ("NAME/MODEL", issue 18): a stage whose model `backend` owns runs on
  // the backend (see "Backend models" above); none: such a stage is an error.
  rag::BackendAccess backend;
};

struct StageStats {
  std::string name, type, model;  // model: the file (or "" for read/chunk)
  int64_t items = 0;              // documents (chunks for embed) processed
  int64_t failures = 0;
  double seconds = 0;             // busy time of the stage's model calls / work
  int64_t tokens = 0;             // tokens run through the model (prompt + generated)
  std::map<std::string, int64_t> failure_reasons;
};

struct JobProgress {
  std::string state;              // "running", "done", "cancelled", "error"
  int64_t total = 0;              // documents given
  int64_t skipped = 0;            // finished in an earlier run (resume)
  int64_t done = 0, ok = 0, failed = 0, retried = 0;
  int64_t empty = 0;              // no text: a "skipped" result line, not a failure
  double elapsed_seconds = 0;
  std::vector<StageStats> stages;
  nlohmann::ordered_json ToJson() const;
};

class Job {
 public:
  using ResultCallback = std::function<void(const nlohmann::ordered_json& result)>;

  // Errors (before anything runs): no inputs, a stage model that cannot be resolved, results file
  // not writable. Unreadable inputs are not errors: they become failed results.
  static Result<std::unique_ptr<Job>> Start(PipelineDef def, RunOptions options, ResultCallback on_result = nullptr);
  ~Job();  // cancels and joins

  JobProgress Progress() const;
  std::vector<nlohmann::ordered_json> Results() const;
  void Cancel();
  // Blocks until the job ends; returns the summary: {"pipeline", "documents", "ok", "failed",
  // "empty", "skipped", "retried", "seconds", "stages": [{name, type, model, items, seconds, tokens,
  // tokens_per_second, items_per_minute, failures: {reason: n}}]}.
  Result<nlohmann::ordered_json> Wait();

  struct Impl;

 private:
  explicit Job(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Resolves a stage's model reference to a GGUF path (RunOptions::models, then the config's
// models, then the model store for catalog names and tiers). Exposed for the CLI's messages.
// A "<model>:<adapter>" reference (qwenmux.yaml `adapters:`, orchestrator::Config::FindAdapter)
// resolves to its model's file here and to the adapter in ResolveStageAdapter.
Result<std::string> ResolveModelPath(const std::string& ref, const RunOptions& options);

// The LoRA adapter a stage's model reference names (nullopt: a plain model). Extract stages only
// take one: the adapter is loaded into the stage's model for each batch and unloaded after it
// (on a served instance too, which lends the model exclusively meanwhile), so it is not held
// against a server's memory budget between batches.
struct StageAdapter {
  std::string file;
  float scale = 1.0f;
};
std::optional<StageAdapter> ResolveStageAdapter(const std::string& ref, const RunOptions& options);

}  // namespace qwenmux::pipeline
