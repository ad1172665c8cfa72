// `qwenmux run MODEL` without -p: an interactive chat on stdin/stdout (run_chat.cc).
#pragma once

#include <string>

#include "engine/engine.h"

namespace qwenmux::apps {

struct ChatLoopOptions {
  std::string system;    // system message ("" = none)
  bool thinking = true;  // Qwen3's default; /think and /no_think switch it
};

// Reads one user message per line and streams each answer, keeping the history. Commands:
// /bye (or Ctrl-D: end of input) leaves, /think and /no_think switch thinking, /clear forgets
// the history, /? lists them. Ctrl-C (SIGINT) stops the answer being generated, not the
// program; the partial answer stays in the history. ">>> " prompts only when stdin is a
// terminal. Returns the exit code (0, or 1 on an engine error).
int RunChatLoop(engine::Model& m, engine::GenerateOptions gen, const ChatLoopOptions& o);

}  // namespace qwenmux::apps
