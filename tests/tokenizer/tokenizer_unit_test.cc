// Unit tests on small hand-made vocabularies, the pre-tokenizer and the Unicode helpers.
#include <cstdlib>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <utf8proc.h>

#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace qwenmux::tokenizer {
namespace {

// Byte-level string of raw bytes.
std::string BL(std::string_view raw) {
  std::string s;
  for (char c : raw) AppendUtf8(ByteToUnicode(static_cast<uint8_t>(c)), &s);
  return s;
}

// The 256 byte tokens (id = byte value) plus `extra` normal tokens (raw text), ids from 256 on.
struct Vocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
};
Vocab MakeVocab(const std::vector<std::string>& extra) {
  Vocab v;
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(BL(std::string(1, static_cast<char>(b))));
    v.types.push_back(1);
  }
  for (const auto& e : extra) {
    v.tokens.push_back(BL(e));
    v.types.push_back(1);
  }
  return v;
}
std::vector<std::string> Merges(const std::vector<std::pair<std::string, std::string>>& m) {
  std::vector<std::string> out;
  for (const auto& [l, r] : m) out.push_back(BL(l) + " " + BL(r));
  return out;
}

TEST(TokenizerUnit, MergeRankOrderAndLeftmostTie) {
  // ids: ab=256, bc=257, aa=258, aaaa=259
  Vocab v = MakeVocab({"ab", "bc", "aa", "aaaa"});
  auto tok = Tokenizer::Create(v.tokens, v.types,
                               Merges({{"b", "c"}, {"a", "b"}, {"a", "a"}, {"aa", "aa"}}));
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  // "b c" has the lower rank, so abc -> a + bc.
  EXPECT_EQ(tok->Encode("abc"), (std::vector<int32_t>{'a', 257}));
  EXPECT_EQ(tok->Encode("ab"), (std::vector<int32_t>{256}));
  // Equal ranks: leftmost first. aaa -> aa + a.
  EXPECT_EQ(tok->Encode("aaa"), (std::vector<int32_t>{258, 'a'}));
  EXPECT_EQ(tok->Encode("aaaaa"), (std::vector<int32_t>{259, 'a'}));
  // Long piece (heap path): 1000 a -> 250 x aaaa; 1001 a -> 250 x aaaa + a.
  EXPECT_EQ(tok->Encode(std::string(1000, 'a')), std::vector<int32_t>(250, 259));
  auto odd = tok->Encode(std::string(1002, 'a'));
  ASSERT_EQ(odd.size(), 251u);
  EXPECT_EQ(odd.back(), 258);
  // Spaces and punctuation are separate pieces; no merge crosses a piece boundary.
  EXPECT_EQ(tok->Encode("a b"), (std::vector<int32_t>{'a', ' ', 'b'}));
}

TEST(TokenizerUnit, CreateErrors) {
  Vocab v = MakeVocab({"ab"});
  {  // mismatched lengths
    auto types = v.types;
    types.pop_back();
    auto r = Tokenizer::Create(v.tokens, types, {});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("token types"), std::string::npos);
  }
  {  // merge naming an unknown token
    auto r = Tokenizer::Create(v.tokens, v.types, {BL("a") + " " + BL("zz")});
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("unknown token"), std::string::npos);
  }
  {  // merge producing a token not in the vocab
    auto r = Tokenizer::Create(v.tokens, v.types, Merges({{"x", "y"}}));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("not in the vocabulary"), std::string::npos);
  }
  {  // malformed merges
    for (std::string bad : {std::string(""), std::string("ab"), BL("a") + " ", std::string(" ")}) {
      EXPECT_FALSE(Tokenizer::Create(v.tokens, v.types, {bad}).ok()) << bad;
    }
  }
  {  // missing byte token
    auto tokens = v.tokens;
    auto types = v.types;
    tokens[0x41] = BL("q");  // duplicate 'q', no token for 'A'
    EXPECT_FALSE(Tokenizer::Create(tokens, types, {}).ok());
  }
  {  // normal token outside the byte-level alphabet (a raw space)
    auto tokens = v.tokens;
    tokens.push_back("a b");
    auto types = v.types;
    types.push_back(1);
    EXPECT_FALSE(Tokenizer::Create(tokens, types, {}).ok());
  }
  {  // unknown token type, empty vocab
    auto types = v.types;
    types[5] = 42;
    EXPECT_FALSE(Tokenizer::Create(v.tokens, types, {}).ok());
    EXPECT_FALSE(Tokenizer::Create({}, {}, {}).ok());
  }
}

