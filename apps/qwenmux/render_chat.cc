// qwenmux render-chat CASE.json — prints the Qwen3 prompt for a conversation, byte for byte
// (no trailing newline added). CASE.json is one object: "messages", optional
// "add_generation_prompt" (default true) and "kwargs" / "chat_template_kwargs" holding
// "tools" and "enable_thinking" (the shape of an entry of chat-template-cases.json; OpenAI
// request bodies work too). "-" reads standard input. Errors go to stderr, exit code 1.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>

#include "chat/chat.h"
#include "commands.h"

namespace qwenmux::apps {
namespace {

Result<std::string> ReadInput(const std::string& path) {
  std::ostringstream text;
  if (path == "-") {
    text << std::cin.rdbuf();
    return text.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(StatusCode::kNotFound, "render-chat: cannot open {}", path);
  text << in.rdbuf();
  if (in.bad()) return Error(StatusCode::kIo, "render-chat: error reading {}", path);
  return text.str();
}

Result<std::string> RenderFile(const std::string& path) {
  QM_ASSIGN_OR_RETURN(std::string text, ReadInput(path));
  const nlohmann::ordered_json request =
      nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) {
    return Error(StatusCode::kInvalidArgument, "render-chat: {}: not valid JSON", path);
  }
  Result<chat::ChatRequest> parsed = chat::ParseChatRequestJson(request);
  if (!parsed.ok()) return parsed.status().WithContext(fmt::format("render-chat: {}", path));
  return chat::RenderChat(parsed->messages, parsed->options);
}

}  // namespace

void RegisterRenderChat(CLI::App& app, int* exit_code) {
  CLI::App* cmd = app.add_subcommand(
      "render-chat", "Print the Qwen3 chat prompt for a conversation JSON file, byte for byte");
  auto path = std::make_shared<std::string>();
  cmd->add_option("case", *path,
                  "JSON object with messages, add_generation_prompt and kwargs "
                  "(tools, enable_thinking); '-' for stdin")
      ->required();
  cmd->callback([path, exit_code] {
    Result<std::string> prompt = RenderFile(*path);
    if (!prompt.ok()) {
      std::fprintf(stderr, "%s\n", prompt.status().ToString().c_str());
      *exit_code = 1;
      return;
    }
    if (std::fwrite(prompt->data(), 1, prompt->size(), stdout) != prompt->size() ||
        std::fflush(stdout) != 0) {
      std::fprintf(stderr, "render-chat: error writing to stdout\n");
      *exit_code = 1;
      return;
    }
    *exit_code = 0;
  });
}

}  // namespace qwenmux::apps
