// `qwenmux run --format json | --json-schema FILE | --grammar FILE | --think-budget N` end to
// end with the random-weight tiny model: the output parses (python json / jsonschema / yaml),
// and bad constraints fail with exit code 1 and a message naming the problem.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "chat/chat.h"
#include "common/run_command.h"
#include "common/testdata.h"
#include "structured_util.h"

namespace {

struct Out {
  int code;
  std::string out, err;
};

std::string TmpFile(const std::string& name, const std::string& content) {
  const char* d = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(d ? d : "/tmp") + "/" + name;
  std::ofstream(path) << content;
  return path;
}

Out RunCli(const std::string& args) {
  const std::string err_path = TmpFile("cli_stderr.txt", "");
  qwenmux::testing::CommandResult r = qwenmux::testing::RunCommand(::qwenmux::testing::QwenmuxBinary() + " " + args + " 2>" + err_path);
  std::ifstream f(err_path);
  std::string err((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return {r.code, std::move(r.out), err};
}

const std::string kDense = qwenmux::testing::ModelPath("tiny-dense.q8_0.gguf");

TEST(StructuredCli, JsonSchemaAndJsonFormat) {
  const nlohmann::ordered_json schema = nlohmann::ordered_json::parse(
      R"({"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}, "temp": {"type": "integer",
         "minimum": -50, "maximum": 50}, "sunny": {"type": "boolean"}}, "required": ["city", "temp", "sunny"],
         "additionalProperties": false})");
  const std::string file = TmpFile("schema.json", schema.dump());
  std::vector<std::pair<nlohmann::ordered_json, std::string>> pairs;
  for (int seed = 1; seed <= 3; ++seed) {
    const Out o = RunCli("run " + kDense + " -p 'Weather?' --temp 1 -n 300 -t 2 --seed " + std::to_string(seed) + " --json-schema " + file);
    ASSERT_EQ(o.code, 0) << o.err;
    EXPECT_NE(o.err.find("finish: stop"), std::string::npos) << o.err;
    pairs.push_back({schema, o.out});
  }
  const Out obj = RunCli("run " + kDense + " -p 'x' --temp 1 -n 400 -t 2 --format json");
  ASSERT_EQ(obj.code, 0) << obj.err;
  pairs.push_back({nlohmann::ordered_json{{"type", "object"}}, obj.out});
  for (const std::string& e : qwenmux::structured::testutil::ValidateWithPython(pairs)) EXPECT_EQ(e, "");
}

TEST(StructuredCli, GrammarYamlParsesWithPyYaml) {
  const std::string grammar = TmpFile("yaml.gbnf", R"(# a flat YAML mapping
root  ::= pair ("\n" pair){0,3} "\n"
pair  ::= key ": " value
key   ::= [a-z] [a-z_]{0,7}
value ::= [a-zA-Z0-9] [a-zA-Z0-9 ]{0,10} [a-zA-Z0-9] | "[" item (", " item){0,2} "]"
item  ::= [0-9]{1,3}
)");
  for (int seed = 1; seed <= 3; ++seed) {
    const Out o = RunCli("run " + kDense + " -p 'config:' --temp 1 -n 200 -t 2 --seed " + std::to_string(seed) + " --grammar " + grammar);
    ASSERT_EQ(o.code, 0) << o.err;
    EXPECT_NE(o.err.find("finish: stop"), std::string::npos) << o.err;
    const std::string doc = TmpFile("out.yaml", o.out);
    const std::string check = "python3 -c \"import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); "
                              "sys.exit(0 if isinstance(d, dict) and len(d) >= 1 else 1)\" " + doc;
    EXPECT_EQ(std::system(check.c_str()), 0) << o.out;
  }
}

TEST(StructuredCli, ThinkingBudgetThenJson) {
  const std::string file = TmpFile("schema2.json", R"({"type": "object", "properties": {"ok": {"type": "boolean"}},
      "required": ["ok"], "additionalProperties": false})");
  const Out o = RunCli("run " + kDense + " --chat -p 'Answer in JSON' --temp 1 -n 300 -t 2 --think-budget 4 --json-schema " + file);
  ASSERT_EQ(o.code, 0) << o.err;
  auto parsed = qwenmux::chat::ParseChatOutput(o.out, {});
  ASSERT_TRUE(parsed.message.reasoning_content.has_value()) << o.out;
  auto j = nlohmann::json::parse(parsed.message.content, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << o.out;
  EXPECT_TRUE(j.at("ok").is_boolean()) << o.out;
}

TEST(StructuredCli, BadConstraintsFailClearly) {
  const std::string bad = TmpFile("bad.json", R"({"type": "array", "uniqueItems": true})");
  Out o = RunCli("run " + kDense + " -p x -n 4 -t 2 --json-schema " + bad);
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.err.find("unsupported keyword 'uniqueItems'"), std::string::npos) << o.err;
  const std::string g = TmpFile("bad.gbnf", "root ::= missing\n");
  o = RunCli("run " + kDense + " -p x -n 4 -t 2 --grammar " + g);
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.err.find("'missing' is used but never defined"), std::string::npos) << o.err;
  o = RunCli("run " + kDense + " -p x -n 4 -t 2 --format yaml");
  EXPECT_EQ(o.code, 1);
  o = RunCli("run " + kDense + " -p x -n 4 -t 2 --json-schema /nonexistent.json");
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.err.find("cannot open"), std::string::npos) << o.err;
}

}  // namespace