TEST(TokenizerUnit, AddedTokensOnlyWithParseSpecial) {
  Vocab v = MakeVocab({});
  v.tokens.push_back("<|ctl|>");  // 256, control
  v.types.push_back(3);
  v.tokens.push_back("<|ctl|>x");  // 257, user-defined, longer match wins
  v.types.push_back(4);
  auto tok = Tokenizer::Create(v.tokens, v.types, {});
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ(tok->Encode("a<|ctl|>b", {.parse_special = true}),
            (std::vector<int32_t>{'a', 256, 'b'}));
  EXPECT_EQ(tok->Encode("<|ctl|>x", {.parse_special = true}), (std::vector<int32_t>{257}));
  for (int32_t id : tok->Encode("a<|ctl|>b<|ctl|>x")) EXPECT_LT(id, 256);
  EXPECT_EQ(tok->TokenId("<|ctl|>"), 256);
}

std::vector<std::string> Split(std::string_view text) {
  std::vector<Piece> pieces;
  PretokenizeScratch scratch;
  Pretokenize(text, &pieces, &scratch);
  std::vector<std::string> out;
  size_t at = 0;
  for (const Piece& p : pieces) {
    EXPECT_EQ(p.begin, at);  // contiguous cover
    at = p.end;
    out.emplace_back(text.substr(p.begin, p.end - p.begin));
  }
  EXPECT_EQ(at, text.size());
  return out;
}

using V = std::vector<std::string>;

TEST(Pretokenize, RegexAlternatives) {
  // Expected splits follow the regex alternatives one by one.
  EXPECT_EQ(Split("Hello  world"), (V{"Hello", " ", " world"}));       // \s+(?!\S) keeps one
  EXPECT_EQ(Split("I'm they'LL 'sand"), (V{"I", "'m", " they", "'LL", " '", "sand"}));
  EXPECT_EQ(Split("x'sand"), (V{"x", "'s", "and"}));  // contraction first, even mid-word
  EXPECT_EQ(Split("x'Re"), (V{"x", "'Re"}));
  EXPECT_EQ(Split("abc123"), (V{"abc", "1", "2", "3"}));                // single digits
  EXPECT_EQ(Split("a, b!!\n\nc"), (V{"a", ",", " b", "!!\n\n", "c"}));  // punct + newlines
  EXPECT_EQ(Split("a \n  b"), (V{"a", " \n", " ", " b"}));              // \s*[\r\n]+
  EXPECT_EQ(Split("end   "), (V{"end", "   "}));                        // trailing run
  EXPECT_EQ(Split("\tword"), (V{"\tword"}));                             // [^\r\n\p{L}\p{N}]?
  EXPECT_EQ(Split("\nword"), (V{"\n", "word"}));                         // \n never prefixes
  EXPECT_EQ(Split(" ?x"), (V{" ?", "x"}));
  EXPECT_EQ(Split("(word"), (V{"(word"}));
  // U+00A0 is \s (White_Space); U+200B is not.
  EXPECT_EQ(Split("\xC2\xA0nbsp"), (V{"\xC2\xA0nbsp"}));
  EXPECT_EQ(Split("a\xE2\x80\x8B" "b"), (V{"a", "\xE2\x80\x8B" "b"}));
  // Marks are not letters: Devanagari vowel sign splits the word.
  EXPECT_EQ(Split("\xE0\xA4\xA8\xE0\xA4\xBF"), (V{"\xE0\xA4\xA8", "\xE0\xA4\xBF"}));
  // Invalid bytes are single "other" characters.
  EXPECT_EQ(Split("a\xFF\xFE" "b"), (V{"a", "\xFF\xFE", "b"}));
  EXPECT_EQ(Split("a\xFF" "b"), (V{"a", "\xFF" "b"}));
  EXPECT_EQ(Split(""), V{});
}

