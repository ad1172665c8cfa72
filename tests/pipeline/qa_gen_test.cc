// Fine-tuning data from a RAG collection (pipeline/qa_gen.h): the grounding and dedup measures on
// hand-made text, and a whole run with the tiny model over a small collection: every kept line
// is a `messages` example that finetune::LoadJsonl reads, names its chunk, and a second run
// resumes (skips every chunk, writes nothing); bad options, a missing collection and an output
// file that is not this command's are clear errors that write nothing.
#include "pipeline/qa_gen.h"

#include <filesystem>
#include <fstream>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "finetune/data.h"
#include "orchestrator/temp_dir.h"
#include "rag/rag_test_util.h"

namespace qwenmux::pipeline {
namespace {

TEST(QaGen, GroundingCountsTheAnswersWordsInTheText) {
  const std::string text = "The Debian installer formats the disk, then copies the base system.";
  EXPECT_DOUBLE_EQ(Grounding("It formats the disk", text), 1.0);   // "formats", "the", "disk"
  EXPECT_DOUBLE_EQ(Grounding("formats the floppy", text), 2.0 / 3);
  EXPECT_DOUBLE_EQ(Grounding("Nothing here matches", text), 0.0);
  EXPECT_DOUBLE_EQ(Grounding("DEBIAN Installer", text), 1.0);      // case-folded
  EXPECT_DOUBLE_EQ(Grounding("?!", text), 1.0);                    // no words: nothing to check
  EXPECT_EQ(NormalizedWords("  What does the Installer do?? "), "what does the installer");
  EXPECT_EQ(NormalizedWords("what  DOES the installer do"), NormalizedWords("What does the installer do?"));
}

class QaGenRun : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = rag::Store::Open(dir_.path() + "/store");
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    auto c = store_->OpenCollection("kb", "test-embedder", 4);
    ASSERT_TRUE(c.ok());
    const char* texts[] = {"Paris is the capital of France. It lies on the Seine.",
                           "Water boils at one hundred degrees Celsius at sea level.",
                           "The cat sat on the mat and watched the birds outside."};
    for (int d = 0; d < 2; ++d) {
      rag::DocumentRecord doc;
      doc.doc_id = "doc" + std::to_string(d);
      doc.source = "/docs/" + doc.doc_id + ".txt";
      doc.title = doc.doc_id;
      doc.format = "txt";
      doc.content_hash = "h";
      std::vector<rag::NewChunk> chunks;
      for (int i = d == 0 ? 0 : 2; i < (d == 0 ? 2 : 3); ++i) chunks.push_back({"", texts[i], 12, {0.5f, 0.5f, 0.5f, 0.5f}});
      ASSERT_TRUE(store_->PutDocument(*c, doc, chunks).ok());
    }
  }
  QaGenOptions Options() const {
    QaGenOptions o;
    o.collection = "kb";
    o.pairs_per_chunk = 2;
    o.max_question_chars = 40;
    o.max_answer_chars = 40;
    o.max_tokens = 400;
    o.min_grounding = 0;  // the tiny model writes noise; grounding is checked above
    o.system = "Answer briefly.";
    return o;
  }
  std::vector<nlohmann::json> Lines(const std::string& path) const {
    std::vector<nlohmann::json> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
  }
  testing::TempDir dir_;
  std::unique_ptr<rag::Store> store_;
};

TEST_F(QaGenRun, WritesTrainableExamplesAndResumes) {
  engine::Model& m = testing::TinyModel();
  const std::string out = dir_.path() + "/pairs.jsonl";
  auto r = GenerateQaPairs(m, *store_, Options(), out);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->chunks, 3);
  EXPECT_EQ(r->skipped_done, 0);
  EXPECT_GT(r->tokens, 0);
  EXPECT_EQ(r->kept + r->dropped_duplicate + r->dropped_empty + r->dropped_ungrounded, r->pairs_generated);
  EXPECT_LE(r->pairs_generated, 2 * (3 - r->chunks_failed));
  const auto lines = Lines(out);
  ASSERT_EQ(static_cast<int64_t>(lines.size()), r->kept);
  std::set<std::string> sources, questions;
  for (const auto& j : lines) {
    ASSERT_EQ(j["messages"].size(), 3u);
    EXPECT_EQ(j["messages"][0]["role"], "system");
    EXPECT_EQ(j["messages"][1]["role"], "user");
    EXPECT_EQ(j["messages"][2]["role"], "assistant");
    EXPECT_TRUE(j["source"] == "doc0:0" || j["source"] == "doc0:1" || j["source"] == "doc1:0") << j.dump();
    EXPECT_LE(j["messages"][1]["question"].get<std::string>().size(), 40u * 4);  // 40 characters of UTF-8
    EXPECT_TRUE(questions.insert(NormalizedWords(j["messages"][1]["question"].get<std::string>())).second)
        << "duplicate question kept";
    sources.insert(j["source"]);
  }
  // The trainer reads every line as an example.
  finetune::DataOptions dopt;
  dopt.valid_fraction = 0;
  auto data = finetune::LoadJsonl(out, m.tokenizer(), dopt);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  EXPECT_EQ(static_cast<int64_t>(data->train.size()), r->kept);
  EXPECT_TRUE(data->skipped.empty());
  // Again: every chunk with a result is done; chunks that failed or kept nothing run again.
  auto again = GenerateQaPairs(m, *store_, Options(), out);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_GE(again->skipped_done, static_cast<int64_t>(sources.size()));
  if (again->skipped_done == 3) {
    EXPECT_EQ(again->tokens, 0);  // nothing left to generate
  }
  // Questions already in the file are never written twice.
  const auto all = Lines(out);
  std::set<std::string> all_q;
  for (const auto& j : all) {
    EXPECT_TRUE(all_q.insert(NormalizedWords(j["messages"][1]["question"].get<std::string>())).second);
  }
}

TEST_F(QaGenRun, BadInputIsAClearErrorAndWritesNothing) {
  engine::Model& m = testing::TinyModel();
  const std::string out = dir_.path() + "/bad.jsonl";
  QaGenOptions o = Options();
  o.pairs_per_chunk = 9;
  EXPECT_NE(GenerateQaPairs(m, *store_, o, out).status().message().find("pairs per chunk"), std::string::npos);
  o = Options();
  o.min_grounding = 1.5;
  EXPECT_NE(GenerateQaPairs(m, *store_, o, out).status().message().find("grounding"), std::string::npos);
  o = Options();
  o.collection = "nope";
  EXPECT_FALSE(GenerateQaPairs(m, *store_, o, out).ok());
  EXPECT_FALSE(std::filesystem::exists(out));
  testing::WriteFile(out, "not json\n");
  auto r = GenerateQaPairs(m, *store_, Options(), out);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("line 1"), std::string::npos) << r.status().ToString();
  std::ifstream in(out);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "not json\n");  // untouched
}

}  // namespace
}  // namespace qwenmux::pipeline
