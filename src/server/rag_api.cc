#include "server/rag_api.h"
#include "server/upstream.h"

#include <algorithm>

#include <fmt/format.h>

#include "orchestrator/store/model_store.h"
#include "rag/model_set.h"
#include "rag/models.h"
#include "rag/rag.h"
#include "rag/store.h"

namespace qwenmux::server {

struct RagApi::Call {
  std::string collection, question;
  rag::AnswerOptions options;
  rag::RagStages stages;
  std::map<std::string, std::string> overrides;    // stage -> reference (the request's "models")
  std::map<std::string, std::string> refs, files;  // used stage -> reference / GGUF file
  bool stream = false;
  int32_t dims = 0;  // the collection's embedding dimension
};

struct RagApi::Job {
  Call call;
  std::unique_ptr<rag::Store> store;
  std::shared_ptr<Responder> r;
  bool chat = false;  // answer in the chat.completion shape
  std::string id;
  int64_t created = 0;
  std::atomic<bool> cancelled{false};
  bool started = false;  // stream head sent (worker thread only)
  bool Cancelled() const { return cancelled.load() || r->cancelled(); }
  // Gives the job's place among the server's running pipelines back, once: before its last
  // answer goes out, so a client sending its next request on that answer is not refused.
  RagApi* api = nullptr;
  bool slot_freed = false;  // worker thread only
  void FreeSlot() {
    if (!slot_freed && api) --api->active_;
    slot_freed = true;
  }
};

namespace {

constexpr const char* kStream = "text/event-stream";

bool IsStage(const std::string& s) {
  return std::any_of(std::begin(rag::kRagStages), std::end(rag::kRagStages), [&](const char* k) { return s == k; });
}

// Model references from the network name models; anything path-like is refused.
bool LooksLikePath(const std::string& s) {
  return s.find('/') != std::string::npos || s.find('\\') != std::string::npos || s.ends_with(".gguf") ||
         s.starts_with(".") || s.starts_with("~");
}

void SetModelOverride(Fields& f, const std::string& stage, const std::string& ref, RagApi::Call* c) {
  if (ref.empty()) return f.Fail("models", fmt::format("{}: empty model name", stage));
  if (LooksLikePath(ref)) {
    return f.Fail("models", fmt::format("{}: \"{}\" looks like a file path; over HTTP a stage takes a served or "
                                        "configured model name or a catalog name", stage, ref));
  }
  c->overrides[stage] = ref;
}

// Pipeline options: the /v1/rag body or the chat request's "rag" object.
void ReadPipelineOptions(Fields& f, RagApi::Call* c) {
  if (auto v = f.String("collection")) {
    if (v->empty()) f.Fail("collection", "must not be empty");
    c->collection = *v;
  } else if (f.ok()) {
    f.Fail("collection", "missing");
  }
  if (auto v = f.Int("top_k", 1, 100)) c->options.retrieval.top_n = static_cast<size_t>(*v);
  if (auto v = f.Int("rerank_top", 0, 1000)) {
    c->options.retrieval.rerank_top = static_cast<size_t>(*v);
    c->stages.rerank = *v > 0;
  }
  if (auto v = f.Int("max_rewrites", 0, 16)) {
    c->options.max_rewrites = static_cast<int>(*v);
    c->stages.rewrite = *v > 0;
  }
  if (auto v = f.Bool("score")) c->stages.score = *v;
  if (auto v = f.Bool("thinking")) c->options.thinking = *v;
  if (const Json* m = f.Get("models")) {
    if (!m->is_object()) return f.Fail("models", "expected an object {stage: model name}");
    for (const auto& [stage, ref] : m->items()) {
      if (!IsStage(stage)) {
        return f.Fail("models", fmt::format("unknown stage \"{}\" (stages: {})", stage, fmt::join(rag::kRagStages, ", ")));
      }
      if (!ref.is_string()) return f.Fail("models", fmt::format("{}: expected a model name", stage));
      SetModelOverride(f, stage, ref.get<std::string>(), c);
    }
  }
}

// Answer generation options (top level of both request shapes).
void ReadGeneration(Fields& f, const ServiceLimits& limits, RagApi::Call* c) {
  c->stream = f.Bool("stream").value_or(false);
  std::optional<int64_t> max_tokens = f.Int("max_completion_tokens", 1, INT32_MAX);
  if (!max_tokens) max_tokens = f.Int("max_tokens", 1, INT32_MAX);
  if (max_tokens && *max_tokens > limits.max_tokens) {
    f.Fail("max_tokens", fmt::format("{} is above the server's limit of {}", *max_tokens, limits.max_tokens));
  }
  if (max_tokens) c->options.max_answer_tokens = static_cast<int32_t>(*max_tokens);
  auto& s = c->options.sampler;
  if (auto v = f.Number("temperature", 0, 2)) s.temperature = static_cast<float>(*v);
  if (auto v = f.Number("top_p", 0, 1)) s.top_p = *v <= 0 ? 1e-6f : static_cast<float>(*v);
  if (auto v = f.Int("seed", INT64_MIN, INT64_MAX)) s.seed = static_cast<uint64_t>(*v);
}

bool Blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

// The text of the last user message of a chat request (string content or text parts).
Result<std::string> LastUserMessage(const Json& body) {
  const auto m = body.find("messages");
  if (m == body.end() || !m->is_array() || m->empty()) {
    return Status(StatusCode::kInvalidArgument, "expected a non-empty array");
  }
  for (auto it = m->rbegin(); it != m->rend(); ++it) {
    if (!it->is_object() || it->value("role", "") != "user") continue;
    const auto c = it->find("content");
    if (c == it->end()) break;
    if (c->is_string()) return c->get<std::string>();
    if (c->is_array()) {
      std::string text;
      for (const Json& p : *c) {
        if (p.is_object() && p.value("type", "") == "text" && p.contains("text") && p["text"].is_string()) {
          text += (text.empty() ? "" : "\n") + p["text"].get<std::string>();
        }
      }
      return text;
    }
    break;
  }
  return Status(StatusCode::kInvalidArgument, "no user message with text (its text is the RAG question)");
}

// Turns the generator's streamed text into answer text as rag::Answer reports it (everything
// after </think> when thinking, leading white space dropped), so the deltas add up to the
// result's answer; Finish sends what the final answer has beyond them.
class AnswerText {
 public:
  explicit AnswerText(bool thinking) : in_think_(thinking) {}
  std::string Push(std::string_view piece) {
    raw_.append(piece);
    if (in_think_) {
      const size_t e = raw_.find("</think>");
      if (e == std::string::npos) return "";
      in_think_ = false;
      pos_ = e + 8;
    }
    if (!begun_) {
      const size_t b = raw_.find_first_not_of(" \n\t", pos_);
      if (b == std::string::npos) {
        pos_ = raw_.size();
        return "";
      }
      begun_ = true;
      pos_ = b;
    }
    std::string out = raw_.substr(pos_);
    pos_ = raw_.size();
    sent_ += out;
    return out;
  }
  std::string Finish(const std::string& answer) {
    if (!answer.starts_with(sent_)) return "";  // a late </think> (not a thinking request) cut text already sent
    std::string rest = answer.substr(sent_.size());
    sent_ = answer;
    return rest;
  }

