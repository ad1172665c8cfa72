// Named pipelines (pipeline/library.h): lookup by `name:` or file stem with '-' == '_', a broken
// file listed with its error, names that are paths refused, not-found messages that list.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "orchestrator/temp_dir.h"
#include "pipeline/library.h"

namespace qwenmux::pipeline {
namespace {

using qwenmux::testing::TempDir;


void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(PipelineLibrary, FindsByNameOrStemAndListsWhatExists) {
  TempDir a, b;
  Write(a / "first.yaml", "name: doc_flow\ndescription: the first\nstages:\n  - {name: read, type: read}\n");
  Write(b / "second-one.yml", "name: other\nstages:\n  - {name: read, type: read}\n");
  Write(b / "broken.yaml", "name: broken\nstages: 3\n");
  Write(b / "notes.txt", "not a definition");
  const std::vector<std::string> dirs = {a.path(), b.path()};

  auto list = ListPipelines(dirs);
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].name, "broken");
  EXPECT_NE(list[0].error.find("stages"), std::string::npos) << list[0].error;
  EXPECT_EQ(list[1].name, "doc_flow");
  EXPECT_EQ(list[1].description, "the first");
  EXPECT_EQ(list[2].name, "other");

  auto d = FindPipeline("doc-flow", dirs);  // '-' finds '_'
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->name, "doc_flow");
  EXPECT_EQ(d->stages.size(), 1u);
  d = FindPipeline("second_one", dirs);  // by file stem
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->name, "other");

  auto bad = FindPipeline("broken", dirs);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("stages"), std::string::npos);

  auto missing = FindPipeline("nope", dirs);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("doc_flow"), std::string::npos) << missing.status().message();

  for (const char* name : {"../first", "/etc/passwd", "", ".hidden", "a b"}) {
    auto r = FindPipeline(name, dirs);
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << name;
  }
  auto none = FindPipeline("doc_flow", {});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("--pipelines-dir"), std::string::npos);
  EXPECT_TRUE(ListPipelines({a / "no-such-dir"}).empty());
  // Where it looked: the absolute directory, and that it does not exist.
  auto nowhere = FindPipeline("doc_flow", {a / "no-such-dir"});
  ASSERT_FALSE(nowhere.ok());
  EXPECT_NE(nowhere.status().message().find(a / "no-such-dir (no such directory)"), std::string::npos)
      << nowhere.status().message();
}

}  // namespace
}  // namespace qwenmux::pipeline
