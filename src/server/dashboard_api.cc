// The dashboard's routes (dashboard.h): the page and its assets (web/, embedded at build time,
// dashboard_assets.h) and its JSON endpoints. The HTTP layer applies the host check, CORS and the
// API key to every one of them; only the static assets are open paths (they hold no data: the
// page asks for the key and sends it with every data request).
//
//   GET /                            the page (a client that does not accept text/html, e.g. a
//                                    liveness probe, gets "qwenmux is running" as before)
//   GET /dashboard/app.js, app.css   its script and style
//   GET /dashboard/api/overview      models (configured, loaded, loading, memory, keep-alive,
//                                    pinned, adapters), backends, memory against the budget
//   GET /dashboard/api/kpis?since=MS the KPI ring buffer's samples newer than MS (unix ms)
//   GET /dashboard/api/routing?limit=N  the most recent routing decisions, newest first
//   GET /dashboard/api/collections   the RAG store's collections with their stats
#include <charconv>
#include <chrono>
#include <filesystem>

#include "rag/store.h"
#include "server/dashboard.h"
#include "server/dashboard_assets.h"
#include "server/generation.h"
#include "server/rag_api.h"
#include "server/service.h"
#include "server/upstream.h"

namespace qwenmux::server {

namespace {

// The integer value of `key` in a query string ("since=123&limit=5"); none when absent.
Result<std::optional<int64_t>> QueryInt(const std::string& query, const std::string& key, int64_t lo, int64_t hi) {
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string::npos) amp = query.size();
    const std::string_view part(query.data() + pos, amp - pos);
    if (part.starts_with(key + "=")) {
      const std::string_view v = part.substr(key.size() + 1);
      int64_t out = 0;
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
      if (ec != std::errc() || p != v.data() + v.size() || out < lo || out > hi) {
        return Error(StatusCode::kInvalidArgument, "dashboard: query parameter {}={}: must be an integer between {} and {}",
                     key, std::string(v), lo, hi);
      }
      return std::optional<int64_t>(out);
    }
    pos = amp + 1;
  }
  return std::optional<int64_t>();
}

void SendJson(Responder& r, const Json& j) {
  r.Send(200, "application/json", Dump(j), {{"Cache-Control", "no-store"}});
}

void SendBad(Responder& r, const Status& s) {
  SendApiError(r, ErrorFromStatus(s));
}

Json Overview(Service& s, const Dashboard& d) {
  orchestrator::ModelManager& mgr = s.manager();
  std::map<std::string, orchestrator::LoadedModelInfo> loaded;
  for (orchestrator::LoadedModelInfo& info : mgr.Snapshot()) loaded.emplace(info.name, std::move(info));
  std::map<std::string, orchestrator::QueueInfo> queues;
  for (const orchestrator::QueueInfo& q : s.scheduler().Queues()) queues.emplace(q.model, q);
  Json models = Json::array();
  for (const ServedModel& m : s.models()) {
    Json e{{"name", m.name},
           {"role", orchestrator::ModelRoleName(m.role)},
           {"aliases", m.aliases},
           {"file", std::filesystem::path(m.path).filename().string()},
           {"file_bytes", m.file_bytes},
           {"parameter_size", m.parameter_size},
           {"quantization", m.quantization},
           {"n_ctx", m.n_ctx},
           {"pinned", d.pinned().contains(m.name)}};
    auto it = loaded.find(m.name);
    std::set<std::string> loaded_adapters;
    if (it == loaded.end()) {
      e["state"] = "unloaded";
      e["ram_bytes"] = 0;
      e["vram_bytes"] = 0;
      e["device"] = nullptr;
      e["in_use"] = 0;
      e["keep_alive_left_s"] = nullptr;
    } else {
      const orchestrator::LoadedModelInfo& info = it->second;
      e["state"] = info.loading ? "loading" : "loaded";
      e["ram_bytes"] = info.bytes;
      e["vram_bytes"] = info.vram_bytes;
      e["device"] = runtime::DeviceName(info.device);
      e["placement"] = info.placement;
      e["in_use"] = info.in_use;
      e["keep_alive_left_s"] =
          info.keep_alive_left ? Json(std::chrono::duration<double>(*info.keep_alive_left).count()) : Json(nullptr);
      e["keep_forever"] = !info.keep_alive_left && (info.pinned || info.in_use == 0);
      for (const auto& a : info.adapters) loaded_adapters.insert(a.name);
    }
    Json adapters = Json::array();
    for (const auto& a : s.adapters()) {
      if (a->base != m.name) continue;
      adapters.push_back(Json{{"name", a->full_name()}, {"scale", a->scale}, {"file_bytes", a->file_bytes},
                              {"loaded", loaded_adapters.contains(a->name)}});
    }
    e["adapters"] = std::move(adapters);
    auto q = queues.find(m.name);
    e["queue_waiting"] = q == queues.end() ? 0 : q->second.waiting;
    e["queue_running"] = q == queues.end() ? 0 : q->second.running;
    models.push_back(std::move(e));
  }
  Json backends = Json::array();
  if (s.upstreams()) {
    for (const Upstreams::Listed& l : s.upstreams()->Models()) {
      backends.push_back(Json{{"name", l.full_name()}, {"backend", l.backend}, {"model", l.model}, {"healthy", l.healthy}});
    }
  }
  const uint64_t in_use = mgr.in_use_bytes(), budget = mgr.EffectiveBudget();
  const auto uptime = std::chrono::system_clock::now() - s.started();
  return Json{{"version", s.version()},
              {"ready", s.ready()},
              {"uptime_s", std::chrono::duration<double>(uptime).count()},
              {"memory", {{"in_use_bytes", in_use},
                          {"budget_bytes", budget},
                          {"utilization", budget ? Json(static_cast<double>(in_use) / budget) : Json(nullptr)},
                          {"gpu_in_use_bytes", mgr.gpu_in_use_bytes()},
                          {"gpu_budget_bytes", mgr.gpu_budget_bytes()},
                          {"gpu", mgr.gpu().available ? mgr.gpu().name : ""},
                          {"line", d.options().memory_line}}},
              {"models", std::move(models)},
              {"backends", std::move(backends)},
              {"rag", s.rag() != nullptr}};
}

