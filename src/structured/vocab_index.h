// Per-vocabulary tables for constrained decoding, built once per tokenizer and shared by every
// compiled constraint:
//   - a byte trie of all normal tokens (their decoded bytes), laid out in preorder so a walk
//     can skip a whole subtree when the grammar rejects its first byte;
//   - for JSON string bodies: which tokens stay inside a string (from a character boundary) and
//     how many characters they add (`string_pure[r]`: those adding at most r), and a second trie
//     holding only the tokens that close the string (contain an unescaped '"').
// Special tokens (control and user-defined: <|im_end|>, <think>, <tool_call>...) are not in the
// tries; grammars match them by id (kToken), and end-of-sequence tokens are allowed only where
// the grammar is complete.
//
// Thread-safety: immutable after Build; shared freely across threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace qwenmux::structured {

// A set of token ids as 64-bit words.
using TokenMask = std::vector<uint64_t>;

inline void MaskSet(TokenMask& m, int32_t id) { m[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63); }
inline bool MaskTest(const TokenMask& m, int32_t id) { return (m[static_cast<size_t>(id) >> 6] >> (id & 63)) & 1; }

struct TokenTrie {
  // Node 0 is the root. Children of node n are n+1 .. next[n]-1, each child c followed by its
  // subtree; the next sibling of c is next[c].
  std::vector<uint8_t> byte;
  std::vector<uint32_t> next;
  std::vector<uint32_t> tok_begin;  // tokens ending at node n: toks[tok_begin[n] .. tok_begin[n+1])
  std::vector<int32_t> toks;
  size_t size() const { return byte.size(); }
};

// The JSON string-body automaton (shared by the matcher and the tables): states are 0 (at a
// character boundary) and 1..13 (inside an escape or a UTF-8 sequence).
struct StringStep {
  int8_t next;  // new state, or -1: rejected
  bool exit;    // the byte is the closing quote (only from state 0)
  bool starts;  // the byte starts a new character (counts toward the length)
};
StringStep JsonStringStep(int state, uint8_t b);

class VocabIndex {
 public:
  static std::shared_ptr<const VocabIndex> Build(const tokenizer::Tokenizer& tok);
  // Build, memoised per vocabulary (keyed by a fingerprint of the token strings), so every
  // model sharing the Qwen3 vocabulary shares one index. Thread-safe.
  static std::shared_ptr<const VocabIndex> Shared(const tokenizer::Tokenizer& tok);

  int32_t vocab_size() const { return vocab_size_; }
  size_t mask_words() const { return (static_cast<size_t>(vocab_size_) + 63) / 64; }
  const std::string& bytes(int32_t id) const { return bytes_[id]; }
  bool is_special(int32_t id) const { return special_[id] != 0; }
  const std::vector<int32_t>& eos_ids() const { return eos_; }
  bool is_eos(int32_t id) const;
  // Id of a special token by its text ("<tool_call>"), -1 when the vocabulary has none.
  int32_t special_id(std::string_view text) const;
  // Id of the normal token whose bytes are exactly `text`, -1 when none.
  int32_t normal_id(std::string_view text) const;

  const TokenTrie& trie() const { return trie_; }
  const TokenTrie& string_exit_trie() const { return string_exit_; }
  // Tokens that stay inside a JSON string from a character boundary adding <= r characters;
  // r is clipped to max_pure_chars().
  const TokenMask& string_pure(int32_t r) const { return string_pure_[std::min(r, max_pure_chars_)]; }
  int32_t max_pure_chars() const { return max_pure_chars_; }
  int32_t max_token_bytes() const { return max_token_bytes_; }

 private:
  int32_t vocab_size_ = 0;
  std::vector<std::string> bytes_;
  std::vector<uint8_t> special_;
  std::vector<int32_t> eos_;
  TokenTrie trie_, string_exit_;
  std::vector<TokenMask> string_pure_;
  int32_t max_pure_chars_ = 0, max_token_bytes_ = 0;
};

}  // namespace qwenmux::structured
