// Unicode helpers for the tokenizer: UTF-8 decoding that tolerates invalid bytes, the character
// classes the Qwen2 pre-tokenizer regex needs, NFC normalisation, and GPT-2's byte-level alphabet.
//
// Character data comes from utf8proc. All functions are pure and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace qwenmux::tokenizer {

// Result of decoding one UTF-8 sequence.
struct Utf8Char {
  uint32_t cp;   // the code point; kInvalidCodePoint for an invalid byte sequence
  uint32_t len;  // bytes consumed (>= 1)
};
inline constexpr uint32_t kInvalidCodePoint = 0xFFFFFFFFu;

// Decodes the sequence at s[0..n), n >= 1. An invalid sequence (bad lead byte, bad or missing
// continuation, overlong form, surrogate, > U+10FFFF) yields kInvalidCodePoint with `len` = the
// length of its maximal subpart (Unicode's "substitution of maximal subparts", as Python and Rust
// use for errors="replace"), so each invalid subpart becomes exactly one U+FFFD when replaced.
Utf8Char DecodeUtf8(const char* s, size_t n);

// Like DecodeUtf8, but distinguishes a sequence that is a valid but incomplete prefix running to
// the end of the buffer (returns len = 0): a streaming decoder must wait for more bytes then.
Utf8Char DecodeUtf8Streaming(const char* s, size_t n);

// Appends the UTF-8 encoding of cp (must be a valid scalar value).
void AppendUtf8(uint32_t cp, std::string* out);

// Replaces each maximal invalid subpart of `bytes` with U+FFFD (EF BF BD).
std::string ToValidUtf8(std::string_view bytes);

// Character classes of the pre-tokenizer regex.
//   kLetter  \p{L}  (Lu Ll Lt Lm Lo)
//   kNumber  \p{N}  (Nd Nl No)
//   kNewline \r or \n
//   kSpace   \s minus \r\n: Unicode White_Space (U+0009..U+000D, U+0020, U+0085, U+00A0, U+1680,
//            U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000). Note U+200B is not \s.
//   kOther   everything else, including marks (Mn Mc Me) and invalid bytes.
enum class CharClass : uint8_t { kOther = 0, kLetter, kNumber, kSpace, kNewline };
CharClass ClassifyCodePoint(uint32_t cp);

// True if NFC normalisation of text made of this code point could differ from the input, i.e. the
// code point has a canonical decomposition, a non-zero combining class, is a mark (possible
// composition second) or a conjoining Hangul jamo. Text without such code points is already NFC.
bool MayChangeUnderNfc(uint32_t cp);

// NFC of `text`. Invalid UTF-8 bytes are kept as they are; the valid runs between them are
// normalised independently. Fast path: returns the input unchanged when no code point can change.
std::string NormalizeNfc(std::string_view text);

// GPT-2 bytes_to_unicode: byte -> code point of the byte-level alphabet, and its inverse
// (returns -1 for a code point that is not in the alphabet).
uint32_t ByteToUnicode(uint8_t b);
int UnicodeToByte(uint32_t cp);

// Converts a byte-level token string ("Ġthe") to raw bytes (" the"). Returns false if a
// character is not in the byte-level alphabet or the string is not valid UTF-8.
bool ByteLevelToBytes(std::string_view token, std::string* out);

}  // namespace qwenmux::tokenizer
