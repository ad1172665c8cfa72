// JSON-schema constrained extraction for the pipeline's extract stage.
//
// The supported subset (checked when a pipeline is loaded): an object schema whose properties
// are strings (minLength/maxLength, enum), integers and numbers (minimum/maximum), booleans, and
// nested objects of the same; `required` lists property names; `additionalProperties` may be
// false; `description` is free text. Every property is generated, in schema order.
//
// SchemaTemplate compiles such a schema against a tokenizer into a sequence of segments: forced
// literal text (`{"total": `, `, "date": "` ...) and value slots. Its processors (an
// engine::LogitProcessor per sequence) force the literals token by token and restrict each slot
// to tokens that keep the output valid: string slots to tokens that are complete UTF-8 without
// quote, backslash or control characters (ended by the closing literal, which starts with the
// quote), number slots to a number grammar, enum/boolean slots to the tokenizations of the
// allowed values. So the text a processor lets through always parses as JSON and validates
// against the schema (limits: strings cannot hold characters that need escapes, or characters
// the vocabulary only spells across several partial-UTF-8 tokens).
//
// ValidateJson is the schema check of the validate stage (same subset, independent of the
// template). The project's general JSON-schema compiler (src/structured) may replace the
// template when it lands.
//
// Thread-safety: a compiled SchemaTemplate is immutable and may be shared; each processor
// belongs to one sequence.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "engine/logit_processor.h"
#include "tokenizer/tokenizer.h"

namespace qwenmux::pipeline {

// kInvalidArgument naming the offending key path ("schema.properties.total.type: ...").
Status CheckSupportedSchema(const nlohmann::ordered_json& schema, const std::string& path);

// Errors of `value` against `schema` ("total: expected an integer"), empty when it validates.
std::vector<std::string> ValidateJson(const nlohmann::ordered_json& schema, const nlohmann::ordered_json& value);

class SchemaTemplate {
 public:
  struct Segment {
    enum class Kind { kLiteral, kString, kInteger, kNumber, kChoice } kind = Kind::kLiteral;
    std::vector<int32_t> tokens;                  // kLiteral
    std::vector<std::vector<int32_t>> choices;    // kChoice: each value's text + the literal after it
    int32_t min_chars = 0, max_chars = 64;        // kString
  };

  static Result<std::shared_ptr<const SchemaTemplate>> Compile(const nlohmann::ordered_json& schema,
                                                               const tokenizer::Tokenizer& tok);
  std::unique_ptr<engine::LogitProcessor> NewProcessor() const;

  const std::vector<Segment>& segments() const { return segments_; }
  const tokenizer::Tokenizer& tokenizer() const { return *tok_; }
  // Tokens allowed inside a JSON string slot (vocab-sized 0/1 table) and number-grammar tokens.
  const std::vector<uint8_t>& string_safe() const { return string_safe_; }
  const std::vector<int32_t>& numeric_tokens() const { return numeric_tokens_; }
  const std::vector<uint8_t>& token_chars() const { return token_chars_; }  // characters per token (capped at 255)
  // Minimal tokens of a complete output (literals + 1 per slot): a lower bound for max_tokens.
  int32_t min_tokens() const;

 private:
  const tokenizer::Tokenizer* tok_ = nullptr;  // not owned: the template must not outlive it
  std::vector<Segment> segments_;
  std::vector<uint8_t> string_safe_;
  std::vector<int32_t> numeric_tokens_;
  std::vector<uint8_t> token_chars_;
};

}  // namespace qwenmux::pipeline
