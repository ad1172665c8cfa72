// The Qwen2/Qwen3 pre-tokenizer: splits text into pieces exactly as the Split pre-tokenizer of
// Qwen3's tokenizer.json does with the regex (behaviour "Isolated")
//
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//   \s*[\r\n]+|\s+(?!\S)|\s+
//
// hand-written as a scanner (no regex engine). Every code point falls into one of the
// alternatives, so the pieces always cover the whole text. Invalid UTF-8 bytes are treated as
// single characters of class kOther (they end up byte-level encoded like any other byte).
//
// Thread-safety: pure function; the scratch object is per caller.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace qwenmux::tokenizer {

struct Piece {
  uint32_t begin;  // byte offset into the text
  uint32_t end;
};

// Reusable buffers so repeated calls do not allocate.
struct PretokenizeScratch {
  std::vector<uint8_t> cls;   // CharClass per code point
  std::vector<uint32_t> pos;  // byte offset per code point (+ one past the end)
};

// Appends the pieces of `text` (size < 4 GiB) to *pieces, in order.
void Pretokenize(std::string_view text, std::vector<Piece>* pieces, PretokenizeScratch* scratch);

}  // namespace qwenmux::tokenizer
