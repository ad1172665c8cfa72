#include "tokenizer/pretokenize.h"

#include "tokenizer/unicode.h"

namespace qwenmux::tokenizer {
namespace {

constexpr uint8_t kOther = static_cast<uint8_t>(CharClass::kOther);
constexpr uint8_t kLetter = static_cast<uint8_t>(CharClass::kLetter);
constexpr uint8_t kNumber = static_cast<uint8_t>(CharClass::kNumber);
constexpr uint8_t kSpace = static_cast<uint8_t>(CharClass::kSpace);
constexpr uint8_t kNewline = static_cast<uint8_t>(CharClass::kNewline);

struct AsciiTable {
  uint8_t cls[128];
  AsciiTable() {
    for (uint32_t c = 0; c < 128; ++c) cls[c] = static_cast<uint8_t>(ClassifyCodePoint(c));
  }
};
const AsciiTable& Ascii() {
  static const AsciiTable table;
  return table;
}

bool IsWs(uint8_t c) { return c == kSpace || c == kNewline; }

// Lower-cases an ASCII letter; other bytes unchanged.
char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

}  // namespace

void Pretokenize(std::string_view text, std::vector<Piece>* pieces, PretokenizeScratch* scratch) {
  // Pass 1: classify code points.
  auto& cls = scratch->cls;
  auto& pos = scratch->pos;
  cls.clear();
  pos.clear();
  const AsciiTable& ascii = Ascii();
  for (size_t i = 0; i < text.size();) {
    const auto b = static_cast<uint8_t>(text[i]);
    pos.push_back(static_cast<uint32_t>(i));
    if (b < 0x80) {
      cls.push_back(ascii.cls[b]);
      ++i;
      continue;
    }
    const Utf8Char c = DecodeUtf8(text.data() + i, text.size() - i);
    cls.push_back(static_cast<uint8_t>(ClassifyCodePoint(c.cp)));
    i += c.len;
  }
  const size_t n = cls.size();
  pos.push_back(static_cast<uint32_t>(text.size()));

  // Is code point k the ASCII character ch (case-insensitive for letters)?
  auto is_char = [&](size_t k, char ch) {
    return k < n && pos[k + 1] - pos[k] == 1 && Lower(text[pos[k]]) == ch;
  };
  // Contraction letter 's' also matches U+017F LATIN SMALL LETTER LONG S under case folding.
  auto is_s = [&](size_t k) {
    return is_char(k, 's') || (k < n && pos[k + 1] - pos[k] == 2 &&
                               static_cast<uint8_t>(text[pos[k]]) == 0xC5 &&
                               static_cast<uint8_t>(text[pos[k] + 1]) == 0xBF);
  };

  size_t i = 0;
  while (i < n) {
    const uint8_t c = cls[i];
    size_t end = i + 1;
    // 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if (text[pos[i]] == '\'' && i + 1 < n) {
      if (is_s(i + 1) || is_char(i + 1, 't') || is_char(i + 1, 'm') || is_char(i + 1, 'd')) {
        pieces->push_back({pos[i], pos[i + 2]});
        i += 2;
        continue;
      }
      if ((is_char(i + 1, 'r') && is_char(i + 2, 'e')) ||
          (is_char(i + 1, 'v') && is_char(i + 2, 'e')) ||
          (is_char(i + 1, 'l') && is_char(i + 2, 'l'))) {
        pieces->push_back({pos[i], pos[i + 3]});
        i += 3;
        continue;
      }
    }
    // 2. [^\r\n\p{L}\p{N}]?\p{L}+
    if (c == kLetter || ((c == kOther || c == kSpace) && i + 1 < n && cls[i + 1] == kLetter)) {
      end = i + 1;
      while (end < n && cls[end] == kLetter) ++end;
      pieces->push_back({pos[i], pos[end]});
      i = end;
      continue;
    }
    // 3. \p{N}
    if (c == kNumber) {
      pieces->push_back({pos[i], pos[i + 1]});
      ++i;
      continue;
    }
    // 4. ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    {
      size_t k = i;
      if (text[pos[i]] == ' ' && i + 1 < n && cls[i + 1] == kOther) ++k;
      if (cls[k] == kOther) {
        while (k < n && cls[k] == kOther) ++k;
        while (k < n && cls[k] == kNewline) ++k;
        pieces->push_back({pos[i], pos[k]});
        i = k;
        continue;
      }
    }
    // Whitespace (c is kSpace or kNewline here). j = end of the whitespace run.
    size_t j = i;
    size_t last_nl = n;
    while (j < n && IsWs(cls[j])) {
      if (cls[j] == kNewline) last_nl = j;
      ++j;
    }
    // 5. \s*[\r\n]+
    if (last_nl != n) {
      end = last_nl + 1;
    } else if (j == n) {
      end = j;  // 6. \s+(?!\S) at the end of the text
    } else if (j - 1 > i) {
      end = j - 1;  // 6. leave the last whitespace for the following word
    } else {
      end = j;  // 7. \s+
    }
    pieces->push_back({pos[i], pos[end]});
    i = end;
  }
}

}  // namespace qwenmux::tokenizer
