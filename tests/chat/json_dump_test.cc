// The serialiser must match Python's json.dumps(x, ensure_ascii=False) byte for byte (the
// tojson filter of HF chat templates). Expected strings were produced by CPython 3.
#include "chat/json_dump.h"

#include <cmath>
#include <limits>

#include <gtest/gtest.h>

namespace qwenmux::chat {
namespace {

using Json = nlohmann::ordered_json;

TEST(ChatJsonDump, FloatsLikePythonRepr) {
  const std::pair<double, const char*> cases[] = {
      {1.0, "1.0"},
      {0.1, "0.1"},
      {1e-05, "1e-05"},
      {0.0001, "0.0001"},
      {1e16, "1e+16"},
      {1e15, "1000000000000000.0"},
      {1.5e16, "1.5e+16"},
      {-0.0, "-0.0"},
      {123.456, "123.456"},
      {5e-324, "5e-324"},
      {1.7976931348623157e308, "1.7976931348623157e+308"},
      {2.5e-7, "2.5e-07"},
      {100.0, "100.0"},
      {std::numeric_limits<double>::quiet_NaN(), "NaN"},
      {std::numeric_limits<double>::infinity(), "Infinity"},
      {-std::numeric_limits<double>::infinity(), "-Infinity"},
  };
  for (const auto& [value, expected] : cases) {
    EXPECT_EQ(PythonJsonDumps(Json(value)), expected) << value;
  }
}

TEST(ChatJsonDump, SeparatorsOrderAndEscapes) {
  // Parsed, so the key order is the input's (not sorted) and the string holds raw bytes.
  const Json v = Json::parse(
      R"({"b": [1, -2, true, null, "x"], "a": {}, "c": [],)"
      R"( "s": "\"\\\b\f\n\r\t\u0000\u001f\u007fé中😀\u2028"})");
  EXPECT_EQ(PythonJsonDumps(v),
            "{\"b\": [1, -2, true, null, \"x\"], \"a\": {}, \"c\": [], \"s\": "
            "\"\\\"\\\\\\b\\f\\n\\r\\t\\u0000\\u001f\x7f" "é中😀\u2028\"}");
}

TEST(ChatJsonDump, IntegerExtremes) {
  EXPECT_EQ(PythonJsonDumps(Json::parse("18446744073709551615")), "18446744073709551615");
  EXPECT_EQ(PythonJsonDumps(Json::parse("-9223372036854775808")), "-9223372036854775808");
}

TEST(ChatJsonDump, DepthLimit) {
  Json v = Json::parse("[[[[1]]]]");
  EXPECT_TRUE(JsonDepthWithin(v, 4));
  EXPECT_FALSE(JsonDepthWithin(v, 3));
  EXPECT_TRUE(JsonDepthWithin(Json(5), 0));
}

}  // namespace
}  // namespace qwenmux::chat
