// Subcommand registration. Each subcommand lives in its own file and registers itself here;
// main.cc only wires them up. A command's callback stores its exit code in *exit_code.
#pragma once

#include <cstdio>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "base/status.h"

namespace qwenmux::apps {

// Prints "error: MESSAGE" to stderr and returns the exit code 1.
inline int ReportError(const Status& s) {
  fmt::print(stderr, "error: {}\n", s.ToString());
  return 1;
}

void RegisterInspect(CLI::App& app, int* exit_code);  // inspect.cc
void RegisterRefcheck(CLI::App& app, int* exit_code);  // refcheck.cc
void RegisterRun(CLI::App& app, int* exit_code);  // run.cc
void RegisterBench(CLI::App& app, int* exit_code);  // bench.cc
void RegisterRenderChat(CLI::App& app, int* exit_code);  // render_chat.cc
void RegisterTokenize(CLI::App& app, int* exit_code);  // tokenize.cc
void RegisterQuantize(CLI::App& app, int* exit_code);  // quantize.cc
void RegisterSynth(CLI::App& app, int* exit_code);  // synth.cc
void RegisterPull(CLI::App& app, int* exit_code);  // models.cc
void RegisterList(CLI::App& app, int* exit_code);  // models.cc
void RegisterRm(CLI::App& app, int* exit_code);  // models.cc
void RegisterTag(CLI::App& app, int* exit_code);  // models.cc
void RegisterServe(CLI::App& app, int* exit_code);  // serve.cc
void RegisterPs(CLI::App& app, int* exit_code);  // ps.cc
void RegisterPlan(CLI::App& app, int* exit_code);  // plan.cc
void RegisterLora(CLI::App& app, int* exit_code);  // lora.cc
void RegisterFinetune(CLI::App& app, int* exit_code);  // finetune.cc
#ifdef QWENMUX_WITH_RAG
void RegisterIngest(CLI::App& app, int* exit_code);  // ingest.cc
void RegisterPipeline(CLI::App& app, int* exit_code);  // pipeline.cc
void RegisterCollection(CLI::App& app, int* exit_code);  // collection.cc
void RegisterAsk(CLI::App& app, int* exit_code);  // ask.cc
void RegisterEval(CLI::App& app, int* exit_code);  // eval.cc
#endif

}  // namespace qwenmux::apps
