#include "server/finetune_jobs.h"

#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <deque>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include <fmt/format.h>

#include "base/thread_pool.h"
#include "server/api_common.h"
#include "server/pipeline_jobs.h"
#include "server/service.h"

namespace qwenmux::server {

namespace fs = std::filesystem;
using OJson = nlohmann::ordered_json;

namespace {

constexpr double kBaseLearningRate = 2e-4;  // learning_rate_multiplier 1 ("auto")
constexpr int64_t kDefaultBatch = 4;
constexpr double kDefaultEpochs = 3;        // n_epochs "auto" (and neither n_epochs nor steps given)

int64_t NowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string RandomHex(int n) {
  std::random_device rd;
  std::string s;
  while (static_cast<int>(s.size()) < n) s += fmt::format("{:08x}", rd());
  return s.substr(0, static_cast<size_t>(n));
}

bool IsAuto(const OJson* v) { return v && v->is_string() && v->get<std::string>() == "auto"; }

Status WriteAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    if (!out) return Error(StatusCode::kIo, "fine-tuning jobs: cannot write {}", tmp);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return Error(StatusCode::kIo, "fine-tuning jobs: cannot rename {} to {}: {}", tmp, path, ec.message());
  return Status::Ok();
}

}  // namespace

Status ApplyHyperparameters(const OJson& h, int64_t checkpoint_every, finetune::TrainOptions* o, std::string* param) {
  static const std::set<std::string> kKeys = {
      "n_epochs", "steps", "batch_size", "learning_rate_multiplier", "learning_rate", "rank", "alpha", "dropout",
      "targets", "accumulation", "warmup", "schedule", "clip", "weight_decay", "seed", "eval_every", "early_stop",
      "valid_fraction", "max_tokens", "truncate", "checkpoint_every"};
  auto fail = [&](const std::string& key, std::string message) {
    *param = "hyperparameters." + key;
    return Error(StatusCode::kInvalidArgument, "{}: {}", *param, message);
  };
  if (!h.is_object()) {
    *param = "hyperparameters";
    return Error(StatusCode::kInvalidArgument, "hyperparameters: expected an object");
  }
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (!kKeys.count(it.key())) {
      return fail(it.key(), fmt::format("unknown hyperparameter (known: {})", fmt::join(kKeys, ", ")));
    }
  }
  Fields f(h, "hyperparameters.");
  auto done = [&]() -> Status {
    if (f.ok()) return Status::Ok();
    *param = f.param();
    return f.status();
  };
  const OJson* epochs = f.Get("n_epochs");
  const OJson* steps = f.Get("steps");
  if (epochs && steps) return fail("steps", "give n_epochs or steps, not both");
  o->epochs = kDefaultEpochs;
  if (steps) {
    if (auto s = f.Int("steps", 1, 10'000'000)) o->steps = *s, o->epochs = 0;
  } else if (epochs && !IsAuto(epochs)) {
    if (auto e = f.Number("n_epochs", 1e-3, 1000)) o->epochs = *e;
  }
  o->batch = kDefaultBatch;
  if (const OJson* b = f.Get("batch_size"); b && !IsAuto(b)) {
    if (auto v = f.Int("batch_size", 1, 4096)) o->batch = *v;
  }
  const OJson* mult = f.Get("learning_rate_multiplier");
  const OJson* lr = f.Get("learning_rate");
  if (mult && lr) return fail("learning_rate", "give learning_rate_multiplier or learning_rate, not both");
  o->optim.lr = static_cast<float>(kBaseLearningRate);
  if (lr) {
    if (auto v = f.Number("learning_rate", 1e-9, 1)) o->optim.lr = static_cast<float>(*v);
  } else if (mult && !IsAuto(mult)) {
    if (auto v = f.Number("learning_rate_multiplier", 1e-6, 1000)) o->optim.lr = static_cast<float>(kBaseLearningRate * *v);
  }
  if (auto v = f.Int("rank", 1, 1024)) o->rank = static_cast<int32_t>(*v);
  o->alpha = static_cast<float>(2 * o->rank);
  if (auto v = f.Number("alpha", 1e-6, 1e6)) o->alpha = static_cast<float>(*v);
  if (auto v = f.Number("dropout", 0, 0.99)) o->dropout = static_cast<float>(*v);
  if (auto v = f.String("targets")) {
    if (auto t = finetune::ParseTargets(*v); !t.ok()) return fail("targets", t.status().message());
    o->targets = *v;
  }
  if (auto v = f.Int("accumulation", 1, 4096)) o->accum = *v;
  if (auto v = f.Int("warmup", 0, 10'000'000)) o->optim.warmup_steps = *v;
  if (auto v = f.String("schedule")) {
    auto s = finetune::ParseSchedule(*v);
    if (!s.ok()) return fail("schedule", s.status().message());
    o->optim.schedule = *s;
  }
  if (auto v = f.Number("clip", 0, 1e6)) o->optim.grad_clip = static_cast<float>(*v);
  if (auto v = f.Number("weight_decay", 0, 10)) o->optim.weight_decay = static_cast<float>(*v);
  if (auto v = f.Int("seed", 0, INT64_MAX)) o->seed = static_cast<uint64_t>(*v), o->data_options.seed = o->seed;
  if (auto v = f.Int("eval_every", 0, 10'000'000)) o->eval_every = *v;
  if (auto v = f.Int("early_stop", 0, 10'000)) o->early_stop = *v;
  if (auto v = f.Number("valid_fraction", 0, 0.9)) o->data_options.valid_fraction = *v;
  if (auto v = f.Int("max_tokens", 2, 1 << 20)) o->data_options.max_tokens = *v;
  if (auto v = f.Bool("truncate")) o->data_options.truncate = *v;
  o->checkpoint_every = checkpoint_every;
  if (auto v = f.Int("checkpoint_every", 1, 10'000'000)) o->checkpoint_every = *v;
  return done();
}

struct FinetuneJobs::Job {
  std::string id, dir;
  FinetuneRequest req;
  std::string adapter_name;  // "ft-[SUFFIX-]XXXXXXXX"; requests use "<base>:<adapter_name>"
  int64_t created_at = 0, finished_at = 0;
  std::string status = "running";
  std::string fine_tuned_model;  // set once succeeded (and registered)
  std::string error, error_code;
  int64_t step = 0, total_steps = 0, trained_tokens = 0;
  double train_loss = -1, valid_loss = -1, tokens_per_s = 0;
  OJson data;                   // the dataset's counts once known
  std::deque<OJson> events;     // oldest first, at most options_.max_events
  int64_t event_seq = 0;
  std::atomic<bool> cancel{false};
  bool user_cancelled = false;
  bool training = false;        // the thread runs
  std::thread thread;
};

FinetuneJobs::FinetuneJobs(FinetuneJobOptions options, Service* service, orchestrator::ModelManager* manager)
    : options_(std::move(options)), service_(service), manager_(manager) {}

FinetuneJobs::~FinetuneJobs() { Shutdown(); }

int32_t FinetuneJobs::running() const {
  std::lock_guard lk(mu_);
  return active_;
}

std::shared_ptr<FinetuneJobs::Job> FinetuneJobs::Find(const std::string& id) const {
  std::lock_guard lk(mu_);
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : it->second;
}

OJson FinetuneJobs::DescribeLocked(const Job& j) const {
  auto num = [](double v) { return v < 0 ? OJson(nullptr) : OJson(v); };
  OJson out{{"object", "fine_tuning.job"},
            {"id", j.id},
            {"model", j.req.base},
            {"created_at", j.created_at},
            {"finished_at", j.finished_at > 0 ? OJson(j.finished_at) : OJson(nullptr)},
            {"status", j.status},
            {"fine_tuned_model", j.fine_tuned_model.empty() ? OJson(nullptr) : OJson(j.fine_tuned_model)},
            {"training_file", j.req.training_file},
            {"validation_file", j.req.validation_file.empty() ? OJson(nullptr) : OJson(j.req.validation_file)},
            {"hyperparameters", j.req.hyperparameters},
            {"suffix", j.req.suffix.empty() ? OJson(nullptr) : OJson(j.req.suffix)},
            {"trained_tokens", j.trained_tokens},
            {"error", j.error.empty() ? OJson(nullptr) : OJson{{"code", j.error_code}, {"message", j.error}, {"param", nullptr}}},
            {"result_files", OJson::array()},
            {"metadata", j.req.metadata},
            {"step", j.step},
            {"total_steps", j.total_steps > 0 ? OJson(j.total_steps) : OJson(nullptr)},
            {"train_loss", num(j.train_loss)},
            {"valid_loss", num(j.valid_loss)},
            {"tokens_per_s", j.tokens_per_s},
            {"training", j.training}};
  if (!j.data.is_null()) out["data"] = j.data;
  return out;
}

Status FinetuneJobs::Save(const Job& j) const {
  OJson s{{"id", j.id},
          {"base", j.req.base},
          {"base_file", j.req.base_file},
          {"training_file", j.req.training_file},
          {"validation_file", j.req.validation_file},
          {"suffix", j.req.suffix},
          {"hyperparameters", j.req.hyperparameters},
          {"metadata", j.req.metadata},
          {"adapter_name", j.adapter_name},
          {"created_at", j.created_at},
          {"finished_at", j.finished_at},
          {"status", j.user_cancelled ? "cancelled" : j.status},
          {"fine_tuned_model", j.fine_tuned_model},
          {"error", j.error},
          {"error_code", j.error_code},
          {"total_steps", j.total_steps},
          {"data", j.data}};
  return WriteAtomically(j.dir + "/job.json", s.dump(2));
}

void FinetuneJobs::AddEvent(Job& j, std::string level, std::string type, std::string message, OJson data) {
  OJson e{{"object", "fine_tuning.job.event"},
          {"id", fmt::format("ftevent-{}-{}", j.id.substr(j.id.find('-') + 1), ++j.event_seq)},
          {"created_at", NowUnix()},
          {"level", std::move(level)},
          {"message", std::move(message)},
          {"data", data.is_null() ? OJson::object() : std::move(data)},
          {"type", std::move(type)}};
  std::ofstream(j.dir + "/events.jsonl", std::ios::app) << e.dump() << "\n";
  j.events.push_back(std::move(e));
  while (j.events.size() > static_cast<size_t>(std::max(1, options_.max_events))) j.events.pop_front();
}

Status FinetuneJobs::RegisterAdapter(const Job& j) {
  const std::string path = j.dir + "/adapter.gguf";
  orchestrator::AdapterSpec spec;
  spec.name = j.adapter_name;
  spec.base = j.req.base;
  spec.path = path;
  QM_RETURN_IF_ERROR(manager_->RegisterAdapter(spec).WithContext("fine-tuning job " + j.id));
  ServedAdapter sa{j.adapter_name, j.req.base, path, 1.0f};
  std::error_code ec;
  sa.file_bytes = fs::file_size(path, ec);
  if (ec) sa.file_bytes = 0;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) sa.modified_unix = st.st_mtime;
  return service_->AddAdapter(std::move(sa)).WithContext("fine-tuning job " + j.id);
}

