// `--backend NAME=URL[,openai|ollama]` and the `backends:` of `--config qwenmux.yaml` for the
// commands that run one request themselves (`run`, `ask`; issue 18): a model "NAME/MODEL" of
// one of them runs on that backend through server::Upstreams::Call, as the server's pipeline and
// RAG stages do. No discovery thread: Call asks the backend directly (it checks the model only
// once a list is known).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "orchestrator/config/backend_config.h"
#include "orchestrator/config/config.h"
#include "rag/backend_model.h"
#include "server/upstream.h"

namespace qwenmux::apps {

struct BackendFlags {
  std::vector<std::string> flags;  // --backend, repeatable

  void Add(CLI::App* cmd) {
    cmd->add_option("--backend", flags,
                    "another engine's server as a backend: NAME=URL[,openai|ollama] (repeatable); a model NAME/MODEL "
                    "runs on it");
  }

  // The backends of `config` (may be null) and the flags; none: an empty BackendAccess.
  Status Open(const orchestrator::Config* config) {
    std::vector<orchestrator::BackendConfig> all;
    if (config) all = config->backends;
    for (const std::string& f : flags) {
      QM_ASSIGN_OR_RETURN(orchestrator::BackendConfig b, orchestrator::ParseBackendFlag(f));
      all.push_back(std::move(b));
    }
    if (all.empty()) return Status::Ok();
    QM_RETURN_IF_ERROR(orchestrator::CheckBackendList(all).WithContext("--backend"));
    upstreams = std::make_shared<server::Upstreams>(std::move(all), server::UpstreamOptions{}, [](const std::string&) {});
    access = server::BackendAccessOf(upstreams.get());
    return Status::Ok();
  }

  std::shared_ptr<server::Upstreams> upstreams;  // shared: the flags struct is copied into the command
  rag::BackendAccess access;
};

}  // namespace qwenmux::apps
