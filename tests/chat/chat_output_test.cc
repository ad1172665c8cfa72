// ParseChatOutput: reasoning / content / tool calls from generated text, finished and partial.
#include <gtest/gtest.h>

#include "chat/chat.h"

namespace qwenmux::chat {
namespace {

using Json = nlohmann::ordered_json;

ParsedChatOutput Parse(std::string_view text, bool thinking = true, bool partial = false) {
  return ParseChatOutput(text, ChatOutputOptions{.thinking = thinking, .partial = partial});
}

TEST(ChatOutput, ThinkingWithOpener) {
  const ParsedChatOutput p = Parse("<think>\nLet me add.\n</think>\n\nThe answer is 4.");
  EXPECT_EQ(p.message.role, ChatRole::kAssistant);
  EXPECT_EQ(p.message.reasoning_content, std::optional<std::string>("Let me add."));
  EXPECT_EQ(p.message.content, "The answer is 4.");
  EXPECT_FALSE(p.reasoning_open);
  EXPECT_TRUE(p.message.tool_calls.empty());
  EXPECT_TRUE(p.tool_call_errors.empty());
}

TEST(ChatOutput, ThinkingWithoutOpener) {
  // Thinking-2507: the prompt already holds "<think>\n", the output only closes it.
  const ParsedChatOutput p = Parse("Let me add.\n</think>\n\n4");
  EXPECT_EQ(p.message.reasoning_content, std::optional<std::string>("Let me add."));
  EXPECT_EQ(p.message.content, "4");
}

// The first "</think>" ends the reasoning (as vLLM's and llama.cpp's Qwen3 parsers do): a later
// one is answer text, so an answer already streamed never turns into reasoning.
TEST(ChatOutput, SplitsAtFirstThinkClose) {
  ParsedChatOutput p = Parse("<think>\nplan\n</think>\n\nI wrote </think> once\n</think>\n\nok");
  EXPECT_EQ(p.message.reasoning_content, std::optional<std::string>("plan"));
  EXPECT_EQ(p.message.content, "I wrote </think> once\n</think>\n\nok");
  // Only a "<think>" at the start opens a block; one later is reasoning text.
  p = Parse("a <think> b\n</think>\nc");
  EXPECT_EQ(p.message.reasoning_content, std::optional<std::string>("a <think> b"));
  EXPECT_EQ(p.message.content, "c");
  // Thinking off and no opener: there is no reasoning, "</think>" is content.
  p = Parse("{</think>", /*thinking=*/false);
  EXPECT_FALSE(p.message.reasoning_content.has_value());
  EXPECT_EQ(p.message.content, "{</think>");
}

TEST(ChatOutput, EmptyThinkBlock) {
  const ParsedChatOutput p = Parse("<think>\n\n</think>\n\nHi!");
  EXPECT_EQ(p.message.reasoning_content, std::optional<std::string>(""));
  EXPECT_EQ(p.message.content, "Hi!");
}

TEST(ChatOutput, NonThinkingPrompt) {
  ParsedChatOutput p = Parse("Just the answer.\n", /*thinking=*/false);
  EXPECT_FALSE(p.message.reasoning_content.has_value());
  EXPECT_EQ(p.message.content, "Just the answer.\n");
  EXPECT_FALSE(p.reasoning_open);
  // A think block is still recognised when the output starts with one.
  p = Parse("<think>\nhm\n</think>\n\nA", /*thinking=*/false);
  EXPECT_EQ(p.message.reasoning_content, std::optional<std::string>("hm"));
  EXPECT_EQ(p.message.content, "A");
}

TEST(ChatOutput, UnclosedThinkIsAllReasoning) {
  for (const bool partial : {false, true}) {
    ParsedChatOutput p = Parse("<think>\nStill thinking about <tool_call>", true, partial);
    EXPECT_TRUE(p.reasoning_open);
    EXPECT_EQ(p.message.reasoning_content,
              std::optional<std::string>("Still thinking about <tool_call>"));
    EXPECT_EQ(p.message.content, "");
    EXPECT_TRUE(p.message.tool_calls.empty());
    EXPECT_FALSE(p.tool_call_pending);
    // Opened explicitly even though the prompt disabled thinking.
    p = Parse("<think>\nabc", /*thinking=*/false, partial);
    EXPECT_TRUE(p.reasoning_open);
    EXPECT_EQ(p.message.reasoning_content, std::optional<std::string>("abc"));
  }
  // Thinking on, no opener yet: reasoning so far.
  const ParsedChatOutput p = Parse("Okay, the user", true, true);
  EXPECT_TRUE(p.reasoning_open);
  EXPECT_EQ(p.message.reasoning_content, std::optional<std::string>("Okay, the user"));
}

TEST(ChatOutput, ToolCalls) {
  const ParsedChatOutput p = Parse(
      "<think>\nNeed weather.\n</think>\n\nChecking.\n<tool_call>\n"
      "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n"
      "</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>");
  EXPECT_EQ(p.message.reasoning_content, std::optional<std::string>("Need weather."));
  EXPECT_EQ(p.message.content, "Checking.");
  ASSERT_EQ(p.message.tool_calls.size(), 2u);
  EXPECT_EQ(p.message.tool_calls[0].name, "get_weather");
  EXPECT_EQ(p.message.tool_calls[0].arguments, Json::parse(R"({"city": "Paris", "days": 2})"));
  // Key order is kept.
  EXPECT_EQ(p.message.tool_calls[0].arguments.begin().key(), "city");
  EXPECT_EQ(p.message.tool_calls[1].name, "get_time");
  EXPECT_TRUE(p.message.tool_calls[1].arguments.empty());
  EXPECT_TRUE(p.tool_call_errors.empty());
  EXPECT_FALSE(p.tool_call_pending);
}

TEST(ChatOutput, ToolCallsWithoutThinking) {
  const ParsedChatOutput p =
      Parse("<tool_call>\n{\"name\": \"f\", \"arguments\": \"{\\\"x\\\": 1}\"}\n</tool_call>",
            /*thinking=*/false);
  EXPECT_EQ(p.message.content, "");
  ASSERT_EQ(p.message.tool_calls.size(), 1u);
  EXPECT_EQ(p.message.tool_calls[0].arguments, Json("{\"x\": 1}"));  // string kept as string
}

TEST(ChatOutput, MalformedToolCallIsReported) {
  const ParsedChatOutput p = Parse(
      "</think>\n\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": }\n</tool_call>\n"
      "<tool_call>\n[1, 2]\n</tool_call>\n<tool_call>\n{\"arguments\": {}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"ok\", \"arguments\": {\"y\": [1]}}\n</tool_call>");
  ASSERT_EQ(p.message.tool_calls.size(), 1u);
  EXPECT_EQ(p.message.tool_calls[0].name, "ok");
  ASSERT_EQ(p.tool_call_errors.size(), 3u);
  EXPECT_EQ(p.tool_call_errors[0].index, 0u);
  EXPECT_EQ(p.tool_call_errors[0].message, "invalid JSON");
  EXPECT_EQ(p.tool_call_errors[0].raw, "\n{\"name\": \"f\", \"arguments\": {\"x\": }\n");
  EXPECT_EQ(p.tool_call_errors[1].index, 1u);
  EXPECT_EQ(p.tool_call_errors[1].message, "expected a JSON object");
  EXPECT_EQ(p.tool_call_errors[2].index, 2u);
  EXPECT_EQ(p.tool_call_errors[2].message, "\"name\" missing or not a string");
  EXPECT_EQ(p.message.content, "");
}

TEST(ChatOutput, DeeplyNestedToolCallIsReported) {
  std::string text = "<tool_call>\n{\"name\": \"f\", \"arguments\": ";
  for (int i = 0; i < 5000; ++i) text += "[";
  for (int i = 0; i < 5000; ++i) text += "]";
  text += "}\n</tool_call>";
  const ParsedChatOutput p = Parse(text, false);
  EXPECT_TRUE(p.message.tool_calls.empty());
  ASSERT_EQ(p.tool_call_errors.size(), 1u);
  EXPECT_NE(p.tool_call_errors[0].message.find("nested deeper"), std::string::npos);
}

TEST(ChatOutput, UnterminatedToolCall) {
  const std::string text = "Sure.\n<tool_call>\n{\"name\": \"f\", \"argu";
  ParsedChatOutput p = Parse(text, false, /*partial=*/true);
  EXPECT_EQ(p.message.content, "Sure.");  // the open call is held back, not shown as content
  EXPECT_TRUE(p.tool_call_pending);
  EXPECT_TRUE(p.tool_call_errors.empty());
  EXPECT_TRUE(p.message.tool_calls.empty());
  p = Parse(text, false, /*partial=*/false);  // the stream ended: report it
  EXPECT_EQ(p.message.content, "Sure.");
  EXPECT_FALSE(p.tool_call_pending);
  ASSERT_EQ(p.tool_call_errors.size(), 1u);
  EXPECT_EQ(p.tool_call_errors[0].message, "unterminated <tool_call>");
  EXPECT_EQ(p.tool_call_errors[0].raw, "\n{\"name\": \"f\", \"argu");
}

TEST(ChatOutput, PartialTagsAreHeldBack) {
  ParsedChatOutput p = Parse("<think>\nabc</thi", true, true);
  EXPECT_EQ(p.message.reasoning_content, std::optional<std::string>("abc"));
  p = Parse("<thi", false, true);
  EXPECT_EQ(p.message.content, "");
  EXPECT_FALSE(p.message.reasoning_content.has_value());
  p = Parse("Hello <tool_c", false, true);
  EXPECT_EQ(p.message.content, "Hello ");
  p = Parse("Hello <tool_c", false, false);  // finished: it was text after all
  EXPECT_EQ(p.message.content, "Hello <tool_c");
}

// Every prefix of a streamed output parses without error, and the reasoning and content seen
// so far are prefixes of the final ones (so a server can stream deltas).
TEST(ChatOutput, StreamingPrefixesAreMonotonic) {
  const std::string full =
      "<think>\nStep 1.\nStep 2.\n</think>\n\nHere you go.\n\n<tool_call>\n"
      "{\"name\": \"f\", \"arguments\": {\"q\": \"a<b\"}}\n</tool_call>\n<tool_call>\n"
      "{\"name\": \"g\", \"arguments\": {}}\n</tool_call>";
  const ParsedChatOutput final_parse = Parse(full);
  ASSERT_EQ(final_parse.message.tool_calls.size(), 2u);
  EXPECT_EQ(final_parse.message.content, "Here you go.");
  EXPECT_EQ(final_parse.message.reasoning_content, std::optional<std::string>("Step 1.\nStep 2."));
  for (size_t n = 0; n <= full.size(); ++n) {
    const ParsedChatOutput p = Parse(std::string_view(full).substr(0, n), true, true);
    SCOPED_TRACE(full.substr(0, n));
    EXPECT_TRUE(p.tool_call_errors.empty());
    const std::string reasoning = p.message.reasoning_content.value_or("");
    EXPECT_TRUE(final_parse.message.reasoning_content->starts_with(reasoning));
    EXPECT_TRUE(final_parse.message.content.starts_with(p.message.content));
    EXPECT_LE(p.message.tool_calls.size(), 2u);
    for (size_t k = 0; k < p.message.tool_calls.size(); ++k) {
      EXPECT_EQ(p.message.tool_calls[k].name, final_parse.message.tool_calls[k].name);
    }
  }
}

// Rendering a parsed turn as the current (last) assistant message reproduces the text.
TEST(ChatOutput, RoundTripThroughRender) {
  const std::string body =
      "<think>\nplan\n</think>\n\nCalling.\n<tool_call>\n{\"name\": \"f\", \"arguments\": "
      "{\"b\": 1, \"a\": [true, null, 1.5]}}\n</tool_call>\n<tool_call>\n{\"name\": \"g\", "
      "\"arguments\": {}}\n</tool_call>";
  ParsedChatOutput p = Parse(body);
  ASSERT_TRUE(p.tool_call_errors.empty());
  std::vector<ChatMessage> messages(1);
  messages[0].content = "q";
  messages.push_back(p.message);
  ChatOptions options;
  options.add_generation_prompt = false;
  Result<std::string> out = RenderChat(messages, options);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n" + body +
                      "<|im_end|>\n");
}

}  // namespace
}  // namespace qwenmux::chat

