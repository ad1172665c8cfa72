// The model store commands:
//   qwenmux pull NAME            NAME: catalog name (qwen3:8b-q8_0), tier (qwen3-fast) or hf:OWNER/REPO/FILE
//   qwenmux list [--json] [--catalog]
//   qwenmux rm NAME              a model (and its blob) or one alias
//   qwenmux tag NAME ALIAS
// All take --models-dir DIR (default $QWENMUX_HOME/models, else ~/.qwenmux/models).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "model_ref_flag.h"
#include "orchestrator/catalog/catalog.h"
#include "orchestrator/config/units.h"
#include "orchestrator/store/model_store.h"
#include "orchestrator/store/pull.h"

namespace qwenmux::apps {

namespace {

using namespace qwenmux::orchestrator;

Result<ModelStore> OpenStore(const std::string& flag, bool verbose) {
  std::string why = "--models-dir";
  std::string dir = flag.empty() ? DefaultModelsDir(&why) : flag;
  if (verbose) std::fprintf(stderr, "models dir: %s (%s)\n", dir.c_str(), why.c_str());
  return ModelStore::Open(dir);
}

int Fail(const char* cmd, const Status& s) {
  std::fprintf(stderr, "qwenmux %s: %s\n", cmd, s.ToString().c_str());
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kNotFound:
    case StatusCode::kUnsupported: return 2;
    default: return 1;
  }
}

// "[#########.........]  42.0%  3.1 GiB / 7.5 GiB  85.2 MiB/s" on one redrawn stderr line.
std::function<void(uint64_t, uint64_t)> ProgressBar() {
  if (!isatty(fileno(stderr))) return {};
  using Clock = std::chrono::steady_clock;
  struct State {
    Clock::time_point start = Clock::now(), last{};
    uint64_t first = UINT64_MAX;
  };
  auto st = std::make_shared<State>();
  return [st](uint64_t done, uint64_t total) {
    auto now = Clock::now();
    if (st->first == UINT64_MAX) st->first = done;
    if (done != total && now - st->last < std::chrono::milliseconds(200)) return;
    st->last = now;
    double frac = total ? static_cast<double>(done) / static_cast<double>(total) : 0;
    int filled = static_cast<int>(frac * 30);
    double secs = std::chrono::duration<double>(now - st->start).count();
    double rate = secs > 0 ? static_cast<double>(done - st->first) / secs : 0;
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(30, '.');
    std::fprintf(stderr, "\r[%s] %5.1f%%  %s / %s  %s/s   ", bar.c_str(), frac * 100,
                 FormatSize(done).c_str(), FormatSize(total).c_str(),
                 FormatSize(static_cast<uint64_t>(rate)).c_str());
    if (done == total) std::fprintf(stderr, "\n");
  };
}

}  // namespace

