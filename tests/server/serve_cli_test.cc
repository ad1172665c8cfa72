// `qwenmux serve --help` shows the defaults of the option structs the server runs with (declared
// once, in server::AppOptions and the structs it holds), not numbers typed into the help text.
#include <sstream>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "common/run_command.h"
#include "server/app.h"

namespace qwenmux::server {
namespace {

// The help line of `flag` ("--ctx"), or "" when there is none.
std::string HelpLine(const std::string& help, const std::string& flag) {
  std::istringstream in(help);
  std::string line;
  while (std::getline(in, line)) {
    const size_t at = line.find(flag);
    if (at == std::string::npos) continue;
    const size_t end = at + flag.size();
    if (end == line.size() || line[end] == ' ' || line[end] == ',') return line;
  }
  return "";
}

TEST(ServeCli, HelpShowsTheStructDefaults) {
  const qwenmux::testing::CommandResult r = qwenmux::testing::RunQwenmux("serve --help");
  ASSERT_EQ(r.code, 0) << r.out;
  const AppOptions o;
  const std::pair<std::string, std::string> want[] = {
      {"--ctx", std::to_string(o.models.n_ctx)},
      {"--parallel", std::to_string(o.models.parallel)},
      {"--threads", std::to_string(o.models.threads)},
      {"--max-queue", std::to_string(o.scheduler.max_queue)},
      {"--port", std::to_string(o.http.port)},
      {"--host", o.http.host},
      {"--max-connections", std::to_string(o.http.limits.max_connections)},
      {"--io-threads", std::to_string(o.http.io_threads)},
      {"--max-tokens", std::to_string(o.limits.max_tokens)},
      {"--max-jobs", std::to_string(o.jobs.max_running)},
      {"--keep-jobs", std::to_string(o.jobs.keep_finished)},
      {"--rag-max-concurrent", std::to_string(o.rag.max_concurrent)},
      {"--shutdown-grace-ms", std::to_string(o.shutdown_grace.count())},
      {"--max-body", std::to_string(o.http.limits.max_body_bytes >> 20) + "MiB"},
  };
  for (const auto& [flag, value] : want) {
    const std::string line = HelpLine(r.out, flag);
    ASSERT_FALSE(line.empty()) << flag << " missing from:\n" << r.out;
    // CLI11 prints "--ctx INT=4096  description".
    const std::string shown = "=" + value;
    const size_t at = line.find(shown);
    ASSERT_NE(at, std::string::npos) << flag << ": " << line;
    const size_t end = at + shown.size();
    EXPECT_TRUE(end == line.size() || line[end] == ' ') << flag << ": " << line;
  }
  // The defaults that ModelFlagOptions declares are the ones RAG and the structs below use.
  EXPECT_EQ(RagApiOptions{}.n_ctx, o.models.n_ctx);
}

}  // namespace
}  // namespace qwenmux::server
