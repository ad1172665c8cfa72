// The pipeline's schema subset and validator: every keyword a definition can hold is checked, and
// what is outside the subset is refused with its key path.
#include <gtest/gtest.h>

#include "pipeline/schema.h"

namespace qwenmux::pipeline {
namespace {

using Json = nlohmann::ordered_json;

const Json kInvoice = Json::parse(R"({"type": "object", "properties": {
    "number": {"type": "string", "maxLength": 12},
    "vendor": {"type": "object", "properties": {"name": {"type": "string", "minLength": 2, "maxLength": 20},
                                               "country": {"type": "string", "enum": ["DE", "FR", "US", "other"]}}},
    "total": {"type": "number", "minimum": 0}, "items": {"type": "integer", "maximum": 100}, "paid": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 2}},
    "required": ["number", "vendor", "total", "items", "paid"], "additionalProperties": false})");

TEST(PipelineSchema, ValidatorFindsErrors) {
  const Json good = Json::parse(R"({"number": "A-1", "vendor": {"name": "Acme", "country": "DE"}, "total": 12.5, "items": 3, "paid": true, "tags": ["a", "b"]})");
  EXPECT_TRUE(ValidateJson(kInvoice, good).empty());
  Json bad = good;
  bad.erase("total");
  bad["items"] = 2.5;
  bad["paid"] = "yes";
  bad["vendor"]["country"] = "XX";
  bad["vendor"]["name"] = "A";
  bad["extra"] = 1;
  bad["number"] = "0123456789ABCDEF";
  bad["tags"] = Json::array({"ok", "much too long", "c"});
  const auto errors = ValidateJson(kInvoice, bad);
  std::string all;
  for (const auto& e : errors) all += e + "\n";
  EXPECT_EQ(errors.size(), 9u) << all;
  for (const char* want : {"missing required property \"total\"", "items: expected an integer", "paid: expected true or false",
                           "vendor.country: \"XX\" is not one of", "vendor.name: shorter than 2", "extra: property not allowed",
                           "number: longer than 12", "tags: more than 2 items", "tags[1]: longer than 8"}) {
    EXPECT_NE(all.find(want), std::string::npos) << want << "\n" << all;
  }
  EXPECT_FALSE(ValidateJson(kInvoice, Json::array()).empty());
  Json range = good;
  range["total"] = -1;
  range["items"] = 101;
  EXPECT_EQ(ValidateJson(kInvoice, range).size(), 2u);
}

TEST(PipelineSchema, UnsupportedSchemasAreRefused) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"type": "string"})", "s.type: the top level must be an object"},
      {R"({"type": "object", "properties": {}})", "s.properties: an object needs"},
      {R"({"type": "object", "properties": {"a": {"type": "array"}}})", "s.properties.a.items: an array needs an items schema"},
      {R"({"type": "object", "properties": {"a": {"type": "integer", "enum": [1]}}})", "s.properties.a.enum: enum is supported for strings only"},
      {R"({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]})", "s.required: \"b\" is not a property"},
      {R"({"type": "object", "properties": {"a": {"type": "string", "minLength": 5, "maxLength": 2}}})", "s.properties.a.minLength: greater than maxLength"},
      {R"({"type": "object", "properties": {"a": {"type": "string", "pattern": "x"}}})", "s.properties.a.pattern: not supported"},
      {R"({"type": "object", "properties": {"a": {"type": "null"}}})", "s.properties.a.type: \"null\" is not supported"},
      {R"({"type": "object", "properties": {"a": {"type": "string", "minimum": 1}}})", "s.properties.a.minimum: applies to numbers only"},
  };
  for (const auto& [schema, want] : cases) {
    Status s = CheckSupportedSchema(Json::parse(schema), "s");
    ASSERT_FALSE(s.ok()) << schema;
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find(want), std::string::npos) << s.message();
  }
  EXPECT_TRUE(CheckSupportedSchema(kInvoice, "s").ok());
}

}  // namespace
}  // namespace qwenmux::pipeline