namespace qwenmux::chat {
namespace {

// Random mixes of tags, JSON fragments and text: no crash, and for every prefix of a stream
// the partial parse's reasoning and content are prefixes of the finished parse's.
TEST(ChatOutput, RandomStreamsStayConsistent) {
  const char* const pieces[] = {"<think>", "</think>", "<tool_call>", "</tool_call>", "\n",
                                "\n\n", "{\"name\": \"f\", \"arguments\": {\"a\": 1}}", "{",
                                "}", "\"", "<", "</", "text", " ", "é", "<tool_", "</thi"};
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    const int n = static_cast<int>(next() % 24);
    for (int i = 0; i < n; ++i) text += pieces[next() % std::size(pieces)];
    for (const bool thinking : {false, true}) {
      const ParsedChatOutput done = Parse(text, thinking, false);
      EXPECT_FALSE(done.tool_call_pending);
      for (size_t cut = 0; cut <= text.size(); ++cut) {
        const ParsedChatOutput p = Parse(std::string_view(text).substr(0, cut), thinking, true);
        // Every prefix parsed as partial shows no more than the finished parse.
        EXPECT_TRUE(done.message.content.starts_with(p.message.content)) << text << " cut " << cut;
        EXPECT_TRUE(done.message.reasoning_content.value_or("").starts_with(
            p.message.reasoning_content.value_or("")))
            << text << " cut " << cut;
        ASSERT_LE(p.message.tool_calls.size(), done.message.tool_calls.size()) << text << " cut " << cut;
        for (size_t k = 0; k < p.message.tool_calls.size(); ++k) {
          EXPECT_EQ(p.message.tool_calls[k].arguments, done.message.tool_calls[k].arguments) << text;
        }
      }
    }
  }
}

}  // namespace
}  // namespace qwenmux::chat
