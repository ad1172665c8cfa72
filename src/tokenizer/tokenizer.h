// Qwen2/Qwen3 byte-level BPE tokenizer, built from GGUF vocabulary metadata.
//
// Encoding pipeline (matches Hugging Face tokenizers on Qwen3's tokenizer.json):
//   1. If EncodeOptions::parse_special, split out added tokens (token_type 3 control and 4
//      user-defined, e.g. <|im_end|>, <think>) matched literally, leftmost then longest. Otherwise
//      no added token is ever produced: "<|im_start|>" in user text is ordinary text.
//   2. NFC-normalise the remaining text (skipped when it cannot change, e.g. ASCII).
//   3. Pre-tokenise with the Qwen2 split regex (see pretokenize.h).
//   4. BPE each piece over its UTF-8 bytes: repeatedly merge the adjacent pair with the lowest merge
//      rank, ties to the leftmost pair.
// Invalid UTF-8 input never fails: invalid bytes are byte-level encoded like any other byte.
//
// Decoding maps ids back to bytes (byte-level alphabet undone; added tokens as their literal
// text) and replaces invalid UTF-8 with U+FFFD per maximal subpart (like HF errors="replace").
//
// Thread-safety: a Tokenizer is immutable after Create/FromGguf; all const methods may be called
// concurrently. A StreamDecoder is single-threaded state and must not be shared between threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace qwenmux::gguf {
class File;
}

namespace qwenmux::tokenizer {

// tokenizer.ggml.token_type values.
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct EncodeOptions {
  // Match added tokens (control and user-defined) written in the text. Off by default: only
  // text the caller trusts (a rendered chat template) should be encoded with this on.
  bool parse_special = false;
};

struct DecodeOptions {
  // Drop control tokens (token_type 3: <|im_start|>, <|endoftext|>, FIM tokens...). User-defined
  // tokens such as <think> and <tool_call> are kept, as llama.cpp does. (HF's
  // skip_special_tokens also keeps the FIM/repo tokens, which GGUF marks as control.)
  bool skip_special = false;
};

class Tokenizer {
 public:
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Builds a tokenizer from the three GGUF arrays: `tokens[id]` in the byte-level alphabet
  // ("Ġthe") for normal tokens and as literal text for added ones, `types[id]` (TokenType values),
  // `merges[rank]` = "left right". Errors: length mismatch between tokens and types, empty vocab,
  // a normal token outside the byte-level alphabet, a byte with no single-byte token, a malformed
  // merge, or a merge naming an unknown token or producing a token not in the vocab.
  static Result<Tokenizer> Create(std::vector<std::string> tokens, std::vector<int32_t> types,
                                  std::vector<std::string> merges);

  // Reads tokenizer.ggml.tokens / token_type / merges (and checks tokenizer.ggml.model is "gpt2"
  // when present) and calls Create.
  static Result<Tokenizer> FromGguf(const gguf::File& file);
  // FromGguf through a process-wide cache: files whose tokenizer arrays (tokens, types, merges)
  // are identical (every Qwen3 model) share one immutable Tokenizer instead of rebuilding it on
  // every load (a model switch). Keyed by the arrays' sizes and two independent 64-bit hashes of
  // their contents; the 4 most recently used vocabularies stay cached. Thread-safe.
  static Result<std::shared_ptr<const Tokenizer>> SharedFromGguf(const gguf::File& file);
  // Drops the cache's references (tokenizers still used by a model live on). Memory estimates
  // count a model's tokenizer as its own; tests that compare them with RSS growth start here.
  static void ClearSharedCache();

  // Text -> ids. Never fails on any byte string.
  std::vector<int32_t> Encode(std::string_view text, const EncodeOptions& options = {}) const;
  // Appends to *ids instead (no allocation of the result once warmed up).
  void EncodeAppend(std::string_view text, const EncodeOptions& options,
                    std::vector<int32_t>* ids) const;

  // Ids -> valid UTF-8 text. Errors on an id outside [0, vocab_size()).
  Result<std::string> Decode(std::span<const int32_t> ids, const DecodeOptions& options = {}) const;

  // Raw bytes of one token (no UTF-8 repair); empty view for an out-of-range id.
  std::string_view TokenBytes(int32_t id) const;
  // The token string as stored in GGUF ("Ġthe").
  std::string_view TokenString(int32_t id) const;

  // Id of the token whose text (decoded bytes) is exactly `text`, e.g. TokenId("<|im_end|>") or
  // TokenId("yes"); added tokens win over normal ones. nullopt if there is none.
  std::optional<int32_t> TokenId(std::string_view text) const;

  int32_t vocab_size() const;
  TokenType token_type(int32_t id) const;  // kUndefined for an out-of-range id
  bool IsControl(int32_t id) const { return token_type(id) == TokenType::kControl; }
  // Added tokens: control or user-defined (the ones parse_special can match).
  bool IsSpecial(int32_t id) const {
    const TokenType t = token_type(id);
    return t == TokenType::kControl || t == TokenType::kUserDefined;
  }
  // All special ids (control + user-defined), ascending.
  const std::vector<int32_t>& special_ids() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Streaming detokenizer: feed ids one at a time, get back only complete UTF-8 characters. Bytes of
// a character split across tokens (an emoji spread over several byte tokens) are held until the
// character completes; bytes that can never form a valid character come out as U+FFFD at once.
// Holds a pointer to the Tokenizer, which must outlive it. Not thread-safe.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, DecodeOptions options = {})
      : tok_(&tokenizer), options_(options) {}

  // Appends the text that became complete with this id to *out. Error on an out-of-range id (the
  // decoder state is unchanged then).
  Status Push(int32_t id, std::string* out);
  // End of stream: flushes held bytes (an incomplete character becomes one U+FFFD) and resets.
  void Finish(std::string* out);
  // Bytes currently held back.
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tok_;
  DecodeOptions options_;
  std::string pending_;
};

}  // namespace qwenmux::tokenizer
