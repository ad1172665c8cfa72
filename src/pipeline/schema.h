// The schemas of the pipeline's extraction stage.
//
// Extraction itself is constrained by the project's JSON-schema compiler (src/structured:
// structured::CompileJsonSchema -> one engine::LogitProcessor per document), so the text it lets
// through always parses and validates whatever the model's weights.
//
// Here: the subset a pipeline definition may use (checked when the pipeline is loaded, with the
// key named) and the validate stage's schema check of an extracted object. The subset: type
// object / array / string / integer / number / boolean; properties, required,
// additionalProperties (true/false); string enum, minLength, maxLength; minimum, maximum;
// items, minItems, maxItems; description, title. Anything else is refused at load time, so the
// validator below checks every keyword a definition can hold.
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace qwenmux::pipeline {

// kInvalidArgument naming the offending key path ("schema.properties.total.type: ...").
Status CheckSupportedSchema(const nlohmann::ordered_json& schema, const std::string& path);

// Errors of `value` against `schema` ("total: expected an integer"), empty when it validates.
std::vector<std::string> ValidateJson(const nlohmann::ordered_json& schema, const nlohmann::ordered_json& value);

}  // namespace qwenmux::pipeline