Json Collections(Service& s) {
  Json out = Json::array();
  if (!s.rag()) return Json{{"collections", out}};
  const std::string dir = s.rag()->store_dir();
  std::error_code ec;
  if (dir.empty() || !std::filesystem::exists(dir, ec)) return Json{{"collections", out}, {"store", "none"}};
  auto store = rag::Store::OpenReadOnly(dir);
  if (!store.ok()) return Json{{"collections", out}, {"error", store.status().message()}};
  auto list = (*store)->ListCollections();
  if (!list.ok()) return Json{{"collections", out}, {"error", list.status().message()}};
  for (const rag::CollectionInfo& c : *list) {
    Json e{{"name", c.name}, {"embed_model", c.embed_model}, {"dim", c.dim}, {"created_at", c.created_at}};
    if (auto st = (*store)->Stats(c.name); st.ok()) {
      e["documents"] = st->documents;
      e["chunks"] = st->chunks;
      e["tokens"] = st->tokens;
      e["bytes"] = st->bytes;
    }
    out.push_back(std::move(e));
  }
  return Json{{"collections", out}};
}

void SendAsset(Responder& r, const DashboardAsset& a) {
  r.Send(200, a.content_type, std::string(reinterpret_cast<const char*>(a.data), a.size),
         {{"Cache-Control", "no-cache"},
          {"X-Content-Type-Options", "nosniff"},
          {"X-Frame-Options", "DENY"},
          // Everything comes from this server: no other origin is reached.
          {"Content-Security-Policy",
           "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
           "frame-ancestors 'none'"}});
}

}  // namespace

const DashboardAsset* FindDashboardAsset(const std::string& name) {
  size_t n = 0;
  const DashboardAsset* all = DashboardAssets(&n);
  for (size_t i = 0; i < n; ++i) {
    if (name == all[i].name) return &all[i];
  }
  return nullptr;
}

std::vector<std::string> DashboardOpenPaths() { return {"/", "/dashboard/app.js", "/dashboard/app.css"}; }

void RegisterDashboardRoutes(Service& service, Dashboard& dashboard, HttpServer& http) {
  Service* s = &service;
  Dashboard* d = &dashboard;
  http.Route("GET", "/", [](const HttpRequest& q, std::shared_ptr<Responder> r) {
    const DashboardAsset* page = FindDashboardAsset("index.html");
    if (!page || q.Header("accept").find("text/html") == std::string::npos) {
      return r->Send(200, "text/plain; charset=utf-8", "qwenmux is running\n");
    }
    SendAsset(*r, *page);
  });
  for (const char* name : {"app.js", "app.css"}) {
    http.Route("GET", std::string("/dashboard/") + name, [name](const HttpRequest&, std::shared_ptr<Responder> r) {
      const DashboardAsset* a = FindDashboardAsset(name);
      if (!a) return SendApiError(*r, ApiError{404, std::string("dashboard asset ") + name + " is not built in", "", 0});
      SendAsset(*r, *a);
    });
  }
  http.Route("GET", "/dashboard/api/overview", [s, d](const HttpRequest&, std::shared_ptr<Responder> r) {
    SendJson(*r, Overview(*s, *d));
  });
  http.Route("GET", "/dashboard/api/kpis", [d](const HttpRequest& q, std::shared_ptr<Responder> r) {
    auto since = QueryInt(q.query, "since", 0, INT64_MAX);
    if (!since.ok()) return SendBad(*r, since.status());
    SendJson(*r, d->SamplesJson(since->value_or(0)));
  });
  http.Route("GET", "/dashboard/api/routing", [d](const HttpRequest& q, std::shared_ptr<Responder> r) {
    auto limit = QueryInt(q.query, "limit", 1, 100000);
    if (!limit.ok()) return SendBad(*r, limit.status());
    SendJson(*r, d->RoutingJson(static_cast<size_t>(limit->value_or(50))));
  });
  http.Route("GET", "/dashboard/api/collections", [s](const HttpRequest&, std::shared_ptr<Responder> r) {
    SendJson(*r, Collections(*s));
  });
}

}  // namespace qwenmux::server