 private:
  bool in_think_, begun_ = false;
  std::string raw_, sent_;
  size_t pos_ = 0;
};

void SendEvent(RagApi::Job& job, const char* event, const Json& data) {
  if (!job.started) {
    job.started = true;
    job.r->StartStream(200, kStream);
  }
  job.r->Write(event ? fmt::format("event: {}\ndata: {}\n\n", event, Dump(data)) : fmt::format("data: {}\n\n", Dump(data)));
}

Json ChatChunk(const RagApi::Job& job, Json delta, const Json& finish) {
  return Json{{"id", job.id},
              {"object", "chat.completion.chunk"},
              {"created", job.created},
              {"model", job.call.refs.count("response_generation") ? job.call.refs.at("response_generation") : ""},
              {"choices", Json::array({Json{{"index", 0}, {"delta", std::move(delta)}, {"finish_reason", finish}}})}};
}

void SendDelta(RagApi::Job& job, const std::string& text) {
  if (!job.chat) return SendEvent(job, "delta", Json{{"text", text}});
  if (!job.started) SendEvent(job, nullptr, ChatChunk(job, Json{{"role", "assistant"}, {"content", ""}}, nullptr));
  SendEvent(job, nullptr, ChatChunk(job, Json{{"content", text}}, nullptr));
}

void Fail(RagApi::Job& job, const Status& s) {
  job.FreeSlot();
  ApiError e = ErrorFromStatus(s);
  if (!job.started) return SendApiError(*job.r, e);
  job.r->NoteError(e.message);
  SendEvent(job, "error", Json{{"error", {{"message", e.message}, {"type", "server_error"}, {"code", e.status}}}});
  job.r->Write("data: [DONE]\n\n");
  job.r->End();
}

Json ResultJson(const RagApi::Call& c, const rag::AnswerResult& res) {
  Json j = res.ToJson();
  Json& cites = j["citations"];
  for (size_t i = 0; i < res.sources.size() && i < cites.size(); ++i) cites[i]["text"] = res.sources[i].text;
  j["collection"] = c.collection;
  j["models"] = Json(c.refs);
  return j;
}

void SendResult(RagApi::Job& job, const rag::AnswerResult& res) {
  job.r->NoteUsage(job.call.refs.count("response_generation") ? job.call.refs.at("response_generation") : "",
                   res.context_tokens, res.answer_tokens);
  const Json result = ResultJson(job.call, res);
  const std::string finish = res.finish_reason == "length" ? "length" : "stop";
  if (job.call.stream) {
    if (job.chat) {
      Json chunk = ChatChunk(job, Json::object(), finish);
      chunk["qwenmux"] = Json{{"rag", result}};
      SendEvent(job, nullptr, chunk);
    } else {
      SendEvent(job, "result", result);
    }
    job.r->Write("data: [DONE]\n\n");
    job.r->End();
    return;
  }
  if (!job.chat) return job.r->Send(200, "application/json", Dump(result));
  Json body{{"id", job.id},
            {"object", "chat.completion"},
            {"created", job.created},
            {"model", job.call.refs.at("response_generation")},
            {"choices", Json::array({Json{{"index", 0},
                                          {"message", {{"role", "assistant"}, {"content", res.answer}}},
                                          {"finish_reason", finish}}})},
            {"usage", {{"prompt_tokens", res.context_tokens},
                       {"completion_tokens", res.answer_tokens},
                       {"total_tokens", res.context_tokens + res.answer_tokens}}},
            {"qwenmux", {{"rag", result}}}};
  job.r->Send(200, "application/json", Dump(body));
}

}  // namespace

Result<std::unique_ptr<RagApi>> RagApi::Create(Service* service, RagApiOptions options) {
  std::unique_ptr<RagApi> api(new RagApi(service, std::move(options)));
  RagApiOptions& o = api->options_;
  if (o.store_dir.empty()) o.store_dir = rag::DefaultRagStoreDir();
  if (o.models_dir.empty()) o.models_dir = o.config.models_dir.empty() ? orchestrator::DefaultModelsDir() : o.config.models_dir;
  o.max_concurrent = std::max(1, o.max_concurrent);
  QM_ASSIGN_OR_RETURN(api->refs_, rag::RagStageRefs(&o.config));
  for (const auto& [stage, ref] : o.stage_models) {
    if (!IsStage(stage)) {
      return Error(StatusCode::kInvalidArgument, "--rag-model {}={}: unknown stage (stages: {})", stage, ref,
                   fmt::join(rag::kRagStages, ", "));
    }
    api->refs_[stage] = ref;
  }
  return api;
}

RagApi::~RagApi() { Shutdown(); }

bool RagApi::Resolve(Call& c, ApiError* e) const {
  for (const std::string& stage : rag::NeededRagStages(c.stages)) {
    const auto o = c.overrides.find(stage);
    const bool from_request = o != c.overrides.end();
    const std::string ref = from_request ? o->second : refs_.at(stage);
    std::string file;
    for (const ServedModel& m : service_->models()) {
      if (m.name == ref || std::find(m.aliases.begin(), m.aliases.end(), ref) != m.aliases.end()) file = m.path;
    }
    for (const auto& a : service_->adapters()) {  // "<model>:<adapter>": its model's file, the adapter for the answer
      if (!file.empty() || a->full_name() != ref) continue;
      if (stage != "response_generation") {
        *e = ApiError{400, fmt::format("models: stage {}: \"{}\" is a LoRA adapter; adapters apply to "
                                       "response_generation only", stage, ref), "models"};
        return false;
      }
      for (const ServedModel& m : service_->models()) {
        if (m.name == a->base) file = m.path;
      }
      c.options.generator_adapter = a->path;
      c.options.generator_adapter_scale = a->scale;
    }
    if (file.empty() && service_->upstreams() && service_->upstreams()->Owns(ref)) file = ref;  // a backend's model
    if (file.empty()) {
      auto p = rag::ResolveRagModelRef(&options_.config, options_.models_dir, ref, stage);
      if (!p.ok()) {
        if (from_request) {
          *e = ApiError{400, fmt::format("models: stage {}: \"{}\" is not a served or configured model nor a catalog "
                                         "name in the model store ({})", stage, ref, p.status().message()), "models"};
        } else {
          *e = ApiError{503, fmt::format("rag: stage {} has no usable model: {} (set the stage with `serve --rag-model "
                                         "{}=NAME`, pipelines.rag in qwenmux.yaml, or the request's \"models\")",
                                         stage, p.status().message(), stage), "", 30};
        }
        return false;
      }
      file = *p;
    }
    c.refs[stage] = ref;
    c.files[stage] = file;
  }
  return true;
}

void RagApi::HandleRag(const HttpRequest& req, std::shared_ptr<Responder> r) {
  auto body = ParseBody(req.body);
  if (!body.ok()) return SendApiError(*r, ErrorFromStatus(body.status()));
  auto job = std::make_shared<Job>();
  job->r = std::move(r);
  Call& c = job->call;
  Fields f(*body);
  std::optional<std::string> q = f.String("question");
  if (!q) q = f.String("query");
  if (f.ok() && (!q || Blank(*q))) f.Fail("question", q ? "is empty" : "missing (or \"query\")");
  if (q) c.question = *q;
  ReadPipelineOptions(f, &c);
  ReadGeneration(f, service_->limits(), &c);
  if (!f.ok()) {
    ApiError e = ErrorFromStatus(f.status());
    e.param = f.param();
    return SendApiError(*job->r, e);
  }
  Start(job);
}

void RagApi::HandleChat(const Json& body, std::shared_ptr<Responder> r) {
  auto job = std::make_shared<Job>();
  job->r = std::move(r);
  job->chat = true;
  job->id = NewId("chatcmpl-");
  job->created = UnixNow();
  Call& c = job->call;
  Fields f(body);
  const Json* ro = f.Get("rag");
  if (!ro->is_object()) f.Fail("rag", "expected an object {\"collection\": ..., ...}");
  if (f.ok()) {
    Fields rf(*ro, "rag.");
    ReadPipelineOptions(rf, &c);
    f.Adopt(rf);
  }
  ReadGeneration(f, service_->limits(), &c);
  const std::string model = f.String("model").value_or("");
  if (!model.empty() && model != "auto" && !c.overrides.count("response_generation")) {
    SetModelOverride(f, "response_generation", model, &c);
  }
  if (f.ok()) {
    auto q = LastUserMessage(body);
    if (!q.ok()) f.Fail("messages", q.status().message());
    else if (Blank(*q)) f.Fail("messages", "the last user message (the RAG question) is empty");
    else c.question = *q;
  }
  if (!f.ok()) {
    ApiError e = ErrorFromStatus(f.status());
    e.param = f.param();
    return SendApiError(*job->r, e);
  }
  Start(job);
}

void RagApi::Start(std::shared_ptr<Job> job) {
  Call& c = job->call;
  auto store = rag::Store::Open(options_.store_dir);
  if (!store.ok()) return SendApiError(*job->r, ErrorFromStatus(store.status()));
  auto coll = (*store)->GetCollection(c.collection);
  if (!coll.ok()) {
    ApiError e = ErrorFromStatus(coll.status());
    e.param = "collection";
    if (coll.status().code() == StatusCode::kNotFound) {
      // No server path in the answer (issue 20 item 5): the store is the one the server was started with.
      e.message = fmt::format("collection \"{}\" not found in the server's document store (add documents with "
                              "`qwenmux ingest --collection {} FILES`)", c.collection, c.collection);
    }
    return SendApiError(*job->r, e);
  }
  c.dims = coll->dim;
  job->store = std::move(*store);
  ApiError e;
  if (!Resolve(c, &e)) return SendApiError(*job->r, e);
  Submit(std::move(job));
}

void RagApi::Submit(std::shared_ptr<Job> job) {
  ApiError refused;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto it = workers_.begin(); it != workers_.end();) {  // join finished workers
      if (it->done->load()) {
        it->thread.join();
        it = workers_.erase(it);
      } else {
        ++it;
      }
    }
    if (stopping_) {
      refused = ApiError{503, "rag: the server is shutting down", "", 5};
    } else if (active_.load() >= options_.max_concurrent) {
      refused = ApiError{429, fmt::format("rag: {} pipeline(s) are running, the server's limit; retry shortly",
                                          options_.max_concurrent), "", 2};
    } else {
      ++active_;
      job->api = this;
      jobs_.push_back(job);
      std::weak_ptr<Job> weak = job;
      job->r->OnCancel([weak] {
        if (auto j = weak.lock()) j->cancelled.store(true);
      });
      auto done = std::make_shared<std::atomic<bool>>(false);
      workers_.push_back(Worker{std::thread([this, job, done] {
                                  Run(*job);
                                  {
                                    std::lock_guard<std::mutex> l(mu_);
                                    jobs_.erase(std::find(jobs_.begin(), jobs_.end(), job));
                                    job->FreeSlot();
                                  }
                                  done->store(true);
                                }),
                                done});
      return;
    }
  }
  SendApiError(*job->r, refused);
}

