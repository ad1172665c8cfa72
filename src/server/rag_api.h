// The RAG pipeline (rag/rag.h) over HTTP: POST /v1/rag and the `rag` extension field of
// POST /v1/chat/completions. README.md ("RAG over HTTP") documents requests and events.
//
// POST /v1/rag {"collection": C, "question" (or "query"): Q, "stream": false, "max_tokens",
//   "temperature", "seed", "top_k" (passages), "rerank_top" (0: no reranker), "max_rewrites"
//   (0: no query rewriting), "score" (false: no quality score), "thinking",
//   "models": {STAGE: NAME}}
//   -> the AnswerResult JSON (answer, citations = the numbered passages with doc/chunk ids and
//      text, cited, queries, timings, score) plus "collection" and "models" (stage -> model).
//   stream: SSE, `event: stage` {"stage", "ms"} as each stage ends, `event: delta` {"text"}
//   answer pieces (their concatenation is the result's answer), `event: result` (the JSON
//   above), then `data: [DONE]`; a failure after the stream started is `event: error`.
// POST /v1/chat/completions with "rag": {"collection": C, ...the options above}: the last user
//   message is the question (earlier turns are ignored), answered as a chat.completion (or
//   chat.completion.chunk stream) whose content is the cited answer, with
//   "qwenmux": {"rag": result}. A request `model` other than "auto" answers with that model.
//
// Models. Each stage's model is the request's `models` entry (a served model name or alias, a
// configured model, or a catalog name in the model store; never a file path), else
// RagApiOptions::stage_models, else the config's `pipelines.rag`, else
// rag::DefaultRagAssignments(). A file the server serves (a served model's path) is used as that
// served instance: its scheduler worker lends it to the call (orchestrator::ExclusiveRequest,
// between batches, as embeddings are served), so the file is loaded and counted once. Any other
// file is registered in the server's ModelManager as "rag:" + file and leased for the call, so
// the memory budget governs it. One pipeline at a time uses a file (a call takes all its files
// at once, or waits).
//
// Threads. The HTTP handler only parses, resolves and opens the store (errors answer at once:
// 400 bad field, 404 unknown collection, 400/503 for a stage model that cannot be resolved); the
// pipeline runs on a thread of its own, at most max_concurrent at once (above: 429 +
// Retry-After). A client that goes away cancels its pipeline at the next stage end or token.
//
// Thread-safety: RagApi's methods may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "orchestrator/config/config.h"
#include "orchestrator/setup/setup.h"
#include "server/api_common.h"
#include "server/http_server.h"
#include "server/service.h"

namespace qwenmux::server {

struct RagApiOptions {
  std::string store_dir;                         // "" = rag::DefaultRagStoreDir()
  orchestrator::Config config;                   // qwenmux.yaml (pipelines.rag, models)
  std::map<std::string, std::string> stage_models;  // stage -> model reference (over the config)
  std::string models_dir;                        // model store for catalog names
  int32_t n_ctx = orchestrator::ModelFlagOptions{}.n_ctx;  // context of the generator, query and scoring models
  size_t threads = 0;                            // compute threads per model (0: all)
  int32_t max_concurrent = 2;                    // pipelines running at once; above: 429
  orchestrator::KeepAlive keep_alive = std::chrono::minutes(5);
};

class RagApi {
 public:
  // Errors: a `pipelines.rag` or stage_models entry naming an unknown stage.
  static Result<std::unique_ptr<RagApi>> Create(Service* service, RagApiOptions options);
  ~RagApi();  // Shutdown()

  // POST /v1/rag.
  void HandleRag(const HttpRequest& req, std::shared_ptr<Responder> r);
  // POST /v1/chat/completions whose body has a "rag" object.
  void HandleChat(const Json& body, std::shared_ptr<Responder> r);

  // Cancels running pipelines and joins their threads (their leases are released). Call before
  // the model manager stops.
  void Shutdown();
  int32_t running() const { return active_.load(); }        // pipelines submitted, not finished
  int64_t cancelled() const { return cancelled_.load(); }   // pipelines stopped by a cancel
  const std::string& store_dir() const { return options_.store_dir; }

  struct Call;
  struct Job;

 private:
  RagApi(Service* service, RagApiOptions options) : service_(service), options_(std::move(options)) {}
  void Submit(std::shared_ptr<Job> job);
  void Run(Job& job);
  Status EnsureSpec(const std::string& file, const engine::LoadOptions& load);
  // Marks every file busy at once (all or none: no order, no deadlock), waiting while any is;
  // false when the job is cancelled or the server stops first.
  bool TakeFiles(const std::vector<std::string>& files, Job& job);
  void ReleaseFiles(const std::vector<std::string>& files);
  // Request -> stage -> (reference, file); *e set on failure.
  bool Resolve(Call& call, ApiError* e) const;
  // The handler's part after parsing: store and collection, models; then Submit.
  void Start(std::shared_ptr<Job> job);

  Service* service_;
  RagApiOptions options_;
  std::map<std::string, std::string> refs_;  // stage -> default reference
  std::atomic<int32_t> active_{0};
  std::atomic<int64_t> cancelled_{0};
  mutable std::mutex mu_;
  bool stopping_ = false;
  std::map<std::string, engine::LoadOptions> registered_;            // file -> spec's load options
  std::set<std::string> busy_files_;                                 // files a pipeline is using
  std::condition_variable files_cv_;                                 // a file was released
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Worker> workers_;
  std::vector<std::shared_ptr<Job>> jobs_;  // running (for Shutdown's cancel)
};

// The chat-completions extension: `body` has a non-null "rag" field.
void RagChatCompletion(Service& service, const Json& body, std::shared_ptr<Responder> r);

}  // namespace qwenmux::server
