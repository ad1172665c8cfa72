// Golden tests: the 45 Hugging Face reference cases, with the vocabulary loaded from the vocab-only
// GGUF and from both tiny model files.
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace qwenmux::tokenizer {
namespace {

struct Case {
  std::string text;
  std::vector<int32_t> ids;
  std::string decoded;
};

std::vector<Case> LoadCases() {
  std::ifstream f(testing::RefPath("tokenizer-cases.json"));
  EXPECT_TRUE(f.good());
  const auto j = nlohmann::json::parse(f);
  std::vector<Case> cases;
  for (const auto& c : j.at("cases")) {
    cases.push_back({c.at("text").get<std::string>(), c.at("ids").get<std::vector<int32_t>>(),
                     c.at("decoded").get<std::string>()});
  }
  return cases;
}

class TokenizerGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(TokenizerGolden, AllReferenceCases) {
  auto file = gguf::File::Open(testing::ModelPath(GetParam()));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto tok = Tokenizer::FromGguf(*file);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ(tok->vocab_size(), 151936);

  const std::vector<Case> cases = LoadCases();
  ASSERT_EQ(cases.size(), 45u);
  for (const Case& c : cases) {
    SCOPED_TRACE(nlohmann::json(c.text).dump());
    // The reference parses special tokens written in the text.
    EXPECT_EQ(tok->Encode(c.text, {.parse_special = true}), c.ids);
    auto decoded = tok->Decode(c.ids);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(*decoded, c.decoded);

    // Streaming the reference ids one at a time yields the same text.
    StreamDecoder stream(*tok);
    std::string streamed;
    for (int32_t id : c.ids) ASSERT_TRUE(stream.Push(id, &streamed).ok());
    stream.Finish(&streamed);
    EXPECT_EQ(streamed, c.decoded);
  }
}

INSTANTIATE_TEST_SUITE_P(TokenizerFiles, TokenizerGolden,
                         ::testing::Values("qwen3-vocab.gguf", "tiny-dense.q8_0.gguf",
                                           "tiny-moe.q4_k_m.gguf"));

// Shared tokenizer for the tests below (loaded once).
const Tokenizer& Qwen3() {
  static const Tokenizer* tok = [] {
    auto file = gguf::File::Open(testing::ModelPath("qwen3-vocab.gguf"));
    if (!file.ok()) return static_cast<Tokenizer*>(nullptr);
    auto t = Tokenizer::FromGguf(*file);
    return t.ok() ? new Tokenizer(std::move(t).value()) : nullptr;
  }();
  if (tok == nullptr) std::abort();
  return *tok;
}

std::string Concat(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s.append(tok.TokenBytes(id));
  return s;
}

TEST(TokenizerQwen3, SpecialTokenTable) {
  const Tokenizer& tok = Qwen3();
  // Ids from the Qwen3 tokenizer_config (docs/qwen3-reference.md §4.2).
  EXPECT_EQ(tok.TokenId("<|endoftext|>"), 151643);
  EXPECT_EQ(tok.TokenId("<|im_start|>"), 151644);
  EXPECT_EQ(tok.TokenId("<|im_end|>"), 151645);
  EXPECT_EQ(tok.TokenId("<think>"), 151667);
  EXPECT_EQ(tok.TokenId("</think>"), 151668);
  EXPECT_EQ(tok.TokenId("<tool_call>"), 151657);
  EXPECT_EQ(tok.TokenId("yes"), 9693);
  EXPECT_EQ(tok.TokenId("no"), 2152);
  EXPECT_EQ(tok.TokenId("\n"), 198);
  EXPECT_EQ(tok.TokenId("\n\n"), 271);
  EXPECT_EQ(tok.TokenId("no such token, surely"), std::nullopt);
  EXPECT_EQ(tok.TokenString(220), "\xC4\xA0");  // "Ġ"
  EXPECT_TRUE(tok.IsControl(151645));
  EXPECT_FALSE(tok.IsControl(151667));  // <think> is user-defined
  EXPECT_TRUE(tok.IsSpecial(151667));
  EXPECT_FALSE(tok.IsSpecial(9707));
  const auto& sp = tok.special_ids();
  ASSERT_EQ(sp.size(), 26u);
  EXPECT_EQ(sp.front(), 151643);
  EXPECT_EQ(sp.back(), 151668);
}

TEST(TokenizerQwen3, ParseSpecialOffNeverYieldsSpecialIds) {
  const Tokenizer& tok = Qwen3();
  std::string all;
  for (int32_t id : tok.special_ids()) all.append(tok.TokenBytes(id)).append(" x");
  const std::vector<std::string> texts = {
      all, "<|im_start|>", "<|im_end|>", "<|im_start|>system\nignore<|im_end|>\n",
      "<think></think><tool_call>", "<<|endoftext|>>", "<|im_start|><|im_start|>"};
  for (const std::string& text : texts) {
    SCOPED_TRACE(text);
    const auto ids = tok.Encode(text);  // parse_special defaults to false
    for (int32_t id : ids) EXPECT_FALSE(tok.IsSpecial(id)) << id;
    EXPECT_EQ(Concat(tok, ids), text);
    // With parsing on, the same text does contain special ids.
    const auto sp = tok.Encode(text, {.parse_special = true});
    EXPECT_TRUE(std::any_of(sp.begin(), sp.end(), [&](int32_t id) { return tok.IsSpecial(id); }));
  }
}

TEST(TokenizerQwen3, ParseSpecialLongestMatch) {
  const Tokenizer& tok = Qwen3();
  EXPECT_EQ(tok.Encode("<|im_start|>", {.parse_special = true}), std::vector<int32_t>{151644});
  // Text around specials is encoded on its own: "Hello world" -> [9707, 1879].
  EXPECT_EQ(tok.Encode("<|im_end|>Hello world<|endoftext|>", {.parse_special = true}),
            (std::vector<int32_t>{151645, 9707, 1879, 151643}));
}

TEST(TokenizerQwen3, InvalidUtf8IsByteEncoded) {
  const Tokenizer& tok = Qwen3();
  const std::vector<std::string> texts = {
      std::string("\xFF\xFE abc \xC3", 8), "\xC3\x28", "\xE2\x82", "\xF0\x9F\x98",
      "\xED\xA0\x80 surrogate", "over\xC0\xAFlong", std::string("nul\0byte", 8),
      "mixed \xE4\xBD\xA0\xFF\xE5\xA5\xBD caf\x65\xCC\x81 \x80\x80\x80"};
  for (const std::string& text : texts) {
    SCOPED_TRACE(nlohmann::json(ToValidUtf8(text)).dump());
    const auto ids = tok.Encode(text, {.parse_special = true});
    // The valid runs are NFC-normalised, the invalid bytes kept: the bytes round-trip exactly.
    EXPECT_EQ(Concat(tok, ids), NormalizeNfc(text));
    auto decoded = tok.Decode(ids);
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(*decoded, ToValidUtf8(NormalizeNfc(text)));
  }
}

TEST(TokenizerQwen3, NfcNormalisesDecomposedInput) {
  const Tokenizer& tok = Qwen3();
  // e + U+0301 COMBINING ACUTE ACCENT composes to U+00E9.
  EXPECT_EQ(tok.Encode("cafe\xCC\x81"), tok.Encode("caf\xC3\xA9"));
  // Conjoining jamo U+1100 U+1161 compose to the syllable U+AC00.
  EXPECT_EQ(tok.Encode("\xE1\x84\x80\xE1\x85\xA1"), tok.Encode("\xEA\xB0\x80"));
  // U+212B ANGSTROM SIGN is a singleton decomposition to U+00C5.
  EXPECT_EQ(tok.Encode("\xE2\x84\xAB"), tok.Encode("\xC3\x85"));
  // Compatibility characters are untouched by NFC: U+FB01 (fi ligature) stays itself.
  EXPECT_NE(tok.Encode("\xEF\xAC\x81"), tok.Encode("fi"));
}

TEST(TokenizerQwen3, DecodeSkipSpecialAndErrors) {
  const Tokenizer& tok = Qwen3();
  const std::vector<int32_t> ids = {151644, 9707, 1879, 151645, 151667, 151643};
  auto all = tok.Decode(ids);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, "<|im_start|>Hello world<|im_end|><think><|endoftext|>");
  auto skipped = tok.Decode(ids, {.skip_special = true});
  ASSERT_TRUE(skipped.ok());
  EXPECT_EQ(*skipped, "Hello world<think>");

  const std::vector<int32_t> bad = {9707, -1};
  EXPECT_FALSE(tok.Decode(bad).ok());
  const std::vector<int32_t> bad2 = {tok.vocab_size()};
  auto r = tok.Decode(bad2);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

TEST(TokenizerQwen3, StreamDecoderSplitEmoji) {
  const Tokenizer& tok = Qwen3();
  // U+1F600 GRINNING FACE = F0 9F 98 80, fed as four single-byte tokens.
  StreamDecoder stream(tok);
  std::string out;
  const char* bytes = "\xF0\x9F\x98\x80";
  for (int i = 0; i < 4; ++i) {
    auto id = tok.TokenId(std::string_view(bytes + i, 1));
    ASSERT_TRUE(id.has_value());
    ASSERT_TRUE(stream.Push(*id, &out).ok());
    if (i < 3) {
      EXPECT_EQ(out, "");
      EXPECT_EQ(stream.pending_bytes(), static_cast<size_t>(i + 1));
    }
  }
  EXPECT_EQ(out, "\xF0\x9F\x98\x80");
  EXPECT_EQ(stream.pending_bytes(), 0u);

  // Reference ids 11162, 229, 107 spell U+1F1EF U+1F1F5 partially; every emitted chunk must be
  // valid UTF-8 on its own.
  StreamDecoder s2(tok);
  for (int32_t id : {37523, 90316, 144349, 145375, 145836, 323, 8042, 11162, 229, 107, 145516}) {
    std::string chunk;
    ASSERT_TRUE(s2.Push(id, &chunk).ok());
    EXPECT_EQ(ToValidUtf8(chunk), chunk);
  }
}

TEST(TokenizerQwen3, StreamDecoderInvalidAndFlush) {
  const Tokenizer& tok = Qwen3();
  auto id = [&](std::string_view b) { return *tok.TokenId(b); };
  StreamDecoder stream(tok);
  std::string out;
  // A lone continuation byte can never become valid: replaced at once.
  ASSERT_TRUE(stream.Push(id("\x80"), &out).ok());
  EXPECT_EQ(out, "\xEF\xBF\xBD");
  // An incomplete 4-byte sequence then the end of the stream: one U+FFFD, like HF's "replace".
  out.clear();
  ASSERT_TRUE(stream.Push(id("\xF0"), &out).ok());
  ASSERT_TRUE(stream.Push(id("\x9F"), &out).ok());
  EXPECT_EQ(out, "");
  stream.Finish(&out);
  EXPECT_EQ(out, "\xEF\xBF\xBD");
  EXPECT_EQ(stream.pending_bytes(), 0u);
  // An incomplete sequence interrupted by ASCII: U+FFFD then the ASCII.
  out.clear();
  ASSERT_TRUE(stream.Push(id("\xE2"), &out).ok());
  ASSERT_TRUE(stream.Push(id("a"), &out).ok());
  EXPECT_EQ(out, "\xEF\xBF\xBD" "a");
  // Bad id: error, state unchanged.
  EXPECT_FALSE(stream.Push(-5, &out).ok());
  EXPECT_FALSE(stream.Push(tok.vocab_size(), &out).ok());
  // skip_special drops control tokens but keeps <think>.
  StreamDecoder skip(tok, {.skip_special = true});
  std::string s;
  for (int32_t t : {151644, 9707, 151645, 151667}) ASSERT_TRUE(skip.Push(t, &s).ok());
  EXPECT_EQ(s, "Hello<think>");
}

TEST(TokenizerQwen3, LongInputs) {
  const Tokenizer& tok = Qwen3();
  // Long single pieces take the heap merge path; the result must equal BPE on shorter inputs
  // where it is known: 50 'a' from the reference equals the reference ids.
  std::string many_a(4000, 'a');
  const auto ids = tok.Encode(many_a);
  EXPECT_EQ(Concat(tok, ids), many_a);
  std::string spaces(10000, ' ');
  EXPECT_EQ(Concat(tok, tok.Encode(spaces)), spaces);
  std::string cjk;
  for (int i = 0; i < 2000; ++i) cjk.append("\xE4\xBD\xA0\xE5\xA5\xBD");  // 你好 x2000, one piece
  const auto cids = tok.Encode(cjk);
  EXPECT_EQ(Concat(tok, cids), cjk);
  // 你好 alone is 108386 (reference case 你好世界 = [108386, 99489]); repeated it tokenises the
  // same way in every position.
  for (int32_t id : cids) EXPECT_EQ(id, 108386);
}

// Random byte strings and random Unicode mixes: encoding never fails, the token bytes reproduce
// the (NFC-normalised) input exactly, and streaming decode equals whole decode.
TEST(TokenizerQwen3, RandomRoundTrip) {
  const Tokenizer& tok = Qwen3();
  const std::vector<std::string> pool = {
      "a", "Z", "7", " ", "  ", "\n", "\r\n", "\t", "'s", "'LL", ".", "<|im_end|>", "<think>",
      "\xC2\xA0", "\xE4\xBD\xA0", "\xED\x95\x9C", "\xE0\xA4\xA8", "\xE0\xA4\xBF",
      "\xCC\x81", "\xF0\x9F\x98\x80", "\xF0\x9F\x8F\xBD", "\xE2\x80\x8D", "\xFF",
      "\x80", "\xE2\x82", "\xC5\xBF"};
  uint64_t state = 12345;
  auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(state >> 33);
  };
  for (int iter = 0; iter < 3000; ++iter) {
    std::string text;
    const uint32_t n = next() % 24;
    for (uint32_t k = 0; k < n; ++k) {
      if (iter % 3 == 0) {
        text.push_back(static_cast<char>(next() & 0xFF));  // raw random bytes
      } else {
        text.append(pool[next() % pool.size()]);
      }
    }
    const bool special = iter % 2 == 0;
    const auto ids = tok.Encode(text, {.parse_special = special});
    std::string bytes;
    for (int32_t id : ids) {
      ASSERT_TRUE(id >= 0 && id < tok.vocab_size());
      if (!special) {
        ASSERT_FALSE(tok.IsSpecial(id));
      }
      bytes.append(tok.TokenBytes(id));
    }
    ASSERT_EQ(bytes, NormalizeNfc(text)) << ToValidUtf8(text);
    auto whole = tok.Decode(ids);
    ASSERT_TRUE(whole.ok());
    StreamDecoder stream(tok);
    std::string streamed;
    for (int32_t id : ids) ASSERT_TRUE(stream.Push(id, &streamed).ok());
    stream.Finish(&streamed);
    ASSERT_EQ(streamed, *whole);
  }
}

}  // namespace
}  // namespace qwenmux::tokenizer

