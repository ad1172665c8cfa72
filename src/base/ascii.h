// ASCII case mapping for names, keys and header fields (bytes >= 0x80 are left as they are).
#pragma once

#include <cctype>
#include <string>
#include <string_view>

namespace qwenmux {

inline std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

inline std::string AsciiUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace qwenmux
