// Document-pipeline jobs over HTTP (see pipeline_jobs.h and the README's "Pipeline jobs"):
//   POST   /v1/pipelines/jobs              start a job: 202 {"id", "state", "progress_url", ...}
//   GET    /v1/pipelines/jobs              jobs, newest first
//   GET    /v1/pipelines/jobs/ID           progress (+ "summary" once finished)
//   GET    /v1/pipelines/jobs/ID/results   result lines so far (application/x-ndjson)
//   GET    /v1/pipelines/jobs/ID/events    server-sent events: progress, result lines, done
//   DELETE /v1/pipelines/jobs/ID           cancel a running job / forget a finished one
//          ?purge=true                     ... and remove the documents it added to the server's store
//   GET    /v1/pipelines                   the named pipelines (definition files)
// Errors use the OpenAI shape. What the network may name is limited: server-side inputs only
// under --data-root directories (403 otherwise), models only served names/aliases or catalog
// names in the model store (never a file path), pipelines only by plain name.
#include <algorithm>
#include <filesystem>
#include <set>

#include <fmt/format.h>

#include "orchestrator/catalog/catalog.h"
#include "pipeline/library.h"
#include "rag/ingest.h"
#include "rag/reader.h"
#include "server/api_common.h"
#include "server/pipeline_jobs.h"
#include "server/service.h"

namespace qwenmux::server {

namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxInputs = 4096;        // paths in one request
constexpr size_t kMaxFiles = 100000;       // files after expanding directories
constexpr size_t kMaxDocuments = 10000;    // inline documents

void SendError(Responder& r, int status, std::string message, std::string param = "", int retry_after = 0) {
  const char* type = status == 403   ? "permission_error"
                     : status == 404 ? "not_found_error"
                     : status == 409 ? "conflict_error"
                     : status == 429 ? "rate_limit_error"
                     : status < 500  ? "invalid_request_error"
                                     : "server_error";
  Json j{{"error", {{"message", std::move(message)}, {"type", type},
                    {"param", param.empty() ? Json(nullptr) : Json(param)}, {"code", status}}}};
  HeaderList h;
  if (retry_after > 0) h.push_back({"Retry-After", std::to_string(retry_after)});
  r.Send(status, "application/json", Dump(j), h);
}

void SendStatus(Responder& r, const Status& s, std::string param = "") {
  const ApiError e = ErrorFromStatus(s);
  SendError(r, e.status, e.message, std::move(param), e.retry_after);
}

struct Failure {
  int status = 400;
  std::string message, param;
};

bool PlainName(std::string_view s, size_t max) {
  if (s.empty() || s.size() > max || s.front() == '.') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
  });
}

// Server-side inputs: every path (and every file of a directory, symlinks resolved) must lie
// under a data root. Relative paths are taken relative to the first root.
std::optional<Failure> CheckInputs(const std::vector<std::string>& paths, const std::vector<fs::path>& roots,
                                   std::vector<std::string>* out) {
  if (paths.empty()) return std::nullopt;
  if (roots.empty()) {
    return Failure{403, "server-side inputs are off on this server (start it with --data-root DIR); send the documents "
                        "inline instead: \"documents\": [{\"name\": ..., \"text\": ...}]", "inputs"};
  }
  auto allowed = [&](const fs::path& p) { return UnderDataRoots(p, roots); };
  for (size_t i = 0; i < paths.size(); ++i) {
    const std::string param = fmt::format("inputs[{}]", i);
    std::string checked, why;
    if (const int st = CheckDataPath(paths[i], roots, &checked, &why); st != 0) {
      return Failure{st, fmt::format("{}: {}", param, why), param};
    }
    std::error_code ec;
    const fs::path p(checked);
    if (fs::is_directory(p, ec)) {
      const std::vector<std::string> dir{p.string()};
      for (const std::string& f : rag::ExpandPaths(dir, nullptr)) {
        const fs::path c = fs::canonical(f, ec);
        if (ec || !allowed(c)) {
          return Failure{403, fmt::format("{}: {} leads outside the server's data roots", param, f), param};
        }
        out->push_back(c.string());
      }
    } else {
      out->push_back(p.string());  // a missing file becomes a failed result line
    }
    if (out->size() > kMaxFiles) return Failure{400, fmt::format("more than {} files", kMaxFiles), param};
  }
  return std::nullopt;
}