Result<OJson> FinetuneJobs::Submit(FinetuneRequest r, std::string* param) {
  finetune::TrainOptions check;
  QM_RETURN_IF_ERROR(ApplyHyperparameters(r.hyperparameters, options_.checkpoint_every, &check, param));
  QM_RETURN_IF_ERROR(MakePrivateDir(options_.work_dir).WithContext("fine-tuning jobs"));
  std::lock_guard lk(mu_);
  if (shut_down_) return Error(StatusCode::kCancelled, "fine-tuning jobs: the server is shutting down");
  if (active_ >= options_.max_running) {
    return Error(StatusCode::kUnavailable, "fine-tuning jobs: {} job(s) train already (serve --max-finetune-jobs {}); "
                 "retry when one finishes", active_, options_.max_running);
  }
  auto j = std::make_shared<Job>();
  const std::string hex = RandomHex(16);
  j->id = "ftjob-" + hex;
  j->dir = options_.work_dir + "/" + j->id;
  j->adapter_name = r.suffix.empty() ? "ft-" + hex.substr(0, 8) : fmt::format("ft-{}-{}", r.suffix, hex.substr(0, 8));
  j->created_at = NowUnix();
  j->req = std::move(r);
  QM_RETURN_IF_ERROR(MakePrivateDir(j->dir).WithContext("fine-tuning jobs"));
  QM_RETURN_IF_ERROR(Save(*j));
  AddEvent(*j, "info", "message", fmt::format("Created fine-tuning job {} on {}", j->id, j->req.base), nullptr);
  jobs_[j->id] = j;
  Start(j, /*resume=*/false);
  return DescribeLocked(*j);
}