void RagApi::Shutdown() {
  std::vector<Worker> workers;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
    for (auto& j : jobs_) j->cancelled.store(true);
    workers = std::move(workers_);
    workers_.clear();
  }
  for (Worker& w : workers) w.thread.join();
}

Status RagApi::EnsureSpec(const std::string& file, const engine::LoadOptions& load) {
  std::lock_guard<std::mutex> lk(mu_);
  engine::LoadOptions want = load;
  const auto it = registered_.find(file);
  if (it != registered_.end()) {
    const engine::LoadOptions& have = it->second;
    if (have.n_ctx >= load.n_ctx && have.n_seq >= load.n_seq && have.n_batch >= load.n_batch) return Status::Ok();
    want.n_ctx = std::max(have.n_ctx, load.n_ctx);
    want.n_seq = std::max(have.n_seq, load.n_seq);
    want.n_batch = std::max(have.n_batch, load.n_batch);
  }
  orchestrator::ModelSpec spec;
  spec.name = "rag:" + file;
  spec.path = file;
  spec.load = want;
  spec.keep_alive = options_.keep_alive;
  Status s = service_->manager().Register(spec);
  if (s.ok()) {
    registered_[file] = want;
    return s;
  }
  // Loaded with smaller options: it serves as it is (rag::Answer fits itself to a model's
  // context) and is replaced once unloaded.
  return it != registered_.end() ? Status::Ok() : s;
}

