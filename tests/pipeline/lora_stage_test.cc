// A pipeline's classify and extract stages may name a LoRA adapter model ("<model>:<adapter>" from
// the config's `adapters:`): they run with the adapter (the output differs from the base model's;
// at scale 0 it equals it), and a stage type that cannot take an adapter (embed) is refused before
// anything runs.
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "common/testdata.h"
#include "orchestrator/config/config.h"
#include "orchestrator/temp_dir.h"
#include "pipeline/job.h"

namespace qwenmux::pipeline {
namespace {

using qwenmux::testing::ModelPath;
using qwenmux::testing::TempDir;

std::string Def(const std::string& type, const std::string& model) {
  if (type == "embed") {
    return fmt::format("name: lora-test\ncontext: 256\nstages:\n  - {{name: read, type: read}}\n"
                       "  - {{name: chunk, type: chunk, chunk_tokens: 64, chunk_overlap: 8}}\n  - {{name: embed, type: embed, model: \"{}\"}}\n",
                       model);
  }
  std::string stage = type == "extract"
      ? fmt::format("  - {{name: extract, type: extract, model: \"{}\", batch: 2, max_tokens: 24, schema: {{type: object, "
                    "required: [who], properties: {{who: {{type: string, maxLength: 16}}}}}}}}\n", model)
      : fmt::format("  - name: classify\n    type: classify\n    model: \"{}\"\n    labels:\n      a: {{description: a}}\n"
                    "      b: {{description: b}}\n", model);
  return "name: lora-test\ncontext: 256\nstages:\n  - {name: read, type: read}\n" + stage;
}

// The results of a run of `def` over two small documents: one line per document, in order.
Result<std::vector<std::string>> RunJob(const std::string& def_text, const std::string& dir,
                                        const orchestrator::Config& config) {
  auto def = ParsePipeline(def_text, "lora.yaml");
  if (!def.ok()) return def.status();
  std::filesystem::create_directories(dir + "/docs");
  std::ofstream(dir + "/docs/a.txt") << "Order 3 for 5 units from shop Nine, by Alice.\n";
  std::ofstream(dir + "/docs/b.txt") << "Bob wrote to the shop about his order.\n";
  RunOptions o;
  o.inputs = {dir + "/docs"};
  o.config = &config;
  o.threads = 1;
  QM_ASSIGN_OR_RETURN(auto job, Job::Start(*def, o));
  QM_ASSIGN_OR_RETURN(auto summary, job->Wait());
  std::vector<std::string> out;
  for (const auto& r : job->Results()) {
    out.push_back(fmt::format("{} {} {} {} {}", std::filesystem::path(r.value("document", "")).filename().string(),
                              r.value("status", ""), r.contains("extracted") ? r["extracted"].dump() : "-",
                              r.contains("scores") ? r["scores"].dump() : "-", r.value("error", "")));
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(PipelineLora, ExtractStageRunsWithTheAdapter) {
  auto config = orchestrator::ParseConfig(fmt::format(R"(
models:
  - name: tiny
    file: {}
    adapters:
      - {{name: lora, file: {}}}
      - {{name: zero, file: {}, scale: 0}}
)", ModelPath("tiny-dense.q8_0.gguf"), ModelPath("tiny-dense.lora.gguf"), ModelPath("tiny-dense.lora-peft")),
                                          "q.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  TempDir d1, d2, d3, d4;
  auto base = RunJob(Def("extract", "tiny"), d1.path(), *config);
  ASSERT_TRUE(base.ok()) << base.status().ToString();
  auto lora = RunJob(Def("extract", "tiny:lora"), d2.path(), *config);
  ASSERT_TRUE(lora.ok()) << lora.status().ToString();
  auto zero = RunJob(Def("extract", "tiny:zero"), d3.path(), *config);
  ASSERT_TRUE(zero.ok()) << zero.status().ToString();
  ASSERT_EQ(base->size(), 2u);
  EXPECT_EQ(*zero, *base);
  EXPECT_NE(*lora, *base);
  // Embed stages take no adapter: refused at start with the stage named.
  auto emb = RunJob(Def("embed", "tiny:lora"), d4.path(), *config);
  ASSERT_FALSE(emb.ok());
  EXPECT_NE(emb.status().message().find("classify and extract stages only"), std::string::npos)
      << emb.status().message();
}

TEST(PipelineLora, ClassifyStageScoresWithTheAdapter) {
  auto config = orchestrator::ParseConfig(fmt::format(R"(
models:
  - name: tiny
    file: {}
    adapters:
      - {{name: lora, file: {}}}
      - {{name: zero, file: {}, scale: 0}}
)", ModelPath("tiny-dense.q8_0.gguf"), ModelPath("tiny-dense.lora.gguf"), ModelPath("tiny-dense.lora.gguf")),
                                          "q.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  TempDir d1, d2, d3;
  auto base = RunJob(Def("classify", "tiny"), d1.path(), *config);
  ASSERT_TRUE(base.ok()) << base.status().ToString();
  auto lora = RunJob(Def("classify", "tiny:lora"), d2.path(), *config);
  ASSERT_TRUE(lora.ok()) << lora.status().ToString();
  auto zero = RunJob(Def("classify", "tiny:zero"), d3.path(), *config);
  ASSERT_TRUE(zero.ok()) << zero.status().ToString();
  ASSERT_EQ(base->size(), 2u);
  for (const std::string& line : *base) EXPECT_NE(line.find("{\"a\":"), std::string::npos) << line;  // scored
  EXPECT_EQ(*zero, *base);  // scale 0: the base model's scores exactly
  EXPECT_NE(*lora, *base);  // the adapter moves the label probabilities
}

}  // namespace
}  // namespace qwenmux::pipeline
