// qwenmux: one binary, subcommands. Argument parsing and wiring only.
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "cli_shape.h"
#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"qwenmux: serve and run the Qwen3 model family locally"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "qwenmux 0.1.0");
  int exit_code = 0;
  // In --help's order: models, running, serving, data (GroupCommands names the headings).
  qwenmux::apps::RegisterPull(app, &exit_code);
  qwenmux::apps::RegisterList(app, &exit_code);
  qwenmux::apps::RegisterRm(app, &exit_code);
  qwenmux::apps::RegisterTag(app, &exit_code);
  qwenmux::apps::RegisterInspect(app, &exit_code);
  qwenmux::apps::RegisterPlan(app, &exit_code);
  qwenmux::apps::RegisterQuantize(app, &exit_code);
  qwenmux::apps::RegisterLora(app, &exit_code);
  qwenmux::apps::RegisterFinetune(app, &exit_code);
  qwenmux::apps::RegisterRun(app, &exit_code);
  qwenmux::apps::RegisterBench(app, &exit_code);
  qwenmux::apps::RegisterRefcheck(app, &exit_code);
  qwenmux::apps::RegisterTokenize(app, &exit_code);
  qwenmux::apps::RegisterRenderChat(app, &exit_code);
  qwenmux::apps::RegisterSynth(app, &exit_code);
  qwenmux::apps::RegisterServe(app, &exit_code);
  qwenmux::apps::RegisterPs(app, &exit_code);
#ifdef QWENMUX_WITH_RAG
  qwenmux::apps::RegisterIngest(app, &exit_code);
  qwenmux::apps::RegisterCollection(app, &exit_code);
  qwenmux::apps::RegisterAsk(app, &exit_code);
  qwenmux::apps::RegisterEval(app, &exit_code);
  qwenmux::apps::RegisterPipeline(app, &exit_code);
#endif
  qwenmux::apps::OneValuePerOption(app);
  qwenmux::apps::GroupCommands(app);
  if (argc > 1) {
    if (const std::string m = qwenmux::apps::UnknownCommandMessage(app, argv[1]); !m.empty()) {
      std::fprintf(stderr, "%s\n", m.c_str());
      return 2;
    }
  }
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