bool RagApi::TakeFiles(const std::vector<std::string>& files, Job& job) {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    if (job.Cancelled() || stopping_) return false;
    if (std::none_of(files.begin(), files.end(), [&](const std::string& f) { return busy_files_.count(f) > 0; })) break;
    files_cv_.wait_for(lk, std::chrono::milliseconds(20));  // also polls for a cancel
  }
  busy_files_.insert(files.begin(), files.end());
  return true;
}

void RagApi::ReleaseFiles(const std::vector<std::string>& files) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (const std::string& f : files) busy_files_.erase(f);
  }
  files_cv_.notify_all();
}

namespace {

// A served model lent to one RAG call by its scheduler worker (orchestrator::ExclusiveRequest):
// the one instance the scheduler serves, not a second load. The worker waits, with the model's
// other requests queued, until the hold is destroyed.
class ServedModelHold {
 public:
  // Waits until the worker lends the model; `stop` is polled meanwhile (true: cancel the wait).
  static Result<std::unique_ptr<ServedModelHold>> Take(orchestrator::Scheduler& scheduler, const std::string& model,
                                                       orchestrator::KeepAlive keep_alive,
                                                       const std::function<bool()>& stop) {
    auto st = std::make_shared<State>();
    orchestrator::ExclusiveRequest req;
    req.model = model;
    req.keep_alive = keep_alive;
    req.run = [st](Result<engine::Model*> m) {  // on the worker's thread
      std::unique_lock<std::mutex> lk(st->mu);
      if (m.ok()) {
        st->model = *m;
      } else {
        st->error = m.status();
      }
      st->lent = true;
      st->cv.notify_all();
      if (m.ok()) st->cv.wait(lk, [&] { return st->returned; });
    };
    QM_ASSIGN_OR_RETURN(std::shared_ptr<orchestrator::RequestHandle> handle, scheduler.Submit(std::move(req)));
    std::unique_lock<std::mutex> lk(st->mu);
    while (!st->lent) {
      st->cv.wait_for(lk, std::chrono::milliseconds(20));
      if (st->lent || !stop()) continue;
      lk.unlock();
      handle->Cancel();  // queued: `run` gets kCancelled; already lent: it got the model
      lk.lock();
      st->cv.wait(lk, [&] { return st->lent; });
    }
    if (!st->model) return st->error;
    return std::unique_ptr<ServedModelHold>(new ServedModelHold(st));
  }
  ~ServedModelHold() {
    std::lock_guard<std::mutex> lk(st_->mu);
    st_->returned = true;
    st_->cv.notify_all();
  }
  engine::Model& model() const { return *st_->model; }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool lent = false, returned = false;
    engine::Model* model = nullptr;
    Status error;
  };
  explicit ServedModelHold(std::shared_ptr<State> st) : st_(std::move(st)) {}
  std::shared_ptr<State> st_;
};

}  // namespace