void FinetuneJobs::Start(const std::shared_ptr<Job>& j, bool resume) {
  ++active_;
  j->training = true;
  j->thread = std::thread([this, j, resume] { Run(j, resume); });
}

void FinetuneJobs::Run(std::shared_ptr<Job> j, bool resume) {
  finetune::TrainOptions o;
  std::string param;
  Status st = ApplyHyperparameters(j->req.hyperparameters, options_.checkpoint_every, &o, &param);
  o.base = j->req.base_file;
  o.data = j->req.training_file;
  o.valid_data = j->req.validation_file;
  o.out = j->dir + "/adapter.gguf";
  o.checkpoint = j->dir + "/checkpoint";
  o.resume = true;  // a fresh job has no checkpoint yet
  o.cancel = &j->cancel;
  o.on_record = [this, j](const nlohmann::json& rec) {
    std::lock_guard lk(mu_);
    const int64_t step = rec.value("step", int64_t{0});
    if (rec.contains("loss")) {
      j->step = step;
      j->total_steps = rec.value("total_steps", j->total_steps);
      j->train_loss = rec["loss"].get<double>();
      j->tokens_per_s = rec.value("tokens_per_s", 0.0);
      j->trained_tokens += rec.value("tokens", int64_t{0});
      AddEvent(*j, "info", "metrics", fmt::format("Step {}/{}: training loss={:.4f}", step, j->total_steps, j->train_loss),
               OJson{{"step", step}, {"total_steps", j->total_steps}, {"train_loss", j->train_loss},
                     {"learning_rate", rec.value("lr", 0.0)}, {"grad_norm", rec.value("grad_norm", 0.0)},
                     {"tokens", rec.value("tokens", int64_t{0})}, {"tokens_per_s", j->tokens_per_s}});
    } else if (rec.contains("valid_loss")) {
      j->valid_loss = rec["valid_loss"].get<double>();
      AddEvent(*j, "info", "metrics", fmt::format("Step {}: validation loss={:.4f}", step, j->valid_loss),
               OJson{{"step", step}, {"valid_loss", j->valid_loss}});
    }
  };
  auto train = [&]() -> Result<finetune::TrainReport> {
    QM_RETURN_IF_ERROR(st);  // (a Result is never made from an ok Status)
    if (resume) {
      std::lock_guard lk(mu_);
      AddEvent(*j, "info", "message", "Resuming after a server restart (from the last checkpoint)", nullptr);
    }
    ThreadPool pool(options_.threads);
    return finetune::Train(o, &pool, nullptr);
  };
  Result<finetune::TrainReport> rep = train();
  Status reg = Status::Ok();
  if (rep.ok() && !j->cancel.load()) reg = RegisterAdapter(*j);  // outside mu_: the service and manager take their own locks
  std::lock_guard lk(mu_);
  j->training = false;
  --active_;
  if (rep.ok()) {
    j->data = OJson::parse(rep->ToJson()["data"].dump());
    if (!rep->losses.empty()) j->train_loss = rep->losses.back();
    if (rep->valid_loss >= 0) j->valid_loss = rep->valid_loss;
  }
  if (!rep.ok() && rep.status().code() == StatusCode::kCancelled && !j->user_cancelled) {
    return;  // a shutdown: job.json still says running, the next start resumes at the checkpoint
  }
  j->finished_at = NowUnix();
  if (j->user_cancelled) {
    j->status = "cancelled";
    AddEvent(*j, "info", "message", fmt::format("Fine-tuning job cancelled at step {}", j->step), nullptr);
  } else if (!rep.ok() || !reg.ok()) {
    j->status = "failed";
    j->error = !rep.ok() ? rep.status().message() : reg.message();
    j->error_code = !rep.ok() && rep.status().code() == StatusCode::kInvalidArgument ? "invalid_training_file"
                                                                                        : "training_failed";
    AddEvent(*j, "error", "message", "Fine-tuning job failed: " + j->error, nullptr);
  } else {
    j->status = "succeeded";
    j->fine_tuned_model = j->req.base + ":" + j->adapter_name;
    AddEvent(*j, "info", "message",
             fmt::format("Fine-tuning job succeeded after {} steps: model {} is served", j->step, j->fine_tuned_model),
             nullptr);
  }
  (void)Save(*j);  // a failed write leaves the previous state; the next start reports what it finds
}

