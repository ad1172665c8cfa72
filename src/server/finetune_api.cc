// Fine-tuning jobs over HTTP, OpenAI's shape (see finetune_jobs.h and the README's "Fine-tuning
// jobs over HTTP"):
//   POST /v1/fine_tuning/jobs              start: 200 {"object": "fine_tuning.job", "id", "status": "running", ...}
//   GET  /v1/fine_tuning/jobs              jobs, newest first
//   GET  /v1/fine_tuning/jobs/ID           one job (step, losses, fine_tuned_model once succeeded)
//   GET  /v1/fine_tuning/jobs/ID/events    events, newest first (?limit=N, default 20)
//   POST /v1/fine_tuning/jobs/ID/cancel    cancel a running job
// Files are server-side paths under --data-root (the pipeline jobs' check: symlinks resolved, no
// escape); the base is a served Qwen3 model (dense or MoE), by name or alias (never a file path).
#include <algorithm>
#include <filesystem>
#include <set>

#include <fmt/format.h>

#include "server/api_common.h"
#include "server/finetune_jobs.h"
#include "server/http_server.h"
#include "server/pipeline_jobs.h"
#include "server/service.h"

namespace qwenmux::server {

namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxSuffix = 40;
constexpr size_t kDefaultEventLimit = 20, kMaxEventLimit = 10000;

struct Context {
  Service* service;
  FinetuneJobs* jobs;
  std::vector<fs::path> roots;  // canonical data roots
};

void Fail(Responder& r, int status, std::string message, std::string param = "") {
  SendApiError(r, ApiError{status, std::move(message), std::move(param), 0});
}

void FailStatus(Responder& r, const Status& s, std::string param = "") {
  ApiError e = ErrorFromStatus(s);
  e.param = std::move(param);
  SendApiError(r, e);
}

// A training or validation file: a regular file under a data root.
bool CheckFile(const Context& cx, Responder& r, const Json& value, const char* field, std::string* out) {
  if (!value.is_string()) {
    Fail(r, 400, fmt::format("{}: expected a server-side path (string) under the server's --data-root", field), field);
    return false;
  }
  std::string why;
  if (const int st = CheckDataPath(value.get<std::string>(), cx.roots, out, &why); st != 0) {
    Fail(r, st, fmt::format("{}: {}", field, why), field);
    return false;
  }
  std::error_code ec;
  if (!fs::is_regular_file(*out, ec)) {
    Fail(r, 400, fmt::format("{}: {} is not a file", field, value.get<std::string>()), field);
    return false;
  }
  return true;
}

void Submit(const Context& cx, const HttpRequest& req, Responder& r) {
  if (!cx.jobs->enabled()) return Fail(r, 403, "fine-tuning jobs are off on this server (serve --max-finetune-jobs 0)");
  auto body = ParseBody(req.body);
  if (!body.ok()) return FailStatus(r, body.status());
  const Json& b = *body;
  static const std::set<std::string> kKeys = {"model", "training_file", "validation_file", "hyperparameters", "suffix",
                                              "seed", "metadata", "method"};
  for (auto it = b.begin(); it != b.end(); ++it) {
    if (!kKeys.count(it.key())) {
      return Fail(r, 400, fmt::format("unknown field \"{}\" (fields: {})", it.key(), fmt::join(kKeys, ", ")), it.key());
    }
  }
  FinetuneRequest fr;
  // The base: a served model by name or alias.
  const auto model = b.find("model");
  if (model == b.end() || !model->is_string() || model->get<std::string>().empty()) {
    return Fail(r, 400, "model: expected the name of a served model to fine-tune", "model");
  }
  const std::string name = model->get<std::string>();
  const ServedModel* base = nullptr;
  for (const ServedModel& m : cx.service->models()) {
    if (m.name == name || std::find(m.aliases.begin(), m.aliases.end(), name) != m.aliases.end()) base = &m;
  }
  if (!base) {
    return Fail(r, 400, fmt::format("model: \"{}\" is not a model this server serves ({}); file paths are not accepted",
                                    name, cx.service->ModelList()), "model");
  }
  if (base->role != orchestrator::ModelRole::kChat) {
    return Fail(r, 400, fmt::format("model: {} is an embedding or reranking model; fine-tune a chat model", base->name),
                "model");
  }
  if (base->arch != "qwen3" && base->arch != "qwen3moe") {
    return Fail(r, 400, fmt::format("model: {} is a {} model; fine-tuning supports Qwen3 bases (qwen3, qwen3moe) only",
                                    base->name, base->arch.empty() ? "non-Qwen3" : base->arch), "model");
  }
  fr.base = base->name;
  fr.base_file = base->path;

  const auto train = b.find("training_file");
  if (train == b.end() || train->is_null()) {
    return Fail(r, 400, "training_file: required (a JSONL file under the server's --data-root)", "training_file");
  }
  if (!CheckFile(cx, r, *train, "training_file", &fr.training_file)) return;
  if (const auto v = b.find("validation_file"); v != b.end() && !v->is_null()) {
    if (!CheckFile(cx, r, *v, "validation_file", &fr.validation_file)) return;
  }
  if (const auto s = b.find("suffix"); s != b.end() && !s->is_null()) {
    const bool ok = s->is_string() && !s->get<std::string>().empty() && s->get<std::string>().size() <= kMaxSuffix &&
                    std::all_of(s->get_ref<const std::string&>().begin(), s->get_ref<const std::string&>().end(), [](char c) {
                      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
                    });
    if (!ok) return Fail(r, 400, fmt::format("suffix: 1 to {} letters, digits, '-' or '_'", kMaxSuffix), "suffix");
    fr.suffix = s->get<std::string>();
  }
  if (const auto m = b.find("metadata"); m != b.end() && !m->is_null()) {
    if (!m->is_object()) return Fail(r, 400, "metadata: expected an object", "metadata");
    fr.metadata = *m;
  }
  // Hyperparameters: top-level, or OpenAI's newer {"method": {"type": "supervised", "supervised": {"hyperparameters"}}}.
  const Json* h = nullptr;
  if (const auto it = b.find("hyperparameters"); it != b.end() && !it->is_null()) h = &*it;
  if (const auto m = b.find("method"); m != b.end() && !m->is_null()) {
    if (!m->is_object() || m->value("type", "") != "supervised") {
      return Fail(r, 400, "method.type: only \"supervised\" fine-tuning (LoRA) is supported", "method.type");
    }
    if (const auto s = m->find("supervised"); s != m->end() && s->is_object() && s->contains("hyperparameters")) {
      if (h) return Fail(r, 400, "give hyperparameters or method.supervised.hyperparameters, not both", "hyperparameters");
      h = &(*s)["hyperparameters"];
    }
  }
  if (h) {
    if (!h->is_object()) return Fail(r, 400, "hyperparameters: expected an object", "hyperparameters");
    fr.hyperparameters = *h;
  }
  if (const auto s = b.find("seed"); s != b.end() && !s->is_null()) {
    if (!s->is_number_integer() || s->get<int64_t>() < 0) return Fail(r, 400, "seed: expected a non-negative integer", "seed");
    if (fr.hyperparameters.contains("seed")) return Fail(r, 400, "give seed or hyperparameters.seed, not both", "seed");
    fr.hyperparameters["seed"] = *s;
  }
  std::string param;
  auto job = cx.jobs->Submit(std::move(fr), &param);
  if (!job.ok()) return FailStatus(r, job.status(), param);
  r.Send(200, "application/json", Dump(*job));
}

void JobRoute(const Context& cx, const HttpRequest& req, Responder& r) {
  static const std::string kPrefix = "/v1/fine_tuning/jobs/";
  const std::string rest = req.path.substr(kPrefix.size());
  const size_t slash = rest.find('/');
  const std::string id = rest.substr(0, slash);
  const std::string sub = slash == std::string::npos ? "" : rest.substr(slash + 1);
  const bool get = req.method == "GET";
  if (id.empty() || !((get && (sub.empty() || sub == "events")) || (!get && sub == "cancel"))) {
    return Fail(r, 404, fmt::format("no route for {} {}", req.method, req.path));
  }
  if (sub == "cancel") {
    auto j = cx.jobs->Cancel(id);
    if (!j.ok()) return FailStatus(r, j.status());
    return r.Send(200, "application/json", Dump(*j));
  }
  if (sub == "events") {
    size_t limit = kDefaultEventLimit;
    for (std::string_view q = req.query; !q.empty();) {
      const size_t amp = q.find('&');
      const std::string_view kv = q.substr(0, amp);
      if (kv.starts_with("limit=")) {
        const std::string v(kv.substr(6));
        char* end = nullptr;
        const long long n = std::strtoll(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0' || n < 1 || n > static_cast<long long>(kMaxEventLimit)) {
          return Fail(r, 400, fmt::format("limit: expected an integer in [1, {}]", kMaxEventLimit), "limit");
        }
        limit = static_cast<size_t>(n);
      }
      q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    }
    auto e = cx.jobs->Events(id, limit);
    if (!e.ok()) return FailStatus(r, e.status());
    return r.Send(200, "application/json", Dump(*e));
  }
  auto j = cx.jobs->Describe(id);
  if (!j.ok()) return FailStatus(r, j.status());
  r.Send(200, "application/json", Dump(*j));
}

}  // namespace

