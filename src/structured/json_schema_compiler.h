// Internal to src/structured: the JSON-Schema compiler (json_schema.cc: objects, arrays,
// combinators, $ref; json_schema_scalars.cc: numbers, strings, formats).
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "structured/structured.h"

namespace qwenmux::structured::internal {

using json = nlohmann::ordered_json;


enum TypeBit : unsigned { kNull = 1, kBool = 2, kNumber = 4, kString = 8, kArray = 16, kObject = 32, kAll = 63 };

inline unsigned TypeOfValue(const json& v) {
  if (v.is_null()) return kNull;
  if (v.is_boolean()) return kBool;
  if (v.is_number()) return kNumber;
  if (v.is_string()) return kString;
  if (v.is_array()) return kArray;
  return kObject;
}

inline const std::set<std::string>& KnownKeywords() {
  static const std::set<std::string> k = {
      "$schema", "$id", "$comment", "title", "description", "default", "examples", "deprecated", "readOnly",
      "writeOnly", "$defs", "definitions", "type", "enum", "const", "properties", "required", "additionalProperties",
      "items", "prefixItems", "minItems", "maxItems", "anyOf", "oneOf", "allOf", "$ref", "minLength", "maxLength",
      "format", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
  return k;
}
inline const std::set<std::string>& MetaKeywords() {
  static const std::set<std::string> k = {"$schema", "$id", "$comment", "title", "description", "default", "examples",
                                          "deprecated", "readOnly", "writeOnly", "$defs", "definitions"};
  return k;
}

inline int64_t Pow10(int d) {
  int64_t r = 1;
  for (int i = 0; i < d; ++i) r *= 10;
  return r;
}

class SchemaCompiler {
 public:
  SchemaCompiler(GrammarBuilder& g, const json& root, const JsonSchemaOptions& o) : g_(g), root_(root), o_(o) {}

  Result<uint32_t> Compile(const json& s, const std::string& path, int ref_depth);  // depth-limited
  uint32_t AnyValue(int depth);
  uint32_t AnyObject(int depth);

 private:
  Status Fail(const std::string& path, const std::string& what) const {
    return Error(StatusCode::kInvalidArgument, "json schema: {} at #{}", what, path);
  }
  Result<uint32_t> CompileNode(const json& s, const std::string& path, int ref_depth);
  // The distinct literal texts as one rule shaped as a trie (a shared prefix appears once), so
  // matching holds at most one stack per distinct next byte, not one per value.
  uint32_t LiteralTrie(std::vector<std::string> texts);
  uint32_t TrieNode(const std::vector<std::string>& t, size_t lo, size_t hi, size_t d);
  Result<const json*> Resolve(const std::string& ref, const std::string& path) const;
  Result<unsigned> Types(const json& s, const std::string& path, int depth) const;
  Status CheckOneOf(const json& branches, const std::string& path) const;

  uint32_t Ws();
  Seq Sep(char c) {  // ws c ws
    Seq s{GrammarBuilder::Ref(Ws()), g_.Byte(static_cast<uint8_t>(c)), GrammarBuilder::Ref(Ws())};
    return s;
  }
  uint32_t Literal(const json& v, const std::string& name) { return g_.Rule(name, {g_.Lit(v.dump())}); }
  uint32_t Digits(int min, int max) {
    return g_.Repeat({g_.Bytes(ByteSet::Range('0', '9'))}, min, max, "digits");
  }
  std::vector<Seq> SameLength(const std::string& lo, const std::string& hi);
  uint32_t NonNegRange(uint64_t a, uint64_t b);
  uint32_t IntRange(int64_t lo, int64_t hi);
  uint32_t Fraction();
  Result<uint32_t> Integer(const json& s, const std::string& path);
  Result<uint32_t> Number(const json& s, const std::string& path);
  Result<uint32_t> String(const json& s, const std::string& path);
  Result<uint32_t> Array(const json& s, const std::string& path, int ref_depth);
  Result<uint32_t> Object(const json& s, const std::string& path, int ref_depth);
  uint32_t KeyExcluding(const std::vector<std::string>& names);
  Result<Seq> Format(const std::string& f, const std::string& path, int* min_len, int* max_len);
  Result<std::pair<std::optional<double>, std::optional<double>>> Bounds(const json& s, const std::string& path) const;

  GrammarBuilder& g_;
  const json& root_;
  const JsonSchemaOptions& o_;
  std::optional<uint32_t> ws_, frac_, free_string_, default_int_, default_number_;
  std::map<int, uint32_t> any_value_, any_object_;
  std::map<std::pair<std::string, int>, uint32_t> refs_;
  int depth_ = 0;             // Compile nesting now
  size_t literal_bytes_ = 0;  // JSON text of the enum/const values compiled so far
};

// The JSON-string content matching a regular expression (regex.cc).
Result<Seq> PatternSeq(GrammarBuilder& g, std::string_view pattern, int max_repeat);

}  // namespace qwenmux::structured::internal
