#include "pipeline/schema.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include <fmt/format.h>

namespace qwenmux::pipeline {

using Json = nlohmann::ordered_json;

namespace {

Status Bad(const std::string& path, std::string_view msg) {
  return Error(StatusCode::kInvalidArgument, "{}: {}", path, msg);
}

int32_t CountChars(std::string_view s) {
  int32_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

Status CheckNode(const Json& node, const std::string& path, bool top) {
  if (!node.is_object()) return Bad(path, "a schema must be a map");
  static const std::set<std::string> kKeys = {"type", "properties", "required", "additionalProperties", "description",
                                              "title", "enum", "minLength", "maxLength", "minimum", "maximum",
                                              "items", "minItems", "maxItems"};
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!kKeys.count(it.key())) {
      return Bad(path + "." + it.key(),
                 "not supported by the pipeline's schema subset (supported: type, properties, required, "
                 "additionalProperties, enum, minLength, maxLength, minimum, maximum, items, minItems, maxItems, "
                 "description, title)");
    }
  }
  if (!node.contains("type") || !node["type"].is_string()) {
    return Bad(path + ".type", "missing or not a string (object, string, integer, number or boolean)");
  }
  const std::string type = node["type"].get<std::string>();
  if (top && type != "object") return Bad(path + ".type", fmt::format("the top level must be an object, got \"{}\"", type));
  if (type != "object" && type != "string" && type != "integer" && type != "number" && type != "boolean" && type != "array") {
    return Bad(path + ".type", fmt::format("\"{}\" is not supported (object, array, string, integer, number, boolean)", type));
  }
  for (const char* k : {"minimum", "maximum"}) {
    if (!node.contains(k)) continue;
    if (type != "integer" && type != "number") return Bad(path + "." + k, "applies to numbers only");
    if (!node[k].is_number()) return Bad(path + "." + k, "expected a number");
  }
  if (node.contains("minimum") && node.contains("maximum") && node["minimum"].get<double>() > node["maximum"].get<double>()) {
    return Bad(path + ".minimum", "greater than maximum");
  }
  for (const char* k : {"items", "minItems", "maxItems"}) {
    if (node.contains(k) && type != "array") return Bad(path + "." + k, "applies to arrays only");
  }
  if (type == "array") {
    if (!node.contains("items")) return Bad(path + ".items", "an array needs an items schema");
    QM_RETURN_IF_ERROR(CheckNode(node["items"], path + ".items", false));
    for (const char* k : {"minItems", "maxItems"}) {
      if (node.contains(k) && (!node[k].is_number_integer() || node[k].get<int64_t>() < 0 || node[k].get<int64_t>() > 256)) {
        return Bad(path + "." + k, "expected an integer in [0, 256]");
      }
    }
    if (node.contains("minItems") && node.contains("maxItems") && node["minItems"].get<int64_t>() > node["maxItems"].get<int64_t>()) {
      return Bad(path + ".minItems", "greater than maxItems");
    }
  }
  if (type != "object" && (node.contains("properties") || node.contains("required") || node.contains("additionalProperties"))) {
    return Bad(path, "properties/required/additionalProperties only apply to objects");
  }
  if (node.contains("enum")) {
    const Json& e = node["enum"];
    if (type != "string") return Bad(path + ".enum", "enum is supported for strings only");
    if (!e.is_array() || e.empty()) return Bad(path + ".enum", "expected a non-empty list of strings");
    for (const Json& v : e) {
      if (!v.is_string()) return Bad(path + ".enum", "expected a non-empty list of strings");
    }
  }
  for (const char* k : {"minLength", "maxLength"}) {
    if (!node.contains(k)) continue;
    if (type != "string") return Bad(path + "." + k, "applies to strings only");
    if (!node[k].is_number_integer() || node[k].get<int64_t>() < 0 || node[k].get<int64_t>() > 4096) {
      return Bad(path + "." + k, "expected an integer in [0, 4096]");
    }
  }
  if (node.contains("minLength") && node.contains("maxLength") &&
      node["minLength"].get<int64_t>() > node["maxLength"].get<int64_t>()) {
    return Bad(path + ".minLength", "greater than maxLength");
  }
  if (type == "object") {
    if (!node.contains("properties") || !node["properties"].is_object() || node["properties"].empty()) {
      return Bad(path + ".properties", "an object needs a non-empty map of properties");
    }
    for (auto it = node["properties"].begin(); it != node["properties"].end(); ++it) {
      QM_RETURN_IF_ERROR(CheckNode(it.value(), path + ".properties." + it.key(), false));
    }
    if (node.contains("required")) {
      const Json& r = node["required"];
      if (!r.is_array()) return Bad(path + ".required", "expected a list of property names");
      for (const Json& n : r) {
        if (!n.is_string() || !node["properties"].contains(n.get<std::string>())) {
          return Bad(path + ".required", fmt::format("{} is not a property", n.dump()));
        }
      }
    }
    if (node.contains("additionalProperties") && !node["additionalProperties"].is_boolean()) {
      return Bad(path + ".additionalProperties", "expected true or false");
    }
  }
  return Status::Ok();
}

void Validate(const Json& schema, const Json& v, const std::string& path, std::vector<std::string>* errors) {
  const std::string where = path.empty() ? "(root)" : path;
  const std::string type = schema.value("type", "");
  auto err = [&](const std::string& m) { errors->push_back(fmt::format("{}: {}", where, m)); };
  if (type == "object") {
    if (!v.is_object()) return err("expected an object");
    const Json& props = schema["properties"];
    if (schema.contains("required")) {
      for (const Json& r : schema["required"]) {
        if (!v.contains(r.get<std::string>())) err(fmt::format("missing required property \"{}\"", r.get<std::string>()));
      }
    }
    for (auto it = v.begin(); it != v.end(); ++it) {
      const std::string sub = path.empty() ? it.key() : path + "." + it.key();
      if (props.contains(it.key())) {
        Validate(props[it.key()], it.value(), sub, errors);
      } else if (schema.contains("additionalProperties") && !schema["additionalProperties"].get<bool>()) {
        errors->push_back(fmt::format("{}: property not allowed", sub));
      }
    }
  } else if (type == "string") {
    if (!v.is_string()) return err("expected a string");
    const std::string& s = v.get_ref<const std::string&>();
    const int64_t n = CountChars(s);
    if (schema.contains("minLength") && n < schema["minLength"].get<int64_t>()) err(fmt::format("shorter than {}", schema["minLength"].get<int64_t>()));
    if (schema.contains("maxLength") && n > schema["maxLength"].get<int64_t>()) err(fmt::format("longer than {}", schema["maxLength"].get<int64_t>()));
    if (schema.contains("enum") && std::find(schema["enum"].begin(), schema["enum"].end(), v) == schema["enum"].end()) {
      err(fmt::format("{} is not one of {}", v.dump(), schema["enum"].dump()));
    }
  } else if (type == "integer" || type == "number") {
    const bool integral = v.is_number_integer() || (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
    if (type == "integer" ? !integral : !v.is_number()) return err(type == "integer" ? "expected an integer" : "expected a number");
    const double x = v.get<double>();
    if (schema.contains("minimum") && x < schema["minimum"].get<double>()) err(fmt::format("less than the minimum {}", schema["minimum"].dump()));
    if (schema.contains("maximum") && x > schema["maximum"].get<double>()) err(fmt::format("more than the maximum {}", schema["maximum"].dump()));
  } else if (type == "array") {
    if (!v.is_array()) return err("expected an array");
    const int64_t n = static_cast<int64_t>(v.size());
    if (schema.contains("minItems") && n < schema["minItems"].get<int64_t>()) err(fmt::format("fewer than {} items", schema["minItems"].get<int64_t>()));
    if (schema.contains("maxItems") && n > schema["maxItems"].get<int64_t>()) err(fmt::format("more than {} items", schema["maxItems"].get<int64_t>()));
    for (size_t i = 0; i < v.size(); ++i) Validate(schema["items"], v[i], fmt::format("{}[{}]", path, i), errors);
  } else if (type == "boolean") {
    if (!v.is_boolean()) err("expected true or false");
  }
}

}  // namespace

Status CheckSupportedSchema(const Json& schema, const std::string& path) { return CheckNode(schema, path, true); }

std::vector<std::string> ValidateJson(const Json& schema, const Json& value) {
  std::vector<std::string> errors;
  Validate(schema, value, "", &errors);
  return errors;
}

}  // namespace qwenmux::pipeline
