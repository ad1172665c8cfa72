// Training data: the Qwen3 template rendering and loss mask reproduce the reference's token ids
// and loss masks exactly; the three JSONL shapes; bad lines reported by line and skipped;
// over-long examples dropped or truncated; a deterministic split.
#include <cstdio>
#include <fstream>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "finetune/data.h"
#include "finetune/step.h"
#include "gguf/gguf.h"

namespace qwenmux::testing {
namespace {

const tokenizer::Tokenizer& Tok() {
  static const tokenizer::Tokenizer* t = [] {
    auto f = gguf::File::Open(ModelPath("tiny-dense.q8_0.gguf"));
    EXPECT_TRUE(f.ok());
    auto tok = tokenizer::Tokenizer::FromGguf(*f);
    EXPECT_TRUE(tok.ok()) << tok.status().ToString();
    return new tokenizer::Tokenizer(std::move(*tok));
  }();
  return *t;
}

std::string TempFile(const std::string& name, const std::string& text) {
  const std::string p = ::testing::TempDir() + name;
  std::ofstream(p) << text;
  return p;
}

TEST(FinetuneData, ReproducesTheReferenceIdsAndLossMasks) {
  std::ifstream in(RefPath("tiny-dense.lora.json"));
  const auto ref = nlohmann::json::parse(in);
  const auto& ex = ref["training_q8_0_base"]["examples"];
  ASSERT_EQ(ex.size(), 4u);
  for (const auto& e : ex) {
    nlohmann::ordered_json j;
    j["messages"] = nlohmann::ordered_json::parse(e["messages"].dump());
    auto r = finetune::ExampleFromJson(j, Tok());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->ids, e["ids"].get<std::vector<int32_t>>()) << e["rendered"];
    EXPECT_EQ(r->mask, e["loss_mask"].get<std::vector<uint8_t>>()) << e["rendered"];
  }
}

TEST(FinetuneData, TheThreeShapesAgree) {
  auto msgs = finetune::ExampleFromJson(nlohmann::ordered_json::parse(
      R"({"messages":[{"role":"user","content":"Add 2 and 3.\n\n<|im_start|>"},{"role":"assistant","content":"5"}]})"), Tok());
  auto inst = finetune::ExampleFromJson(
      nlohmann::ordered_json::parse(R"({"instruction":"Add 2 and 3.","input":"<|im_start|>","output":"5"})"), Tok());
  auto resp = finetune::ExampleFromJson(
      nlohmann::ordered_json::parse(R"({"instruction":"Add 2 and 3.","input":"<|im_start|>","response":"5"})"), Tok());
  ASSERT_TRUE(msgs.ok() && inst.ok() && resp.ok());
  EXPECT_EQ(msgs->ids, inst->ids);
  EXPECT_EQ(resp->ids, inst->ids);
  EXPECT_EQ(msgs->mask, inst->mask);
  // User text is plain text: "<|im_start|>" typed by the user is not the control token.
  const int32_t im_start = *Tok().TokenId("<|im_start|>");
  EXPECT_EQ(std::count(msgs->ids.begin(), msgs->ids.end(), im_start), 2);
  auto pc = finetune::ExampleFromJson(nlohmann::ordered_json::parse(R"({"prompt":"Hi","completion":"Hello"})"), Tok());
  auto pm = finetune::ExampleFromJson(nlohmann::ordered_json::parse(
      R"({"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]})"), Tok());
  ASSERT_TRUE(pc.ok() && pm.ok());
  EXPECT_EQ(pc->ids, pm->ids);
  EXPECT_EQ(pc->mask, pm->mask);
  EXPECT_EQ(finetune::CountLabels(*pc), 2);  // "Hello" and <|im_end|>
}

TEST(FinetuneData, BadLinesAreReportedByLineAndSkipped) {
  const std::string long_text(4000, 'x');
  const std::string path = TempFile("ft-bad.jsonl",
      "{\"prompt\":\"a\",\"completion\":\"b\"}\n"                        // 1 ok
      "{not json\n"                                                     // 2
      "{\"messages\":[]}\n"                                             // 3 empty
      "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n"       // 4 no assistant
      "\n"                                                              // 5 blank: ignored
      "{\"prompt\":\"" + long_text + "\",\"completion\":\"b\"}\n"        // 6 too long
      "{\"question\":\"q\"}\n"                                          // 7 unknown shape
      "[1,2]\n"                                                         // 8 not an object
      "{\"instruction\":\"c\",\"output\":\"d\"}\n");                    // 9 ok
  finetune::DataOptions o;
  o.max_tokens = 64;
  o.valid_fraction = 0;
  auto d = finetune::LoadJsonl(path, Tok(), o);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->train.size(), 2u);
  EXPECT_EQ(d->lines, 8);
  ASSERT_EQ(d->skipped.size(), 6u);
  const int64_t lines[] = {2, 3, 4, 6, 7, 8};
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(d->skipped[i].line, lines[i]) << d->skipped[i].message;
  EXPECT_NE(d->skipped[0].message.find("invalid JSON"), std::string::npos);
  EXPECT_NE(d->skipped[1].message.find("empty"), std::string::npos) << d->skipped[1].message;
  EXPECT_NE(d->skipped[2].message.find("no assistant turn"), std::string::npos);
  EXPECT_NE(d->skipped[3].message.find("over the limit of 64"), std::string::npos);
  EXPECT_NE(d->skipped[4].message.find("unknown shape"), std::string::npos);
  EXPECT_EQ(d->dropped_long, 1);
  EXPECT_NE(d->Summary().find("line 6:"), std::string::npos);
  // Truncation keeps the long one when its labels survive; here the answer is cut off, so it is
  // still skipped, as "no assistant token left".
  o.truncate = true;
  d = finetune::LoadJsonl(path, Tok(), o);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->truncated, 1);
  ASSERT_EQ(d->skipped.size(), 6u);
  EXPECT_NE(d->skipped[3].message.find("no assistant token left"), std::string::npos) << d->skipped[3].message;
  // Nothing usable at all is an error naming the file and the first problem.
  auto none = finetune::LoadJsonl(TempFile("ft-none.jsonl", "{bad\n"), Tok(), o);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("line 1: invalid JSON"), std::string::npos) << none.status().message();
  EXPECT_FALSE(finetune::LoadJsonl("/nonexistent.jsonl", Tok(), o).ok());
}

TEST(FinetuneData, SplitIsDeterministicBySeed) {
  std::string text;
  for (int i = 0; i < 40; ++i) text += "{\"prompt\":\"q" + std::to_string(i) + "\",\"completion\":\"a\"}\n";
  const std::string path = TempFile("ft-split.jsonl", text);
  finetune::DataOptions o;
  o.valid_fraction = 0.25;
  auto lines = [](const std::vector<finetune::Example>& v) {
    std::vector<int64_t> l;
    for (const auto& e : v) l.push_back(e.line);
    return l;
  };
  auto a = finetune::LoadJsonl(path, Tok(), o), b = finetune::LoadJsonl(path, Tok(), o);
  o.seed = 2;
  auto c = finetune::LoadJsonl(path, Tok(), o);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->valid.size(), 10u);
  EXPECT_EQ(a->train.size(), 30u);
  EXPECT_EQ(lines(a->valid), lines(b->valid));
  EXPECT_NE(lines(a->valid), lines(c->valid));
}

}  // namespace
}  // namespace qwenmux::testing