// A model the request maps a tier or stage model to: a model this server serves (name or
// alias) or a catalog name present in the model store. Never a path.
Result<std::string> ResolveRequestModel(const Service& service, const std::string& value, const std::string& models_dir,
                                        const orchestrator::Config* config) {
  for (const ServedModel& m : service.models()) {
    if (m.name == value || std::find(m.aliases.begin(), m.aliases.end(), value) != m.aliases.end()) return m.path;
  }
  const bool path_like = value.find('/') != std::string::npos || value.find('\\') != std::string::npos ||
                         value.ends_with(".gguf") || value.starts_with(".");
  if (!path_like && (orchestrator::FindInCatalog(value).ok() || (config && config->FindModel(value)))) {
    pipeline::RunOptions o;
    o.models_dir = models_dir;
    o.config = config;
    auto p = pipeline::ResolveModelPath(value, o);
    if (p.ok()) return p;
    return Error(StatusCode::kInvalidArgument, "{}", p.status().message());
  }
  return Error(StatusCode::kInvalidArgument, "\"{}\" is not a model this server serves ({}) or a catalog name{}", value,
               service.ModelList(), path_like ? "; file paths are not accepted over HTTP" : "");
}

struct Context {
  Service* service;
  PipelineJobs* jobs;
  std::vector<fs::path> roots;  // canonical data roots
  std::string models_dir;
  const orchestrator::Config* config;
};

