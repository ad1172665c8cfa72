// libFuzzer target for the tokenizer: any byte string must encode (with and without special-token
// parsing), its token bytes must reproduce the NFC-normalised input, and whole and streaming
// decoding must agree. Uses a small synthetic vocabulary (all 256 bytes, a few merges, added
// tokens) so the target needs no data files.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace {

using qwenmux::tokenizer::Tokenizer;

std::string BL(std::string_view raw) {
  std::string s;
  for (char c : raw) qwenmux::tokenizer::AppendUtf8(qwenmux::tokenizer::ByteToUnicode(static_cast<uint8_t>(c)), &s);
  return s;
}

const Tokenizer& Vocab() {
  static const Tokenizer* tok = [] {
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    for (int b = 0; b < 256; ++b) {
      tokens.push_back(BL(std::string(1, static_cast<char>(b))));
      types.push_back(1);
    }
    const char* words[] = {"th", "the", " the", "in", "ing", "aa", "aaaa", "\xE4\xBD", "\xE4\xBD\xA0"};
    std::vector<std::string> merges = {BL("t") + " " + BL("h"), BL("th") + " " + BL("e"),
                                       BL(" ") + " " + BL("the"), BL("i") + " " + BL("n"),
                                       BL("in") + " " + BL("g"), BL("a") + " " + BL("a"),
                                       BL("aa") + " " + BL("aa"), BL("\xE4") + " " + BL("\xBD"),
                                       BL("\xE4\xBD") + " " + BL("\xA0")};
    for (const char* w : words) {
      tokens.push_back(BL(w));
      types.push_back(1);
    }
    for (const char* s : {"<|im_start|>", "<|im_end|>", "<think>"}) {
      tokens.push_back(s);
      types.push_back(s[1] == '|' ? 3 : 4);
    }
    auto t = Tokenizer::Create(tokens, types, merges);
    if (!t.ok()) std::abort();
    return new Tokenizer(std::move(t).value());
  }();
  return *tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Tokenizer& tok = Vocab();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (bool special : {false, true}) {
    const auto ids = tok.Encode(text, {.parse_special = special});
    std::string bytes;
    for (int32_t id : ids) {
      if (!special && tok.IsSpecial(id)) std::abort();
      bytes.append(tok.TokenBytes(id));
    }
    if (bytes != qwenmux::tokenizer::NormalizeNfc(text)) std::abort();
    auto whole = tok.Decode(ids);
    if (!whole.ok()) std::abort();
    qwenmux::tokenizer::StreamDecoder stream(tok);
    std::string streamed;
    for (int32_t id : ids) {
      if (!stream.Push(id, &streamed).ok()) std::abort();
    }
    stream.Finish(&streamed);
    if (streamed != *whole) std::abort();
  }
  return 0;
}