TEST(Unicode, Utf8MaximalSubparts) {
  // Examples from the Unicode standard, §3.9 (U+FFFD substitution of maximal subparts).
  EXPECT_EQ(ToValidUtf8("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
            "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD" "d");
  EXPECT_EQ(ToValidUtf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(ToValidUtf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong
  EXPECT_EQ(ToValidUtf8("\xF4\x90\x80\x80"),
            "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // > U+10FFFF
  EXPECT_EQ(ToValidUtf8("ok \xE2\x82\xAC"), "ok \xE2\x82\xAC");
  EXPECT_EQ(DecodeUtf8Streaming("\xF0\x9F\x98", 3).len, 0u);  // incomplete, wait
  EXPECT_EQ(DecodeUtf8Streaming("\xF0\x28", 2).len, 1u);      // invalid, replace now
}

// The NFC fast path skips normalisation when no code point is flagged by MayChangeUnderNfc. Check
// that against utf8proc over all of Unicode: every unflagged code point is NFC on its own, and every
// code point that can be the non-first part of a canonical decomposition (a composition second)
// is flagged.
TEST(Unicode, NfcQuickCheckIsConservative) {
  int checked = 0;
  for (int32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    utf8proc_int32_t buf[32];
    int options = UTF8PROC_DECOMPOSE;
    const utf8proc_ssize_t n =
        utf8proc_decompose_char(cp, buf, 32, static_cast<utf8proc_option_t>(options), nullptr);
    ASSERT_GT(n, 0);
    for (utf8proc_ssize_t k = 1; k < n; ++k) {
      ASSERT_TRUE(MayChangeUnderNfc(static_cast<uint32_t>(buf[k])))
          << std::hex << "U+" << buf[k] << " in the decomposition of U+" << cp;
    }
    if (!MayChangeUnderNfc(static_cast<uint32_t>(cp))) {
      std::string s;
      AppendUtf8(static_cast<uint32_t>(cp), &s);
      utf8proc_uint8_t* out = nullptr;
      const utf8proc_ssize_t m = utf8proc_map(
          reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
          &out, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
      ASSERT_GE(m, 0);
      const std::string nfc(reinterpret_cast<const char*>(out), static_cast<size_t>(m));
      std::free(out);
      ASSERT_EQ(nfc, s) << std::hex << "U+" << cp;
      ++checked;
    }
  }
  EXPECT_GT(checked, 100000);
  // And the end-to-end helper: decomposed input is composed, invalid bytes survive.
  EXPECT_EQ(NormalizeNfc("e\xCC\x81\xFF" "a\xCC\x8A"), "\xC3\xA9\xFF\xC3\xA5");
  EXPECT_EQ(NormalizeNfc("plain ascii"), "plain ascii");
}

TEST(Unicode, ByteLevelAlphabet) {
  EXPECT_EQ(ByteToUnicode(' '), 0x120u);   // Ġ
  EXPECT_EQ(ByteToUnicode('\n'), 0x10Au);  // Ċ
  EXPECT_EQ(ByteToUnicode('a'), static_cast<uint32_t>('a'));
  EXPECT_EQ(ByteToUnicode(0xAD), 0x143u);  // the last of the 68 remapped bytes
  for (int b = 0; b < 256; ++b) EXPECT_EQ(UnicodeToByte(ByteToUnicode(static_cast<uint8_t>(b))), b);
  std::string out;
  EXPECT_TRUE(ByteLevelToBytes("\xC4\xA0the", &out));
  EXPECT_EQ(out, " the");
  EXPECT_FALSE(ByteLevelToBytes("a b", &out));
}

}  // namespace
}  // namespace qwenmux::tokenizer