void RegisterPull(CLI::App& app, int* exit_code) {
  struct Args {
    std::string name, dir;
    std::string hub = "https://huggingface.co";
    long stall = 60;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("pull", "Download a model into the store (resumable, SHA-256 verified)");
  cmd->add_option("name", a->name, "Catalog name (qwen3:8b-q8_0), tier (qwen3-fast) or hf:OWNER/REPO/FILE.gguf")
      ->required();
  AddModelsDirFlag(cmd, &a->dir);
  cmd->add_option("--hub-url", a->hub, "Hugging Face hub base URL")->capture_default_str();
  cmd->add_option("--stall-timeout", a->stall, "Abort when under 1 KiB/s for this many seconds")->capture_default_str();
  cmd->callback([a, exit_code] {
    auto store = OpenStore(a->dir, true);
    if (!store.ok()) { *exit_code = Fail("pull", store.status()); return; }
    HubOptions opt;
    opt.base_url = a->hub;
    opt.stall_timeout_s = a->stall;
    opt.on_progress = ProgressBar();
    auto r = Pull(*store, a->name, opt);
    if (!r.ok()) { *exit_code = Fail("pull", r.status()); return; }
    const StoredModel& m = r->model;
    if (r->already_present) {
      std::printf("%s is up to date (sha256 %s, %s)\n", m.name.c_str(), m.sha256.substr(0, 12).c_str(),
                  FormatSize(m.size).c_str());
    } else {
      std::printf("pulled %s (sha256 %s, %s%s)\n", m.name.c_str(), m.sha256.substr(0, 12).c_str(),
                  FormatSize(m.size).c_str(),
                  r->stats.resumed_from ? (", resumed at " + FormatSize(r->stats.resumed_from)).c_str() : "");
    }
  });
}

void RegisterList(CLI::App& app, int* exit_code) {
  struct Args {
    std::string dir;
    bool json = false, catalog = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("list", "List the models in the store (or the built-in catalog)");
  AddModelsDirFlag(cmd, &a->dir);
  cmd->add_flag("--json", a->json, "JSON output");
  cmd->add_flag("--catalog", a->catalog, "List the built-in Qwen3 catalog instead of the store");
  cmd->callback([a, exit_code] {
    if (a->catalog) {
      nlohmann::json arr = nlohmann::json::array();
      auto params_of = [](const CatalogEntry& e) {
        auto p = e.params();
        std::string params = fmt::format("{:.2f}B", p.total / 1e9);
        if (p.active != p.total) params += fmt::format("/{:.1f}B", p.active / 1e9);
        return params;
      };
      // Column widths from the widest cell ("30.53B/3.3B", long names stay aligned).
      int wn = 4, wp = 6;
      for (const CatalogEntry& e : Catalog()) {
        wn = std::max(wn, static_cast<int>(e.name.size()));
        wp = std::max(wp, static_cast<int>(params_of(e).size()));
      }
      if (!a->json)
        std::printf("%-*s %-9s %-*s %8s %8s  %s\n", wn, "NAME", "ROLE", wp, "PARAMS", "CONTEXT", "YARN", "SOURCE");
      for (const CatalogEntry& e : Catalog()) {
        auto p = e.params();
        const std::string params = params_of(e);
        std::string src = e.hf_repo.empty() ? "(no known GGUF)" : e.hf_ref() + (e.file_name_verified ? "" : " (unverified)");
        if (a->json) {
          arr.push_back({{"name", e.name}, {"role", ModelRoleName(e.role)}, {"quantization", e.quantization},
                         {"params_total", p.total}, {"params_active", p.active},
                         {"context_length", e.context_length}, {"yarn_context_length", e.yarn_context_length},
                         {"hf_repo", e.hf_repo}, {"hf_file", e.hf_file}, {"verified", e.file_name_verified}});
        } else {
          std::printf("%-*s %-9s %-*s %8u %8u  %s\n", wn, e.name.c_str(), ModelRoleName(e.role), wp, params.c_str(),
                      e.context_length, e.yarn_context_length, src.c_str());
        }
      }
      if (a->json) {
        nlohmann::json tiers = nlohmann::json::object();
        for (const Tier& t : DefaultTiers()) tiers[t.name] = t.target;
        std::printf("%s\n", nlohmann::json{{"models", arr}, {"tiers", tiers}}.dump(2).c_str());
      } else {
        for (const Tier& t : DefaultTiers()) std::printf("tier %-15s -> %s\n", t.name, t.target);
      }
      return;
    }
    auto store = OpenStore(a->dir, false);
    if (!store.ok()) { *exit_code = Fail("list", store.status()); return; }
    auto models = store->List();
    if (!models.ok()) { *exit_code = Fail("list", models.status()); return; }
    // An entry whose blob is not a usable GGUF file (stored before pull checked, or damaged since)
    // is left out with a warning; `serve` skips it the same way.
    std::erase_if(*models, [&](const StoredModel& m) {
      Status s = CheckGgufFile(store->BlobPath(m.sha256));
      if (s.ok()) return false;
      std::fprintf(stderr, "qwenmux list: warning: skipping %s: %s (remove it with `qwenmux rm %s`)\n",
                   m.name.c_str(), s.ToString().c_str(), m.name.c_str());
      return true;
    });
    if (a->json) {
      nlohmann::json arr = nlohmann::json::array();
      for (const StoredModel& m : *models)
        arr.push_back({{"name", m.name}, {"aliases", m.aliases}, {"sha256", m.sha256}, {"size", m.size},
                       {"quantization", m.quantization}, {"role", m.role}, {"source", m.source},
                       {"path", store->BlobPath(m.sha256)}, {"added", m.added_unix}});
      std::printf("%s\n", nlohmann::json{{"models_dir", store->dir()}, {"models", arr}}.dump(2).c_str());
      return;
    }
    int wn = 4;
    for (const StoredModel& m : *models) wn = std::max(wn, static_cast<int>(m.name.size()));
    std::printf("%-*s %10s  %-7s %-12s  %s\n", wn, "NAME", "SIZE", "QUANT", "SHA256", "ALIASES");
    for (const StoredModel& m : *models) {
      std::string aliases;
      for (const std::string& al : m.aliases) aliases += (aliases.empty() ? "" : ", ") + al;
      std::printf("%-*s %10s  %-7s %-12s  %s\n", wn, m.name.c_str(), FormatSize(m.size).c_str(),
                  m.quantization.empty() ? "?" : m.quantization.c_str(), m.sha256.substr(0, 12).c_str(),
                  aliases.c_str());
    }
  });
}

void RegisterRm(CLI::App& app, int* exit_code) {
  struct Args { std::string name, dir; };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("rm", "Remove a model (and its file) or one alias from the store");
  cmd->add_option("name", a->name, "Model name or alias")->required();
  AddModelsDirFlag(cmd, &a->dir);
  cmd->callback([a, exit_code] {
    auto store = OpenStore(a->dir, false);
    if (!store.ok()) { *exit_code = Fail("rm", store.status()); return; }
    std::string what;
    Status s = store->Remove(a->name, &what);
    if (!s.ok()) { *exit_code = Fail("rm", s); return; }
    std::printf("%s\n", what.c_str());
  });
}

void RegisterTag(CLI::App& app, int* exit_code) {
  struct Args { std::string name, alias, dir; };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("tag", "Give a stored model another name (e.g. qwen3-fast)");
  cmd->add_option("name", a->name, "Model name or alias")->required();
  cmd->add_option("alias", a->alias, "New alias")->required();
  AddModelsDirFlag(cmd, &a->dir);
  cmd->callback([a, exit_code] {
    auto store = OpenStore(a->dir, false);
    if (!store.ok()) { *exit_code = Fail("tag", store.status()); return; }
    Status s = store->Tag(a->name, a->alias);
    if (!s.ok()) { *exit_code = Fail("tag", s); return; }
    std::printf("%s -> %s\n", a->alias.c_str(), a->name.c_str());
  });
}

}  // namespace qwenmux::apps