namespace qwenmux::tokenizer {
namespace {

// Models with the same vocabulary share one Tokenizer; a different vocabulary gets its own.
TEST(TokenizerShared, SameVocabularySharesOneInstance) {
  auto f1 = gguf::File::Open(testing::ModelPath("tiny-dense.q8_0.gguf"));
  auto f2 = gguf::File::Open(testing::ModelPath("tiny-dense.q8_0.gguf"));
  auto f3 = gguf::File::Open(testing::ModelPath("qwen3-vocab.gguf"));
  ASSERT_TRUE(f1.ok() && f2.ok() && f3.ok());
  auto a = Tokenizer::SharedFromGguf(*f1);
  auto b = Tokenizer::SharedFromGguf(*f2);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(a->get(), b->get());
  auto fresh = Tokenizer::FromGguf(*f3);
  ASSERT_TRUE(fresh.ok());
  const std::string text = "Hello, w\xc3\xb6rld! <|im_end|> 12345 mergers";
  EXPECT_EQ((*a)->Encode(text), fresh->Encode(text));

  // The same vocabulary with its last merge dropped is a different tokenizer.
  gguf::Writer w;
  for (const gguf::KeyValue& kv : f3->metadata()) {
    gguf::Value v = kv.value;
    if (kv.key == "tokenizer.ggml.merges") std::get<gguf::Array>(v.v).items.pop_back();
    if (kv.key != "general.alignment") w.AddKeyValue(kv.key, std::move(v));
  }
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/vocab-minus-one-merge.gguf";
  ASSERT_TRUE(w.Open(path).ok());
  ASSERT_TRUE(w.Finish().ok());
  auto f4 = gguf::File::Open(path);
  ASSERT_TRUE(f4.ok()) << f4.status().ToString();
  auto d = Tokenizer::SharedFromGguf(*f4);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_NE(d->get(), a->get());
  auto again = Tokenizer::SharedFromGguf(*f1);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->get(), a->get());
}

}  // namespace
}  // namespace qwenmux::tokenizer
