// Readers (txt, Markdown, HTML, PDF) and the chunker.
#include <gtest/gtest.h>

#include "rag/chunker.h"
#include "rag/reader.h"
#include "rag_test_util.h"

namespace qwenmux::rag {
namespace {

using qwenmux::testing::MinimalPdf;

std::vector<std::pair<int, std::string>> Blocks(const ParsedDocument& d) {
  std::vector<std::pair<int, std::string>> out;
  for (const Block& b : d.blocks) out.emplace_back(b.heading_level, b.text);
  return out;
}

TEST(RagReader, FormatsFromExtension) {
  EXPECT_EQ(FormatOfPath("a/b.TXT"), "txt");
  EXPECT_EQ(FormatOfPath("x.markdown"), "md");
  EXPECT_EQ(FormatOfPath("x.htm"), "html");
  EXPECT_EQ(FormatOfPath("x.pdf"), "pdf");
  EXPECT_EQ(FormatOfPath("x.docx"), "");
  EXPECT_EQ(FormatOfPath("Makefile"), "");
}

TEST(RagReader, PlainTextParagraphs) {
  auto d = ParseDocument("First line\nsame paragraph.\n\n  \nSecond  paragraph.\n", "txt", "notes.txt");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(Blocks(*d), (std::vector<std::pair<int, std::string>>{{0, "First line same paragraph."},
                                                                  {0, "Second paragraph."}}));
  EXPECT_EQ(d->title, "notes");
}

TEST(RagReader, MarkdownHeadingsParagraphsCode) {
  auto d = ParseDocument("# Guide\n\nIntro *with* `code` and [a link](http://x).\n\n## Install\n\n- step one\n- step two\n\n"
                         "```\nmake all\n```\n",
                         "md", "g.md");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(Blocks(*d), (std::vector<std::pair<int, std::string>>{{1, "Guide"},
                                                                  {0, "Intro with code and a link."},
                                                                  {2, "Install"},
                                                                  {0, "step one"},
                                                                  {0, "step two"},
                                                                  {0, "make all"}}));
  EXPECT_EQ(d->title, "Guide");
}

TEST(RagReader, HtmlSkipsScriptsAndKeepsStructure) {
  auto d = ParseDocument("<html><head><title>Page T</title><style>p{}</style><script>var x=1;</script></head><body>"
                         "<h1>Top</h1><p>Hello <b>bold</b><i>italic</i> world</p><div>Block two</div>"
                         "<h2>Sub</h2><ul><li>item</li></ul></body></html>",
                         "html", "p.html");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(Blocks(*d), (std::vector<std::pair<int, std::string>>{
                            {1, "Top"}, {0, "Hello bold italic world"}, {0, "Block two"}, {2, "Sub"}, {0, "item"}}));
  EXPECT_EQ(d->title, "Page T");
}

TEST(RagReader, PdfText) {
  const std::string pdf = MinimalPdf({"Quarterly report on turbines.", "Output rose sharply."}, "Turbine Report");
  auto d = ParseDocument(pdf, "pdf", "r.pdf");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->title, "Turbine Report");
  std::string all;
  for (const Block& b : d->blocks) all += b.text + " ";
  EXPECT_NE(all.find("Quarterly report on turbines."), std::string::npos) << all;
  EXPECT_NE(all.find("Output rose sharply."), std::string::npos) << all;
}

TEST(RagReader, BadInputIsAClearError) {
  auto pdf = ParseDocument("%PDF-1.4 garbage that is not a pdf", "pdf", "bad.pdf");
  ASSERT_FALSE(pdf.ok());
  EXPECT_NE(pdf.status().message().find("bad.pdf"), std::string::npos);
  auto truncated = ParseDocument(MinimalPdf({"x"}, "t").substr(0, 120), "pdf", "cut.pdf");
  EXPECT_FALSE(truncated.ok());
  auto bin = ParseDocument(std::string("ab\0cd", 5), "txt", "bin.txt");
  ASSERT_FALSE(bin.ok());
  EXPECT_EQ(bin.status().code(), StatusCode::kCorrupt);
  EXPECT_FALSE(ParseDocument("caf\xe9", "md", "latin1.md").ok());   // Latin-1, not UTF-8
  EXPECT_FALSE(ParseDocument("\xed\xa0\x80", "txt", "surrogate.txt").ok());
  EXPECT_TRUE(ParseDocument("caf\xc3\xa9", "txt", "utf8.txt").ok());
  EXPECT_FALSE(ParseDocument("x", "docx", "a.docx").ok());
  EXPECT_FALSE(ReadDocument("/nonexistent/file.txt").ok());
}

// Issue 20 item 13: valid UTF-8 that is mostly control characters is binary data, refused like a
// broken PDF (2,048 x 0x1C used to be read as text); a stray control byte in real text is fine.
TEST(RagReader, MostlyControlCharactersIsBinary) {
  for (const char* format : {"txt", "md", "html"}) {
    auto bin = ParseDocument(std::string(2048, '\x1c'), format, "fs.txt");
    ASSERT_FALSE(bin.ok()) << format;
    EXPECT_EQ(bin.status().code(), StatusCode::kCorrupt);
    EXPECT_NE(bin.status().message().find("2048 of 2048 bytes are control characters"), std::string::npos)
        << bin.status().message();
  }
  std::string mixed(100, 'a');
  for (int i = 0; i < 20; ++i) mixed[static_cast<size_t>(i * 5)] = '\x07';  // 20% BEL
  EXPECT_FALSE(ParseDocument(mixed, "txt", "bell.txt").ok());
  std::string text = "Plain words\twith tabs,\r\nline breaks\fand a page break. \x1b[1mBold\x1b[0m.\n";
  for (int i = 0; i < 3; ++i) text += text;
  EXPECT_TRUE(ParseDocument(text, "txt", "ok.txt").ok());
  EXPECT_EQ(CountControlBytes(text), 16u);  // the ESC bytes only
}

// --- chunker ---

ParsedDocument Doc(std::vector<Block> blocks) {
  ParsedDocument d;
  d.format = "txt";
  d.blocks = std::move(blocks);
  return d;
}

std::string Words(int n, const std::string& prefix) {
  std::string s;
  for (int i = 0; i < n; ++i) s += fmt::format("{}{}{} ", prefix, i, i % 7 == 6 ? "." : "");
  return s;
}

TEST(RagChunker, HeadingsCloseChunksAndFormPaths) {
  const auto d = Doc({{1, "Guide"}, {0, "intro text"}, {2, "Install"}, {0, "apt steps"}, {3, "Debian"},
                      {0, "debian notes"}, {2, "Usage"}, {0, "run it"}});
  const auto chunks = ChunkDocument(d, {}, ApproxTokens);
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(chunks[0].heading, "Guide");
  EXPECT_EQ(chunks[1].heading, "Guide > Install");
  EXPECT_EQ(chunks[2].heading, "Guide > Install > Debian");
  EXPECT_EQ(chunks[3].heading, "Guide > Usage");
  EXPECT_EQ(chunks[3].text, "run it");
}

TEST(RagChunker, PacksParagraphsWithinBudgetWithOverlap) {
  engine::Model& m = qwenmux::testing::TinyModel();
  const TokenCounter count = [&](std::string_view s) { return static_cast<int32_t>(m.tokenizer().Encode(s).size()); };
  std::vector<Block> blocks;
  for (int p = 0; p < 6; ++p) blocks.push_back({0, Words(14, fmt::format("p{}w", p))});
  blocks.push_back({0, Words(400, "long")});  // one paragraph far over the budget
  const auto d = Doc(blocks);
  ChunkOptions o;
  o.max_tokens = 128;
  o.overlap_tokens = 40;
  const auto chunks = ChunkDocument(d, o, count);
  ASSERT_GT(chunks.size(), 6u);
  std::string all;
  for (const Chunk& c : chunks) {
    EXPECT_LE(c.n_tokens, o.max_tokens + 2) << c.text;  // +2: joining spaces between pieces
    EXPECT_EQ(c.n_tokens, count(c.text));
    all += c.text + "\n";
  }
  // Nothing lost: every word of the input is in some chunk.
  for (int i = 0; i < 400; i += 37) EXPECT_NE(all.find(fmt::format("long{}", i)), std::string::npos) << i;
  // Paragraphs that fit are not split: "p0w0 ... p0w29" sits in one chunk.
  bool whole = false;
  for (const Chunk& c : chunks) whole |= c.text.find("p0w0 ") != std::string::npos && c.text.find("p0w13") != std::string::npos;
  EXPECT_TRUE(whole);
  // Consecutive chunks of the long paragraph overlap: some chunk starts with text the previous one ends with.
  int overlaps = 0;
  for (size_t i = 1; i < chunks.size(); ++i) {
    const std::string head = chunks[i].text.substr(0, 12);
    if (chunks[i - 1].text.find(head) != std::string::npos) ++overlaps;
  }
  EXPECT_GT(overlaps, 0);
  // Stable: the same input gives the same chunks.
  const auto again = ChunkDocument(d, o, count);
  ASSERT_EQ(again.size(), chunks.size());
  for (size_t i = 0; i < chunks.size(); ++i) EXPECT_EQ(again[i].text, chunks[i].text);
}

TEST(RagChunker, UnbrokenTextSplitsAtCharacterBoundaries) {
  std::string cjk;
  for (int i = 0; i < 600; ++i) cjk += "\xe4\xb8\xad\xe6\x96\x87";  // 中文 without spaces
  ChunkOptions o;
  o.max_tokens = 64;
  o.overlap_tokens = 0;
  const auto chunks = ChunkDocument(Doc({{0, cjk}}), o, ApproxTokens);
  ASSERT_GT(chunks.size(), 10u);
  size_t total = 0;
  for (const Chunk& c : chunks) {
    EXPECT_TRUE(IsTextUtf8(c.text));
    EXPECT_LE(c.n_tokens, 64);
    total += c.text.size();
  }
  EXPECT_EQ(total, cjk.size());
}

TEST(RagChunker, OptionsValidated) {
  ChunkOptions o;
  EXPECT_TRUE(o.Validate().ok());
  o.max_tokens = 4;
  EXPECT_FALSE(o.Validate().ok());
  o.max_tokens = 100;
  o.overlap_tokens = 60;
  EXPECT_FALSE(o.Validate().ok());
}

}  // namespace
}  // namespace qwenmux::rag