void Submit(const Context& cx, const HttpRequest& req, Responder& r) {
  if (!cx.jobs->enabled()) return SendError(r, 403, "pipeline jobs are off on this server (serve --max-jobs 0)");
  auto body = ParseBody(req.body);
  if (!body.ok()) return SendStatus(r, body.status());
  const Json& b = *body;
  static const std::set<std::string> kKeys = {"id", "pipeline", "yaml", "inputs", "documents", "models"};
  for (auto it = b.begin(); it != b.end(); ++it) {
    if (!kKeys.count(it.key())) {
      return SendError(r, 400, fmt::format("unknown field \"{}\" (fields: id, pipeline, yaml, inputs, documents, models)",
                                           it.key()), it.key());
    }
  }
  Fields f(b);
  JobSubmission s;
  if (auto id = f.String("id")) {
    if (!PlainName(*id, 64)) return SendError(r, 400, "id: letters, digits, '-', '_' and '.', at most 64", "id");
    s.id = *id;
  }
  // The definition: a name, an inline object, or YAML text.
  const Json* p = f.Get("pipeline");
  const Json* y = f.Get("yaml");
  if (p && y) return SendError(r, 400, "give either pipeline or yaml, not both", "pipeline");
  Result<pipeline::PipelineDef> def = Error(StatusCode::kInvalidArgument, "");
  if (y) {
    if (!y->is_string()) return SendError(r, 400, "yaml: expected the definition as a string", "yaml");
    def = pipeline::ParsePipeline(y->get<std::string>(), "yaml");
  } else if (p && p->is_string()) {
    def = pipeline::FindPipeline(p->get<std::string>(), cx.jobs->options().pipeline_dirs);
  } else if (p && p->is_object()) {
    def = pipeline::ParsePipeline(p->dump(1, ' ', false, Json::error_handler_t::replace), "pipeline");
  } else {
    return SendError(r, 400, "pipeline: expected a pipeline name, an inline definition object, or \"yaml\": TEXT",
                     "pipeline");
  }
  if (!def.ok()) return SendStatus(r, def.status(), y ? "yaml" : "pipeline");
  s.def = std::move(*def);

  std::vector<std::string> paths;
  if (const Json* in = f.Get("inputs")) {
    if (!in->is_array() || in->size() > kMaxInputs) {
      return SendError(r, 400, fmt::format("inputs: expected an array of at most {} paths", kMaxInputs), "inputs");
    }
    for (const Json& v : *in) {
      if (!v.is_string()) return SendError(r, 400, "inputs: expected strings (server-side paths)", "inputs");
      paths.push_back(v.get<std::string>());
    }
  }
  if (auto fail = CheckInputs(paths, cx.roots, &s.inputs)) return SendError(r, fail->status, fail->message, fail->param);

  if (const Json* docs = f.Get("documents")) {
    if (!docs->is_array() || docs->size() > kMaxDocuments) {
      return SendError(r, 400, fmt::format("documents: expected an array of at most {} {{name, text}}", kMaxDocuments),
                       "documents");
    }
    std::set<std::string> names;
    for (size_t i = 0; i < docs->size(); ++i) {
      const Json& d = (*docs)[i];
      const std::string param = fmt::format("documents[{}]", i);
      if (!d.is_object()) return SendError(r, 400, param + ": expected {\"name\", \"text\"}", param);
      Fields df(d, param + ".");
      InlineDocument doc;
      auto name = df.String("name");
      auto text = df.String("text");
      if (!df.ok()) return SendError(r, 400, df.status().message(), df.param());
      for (auto it = d.begin(); it != d.end(); ++it) {
        if (it.key() != "name" && it.key() != "text") {
          return SendError(r, 400, fmt::format("{}: unknown field \"{}\" (name, text)", param, it.key()), param);
        }
      }
      if (!name || !text) return SendError(r, 400, param + ": needs \"name\" and \"text\"", param);
      if (!PlainName(*name, 200)) {
        return SendError(r, 400, param + ".name: a file name (letters, digits, '-', '_', '.'; no path)", param + ".name");
      }
      doc.name = *name;
      if (rag::FormatOfPath(doc.name).empty()) doc.name += ".txt";
      if (!names.insert(doc.name).second) {
        return SendError(r, 400, fmt::format("{}.name: {} is used twice", param, doc.name), param + ".name");
      }
      doc.text = std::move(*text);
      s.documents.push_back(std::move(doc));
    }
  }
  if (s.inputs.empty() && s.documents.empty()) {
    return SendError(r, 400, "nothing to process: give \"documents\" (inline) or \"inputs\" (server-side paths)",
                     "documents");
  }

  // Models: every served model by name and alias, then the request's mapping on top.
  for (const ServedModel& m : cx.service->models()) {
    s.models[m.name] = m.path;
    for (const std::string& a : m.aliases) s.models[a] = m.path;
  }
  if (const Json* models = f.Get("models")) {
    if (!models->is_object()) return SendError(r, 400, "models: expected {tier-or-name: served model}", "models");
    for (auto it = models->begin(); it != models->end(); ++it) {
      const std::string param = "models." + it.key();
      if (it.key().empty() || it.key().size() > 128 || !it.value().is_string()) {
        return SendError(r, 400, param + ": expected a model name (string)", param);
      }
      auto file = ResolveRequestModel(*cx.service, it.value().get<std::string>(), cx.models_dir, cx.config);
      if (!file.ok()) return SendError(r, 400, param + ": " + file.status().message(), param);
      s.models[it.key()] = *file;
    }
  }

  PipelineJobs::SubmitError err;
  auto job = cx.jobs->Submit(std::move(s), &err);
  if (!job.ok()) {
    if (err.conflict) return SendError(r, 409, job.status().message(), "id");
    if (job.status().code() == StatusCode::kNotFound) {  // a stage model that cannot be resolved
      return SendError(r, 400, job.status().message() + " (over HTTP: \"models\": {\"TIER\": \"SERVED-MODEL\"})",
                       "models");
    }
    return SendStatus(r, job.status());
  }
  r.Send(202, "application/json", Dump(*job), {{"Location", (*job)["progress_url"].get<std::string>()}});
}

