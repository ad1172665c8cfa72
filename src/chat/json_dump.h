// JSON serialisation byte-identical to Python's json.dumps(x, ensure_ascii=False) with the
// default separators (", " and ": "), which is what Hugging Face's chat templates use for the
// Jinja `tojson` filter. Qwen3's template serialises tools and tool-call arguments this way, so
// prompt bytes (and therefore prompt caches and logits) match the reference only with this
// exact format:
//   - object keys in insertion order (use nlohmann::ordered_json when parsing input);
//   - strings: `"` `\\` and \b \f \n \r \t as short escapes, other bytes < 0x20 as \u00xx
//     (lowercase hex), everything else (including non-ASCII UTF-8 and 0x7f) written as is;
//   - floats as Python's repr(): shortest round-trip digits, exponent form when the decimal
//     exponent is < -4 or >= 16 ("1e-05", "1e+16"), otherwise fixed with at least one
//     fractional digit ("1.0", "0.0001"); NaN/inf as NaN / Infinity / -Infinity.
// Not representable by Python and written as null: nlohmann binary and discarded values.
// Pure functions; thread-safe.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace qwenmux::chat {

// Appends the serialisation of `value` to *out.
void AppendPythonJson(const nlohmann::ordered_json& value, std::string* out);

// Returns the serialisation of `value`.
std::string PythonJsonDumps(const nlohmann::ordered_json& value);

// True when `value` nests no deeper than `max_depth` arrays/objects. The serialiser (and
// nlohmann's copy) recurse, so callers bound the depth of untrusted JSON with this first.
bool JsonDepthWithin(const nlohmann::ordered_json& value, int max_depth);

// Python repr() of a double ("1.0", "1e-05", "0.1", "-0.0", "Infinity" for json.dumps).
std::string PythonFloatRepr(double value);

}  // namespace qwenmux::chat
