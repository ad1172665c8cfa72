// A pipeline stage naming a backend's model ("NAME/MODEL" of qwenmux.yaml `backends:`, issue 18)
// is a clear error naming the backend: stages run on local GGUF models only for now.
#include <gtest/gtest.h>

#include "orchestrator/config/config.h"
#include "orchestrator/temp_dir.h"
#include "pipeline/job.h"

namespace qwenmux::pipeline {
namespace {

TEST(PipelineBackendModel, IsAClearErrorNamingTheBackend) {
  qwenmux::testing::TempDir dir;
  auto cfg = orchestrator::ParseConfig("backends:\n  - name: lms\n    url: http://127.0.0.1:1234\n", "test.yaml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  RunOptions o;
  o.config = &*cfg;
  o.models_dir = dir.path();
  auto r = ResolveModelPath("lms/qwen3-8b", o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("\"lms/qwen3-8b\" is a model of backend lms (http://127.0.0.1:1234)"), std::string::npos)
      << r.status().ToString();
  o.models["lms/qwen3-8b"] = "/models/x.gguf";  // an explicit --model mapping still wins
  EXPECT_EQ(ResolveModelPath("lms/qwen3-8b", o).value(), "/models/x.gguf");
}

}  // namespace
}  // namespace qwenmux::pipeline
