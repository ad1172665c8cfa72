// Pipeline definitions: the shipped examples parse; bad definitions are refused with the file,
// the line and the key named.
#include <gtest/gtest.h>

#include "pipeline/definition.h"

namespace qwenmux::pipeline {
namespace {

TEST(PipelineDefinition, ShippedExamplesParse) {
  for (const char* f : {"examples/pipelines/document-processing.yaml", "examples/pipelines/rag.yaml",
                        "examples/pipelines/finetune-prep.yaml"}) {
    auto d = LoadPipeline(f);
    ASSERT_TRUE(d.ok()) << f << ": " << d.status().ToString();
  }
  auto d = LoadPipeline("examples/pipelines/document-processing.yaml");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->name, "document-processing");
  const StageDef* cls = d->Find(StageType::kClassify);
  ASSERT_NE(cls, nullptr);
  EXPECT_EQ(cls->model, "qwen3-fast");
  ASSERT_EQ(cls->labels.size(), 4u);
  EXPECT_EQ(cls->labels[0].name, "invoice");
  EXPECT_EQ(cls->labels[0].schema["properties"]["total"]["type"], "number");
  EXPECT_TRUE(cls->labels[3].schema.is_null());
  EXPECT_EQ(d->Find(StageType::kExtract)->model, "qwen3-quality");
  EXPECT_EQ(d->Find(StageType::kValidate)->model, "qwen3-balanced");
  EXPECT_EQ(cls->batch, 8);
}

constexpr const char* kGood = R"(name: t
stages:
  - {name: read, type: read}
  - name: extract
    type: extract
    model: fast
    schema: {type: object, properties: {a: {type: string}}}
)";

TEST(PipelineDefinition, MinimalDefinitionAndDefaults) {
  auto d = ParsePipeline(kGood, "t.yaml");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_EQ(d->stages.size(), 2u);
  EXPECT_EQ(d->stages[1].batch, 4);
  EXPECT_EQ(d->stages[1].concurrency, 1);
  EXPECT_EQ(d->context, 4096);
}

struct BadCase {
  const char* yaml;
  const char* expect;  // substring of the error
};

TEST(PipelineDefinition, BadDefinitionsNameTheKey) {
  const BadCase cases[] = {
      {"name: t\nstages:\n  - {name: read, type: read, colour: red}\n", "t.yaml:3: stages[0].colour: unknown key"},
      {"name: t\nstages:\n  - {name: read, type: read}\n  - {name: c, type: classify, labels: {a: , b: }}\n",
       "t.yaml:4: stages[1].model: a classify stage needs a model"},
      {"name: t\nstages:\n  - {name: read, type: read}\n  - {name: c, type: classify, model: fast, labels: {a: }}\n",
       "stages[1].labels: expected a map of at least two labels"},
      {"name: t\nstages:\n  - {name: read, type: read}\n  - {name: c, type: classify, model: fast, batch: 0, labels: {a: , b: }}\n",
       "t.yaml:4: stages[1].batch: \"0\" is not an integer in [1, 256]"},
      {"name: t\nstages:\n  - {name: x, type: extract, model: fast, schema: {type: object, properties: {a: {type: string}}}}\n",
       "stages[0].type: the first stage must be a read stage"},
      {"name: t\nstages:\n  - {name: read, type: read}\n  - {name: e, type: extract, model: fast}\n",
       "stages[1].schema: an extract stage needs a schema"},
      {"name: t\nstages:\n  - {name: read, type: read}\n  - {name: e, type: extract, model: fast, schema: {type: object, properties: {a: {type: \"null\"}}}}\n",
       "stages[1].schema.properties.a.type: \"null\" is not supported"},
      {"name: t\nstages:\n  - {name: read, type: read}\n  - {name: e, type: extract, model: fast, schema: {type: object, properties: {a: {type: string, pattern: x}}}}\n",
       "stages[1].schema.properties.a.pattern: not supported"},
      {"name: t\nstages:\n  - {name: read, type: read}\n  - {name: v, type: validate, model: fast}\n",
       "stages[1].type: validate needs an extract stage before it"},
      {"name: t\nstages:\n  - {name: read, type: read}\n  - {name: e, type: embed, model: fast}\n",
       "embed needs a chunk stage before it"},
      {"name: t\nstages:\n  - {name: read, type: read}\n  - {name: read, type: chunk}\n", "stages[1].name: duplicate stage name"},
      {"name: t\nstages:\n  - {name: read, type: reed}\n", "stages[0].type: \"reed\" is not a stage type"},
      {"name: t\nstages:\n  - {name: read, type: read, model: fast}\n", "stages[0].model: a read stage uses no model"},
      {"stages:\n  - {name: read, type: read}\n", "t.yaml:1: name: missing"},
      {"name: t\nstages: []\n", "stages: expected a non-empty list"},
      {"name: t\nstages:\n  - {name: read, type: read}\n  - {name: v, type: validate, model: fast, threshold: 2}\n",
       "stages[1].threshold: \"2\" is not a number in [0, 1]"},
      {"name: t\nstages: [\n", "t.yaml:"},
      {"name: t\nstages:\n  - {name: read, type: read}\n  - {name: c, type: chunk, chunk_tokens: 32, chunk_overlap: 32}\n",
       "stages[1].chunk_overlap: must be smaller than chunk_tokens"},
      {"name: t\nstages:\n  - {name: read, type: read}\n  - {name: c, type: chunk, collection: docs}\n",
       "stages[1].collection: only embed stages store into a collection"},
      {"name: t\nstages:\n  - {name: read, type: read}\n  - {name: e, type: embed, model: fast, collection: ../../x}\n",
       "stages[1].collection: collection name \"../../x\""},
  };
  for (const BadCase& c : cases) {
    auto d = ParsePipeline(c.yaml, "t.yaml");
    ASSERT_FALSE(d.ok()) << c.yaml;
    EXPECT_NE(d.status().message().find(c.expect), std::string::npos) << "got: " << d.status().message();
  }
}

TEST(PipelineDefinition, MissingFileIsNotFound) {
  auto d = LoadPipeline("/nonexistent/p.yaml");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kNotFound);
}

TEST(PipelineDefinition, Tiers) {
  EXPECT_EQ(TierOf("qwen3-fast"), "fast");
  EXPECT_EQ(TierOf("quality"), "quality");
  EXPECT_EQ(TierOf("qwen3:8b"), "");
  EXPECT_EQ(NextTier("fast"), "balanced");
  EXPECT_EQ(NextTier("quality"), "max");
  EXPECT_EQ(NextTier("max"), "");
}

}  // namespace
}  // namespace qwenmux::pipeline
