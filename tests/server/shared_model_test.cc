// One model instance per file: `qwenmux serve` serving a file as chat model "tiny" and as every
// RAG stage loads it once. Its own process, so that its RSS is the server's alone: the first
// chat request adds the model; a RAG call on the same file adds no second copy; /api/ps lists one.
#include <cstdio>
#include <filesystem>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "rag/ingest.h"
#include "rag/rag_test_util.h"
#include "server/http_client.h"

namespace qwenmux::server {
namespace {

using nlohmann::json;
using qwenmux::testing::Call;
using qwenmux::testing::kTinyDense;
using qwenmux::testing::ServerProcess;
using qwenmux::testing::TempDir;
using qwenmux::testing::TinyModel;
using qwenmux::testing::WriteFile;

TEST(SharedModelProcess, ChatAndRagOnOneFileLoadItOnce) {
  TempDir dir;
  std::filesystem::create_directories(dir / "docs");
  WriteFile(dir / "docs/otters.md", "# Otters\n\nSea otters hold hands while sleeping so they do not drift apart.");
  WriteFile(dir / "docs/tea.txt", "Green tea is steamed or pan-fired soon after picking to stop oxidation.");
  {
    auto store = rag::Store::Open(dir / "store");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    auto embedder = rag::Embedder::Create(&TinyModel(), kTinyDense);
    ASSERT_TRUE(embedder.ok());
    rag::IngestOptions o;
    o.collection = "kb";
    ASSERT_TRUE(rag::Ingest(**store, *embedder, std::vector<std::string>{dir / "docs"}, o).ok());
  }
  std::vector<std::string> args = {"--model", kTinyDense + "=tiny", "--ctx", "1024", "-t", "2",
                                   "--store", dir / "store"};
  for (const char* s : {"query_understanding", "embedding", "retrieval_ranking", "context_synthesis",
                        "response_generation", "quality_scoring"}) {
    args.push_back("--rag-model");
    args.push_back(std::string(s) + "=tiny");
  }
  const std::string log = dir / "serve.log";
  ServerProcess server(args, log);
  ASSERT_TRUE(server.WaitReady()) << log;
  const uint64_t idle = server.RssBytes();

  const json chat{{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 3},
                  {"temperature", 0}};
  ASSERT_EQ(Call(server.port(), "POST", "/v1/chat/completions", chat.dump()).status, 200);
  const uint64_t after_chat = server.RssBytes();

  const json ask{{"collection", "kb"}, {"question", "Why do sea otters hold hands?"}, {"max_tokens", 6},
                 {"temperature", 0}};
  auto r = Call(server.port(), "POST", "/v1/rag", ask.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(Call(server.port(), "POST", "/v1/chat/completions", chat.dump()).status, 200);
  const uint64_t after_rag = server.RssBytes();

  const json ps = json::parse(Call(server.port(), "GET", "/api/ps").body, nullptr, false);
  ASSERT_EQ(ps["models"].size(), 1u) << ps.dump();
  EXPECT_EQ(ps["models"][0]["name"], "tiny");

  const uint64_t file = std::filesystem::file_size(kTinyDense);
  std::printf("serve RSS: idle %.1f MiB, after a chat %.1f MiB, after RAG %.1f MiB (model file %.1f MiB)\n",
              idle / 1048576.0, after_chat / 1048576.0, after_rag / 1048576.0, file / 1048576.0);
  // The load maps every weight page (warm-up): the first request adds about the file.
  EXPECT_GE(after_chat, idle + file / 2);
  // The RAG call reuses that instance: no second copy of the weights.
  EXPECT_LT(after_rag, after_chat + file / 2);
  EXPECT_EQ(server.Stop(), 0);
}

}  // namespace
}  // namespace qwenmux::server
