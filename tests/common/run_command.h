// Runs a shell command from a test and captures its standard output and exit code (the one
// popen/read/pclose loop of the CLI tests). Redirect stderr in the command as the test needs.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "common/paths.h"

namespace qwenmux::testing {

struct CommandResult {
  int code = -1;    // exit status; -1 if the shell could not run or the command was killed
  std::string out;  // stdout
};

inline CommandResult RunCommand(const std::string& command) {
  CommandResult r;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// The qwenmux binary under test with `args`; stderr merged into out or dropped.
inline CommandResult RunQwenmux(const std::string& args, bool merge_stderr = false) {
  return RunCommand(QwenmuxBinary() + " " + args + (merge_stderr ? " 2>&1" : " 2>/dev/null"));
}

}  // namespace qwenmux::testing
