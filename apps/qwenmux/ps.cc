// qwenmux ps [--host H] [--port P] [--api-key K] [--json]
// What a running server has loaded: memory, keep-alive left, in use (GET /api/ps).
#include <curl/curl.h>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "orchestrator/config/units.h"

namespace qwenmux::apps {

namespace {

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

Result<std::string> HttpGet(const std::string& url, const std::string& api_key) {
  CURL* curl = curl_easy_init();
  if (!curl) return Error(StatusCode::kInternal, "ps: curl_easy_init failed");
  std::string body;
  curl_slist* headers = nullptr;
  if (!api_key.empty()) headers = curl_slist_append(headers, ("Authorization: Bearer " + api_key).c_str());
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  if (headers) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  const CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    return Error(StatusCode::kIo, "ps: cannot reach {}: {} (is `qwenmux serve` running?)", url, curl_easy_strerror(rc));
  }
  if (status != 200) return Error(StatusCode::kIo, "ps: {} answered HTTP {}: {}", url, status, body);
  return body;
}

std::string Left(const nlohmann::json& q) {
  if (q.value("loading", false)) return "loading";
  if (q.value("in_use", 0) > 0) return fmt::format("in use ({})", q.value("in_use", 0));
  // A LoRA adapter (its row says "<base>:<adapter>"): resident with its base, evicted by LRU.
  if (q.value("adapter", false)) return fmt::format("with {}", q.value("base", ""));
  if (q.value("pinned", false)) return "pinned";
  const auto it = q.find("keep_alive_left_seconds");
  if (it != q.end() && it->is_number()) {
    const auto& left = *it;
    const int64_t s = static_cast<int64_t>(left.get<double>());
    return s >= 60 ? fmt::format("{}m{:02}s", s / 60, s % 60) : fmt::format("{}s", s);
  }
  return "forever";
}

int Ps(const std::string& host, int port, const std::string& key, bool json) {
  const std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  auto body = HttpGet(fmt::format("http://{}:{}/api/ps", h, port), key);
  if (!body.ok()) return ReportError(body.status());
  if (json) {
    fmt::print("{}\n", *body);
    return 0;
  }
  const auto j = nlohmann::json::parse(*body, nullptr, false);
  if (j.is_discarded() || !j.contains("models")) return ReportError(Status(StatusCode::kCorrupt, "ps: unexpected answer"));
  fmt::print("{:<32} {:>10} {:>10} {:<6} {:<16} {}\n", "NAME", "MEMORY", "VRAM", "DEVICE", "KEEP-ALIVE LEFT", "FILE");
  for (const auto& m : j["models"]) {
    const auto q = m.value("qwenmux", nlohmann::json::object());
    fmt::print("{:<32} {:>10} {:>10} {:<6} {:<16} {}\n", m.value("name", ""),
               orchestrator::FormatSize(m.value("size", uint64_t{0})), orchestrator::FormatSize(m.value("size_vram", uint64_t{0})),
               q.value("device", "cpu"), Left(q), q.value("file", ""));
  }
  if (j.contains("memory")) {
    fmt::print("memory: {} in use of {} budget\n", orchestrator::FormatSize(j["memory"].value("in_use_bytes", uint64_t{0})),
               orchestrator::FormatSize(j["memory"].value("budget_bytes", uint64_t{0})));
    const auto& mem = j["memory"];
    if (mem.value("gpu_budget_bytes", uint64_t{0}) > 0) {
      fmt::print("gpu memory: {} in use of {} budget ({})\n", orchestrator::FormatSize(mem.value("gpu_in_use_bytes", uint64_t{0})),
                 orchestrator::FormatSize(mem.value("gpu_budget_bytes", uint64_t{0})), mem.value("gpu", ""));
    }
  }
  if (j.contains("backends") && j["backends"].is_array() && !j["backends"].empty()) {  // other engines (issue 18)
    fmt::print("\n{:<16} {:<12} {:<8} {:>8} {:>7} {:>9} {:>10} {}\n", "BACKEND", "STATE", "DIALECT", "REQUESTS", "ERRORS",
               "TTFT", "TOK/S", "URL");
    for (const auto& b : j["backends"]) {
      auto num = [&](const char* k, const char* unit) {
        return b.contains(k) && b[k].is_number() ? fmt::format("{:.1f}{}", b[k].get<double>(), unit) : std::string("-");
      };
      fmt::print("{:<16} {:<12} {:<8} {:>8} {:>7} {:>9} {:>10} {}\n", b.value("name", ""), b.value("state", ""),
                 b.value("dialect", ""), b.value("requests", int64_t{0}), b.value("errors", int64_t{0}), num("ttft_ms", "ms"),
                 num("tokens_per_second", ""), b.value("url", ""));
      for (const auto& m : b.value("models", nlohmann::json::array())) fmt::print("  {}\n", m.get<std::string>());
    }
  }
  return 0;
}

}  // namespace

void RegisterPs(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("ps", "Show the models a running server has loaded (memory, keep-alive left)");
  auto host = std::make_shared<std::string>("127.0.0.1");
  auto port = std::make_shared<int>(11434);
  auto key = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  cmd->add_option("--host", *host, "server address (default 127.0.0.1)");
  cmd->add_option("--port,-p", *port, "server port (default 11434)");
  cmd->add_option("--api-key", *key, "API key, if the server needs one")->envname("QWENMUX_API_KEY");
  cmd->add_flag("--json", *json, "print the server's JSON answer");
  cmd->callback([=] { *exit_code = Ps(*host, *port, *key, *json); });
}

}  // namespace qwenmux::apps
