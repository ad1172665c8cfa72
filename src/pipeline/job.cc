#include "pipeline/job.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "orchestrator/catalog/catalog.h"
#include "orchestrator/store/model_store.h"
#include "base/sha256.h"
#include "pipeline/job_internal.h"
#include "rag/ingest.h"

namespace qwenmux::pipeline {

namespace {

double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Reads the results file: keys "path\thash" of finished documents. Cuts a partial last line.
Result<std::set<std::string>> LoadFinished(const std::string& path) {
  std::set<std::string> done;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return done;
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(StatusCode::kIo, "pipeline: cannot read results file {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string all = ss.str();
  size_t good_end = 0;
  size_t pos = 0;
  while (pos < all.size()) {
    const size_t nl = all.find('\n', pos);
    if (nl == std::string::npos) break;  // partial last line
    const std::string_view line(all.data() + pos, nl - pos);
    auto j = Json::parse(line, nullptr, false);
    // A failed document is not finished: a rerun retries it (and appends a new line for it).
    if (!j.is_discarded() && j.is_object() && j.contains("document") && j.contains("hash") &&
        j.value("status", "") != "failed") {
      done.insert(j["document"].get<std::string>() + "\t" + j["hash"].get<std::string>());
    }
    pos = nl + 1;
    good_end = pos;
  }
  if (good_end != all.size()) std::filesystem::resize_file(path, good_end, ec);
  if (ec) return Error(StatusCode::kIo, "pipeline: cannot repair results file {}: {}", path, ec.message());
  return done;
}

Result<std::string> FromStore(const std::string& models_dir, const std::string& name, const std::string& ref) {
  QM_ASSIGN_OR_RETURN(const orchestrator::CatalogEntry* e, orchestrator::FindInCatalog(name));
  QM_ASSIGN_OR_RETURN(orchestrator::ModelStore store, orchestrator::ModelStore::Open(models_dir));
  auto m = store.Find(e->name);
  if (!m.ok()) {
    return Error(StatusCode::kNotFound,
                 "pipeline: model {} ({}) is not in the model store: run `qwenmux pull {}` or map it with --model {}=FILE.gguf",
                 ref, e->name, e->name, ref);
  }
  return store.BlobPath(m->sha256);
}

// One mutex per (manager, model spec) for the whole process: jobs that share a server's manager
// and a spec share the loaded model, and their calls on it must not overlap.
std::shared_ptr<std::mutex> ModelMutex(const orchestrator::ModelManager* manager, const std::string& spec) {
  static std::mutex registry_mu;
  static std::map<std::pair<const void*, std::string>, std::weak_ptr<std::mutex>> registry;
  std::lock_guard<std::mutex> lk(registry_mu);
  for (auto it = registry.begin(); it != registry.end();) {  // drop entries of finished jobs
    it = it->second.expired() ? registry.erase(it) : std::next(it);
  }
  auto& w = registry[{manager, spec}];
  std::shared_ptr<std::mutex> mu = w.lock();
  if (!mu) {
    mu = std::make_shared<std::mutex>();
    w = mu;
  }
  return mu;
}

}  // namespace

std::optional<StageAdapter> ResolveStageAdapter(const std::string& ref, const RunOptions& options) {
  if (!options.config || options.models.count(ref)) return std::nullopt;
  const orchestrator::AdapterConfig* a = options.config->FindAdapter(ref);
  if (!a) return std::nullopt;
  return StageAdapter{a->file, a->scale};
}

Result<std::string> ResolveModelPath(const std::string& ref, const RunOptions& options) {
  if (ResolveStageAdapter(ref, options)) return ResolveModelPath(ref.substr(0, ref.rfind(':')), options);
  auto it = options.models.find(ref);
  if (it != options.models.end()) return it->second;
  if (const orchestrator::BackendConfig* b = options.config ? orchestrator::BackendOfModel(options.config->backends, ref) : nullptr) {
    return Error(StatusCode::kUnsupported,
                 "pipeline: model \"{}\" is a model of backend {} ({}), which this run cannot reach (stages run on "
                 "backends where qwenmux runs them with its backends: serve, run, ask); name a local model or tier",
                 ref, b->name, b->url);
  }
  const std::string tier = TierOf(ref);
  if (!tier.empty()) {
    for (const std::string& k : {tier, "qwen3-" + tier}) {
      it = options.models.find(k);
      if (it != options.models.end()) return it->second;
    }
  }
  const orchestrator::ModelConfig* mc = options.config ? options.config->FindModel(ref) : nullptr;
  if (!mc && !tier.empty() && options.config) mc = options.config->FindModel("qwen3-" + tier);
  if (mc && !mc->file.empty()) return mc->file;
  if (!mc && tier.empty() && ref.find('/') != std::string::npos) {
    std::string known;
    for (const auto& b : options.config ? options.config->backends : std::vector<orchestrator::BackendConfig>{})
      known += (known.empty() ? "" : ", ") + b.name;
    return Error(StatusCode::kNotFound,
                 "pipeline: model \"{}\" names backend \"{}\", which is not configured (backends: {}); map it with "
                 "--model {}=FILE.gguf or configure the backend",
                 ref, ref.substr(0, ref.find('/')), known.empty() ? "none" : known, ref);
  }
  auto p = FromStore(options.models_dir, mc ? mc->catalog : (tier.empty() ? ref : "qwen3-" + tier), ref);
  if (!p.ok()) {
    return Error(StatusCode::kNotFound, "pipeline: cannot resolve model \"{}\" ({}); map it with --model {}=FILE.gguf", ref,
                 p.status().message(), tier.empty() ? ref : tier);
  }
  return p;
}

Json JobProgress::ToJson() const {
  Json j = {{"state", state}, {"documents", total}, {"skipped", skipped}, {"done", done},  {"ok", ok},
            {"failed", failed}, {"empty", empty},      {"retried", retried}, {"seconds", elapsed_seconds}};
  Json st = Json::array();
  for (const StageStats& s : stages) {
    Json f = Json::object();
    for (const auto& [r, n] : s.failure_reasons) f[r] = n;
    st.push_back({{"name", s.name},
                  {"type", s.type},
                  {"model", s.model},
                  {"items", s.items},
                  {"seconds", s.seconds},
                  {"tokens", s.tokens},
                  {"tokens_per_second", s.seconds > 0 ? static_cast<double>(s.tokens) / s.seconds : 0.0},
                  {"items_per_minute", s.seconds > 0 ? 60.0 * static_cast<double>(s.items) / s.seconds : 0.0},
                  {"failures", f}});
  }
  j["stages"] = st;
  return j;
}

Result<std::unique_ptr<Job>> Job::Start(PipelineDef def, RunOptions options, ResultCallback on_result) {
  if (options.inputs.empty()) return Error(StatusCode::kInvalidArgument, "pipeline: no input files");
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  m.def = std::move(def);
  m.options = std::move(options);
  m.on_result = std::move(on_result);
  m.start = std::chrono::steady_clock::now();
  // A pipeline of the same name in qwenmux.yaml overrides stage -> model.
  if (m.options.config) {
    std::string want = m.def.name;
    std::replace(want.begin(), want.end(), '-', '_');
    for (const auto& p : m.options.config->pipelines) {
      std::string have = p.name;
      std::replace(have.begin(), have.end(), '-', '_');
      if (have != want) continue;
      for (const auto& [stage, model] : p.stages) {
        for (StageDef& s : m.def.stages) {
          if (s.name == stage && !s.model.empty()) s.model = model;
        }
      }
    }
  }
  // Models: resolve every stage's, register one spec per file.
  std::map<std::string, int32_t> n_seq;  // file -> largest batch
  for (const StageDef& s : m.def.stages) {
    if (s.model.empty()) continue;
    if (!m.options.models.count(s.model) && m.options.backend.Owns(s.model)) {
      const char* missing = s.type == StageType::kChunk      ? "it counts tokens with the model's own tokenizer"
                            : s.type == StageType::kValidate ? "it weighs P(yes) from token log-probabilities against "
                                                               "its threshold"
                                                             : nullptr;
      if (missing) {
        return Error(StatusCode::kUnsupported,
                     "pipeline: stage '{}' ({}) names backend model \"{}\": {}, which a backend does not give; name a "
                     "local model for it{}",
                     s.name, StageTypeName(s.type), s.model, missing,
                     s.type == StageType::kChunk ? " or leave `model:` out (approximate tokens)" : "");
      }
      m.stage_model[s.name] = s.model;  // no spec, no lease: the backend serves it
      m.backend_stage.insert(s.name);
      continue;
    }
    QM_ASSIGN_OR_RETURN(std::string file, ResolveModelPath(s.model, m.options));
    m.stage_model[s.name] = file;
    if (std::optional<StageAdapter> a = ResolveStageAdapter(s.model, m.options)) {
      if (s.type != StageType::kExtract && s.type != StageType::kClassify) {
        return Error(StatusCode::kInvalidArgument,
                     "pipeline: stage '{}' names the LoRA adapter model \"{}\"; adapters apply to classify and extract "
                     "stages only",
                     s.name, s.model);
      }
      m.stage_adapter[s.name] = *a;
    }
    n_seq[file] = std::max(n_seq[file], s.type == StageType::kEmbed ? std::min(s.batch, 16) : s.batch);
    if (s.type == StageType::kExtract) {  // the retry tier, when mapped
      const std::string next = NextTier(TierOf(s.model));
      if (!next.empty()) {
        auto f = ResolveModelPath(next, m.options);
        if (f.ok()) {
          m.stage_model[s.name + ".retry"] = *f;
          n_seq[*f] = std::max(n_seq[*f], s.batch);
        }
      }
    }
  }
  if (m.options.manager) {
    m.manager = m.options.manager;
  } else {
    orchestrator::ManagerOptions mo;
    mo.budget_bytes = m.options.memory_budget;
    mo.busy_wait = std::chrono::minutes(30);  // a stage waits for another to release its model
    m.own_manager = std::make_unique<orchestrator::ModelManager>(mo);
    m.manager = m.own_manager.get();
  }
  for (const StageDef& s : m.def.stages) {
    if (s.collection.empty() || m.store) continue;
    if (m.options.store_dir.empty()) {
      return Error(StatusCode::kInvalidArgument, "pipeline: stage '{}' stores into collection '{}' but no store directory is given",
                   s.name, s.collection);
    }
    QM_ASSIGN_OR_RETURN(m.store, rag::Store::Open(m.options.store_dir));
    m.store_saved = std::chrono::steady_clock::now();
  }
  for (const auto& [file, seqs] : n_seq) {
    if (const auto sv = m.options.served.find(file);
        m.options.scheduler && sv != m.options.served.end() && sv->second.n_ctx >= m.def.context) {
      m.served_name[file] = sv->second.name;  // the served instance: no spec of our own
      continue;
    }
    orchestrator::ModelSpec spec;
    spec.path = file;
    spec.load.n_ctx = m.def.context;
    spec.load.n_seq = std::max(1, seqs);
    spec.load.n_threads = m.options.threads;
    spec.load.device = m.options.device;
    spec.load.device_index = m.options.device_index;
    spec.keep_alive = std::chrono::minutes(5);
    if (m.own_manager) {
      spec.name = "pipeline:" + file;
      QM_RETURN_IF_ERROR(m.manager->Register(spec));
    } else {
      // A shared manager (a server running several jobs): the name carries the load options,
      // so jobs asking for the same file the same way share one spec (and one loaded model),
      // and a spec that another job holds loaded is never replaced.
      spec.name = fmt::format("pipeline:{}#ctx={},seq={},threads={}", file, spec.load.n_ctx, spec.load.n_seq,
                              spec.load.n_threads);
      if (!m.manager->Has(spec.name)) {
        Status s = m.manager->Register(spec);
        if (!s.ok() && !m.manager->Has(spec.name)) return s;  // lost a race to an identical spec: fine
      }
    }
    m.spec_name[file] = spec.name;
    m.model_mu[file] = ModelMutex(m.manager, spec.name);
  }
  // Inputs, content hashes, resume.
  std::vector<std::string> missing;
  std::vector<std::string> files = rag::ExpandPaths(m.options.inputs, &missing);
  for (const std::string& f : missing) files.push_back(f);  // reported as failed below
  std::set<std::string> finished;
  if (!m.options.results_path.empty()) {
    QM_ASSIGN_OR_RETURN(finished, LoadFinished(m.options.results_path));
    m.out = std::fopen(m.options.results_path.c_str(), "ab");
    if (!m.out) return Error(StatusCode::kIo, "pipeline: cannot write results file {}", m.options.results_path);
  }
  m.progress.state = "running";
  m.progress.total = static_cast<int64_t>(files.size());
  for (const StageDef& s : m.def.stages) {
    StageStats st;
    st.name = s.name;
    st.type = StageTypeName(s.type);
    auto it = m.stage_model.find(s.name);
    if (it != m.stage_model.end()) st.model = it->second;
    m.progress.stages.push_back(st);
    m.queues.push_back(std::make_unique<DocQueue>());
  }
  std::vector<DocPtr> unreadable;
  for (const std::string& f : files) {
    auto d = std::make_shared<Doc>();
    d->path = f;
    auto h = Sha256File(f);
    if (!h.ok()) {
      d->hash = "";
      d->failed = true;
      d->fail_stage = m.def.stages[0].name;
      d->reason = "unreadable";
      d->error = h.status().message();
      unreadable.push_back(d);
    } else {
      d->hash = *h;
      if (finished.count(f + "\t" + d->hash)) {
        ++m.progress.skipped;
        continue;
      }
    }
    d->index = m.pending.size();
    if (!d->failed) m.pending.push_back(d);
  }
  for (auto& d : unreadable) {
    d->index = m.pending.size();
    m.pending.push_back(d);
  }
  auto* raw = impl.get();
  std::unique_ptr<Job> job(new Job(std::move(impl)));
  if (raw->pending.empty()) {
    raw->Stop();
    return job;
  }
  for (size_t s = 0; s < raw->def.stages.size(); ++s) {
    for (int32_t w = 0; w < raw->def.stages[s].concurrency; ++w) raw->workers.emplace_back([raw, s] { raw->Worker(s); });
  }
  return job;
}

Job::Job(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Job::~Job() {
  Cancel();
  for (auto& t : impl_->workers) {
    if (t.joinable()) t.join();
  }
  if (impl_->out) std::fclose(impl_->out);
}

void Job::Cancel() {
  impl_->cancelled = true;
  impl_->Stop();
}

JobProgress Job::Progress() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  JobProgress p = impl_->progress;
  p.elapsed_seconds = Since(impl_->start);
  return p;
}

std::vector<Json> Job::Results() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->results;
}

Result<Json> Job::Wait() {
  {
    std::unique_lock<std::mutex> lk(impl_->mu);
    impl_->finished_cv.wait(lk, [&] { return impl_->finished; });
  }
  for (auto& t : impl_->workers) {
    if (t.joinable()) t.join();
  }
  std::lock_guard<std::mutex> lk(impl_->mu);
  if (!impl_->fatal.empty()) return Error(StatusCode::kInternal, "pipeline: {}", impl_->fatal);
  JobProgress p = impl_->progress;
  p.elapsed_seconds = Since(impl_->start);
  Json j = p.ToJson();
  Json s = {{"pipeline", impl_->def.name}};
  for (auto it = j.begin(); it != j.end(); ++it) s[it.key()] = it.value();
  return s;
}

void Job::Impl::Stop() {
  {
    std::lock_guard<std::mutex> lk(mu);
    if (finished) return;
    finished = true;
    if (progress.state == "running") progress.state = cancelled ? "cancelled" : "done";
  }
  FlushStore();
  for (auto& q : queues) q->Close();
  finished_cv.notify_all();
}

void Job::Impl::Worker(size_t stage) {
  const StageDef& st = def.stages[stage];
  if (st.type == StageType::kRead) {
    while (!cancelled) {
      const size_t i = next_read++;
      if (i >= pending.size()) return;
      DocPtr d = pending[i];
      d->started = std::chrono::steady_clock::now();
      if (d->failed) {
        Sink(d);
        continue;
      }
      RunRead(stage, d);
    }
    return;
  }
  for (;;) {
    std::vector<DocPtr> batch = queues[stage]->PopBatch(static_cast<size_t>(st.batch));
    if (batch.empty() || cancelled) return;
    switch (st.type) {
      case StageType::kChunk: RunChunk(stage, batch); break;
      case StageType::kEmbed: RunEmbed(stage, batch); break;
      case StageType::kClassify: RunClassify(stage, batch); break;
      case StageType::kExtract: RunExtract(stage, batch); break;
      case StageType::kValidate: RunValidate(stage, batch); break;
      case StageType::kRead: break;
    }
  }
}

void Job::Impl::Forward(size_t from, DocPtr d) {
  if (cancelled) return;
  if (d->failed || d->skipped || from + 1 >= queues.size()) return Sink(d);
  queues[from + 1]->Push(std::move(d));
}

void Job::Impl::Fail(size_t stage, const DocPtr& d, std::string reason, std::string error) {
  d->failed = true;
  d->fail_stage = def.stages[stage].name;
  d->reason = std::move(reason);
  d->error = std::move(error);
}

void Job::Impl::AddStats(size_t stage, int64_t items, double seconds, int64_t tokens) {
  std::lock_guard<std::mutex> lk(mu);
  StageStats& s = progress.stages[stage];
  s.items += items;
  s.seconds += seconds;
  s.tokens += tokens;
}

std::string Job::Impl::RetryFile(const DocPtr&) const {
  for (const StageDef& s : def.stages) {
    if (s.type != StageType::kExtract) continue;
    auto it = stage_model.find(s.name + ".retry");
    return it == stage_model.end() ? "" : it->second;
  }
  return "";
}

Status Job::Impl::WithModel(size_t stage, const std::string& file_in, const std::function<Status(engine::Model&)>& fn) {
  const std::string file = file_in.empty() ? stage_model.at(def.stages[stage].name) : file_in;
  if (options.scheduler) {
    if (const auto served = served_name.find(file); served != served_name.end()) {
      // The server's instance, lent by its scheduler worker: `fn` runs on the worker's thread.
      auto done = std::make_shared<std::promise<Status>>();
      std::future<Status> result = done->get_future();
      orchestrator::ExclusiveRequest req;
      req.model = served->second;
      req.run = [&fn, done](Result<engine::Model*> model) {
        done->set_value(model.ok() ? fn(**model) : model.status());
      };
      QM_RETURN_IF_ERROR(options.scheduler->Submit(std::move(req)).status());
      return result.get();
    }
  }
  QM_ASSIGN_OR_RETURN(orchestrator::ModelLease lease, manager->Acquire(spec_name.at(file)));
  std::lock_guard<std::mutex> lk(*model_mu.at(file));
  return fn(lease.model());
}

void Job::Impl::Sink(const DocPtr& d) {
  Json r = {{"document", d->path}, {"hash", d->hash},
            {"status", d->failed ? "failed" : d->skipped ? "skipped" : "ok"}};
  if (!d->label.empty()) {
    r["class"] = d->label;
    r["confidence"] = d->confidence;
    r["scores"] = d->scores;
  }
  if (!d->extracted.is_null()) r["extracted"] = d->extracted;
  if (!d->validation.is_null()) r["validation"] = d->validation;
  if (d->attempts > 0) r["attempts"] = d->attempts;
  if (!d->chunks.empty()) r["chunks"] = d->chunks.size();
  if (d->embedding_dim > 0) r["embedding_dim"] = d->embedding_dim;
  if (!d->collection.empty()) r["collection"] = d->collection;
  if (!d->models.empty()) r["models"] = d->models;
  if (d->failed || d->skipped) {
    r["stage"] = d->fail_stage;
    r["reason"] = d->reason;
    r["error"] = d->error;
  }
  r["seconds"] = Since(d->started);
  bool all_done = false;
  {
    std::lock_guard<std::mutex> lk(mu);
    if (finished) return;  // cancelled: no line for an unfinished run
    if (out) {
      const std::string line = r.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
      std::fwrite(line.data(), 1, line.size(), out);
      std::fflush(out);
    }
    ++progress.done;
    if (d->failed) {
      ++progress.failed;
      for (StageStats& s : progress.stages) {
        if (s.name == d->fail_stage) {
          ++s.failures;
          ++s.failure_reasons[d->reason];
        }
      }
    } else if (d->skipped) {
      ++progress.empty;
    } else {
      ++progress.ok;
    }
    if (d->attempts > 1) ++progress.retried;
    results.push_back(r);
    if (on_result) on_result(r);
    all_done = progress.done == static_cast<int64_t>(pending.size());
  }
  if (all_done) Stop();
}

std::vector<int32_t> ChatPrompt(const tokenizer::Tokenizer& tok, std::string_view system, std::string_view before,
                                std::string_view doc, std::string_view after) {
  // "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{before}{doc}{after}<|im_end|>\n"
  // "<|im_start|>assistant\n<think>\n\n</think>\n\n" (the Qwen3 template, thinking off); only
  // the template's own markers are parsed as special tokens.
  tokenizer::EncodeOptions special;
  special.parse_special = true;
  std::vector<int32_t> ids;
  tok.EncodeAppend("<|im_start|>system\n", special, &ids);
  tok.EncodeAppend(system, {}, &ids);
  tok.EncodeAppend("<|im_end|>\n<|im_start|>user\n", special, &ids);
  // One piece of text, as the template renders it: encoding the parts apart would split
  // pre-tokens at their seams (".\n\n" is one), unlike the same prompt sent over HTTP.
  std::string user;
  user.reserve(before.size() + doc.size() + after.size());
  user.append(before).append(doc).append(after);
  tok.EncodeAppend(user, {}, &ids);
  tok.EncodeAppend("<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n", special, &ids);
  return ids;
}

}  // namespace qwenmux::pipeline
