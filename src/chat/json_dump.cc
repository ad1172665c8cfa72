#include "chat/json_dump.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

namespace qwenmux::chat {
namespace {

void AppendString(const std::string& s, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 15]);
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
}

}  // namespace

std::string PythonFloatRepr(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  // Shortest round-trip digits in scientific form: "-d.ddde+XX".
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  if (ec != std::errc()) return "NaN";  // cannot happen for a finite double and 64 bytes
  std::string_view sci(buf, static_cast<size_t>(end - buf));
  std::string out;
  if (!sci.empty() && sci.front() == '-') {
    out.push_back('-');
    sci.remove_prefix(1);
  }
  const size_t e_pos = sci.find('e');
  const std::string_view mantissa = sci.substr(0, e_pos);
  const int exp10 = std::atoi(std::string(sci.substr(e_pos + 1)).c_str());
  std::string digits;
  for (const char c : mantissa) {
    if (c != '.') digits.push_back(c);
  }
  const int n_digits = static_cast<int>(digits.size());
  const int decpt = exp10 + 1;  // position of the decimal point relative to the digits
  if (decpt <= -4 || decpt > 16) {
    out.push_back(digits[0]);
    if (n_digits > 1) {
      out.push_back('.');
      out.append(digits, 1, std::string::npos);
    }
    out.push_back('e');
    out.push_back(exp10 < 0 ? '-' : '+');
    const int abs_exp = std::abs(exp10);
    if (abs_exp < 10) out.push_back('0');
    out.append(std::to_string(abs_exp));
  } else if (decpt <= 0) {
    out.append("0.");
    out.append(static_cast<size_t>(-decpt), '0');
    out.append(digits);
  } else if (decpt < n_digits) {
    out.append(digits, 0, static_cast<size_t>(decpt));
    out.push_back('.');
    out.append(digits, static_cast<size_t>(decpt), std::string::npos);
  } else {
    out.append(digits);
    out.append(static_cast<size_t>(decpt - n_digits), '0');
    out.append(".0");
  }
  return out;
}

void AppendPythonJson(const nlohmann::ordered_json& value, std::string* out) {
  using Type = nlohmann::ordered_json::value_t;
  switch (value.type()) {
    case Type::null: out->append("null"); return;
    case Type::boolean: out->append(value.get<bool>() ? "true" : "false"); return;
    case Type::number_integer: out->append(std::to_string(value.get<int64_t>())); return;
    case Type::number_unsigned: out->append(std::to_string(value.get<uint64_t>())); return;
    case Type::number_float: out->append(PythonFloatRepr(value.get<double>())); return;
    case Type::string: AppendString(value.get_ref<const std::string&>(), out); return;
    case Type::array: {
      out->push_back('[');
      bool first = true;
      for (const auto& element : value) {
        if (!first) out->append(", ");
        first = false;
        AppendPythonJson(element, out);
      }
      out->push_back(']');
      return;
    }
    case Type::object: {
      out->push_back('{');
      bool first = true;
      for (const auto& [key, element] : value.items()) {
        if (!first) out->append(", ");
        first = false;
        AppendString(key, out);
        out->append(": ");
        AppendPythonJson(element, out);
      }
      out->push_back('}');
      return;
    }
    case Type::binary:
    case Type::discarded:
      out->append("null");
      return;
  }
  out->append("null");
}

bool JsonDepthWithin(const nlohmann::ordered_json& value, int max_depth) {
  if (!value.is_structured()) return true;
  if (max_depth <= 0) return false;
  for (const auto& element : value) {
    if (!JsonDepthWithin(element, max_depth - 1)) return false;
  }
  return true;
}

std::string PythonJsonDumps(const nlohmann::ordered_json& value) {
  std::string out;
  AppendPythonJson(value, &out);
  return out;
}

}  // namespace qwenmux::chat