Result<OJson> FinetuneJobs::Describe(const std::string& id) const {
  auto j = Find(id);
  if (!j) return Error(StatusCode::kNotFound, "fine-tuning job {} not found", id);
  std::lock_guard lk(mu_);
  return DescribeLocked(*j);
}

OJson FinetuneJobs::List() const {
  std::lock_guard lk(mu_);
  std::vector<const Job*> v;
  for (const auto& [_, j] : jobs_) v.push_back(j.get());
  std::sort(v.begin(), v.end(), [](const Job* a, const Job* b) {
    return a->created_at != b->created_at ? a->created_at > b->created_at : a->id > b->id;
  });
  OJson data = OJson::array();
  for (const Job* j : v) data.push_back(DescribeLocked(*j));
  return OJson{{"object", "list"}, {"data", std::move(data)}, {"has_more", false}};
}

Result<OJson> FinetuneJobs::Events(const std::string& id, size_t limit) const {
  auto j = Find(id);
  if (!j) return Error(StatusCode::kNotFound, "fine-tuning job {} not found", id);
  std::lock_guard lk(mu_);
  OJson data = OJson::array();
  for (auto it = j->events.rbegin(); it != j->events.rend() && data.size() < limit; ++it) data.push_back(*it);
  return OJson{{"object", "list"}, {"data", std::move(data)}, {"has_more", j->events.size() > limit}};
}