void RagApi::Run(Job& job) {
  Call& c = job.call;
  auto finish_cancelled = [&] {
    job.FreeSlot();
    ++cancelled_;
    if (job.started) job.r->End();
  };
  auto stages_of = [&](const std::string& file) {
    std::string stages;
    for (const auto& [stage, f] : c.files) {
      if (f == file) stages += (stages.empty() ? "" : ", ") + stage;
    }
    return stages;
  };
  // A file the server serves is used through the scheduler: the served instance, loaded and
  // counted once. Other files get a spec of their own ("rag:" + file), leased for the call.
  std::map<std::string, std::string> served;  // file -> served model name
  const rag::BackendAccess backend = BackendAccessOf(service_->upstreams());  // backend models are no files
  const auto plan = rag::RagLoadPlan(c.files, c.stages, options_.n_ctx, options_.threads, backend);
  for (const auto& [file, load] : plan) {
    for (const ServedModel& m : service_->models()) {
      if (m.path == file) {
        served.emplace(file, m.name);
        break;
      }
    }
  }
  std::map<std::string, orchestrator::ModelLease> leases;
  for (const auto& [file, load] : plan) {
    if (served.count(file)) continue;
    if (job.Cancelled()) return finish_cancelled();
    const std::string stages = stages_of(file);
    if (Status s = EnsureSpec(file, load); !s.ok()) return Fail(job, s.WithContext(fmt::format("rag: {}", stages)));
    auto lease = service_->manager().Acquire("rag:" + file, options_.keep_alive);
    if (!lease.ok()) return Fail(job, lease.status().WithContext(fmt::format("rag: model for {}", stages)));
    leases.emplace(file, std::move(*lease));
  }
  std::vector<std::string> files;
  for (const auto& [file, load] : plan) files.push_back(file);
  if (!TakeFiles(files, job)) return finish_cancelled();
  // Served models in file order (every call takes them in the same order: no deadlock).
  std::map<std::string, std::unique_ptr<ServedModelHold>> holds;
  auto stop = [&] {
    std::lock_guard<std::mutex> lk(mu_);
    return stopping_ || job.Cancelled();
  };
  for (const auto& [file, name] : served) {
    auto hold = ServedModelHold::Take(service_->scheduler(), name, options_.keep_alive, stop);
    if (!hold.ok()) {
      holds.clear();
      ReleaseFiles(files);
      if (job.Cancelled()) return finish_cancelled();
      return Fail(job, hold.status().WithContext(fmt::format("rag: model {} for {}", name, stages_of(file))));
    }
    holds.emplace(file, std::move(*hold));
  }
  rag::RagModelSet set;
  Status bound = rag::BindRagModels(
      c.files, c.stages, c.dims,
      [&](const std::string& f) -> Result<engine::Model*> {
        const auto h = holds.find(f);
        return h != holds.end() ? &h->second->model() : &leases.at(f).model();
      },
      &set, backend);
  if (!bound.ok()) {
    holds.clear();
    ReleaseFiles(files);
    return Fail(job, bound);
  }
  AnswerText text(c.options.thinking);
  auto res = rag::Answer(*job.store, c.collection, c.question, set.models, c.options, [&](const rag::AnswerEvent& ev) {
    if (job.Cancelled()) return false;
    if (!c.stream) return true;
    if (ev.kind == rag::AnswerEvent::Kind::kStage) {
      if (!job.chat) SendEvent(job, "stage", Json{{"stage", ev.stage}, {"ms", ev.ms}});
    } else if (std::string piece = text.Push(ev.text); !piece.empty()) {
      SendDelta(job, piece);
    }
    return !job.Cancelled();
  });
  holds.clear();  // the scheduler's workers go on with their queues
  ReleaseFiles(files);
  leases.clear();
  if (!res.ok()) {
    if (job.Cancelled()) return finish_cancelled();
    return Fail(job, res.status());
  }
  if (c.stream) {
    if (std::string rest = text.Finish(res->answer); !rest.empty()) SendDelta(job, rest);
  }
  job.FreeSlot();
  SendResult(job, *res);
}

void RegisterRagRoutes(Service& service, HttpServer& http) {
  Service* s = &service;
  http.Route("POST", "/v1/rag", [s](const HttpRequest& q, std::shared_ptr<Responder> r) {
    if (!s->rag()) return SendApiError(*r, ApiError{503, "rag: not enabled on this server", "", 0});
    s->rag()->HandleRag(q, std::move(r));
  });
}

void RagChatCompletion(Service& service, const Json& body, std::shared_ptr<Responder> r) {
  if (!service.rag()) return SendApiError(*r, ApiError{503, "rag: not enabled on this server", "", 0});
  service.rag()->HandleChat(body, std::move(r));
}

}  // namespace qwenmux::server