void JobRoute(const Context& cx, const HttpRequest& req, const std::shared_ptr<Responder>& rp) {
  Responder& r = *rp;
  static const std::string kPrefix = "/v1/pipelines/jobs/";
  const std::string rest = req.path.substr(kPrefix.size());
  const size_t slash = rest.find('/');
  const std::string id = rest.substr(0, slash);
  const std::string sub = slash == std::string::npos ? "" : rest.substr(slash + 1);
  if (id.empty() || (!sub.empty() && sub != "results" && sub != "events") || (!sub.empty() && req.method != "GET")) {
    return SendError(r, 404, fmt::format("no route for {} {}", req.method, req.path));
  }
  if (req.method == "DELETE") {
    // ?purge=true: also remove the documents the job added to the server's document store.
    bool purge = false;
    for (std::string_view q = req.query; !q.empty();) {
      const size_t amp = q.find('&');
      const std::string_view kv = q.substr(0, amp);
      if (kv == "purge=true" || kv == "purge=1" || kv == "purge") purge = true;
      else if (kv.starts_with("purge=") && kv != "purge=false" && kv != "purge=0") {
        return SendError(r, 400, "purge: expected true or false", "purge");
      }
      q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    }
    auto j = cx.jobs->Delete(id, purge);
    if (!j.ok()) return SendStatus(r, j.status());
    return r.Send(200, "application/json", Dump(*j));
  }
  if (sub == "events") {
    Status st = cx.jobs->Stream(id, rp);
    if (!st.ok()) SendStatus(r, st);
    return;
  }
  if (sub == "results") {
    auto lines = cx.jobs->Results(id);
    if (!lines.ok()) return SendStatus(r, lines.status());
    return r.Send(200, "application/x-ndjson", std::move(*lines));
  }
  auto j = cx.jobs->Describe(id);
  if (!j.ok()) return SendStatus(r, j.status());
  r.Send(200, "application/json", Dump(*j));
}

}  // namespace

bool UnderDataRoots(const fs::path& p, const std::vector<fs::path>& roots) {
  return std::any_of(roots.begin(), roots.end(), [&](const fs::path& root) {
    auto [r, _] = std::mismatch(root.begin(), root.end(), p.begin(), p.end());
    return r == root.end();
  });
}

int CheckDataPath(const std::string& path, const std::vector<fs::path>& roots, std::string* out, std::string* why) {
  if (roots.empty()) {
    *why = "server-side files are off on this server (start it with --data-root DIR)";
    return 403;
  }
  if (path.empty() || path.find('\0') != std::string::npos) {
    *why = "expected a path";
    return 400;
  }
  std::error_code ec;
  fs::path p = fs::path(path).is_absolute() ? fs::path(path) : roots[0] / path;
  p = fs::weakly_canonical(p, ec);
  if (ec || !UnderDataRoots(p, roots)) {
    *why = fmt::format("{} is outside the server's data roots", path);
    return 403;
  }
  *out = p.string();
  return 0;
}

Status RegisterPipelineRoutes(Service& service, PipelineJobs& jobs, HttpServer& http, std::string models_dir,
                              const orchestrator::Config* config) {
  auto cx = std::make_shared<Context>();
  cx->service = &service;
  cx->jobs = &jobs;
  cx->models_dir = std::move(models_dir);
  cx->config = config;
  for (const std::string& root : jobs.options().data_roots) {
    std::error_code ec;
    const fs::path c = fs::canonical(root, ec);
    if (ec || !fs::is_directory(c, ec)) {
      return Error(StatusCode::kInvalidArgument, "serve: --data-root {}: not a directory", root);
    }
    cx->roots.push_back(c);
  }
  http.Route("POST", "/v1/pipelines/jobs",
             [cx](const HttpRequest& req, std::shared_ptr<Responder> r) { Submit(*cx, req, *r); });
  http.Route("GET", "/v1/pipelines/jobs", [cx](const HttpRequest&, std::shared_ptr<Responder> r) {
    r->Send(200, "application/json", Dump(cx->jobs->List()));
  });
  for (const char* method : {"GET", "DELETE"}) {
    http.Route(method, "/v1/pipelines/jobs/",
               [cx](const HttpRequest& req, std::shared_ptr<Responder> r) { JobRoute(*cx, req, r); }, /*prefix=*/true);
  }
  http.Route("GET", "/v1/pipelines", [cx](const HttpRequest&, std::shared_ptr<Responder> r) {
    Json data = Json::array();
    for (const auto& p : pipeline::ListPipelines(cx->jobs->options().pipeline_dirs)) {
      Json e{{"name", p.name}, {"description", p.description}};
      if (!p.error.empty()) e["error"] = p.error;
      data.push_back(std::move(e));
    }
    r->Send(200, "application/json", Dump(Json{{"object", "list"}, {"data", std::move(data)}}));
  });
  return Status::Ok();
}

}  // namespace qwenmux::server
