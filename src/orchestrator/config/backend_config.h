// Other engines as routed backends (issue 18): `backends:` in qwenmux.yaml and
// `serve --backend NAME=URL[,dialect]`. A backend is another server (Ollama, LM Studio,
// llama-server, vLLM, another qwenmux) whose models qwenmux lists and proxies as "NAME/MODEL".
// Backend URLs come only from here (configuration), never from a request.
//
// qwenmux.yaml:
//   backends:
//     - name: lms                      # letters, digits, '-', '_', '.'
//       url: http://127.0.0.1:1234     # http:// or https://, host and optional port (and path prefix)
//       dialect: openai                # openai (GET /v1/models, /v1/chat/completions) or ollama (/api/*)
//       api_key_env: LMS_API_KEY       # optional: Authorization: Bearer $LMS_API_KEY
//       models: all                    # or a list of the backend's model names
//       timeout: 60s                   # longest wait for the backend's next byte
//       tier: qwen3-fast               # optional: its models are router candidates of this tier for
//                                      # `auto` and the tier names (and fail over to a local model of it)
//       role: chat                     # chat (default) or embedding: the requests its models serve
//       max_concurrent: 8              # requests at once; more: it counts as saturated (0: no limit)
//
// Thread-safety: plain data and pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "orchestrator/config/units.h"

namespace qwenmux::orchestrator {

enum class BackendDialect { kOpenAi, kOllama };
const char* BackendDialectName(BackendDialect d);
Result<BackendDialect> ParseBackendDialect(std::string_view text);

struct BackendConfig {
  std::string name;
  BackendDialect dialect = BackendDialect::kOpenAi;
  std::string url;                  // "http://host:port[/prefix]", no trailing '/'
  std::string api_key_env;          // "" = no key
  std::vector<std::string> models;  // empty = every model the backend lists
  Duration timeout = Duration::Millis(60000);  // no byte from the backend for this long: 504
  std::string tier;                 // "" = not a router candidate; else a tier name (router.h)
  std::string role = "chat";        // "chat" or "embedding" (catalog.h ModelRole names)
  int max_concurrent = 8;           // 0 = no limit
  int line = 0;
};

// A backend name: letters, digits, '-', '_', '.'; no '/' or ':' (requests say NAME/MODEL).
Status CheckBackendName(std::string_view name);
// An http:// or https:// URL with a host (optional port and path; no query, fragment or
// user info). Returns it without trailing '/'.
Result<std::string> NormalizeBackendUrl(std::string_view url);
// `--backend NAME=URL[,openai|ollama]` (dialect default: openai).
Result<BackendConfig> ParseBackendFlag(std::string_view flag);
// No two backends of one name.
Status CheckBackendList(const std::vector<BackendConfig>& backends);
// The backend a model reference "NAME/MODEL" names (NAME one of `backends`); null if none.
const BackendConfig* BackendOfModel(const std::vector<BackendConfig>& backends, std::string_view ref);

}  // namespace qwenmux::orchestrator