Status RegisterFinetuneRoutes(Service& service, FinetuneJobs& jobs, HttpServer& http,
                              const std::vector<std::string>& data_roots) {
  auto cx = std::make_shared<Context>();
  cx->service = &service;
  cx->jobs = &jobs;
  for (const std::string& root : data_roots) {
    std::error_code ec;
    const fs::path c = fs::canonical(root, ec);
    if (ec || !fs::is_directory(c, ec)) {
      return Error(StatusCode::kInvalidArgument, "serve: --data-root {}: not a directory", root);
    }
    cx->roots.push_back(c);
  }
  http.Route("POST", "/v1/fine_tuning/jobs",
             [cx](const HttpRequest& req, std::shared_ptr<Responder> r) { Submit(*cx, req, *r); });
  http.Route("GET", "/v1/fine_tuning/jobs", [cx](const HttpRequest&, std::shared_ptr<Responder> r) {
    r->Send(200, "application/json", Dump(cx->jobs->List()));
  });
  for (const char* method : {"GET", "POST"}) {
    http.Route(method, "/v1/fine_tuning/jobs/",
               [cx](const HttpRequest& req, std::shared_ptr<Responder> r) { JobRoute(*cx, req, *r); }, /*prefix=*/true);
  }
  return Status::Ok();
}

}  // namespace qwenmux::server
