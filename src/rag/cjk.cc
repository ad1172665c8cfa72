#include "rag/cjk.h"

#include <vector>

namespace qwenmux::rag {

bool IsCjk(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) ||    // CJK unified ideographs
         (cp >= 0x3400 && cp <= 0x4DBF) ||    // extension A
         (cp >= 0x20000 && cp <= 0x323AF) ||  // extensions B-H
         (cp >= 0xF900 && cp <= 0xFAFF) ||    // compatibility ideographs
         (cp >= 0x3040 && cp <= 0x30FF) ||    // hiragana, katakana
         (cp >= 0x31F0 && cp <= 0x31FF) ||    // katakana phonetic extensions
         (cp >= 0xFF66 && cp <= 0xFF9D) ||    // halfwidth katakana
         (cp >= 0xAC00 && cp <= 0xD7AF) ||    // Hangul syllables
         (cp >= 0x1100 && cp <= 0x11FF) ||    // Hangul jamo
         (cp >= 0x3130 && cp <= 0x318F);      // Hangul compatibility jamo
}

namespace {

// Decodes one UTF-8 sequence at s[i]; *len gets its length (1 for an invalid byte, cp = U+FFFD).
char32_t Decode(std::string_view s, size_t i, size_t* len) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) {
    *len = 1;
    return 0xFFFD;
  }
  char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) {
      *len = 1;
      return 0xFFFD;
    }
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  *len = n;
  return cp;
}

}  // namespace

std::string CjkBigrams(std::string_view text) {
  std::string out;
  out.reserve(text.size() * 2);
  std::vector<std::string_view> run;  // the CJK characters of the current run, as UTF-8
  auto flush = [&] {
    if (run.empty()) return;
    out += ' ';
    if (run.size() == 1) {
      out += run[0];
    } else {
      for (size_t k = 0; k + 1 < run.size(); ++k) {
        if (k > 0) out += ' ';
        out += run[k];
        out += run[k + 1];
      }
    }
    out += ' ';
    run.clear();
  };
  for (size_t i = 0; i < text.size();) {
    size_t len = 1;
    const char32_t cp = Decode(text, i, &len);
    if (IsCjk(cp)) {
      run.push_back(text.substr(i, len));
    } else {
      flush();
      out.append(text.substr(i, len));
    }
    i += len;
  }
  flush();
  return out;
}

}  // namespace qwenmux::rag