Result<OJson> FinetuneJobs::Cancel(const std::string& id) {
  auto j = Find(id);
  if (!j) return Error(StatusCode::kNotFound, "fine-tuning job {} not found", id);
  std::lock_guard lk(mu_);
  if (j->status == "running") {
    j->user_cancelled = true;
    j->status = "cancelled";
    j->cancel.store(true);
    (void)Save(*j);
  }
  return DescribeLocked(*j);
}

void FinetuneJobs::Shutdown() {
  std::vector<std::shared_ptr<Job>> all;
  {
    std::lock_guard lk(mu_);
    shut_down_ = true;
    for (auto& [_, j] : jobs_) {
      j->cancel.store(true);
      all.push_back(j);
    }
  }
  for (auto& j : all) {
    if (j->thread.joinable()) j->thread.join();
  }
}

Status FinetuneJobs::Restore(const std::function<void(const std::string&)>& log) {
  if (!enabled()) return Status::Ok();
  QM_RETURN_IF_ERROR(MakePrivateDir(options_.work_dir).WithContext("fine-tuning jobs"));
  std::error_code ec;
  std::vector<std::string> dirs;
  for (const auto& e : fs::directory_iterator(options_.work_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with("ftjob-") && e.is_directory(ec) && !e.is_symlink(ec)) dirs.push_back(e.path().string());
  }
  std::sort(dirs.begin(), dirs.end());
  for (const std::string& dir : dirs) {
    std::ifstream in(dir + "/job.json");
    const OJson s = OJson::parse(in, nullptr, false);
    if (s.is_discarded() || !s.is_object() || s.value("id", "") != fs::path(dir).filename().string()) {
      log(fmt::format("serve: fine-tuning job directory {}: no readable job.json; skipped", dir));
      continue;
    }
    auto j = std::make_shared<Job>();
    j->id = s["id"];
    j->dir = dir;
    j->req.base = s.value("base", "");
    j->req.base_file = s.value("base_file", "");
    j->req.training_file = s.value("training_file", "");
    j->req.validation_file = s.value("validation_file", "");
    j->req.suffix = s.value("suffix", "");
    j->req.hyperparameters = s.value("hyperparameters", OJson::object());
    j->req.metadata = s.contains("metadata") ? s["metadata"] : OJson(nullptr);
    j->adapter_name = s.value("adapter_name", "");
    j->created_at = s.value("created_at", int64_t{0});
    j->finished_at = s.value("finished_at", int64_t{0});
    j->status = s.value("status", "failed");
    j->fine_tuned_model = s.value("fine_tuned_model", "");
    j->error = s.value("error", "");
    j->error_code = s.value("error_code", "");
    j->total_steps = s.value("total_steps", int64_t{0});
    if (s.contains("data")) j->data = s["data"];
    // Events up to the checkpoint (steps after it run again on a resume).
    const Result<int64_t> ckpt = finetune::CheckpointStep(dir + "/checkpoint");
    const int64_t ckpt_step = ckpt.ok() ? *ckpt : 0;
    const bool resuming = j->status == "running";
    {
      std::ifstream ev(dir + "/events.jsonl");
      std::string line;
      while (std::getline(ev, line)) {
        OJson e = OJson::parse(line, nullptr, false);
        if (e.is_discarded() || !e.is_object()) continue;
        const OJson& d = e.contains("data") ? e["data"] : OJson();
        if (resuming && d.is_object() && d.value("step", int64_t{0}) > ckpt_step) continue;
        if (d.is_object() && d.contains("train_loss")) {
          j->step = d.value("step", j->step);
          j->train_loss = d["train_loss"].get<double>();
          j->trained_tokens += d.value("tokens", int64_t{0});
        }
        if (d.is_object() && d.contains("valid_loss")) j->valid_loss = d["valid_loss"].get<double>();
        ++j->event_seq;
        j->events.push_back(std::move(e));
        if (j->events.size() > static_cast<size_t>(std::max(1, options_.max_events))) j->events.pop_front();
      }
    }
    std::unique_lock lk(mu_);
    jobs_[j->id] = j;
    if (resuming) {  // rewrite the events as kept
      std::string text;
      for (const OJson& e : j->events) text += e.dump() + "\n";
      (void)WriteAtomically(dir + "/events.jsonl", text);
    }
    if (j->status == "succeeded") {
      lk.unlock();
      Status reg = RegisterAdapter(*j);
      lk.lock();
      if (reg.ok()) continue;
      j->status = "failed";
      j->fine_tuned_model.clear();
      j->error = "after a server restart, its adapter cannot be served again: " + reg.message();
      j->error_code = "server_restart";
      log(fmt::format("serve: fine-tuning job {}: {}", j->id, j->error));
      (void)Save(*j);
      continue;
    }
    if (!resuming) continue;
    const ServedModel* base = nullptr;
    for (const ServedModel& m : service_->models()) {
      if (m.name == j->req.base) base = &m;
    }
    std::string why;
    if (!base) {
      why = fmt::format("the server restarted while the job was running and model {} is no longer served", j->req.base);
    } else if (base->path != j->req.base_file) {
      why = fmt::format("the server restarted while the job was running and model {} is now served from {}, not {}",
                        j->req.base, base->path, j->req.base_file);
    } else if (active_ >= options_.max_running) {
      why = fmt::format("the server restarted while the job was running and {} other job(s) resumed first "
                        "(serve --max-finetune-jobs {})", active_, options_.max_running);
    }
    if (why.empty()) {
      log(fmt::format("serve: fine-tuning job {} resumes at step {}", j->id, ckpt_step));
      Start(j, /*resume=*/true);
      continue;
    }
    j->status = "failed";
    j->error = why;
    j->error_code = "server_restart";
    j->finished_at = NowUnix();
    AddEvent(*j, "error", "message", "Fine-tuning job failed: " + why, nullptr);
    log(fmt::format("serve: fine-tuning job {}: {}", j->id, why));
    (void)Save(*j);
  }
  return Status::Ok();
}

}  // namespace qwenmux::server
