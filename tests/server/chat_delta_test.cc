// ChatDeltaSplitter: the deltas a streaming client receives, concatenated, are the final
// message (reasoning, content and tool calls) after every push, not only at the end.
#include <gtest/gtest.h>

#include "server/api_common.h"

namespace qwenmux::server {
namespace {

struct Sent {
  std::string reasoning, content;
  std::vector<chat::ChatToolCall> calls;
  void Add(const ChatDeltaSplitter::Delta& d) {
    reasoning += d.reasoning;
    content += d.content;
    calls.insert(calls.end(), d.tool_calls.begin(), d.tool_calls.end());
  }
};

// What has been sent so far is a prefix of the final message (`done` true: equals it).
::testing::AssertionResult Consistent(const Sent& sent, const chat::ParsedChatOutput& final_parse, bool done) {
  const std::string reasoning = final_parse.message.reasoning_content.value_or("");
  const std::string& content = final_parse.message.content;
  const auto& calls = final_parse.message.tool_calls;
  const bool ok_r = done ? sent.reasoning == reasoning : reasoning.starts_with(sent.reasoning);
  const bool ok_c = done ? sent.content == content : content.starts_with(sent.content);
  bool ok_t = done ? sent.calls.size() == calls.size() : sent.calls.size() <= calls.size();
  for (size_t i = 0; ok_t && i < sent.calls.size(); ++i) {
    ok_t = sent.calls[i].name == calls[i].name && sent.calls[i].arguments == calls[i].arguments;
  }
  if (ok_r && ok_c && ok_t) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "sent reasoning [" << sent.reasoning << "] content [" << sent.content
                                       << "] " << sent.calls.size() << " calls; final reasoning [" << reasoning
                                       << "] content [" << content << "] " << calls.size() << " calls";
}

// Streams `pieces` through a splitter and checks the invariant after every push and at the end.
::testing::AssertionResult StreamIsConsistent(const std::vector<std::string>& pieces, bool thinking) {
  std::string text;
  for (const auto& p : pieces) text += p;
  ChatDeltaSplitter whole(thinking);
  whole.Push(text);
  const chat::ParsedChatOutput final_parse = whole.Final();
  ChatDeltaSplitter s(thinking);
  Sent sent;
  for (size_t i = 0; i < pieces.size(); ++i) {
    sent.Add(s.Push(pieces[i]));
    if (auto r = Consistent(sent, final_parse, false); !r) return r << " after piece " << i;
  }
  sent.Add(s.Flush());
  // The splitter's own final split is the one of the whole text.
  const chat::ParsedChatOutput own = s.Final();
  if (own.message.content != final_parse.message.content ||
      own.message.reasoning_content != final_parse.message.reasoning_content) {
    return ::testing::AssertionFailure() << "Final() depends on how the text was pushed";
  }
  return Consistent(sent, final_parse, true) << " after Flush";
}

std::string Show(const std::vector<std::string>& pieces) {
  std::string out;
  for (const auto& p : pieces) out += "[" + p + "]";
  return out;
}

// The shortest failing case: thinking off, "{" then "</think>" (streamed "{", final
// content empty), and a few hand-picked shapes.
TEST(ChatDeltaSplitter, HandPickedStreams) {
  const std::vector<std::vector<std::string>> cases = {
      {"{", "</think>"},
      {"a", "</think>", "b"},
      {"<think>", "x", "</think>", "y", "</think>", "z"},
      {" ", "<think>", "r", "</think>", "c"},
      {"x", "<think>", "y", "</think>", "z"},
      {"  ", "<tool_call>", "{\"name\": \"f\", \"arguments\": {}}", "</tool_call>"},
      {"a", "\n", "<tool_", "call>", "{\"name\": \"f\", \"arguments\": {\"a\": 1}}", "</tool_call>", "\n", "b"},
      {"<think>", "\n", "plan", "\n", "</thi", "nk>", "\n\n", "answer", "\n"},
  };
  for (const auto& pieces : cases) {
    for (const bool thinking : {false, true}) {
      EXPECT_TRUE(StreamIsConsistent(pieces, thinking)) << Show(pieces) << " thinking=" << thinking;
    }
  }
}

// Random token streams built from think tags, tool-call tags (whole and split across tokens),
// JSON fragments, newlines and text; every prefix of every stream is checked.
TEST(ChatDeltaSplitter, RandomStreamsConcatenateToTheFinalMessage) {
  const char* const tokens[] = {"<think>", "</think>", "<tool_call>", "</tool_call>", "\n", "\n\n", " ", "\t",
                                "{\"name\": \"f\", \"arguments\": {\"a\": 1}}", "{\"name\": \"g\"}", "{", "}",
                                "\"", "<", "</", "text", "é", "<tool_", "call>", "</thi", "nk>", "<thi", "_call>"};
  uint64_t state = 0x2545F4914F6CDD1Dull;
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  int failures = 0, with_tags = 0;
  for (int trial = 0; trial < 2000 && failures < 5; ++trial) {
    std::vector<std::string> pieces(next() % 24);
    for (auto& p : pieces) p = tokens[next() % std::size(tokens)];
    for (const bool thinking : {false, true}) {
      const auto r = StreamIsConsistent(pieces, thinking);
      if (!r) ++failures;
      EXPECT_TRUE(r) << Show(pieces) << " thinking=" << thinking;
    }
    if (Show(pieces).find("think>") != std::string::npos) ++with_tags;
  }
  EXPECT_GT(with_tags, 500);  // the generator does produce the cases that matter
}

}  // namespace
}  // namespace qwenmux::server
