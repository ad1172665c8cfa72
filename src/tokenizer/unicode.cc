#include "tokenizer/unicode.h"

#include <cstdlib>

#include <utf8proc.h>

namespace qwenmux::tokenizer {
namespace {

// Decodes one sequence; `complete` = false when a valid prefix ran into the end of the buffer.
Utf8Char DecodeImpl(const char* s, size_t n, bool* complete) {
  *complete = true;
  const auto* u = reinterpret_cast<const uint8_t*>(s);
  const uint8_t b0 = u[0];
  if (b0 < 0x80) return {b0, 1};
  uint32_t need;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  uint32_t cp;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {kInvalidCodePoint, 1};
  }
  for (uint32_t k = 1; k <= need; ++k) {
    if (k >= n) {
      *complete = false;
      return {kInvalidCodePoint, k};
    }
    const uint8_t b = u[k];
    const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return {kInvalidCodePoint, k};
    cp = (cp << 6) | (b & 0x3F);
  }
  return {cp, need + 1};
}

}  // namespace

Utf8Char DecodeUtf8(const char* s, size_t n) {
  bool complete;
  return DecodeImpl(s, n, &complete);
}

Utf8Char DecodeUtf8Streaming(const char* s, size_t n) {
  bool complete;
  Utf8Char c = DecodeImpl(s, n, &complete);
  if (!complete) c.len = 0;
  return c;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string ToValidUtf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    // ASCII run fast path.
    if (static_cast<uint8_t>(bytes[i]) < 0x80) {
      out.push_back(bytes[i++]);
      continue;
    }
    const Utf8Char c = DecodeUtf8(bytes.data() + i, bytes.size() - i);
    if (c.cp == kInvalidCodePoint) {
      out.append("\xEF\xBF\xBD");
    } else {
      out.append(bytes.data() + i, c.len);
    }
    i += c.len;
  }
  return out;
}

CharClass ClassifyCodePoint(uint32_t cp) {
  if (cp == kInvalidCodePoint) return CharClass::kOther;
  if (cp == '\r' || cp == '\n') return CharClass::kNewline;
  if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85) return CharClass::kSpace;
  if (cp > 0x10FFFF) return CharClass::kOther;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
      return CharClass::kLetter;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return CharClass::kNumber;
    case UTF8PROC_CATEGORY_ZS:  // U+00A0, U+1680, U+2000..U+200A, U+202F, U+205F, U+3000
    case UTF8PROC_CATEGORY_ZL:  // U+2028
    case UTF8PROC_CATEGORY_ZP:  // U+2029
      return CharClass::kSpace;
    default:
      return CharClass::kOther;
  }
}

bool MayChangeUnderNfc(uint32_t cp) {
  if (cp < 0x300) {
    // Below the combining diacritics only precomposed Latin-1/Latin Extended letters can change
    // (they have decompositions, but are NFC-stable unless followed by a mark, which we flag).
    return false;
  }
  if ((cp >= 0x1100 && cp <= 0x11FF) || (cp >= 0xA960 && cp <= 0xA97F) ||
      (cp >= 0xD7B0 && cp <= 0xD7FF)) {
    return true;  // conjoining Hangul jamo compose algorithmically
  }
  if (cp > 0x10FFFF) return false;
  const utf8proc_property_t* p = utf8proc_get_property(static_cast<utf8proc_int32_t>(cp));
  if (p->combining_class != 0) return true;
  if (p->category == UTF8PROC_CATEGORY_MN || p->category == UTF8PROC_CATEGORY_MC ||
      p->category == UTF8PROC_CATEGORY_ME) {
    return true;
  }
  // A canonical decomposition (decomp_type 0 = canonical) may change under NFC (singletons,
  // composition exclusions); compatibility decompositions do not matter for NFC.
  return p->decomp_seqindex != UINT16_MAX && p->decomp_type == 0;
}

namespace {

// NFC of valid UTF-8; appends to *out.
void NfcValidRun(std::string_view run, std::string* out) {
  bool needs = false;
  for (size_t i = 0; i < run.size();) {
    if (static_cast<uint8_t>(run[i]) < 0x80) {
      ++i;
      continue;
    }
    const Utf8Char c = DecodeUtf8(run.data() + i, run.size() - i);
    if (MayChangeUnderNfc(c.cp)) {
      needs = true;
      break;
    }
    i += c.len;
  }
  if (!needs) {
    out->append(run);
    return;
  }
  utf8proc_uint8_t* dst = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(run.data()),
                                          static_cast<utf8proc_ssize_t>(run.size()), &dst,
                                          static_cast<utf8proc_option_t>(UTF8PROC_STABLE |
                                                                         UTF8PROC_COMPOSE));
  if (n < 0 || dst == nullptr) {
    out->append(run);  // cannot happen for valid UTF-8 short of memory; keep the text as is
  } else {
    out->append(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
  }
  std::free(dst);
}

}  // namespace

std::string NormalizeNfc(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t run_start = 0, i = 0;
  while (i < text.size()) {
    if (static_cast<uint8_t>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    const Utf8Char c = DecodeUtf8(text.data() + i, text.size() - i);
    if (c.cp == kInvalidCodePoint) {
      NfcValidRun(text.substr(run_start, i - run_start), &out);
      out.append(text.data() + i, c.len);
      run_start = i + c.len;
    }
    i += c.len;
  }
  NfcValidRun(text.substr(run_start), &out);
  return out;
}

namespace {

struct ByteMaps {
  uint32_t to_cp[256];
  int16_t from_cp[324];  // the alphabet lies in U+0021..U+0143
  ByteMaps() {
    for (auto& x : from_cp) x = -1;
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool self = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      to_cp[b] = self ? static_cast<uint32_t>(b) : next++;
      from_cp[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteMaps& Maps() {
  static const ByteMaps maps;
  return maps;
}

}  // namespace

uint32_t ByteToUnicode(uint8_t b) { return Maps().to_cp[b]; }

int UnicodeToByte(uint32_t cp) { return cp < 324 ? Maps().from_cp[cp] : -1; }

bool ByteLevelToBytes(std::string_view token, std::string* out) {
  out->clear();
  for (size_t i = 0; i < token.size();) {
    const Utf8Char c = DecodeUtf8(token.data() + i, token.size() - i);
    if (c.cp == kInvalidCodePoint) return false;
    const int b = UnicodeToByte(c.cp);
    if (b < 0) return false;
    out->push_back(static_cast<char>(b));
    i += c.len;
  }
  return true;
}

}  // namespace qwenmux::tokenizer
