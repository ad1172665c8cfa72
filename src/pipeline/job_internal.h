// Internals of pipeline::Job shared by job.cc (threads, queues, results, resume) and stages.cc
// (what each stage does to a batch of documents). Not a public header.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <set>
#include <thread>

#include "pipeline/job.h"
#include "rag/chunker.h"
#include "rag/reader.h"
#include "rag/store.h"
#include "structured/structured.h"

namespace qwenmux::pipeline {

using Json = nlohmann::ordered_json;

struct Doc {
  size_t index = 0;
  std::string path, hash;
  rag::ParsedDocument parsed;
  std::string text;                       // document text given to the prompts (cut at max_chars)
  std::string label;                      // classify
  double confidence = 0;
  Json scores;
  const Json* schema = nullptr;           // extraction schema (label's or the extract stage's)
  Json extracted;
  std::string extract_model;              // the file extraction ran on (last attempt)
  int attempts = 0;                       // extraction attempts
  bool retry = false;                     // next extraction runs on the next tier
  Json validation;
  std::vector<rag::Chunk> chunks;
  int32_t embedding_dim = 0;
  std::string collection;                 // embed: the collection its chunks were stored in
  Json models = Json::object();           // stage -> file
  bool failed = false;
  bool skipped = false;                   // no text (an empty file): reported, not a failure
  std::string fail_stage, error, reason;  // reason: the short failure (or skip) class for the summary
  std::chrono::steady_clock::time_point started;
};
using DocPtr = std::shared_ptr<Doc>;

// A closable FIFO; PopBatch waits for at least one item (or close) and takes up to `max`.
class DocQueue {
 public:
  void Push(DocPtr d) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      q_.push_back(std::move(d));
    }
    cv_.notify_one();
  }
  std::vector<DocPtr> PopBatch(size_t max) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return closed_ || !q_.empty(); });
    std::vector<DocPtr> out;
    while (!q_.empty() && out.size() < max) {
      out.push_back(std::move(q_.front()));
      q_.pop_front();
    }
    return out;  // empty: closed
  }
  void Close() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<DocPtr> q_;
  bool closed_ = false;
};

struct Job::Impl {
  PipelineDef def;
  RunOptions options;
  ResultCallback on_result;
  std::unique_ptr<orchestrator::ModelManager> own_manager;
  orchestrator::ModelManager* manager = nullptr;
  std::map<std::string, std::string> stage_model;   // stage name -> file ("NAME/MODEL" for a backend's)
  std::set<std::string> backend_stage;              // stages whose model is a backend's (RunOptions::backend)
  std::map<std::string, StageAdapter> stage_adapter;  // classify/extract stage name -> its LoRA adapter
  std::map<std::string, std::string> spec_name;     // file -> the manager's model name
  std::map<std::string, std::string> served_name;   // file -> the served model lending its instance
  // file -> serialises calls on the model; shared by every job leasing the same spec of the same
  // manager (engine::Model is single-threaded).
  std::map<std::string, std::shared_ptr<std::mutex>> model_mu;

  std::vector<std::unique_ptr<DocQueue>> queues;    // one per stage
  std::vector<DocPtr> pending;                      // documents to run (after resume)
  std::atomic<size_t> next_read{0};
  std::vector<std::thread> workers;
  std::atomic<bool> cancelled{false};
  std::chrono::steady_clock::time_point start;

  mutable std::mutex mu;                            // guards everything below
  JobProgress progress;
  std::vector<Json> results;
  std::FILE* out = nullptr;
  std::string fatal;                                // an internal error that stopped the job
  bool finished = false;
  std::condition_variable finished_cv;
  std::map<std::pair<std::string, const Json*>, structured::Constraint> constraints;  // extract: (file, schema)

  // RAG store of the embed stages that store (`collection:`); opened by Start when one does.
  std::unique_ptr<rag::Store> store;
  std::mutex store_mu;                              // one writer at a time
  std::chrono::steady_clock::time_point store_saved;
  // Stores one embedded document (chunks + vectors) in `collection`; saves the vector index now
  // and then (SQLite has every document as soon as it is put; the index is repaired on open).
  Status StoreDocument(const std::string& collection, const std::string& embed_id, const Doc& d,
                       std::vector<std::vector<float>> vectors);
  void FlushStore();

  // Stage plumbing (job.cc).
  void Worker(size_t stage);
  void Forward(size_t from_stage, DocPtr d);        // to the next stage, or to the sink
  void Sink(const DocPtr& d);
  void Fail(size_t stage, const DocPtr& d, std::string reason, std::string error);
  void AddStats(size_t stage, int64_t items, double seconds, int64_t tokens);
  void Stop();
  // Runs fn on the stage's model (lease + per-file lock); file "" = the stage's own.
  Status WithModel(size_t stage, const std::string& file, const std::function<Status(engine::Model&)>& fn);
  std::string RetryFile(const DocPtr& d) const;     // next-tier file for a retry, "" if none

  // Stage bodies (stages.cc). Each handles a batch; documents they do not apply to pass through.
  void RunRead(size_t stage, DocPtr d);
  void RunChunk(size_t stage, std::vector<DocPtr>& batch);
  void RunEmbed(size_t stage, std::vector<DocPtr>& batch);
  // The LoRA adapter of stage `st` loaded into `model` for one batch: {id, scale}, id -1 where
  // the stage has none or `file` is not the stage's own model (retries run on the next tier).
  // The caller unloads it when the batch is over.
  Result<std::pair<int32_t, float>> LoadStageAdapter(const StageDef& st, const std::string& file, engine::Model& model);
  void RunClassify(size_t stage, std::vector<DocPtr>& batch);
  void RunExtract(size_t stage, std::vector<DocPtr>& batch);
  void RunValidate(size_t stage, std::vector<DocPtr>& batch);
};

// Renders a Qwen3 chat prompt (thinking off) whose user turn holds `before`, then the untrusted
// `doc` text, then `after` (the user turn encoded as one text without special-token parsing: the
// same tokens as the chat template gives the same messages); returns the tokens.
std::vector<int32_t> ChatPrompt(const tokenizer::Tokenizer& tok, std::string_view system, std::string_view before,
                                std::string_view doc, std::string_view after);

}  // namespace qwenmux::pipeline
