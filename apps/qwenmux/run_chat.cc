#include "run_chat.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "chat/chat.h"

namespace qwenmux::apps {

namespace {

std::atomic<bool> g_interrupted{false};

extern "C" void OnSigint(int) { g_interrupted.store(true); }

// SIGINT sets g_interrupted for the lifetime of this object (SA_RESTART: a read at the prompt
// goes on); the previous handler comes back afterwards.
class SigintGuard {
 public:
  SigintGuard() {
    struct sigaction sa {};
    sa.sa_handler = OnSigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &old_);
  }
  ~SigintGuard() { sigaction(SIGINT, &old_, nullptr); }
  SigintGuard(const SigintGuard&) = delete;
  SigintGuard& operator=(const SigintGuard&) = delete;

 private:
  struct sigaction old_ {};
};

chat::ChatMessage Message(chat::ChatRole role, const std::string& content) {
  chat::ChatMessage m;
  m.role = role;
  m.content = content;
  return m;
}

std::string Trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

}  // namespace

int RunChatLoop(engine::Model& m, engine::GenerateOptions gen, const ChatLoopOptions& o) {
  const bool tty = isatty(STDIN_FILENO) != 0;
  SigintGuard guard;
  std::vector<chat::ChatMessage> history;
  if (!o.system.empty()) history.push_back(Message(chat::ChatRole::kSystem, o.system));
  bool thinking = o.thinking;
  if (tty) fmt::print(stderr, "Chat with the model: /bye or Ctrl-D leaves, Ctrl-C stops an answer, /? for help\n");
  std::string line;
  while (true) {
    if (tty) {
      std::fputs(">>> ", stdout);
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;  // Ctrl-D / end of input
    const std::string text = Trim(line);
    if (text.empty()) continue;
    if (text == "/bye" || text == "/exit") break;
    if (text == "/think" || text == "/no_think") {
      thinking = text == "/think";
      fmt::print(stderr, "thinking {}\n", thinking ? "on" : "off");
      continue;
    }
    if (text == "/clear") {
      history.resize(o.system.empty() ? 0 : 1);
      fmt::print(stderr, "history cleared\n");
      continue;
    }
    if (text == "/?" || text == "/help") {
      fmt::print(stderr, "/bye leaves (or Ctrl-D), /think and /no_think switch thinking, /clear forgets the history; "
                         "Ctrl-C stops the current answer\n");
      continue;
    }
    if (text[0] == '/' && text.find(' ') == std::string::npos) {
      fmt::print(stderr, "unknown command {} (/? lists them)\n", text);
      continue;
    }
    history.push_back(Message(chat::ChatRole::kUser, line));
    chat::ChatOptions opt;
    opt.add_generation_prompt = true;
    opt.enable_thinking = thinking;
    auto rendered = chat::RenderChat(history, opt);
    if (!rendered.ok()) {
      fmt::print(stderr, "error: {}\n", rendered.status().ToString());
      history.pop_back();
      continue;
    }
    tokenizer::EncodeOptions special;
    special.parse_special = true;  // the rendered template; the text comes from the local operator
    const std::vector<int32_t> ids = m.tokenizer().Encode(*rendered, special);
    g_interrupted.store(false);
    std::string answer;
    auto res = m.Generate(ids, gen, [&](std::string_view s) {
      if (g_interrupted.load()) return false;
      answer.append(s);
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    if (!res.ok()) {
      // A cancelled answer is what Ctrl-C asks for; anything else (the history outgrew the
      // context) is reported, and the turn is dropped so the chat can go on.
      if (!g_interrupted.load()) {
        fmt::print(stderr, "\nerror: {}\n", res.status().ToString());
        history.pop_back();
        continue;
      }
    }
    if (g_interrupted.exchange(false)) fmt::print(stderr, "\n[stopped]");
    std::fputs("\n", stdout);
    std::fflush(stdout);
    if (res.ok()) {
      const double pre = res->prefill_seconds > 0 ? res->prompt_tokens / res->prefill_seconds : 0;
      const double dec = res->decode_seconds > 0 ? res->tokens.size() / res->decode_seconds : 0;
      fmt::print(stderr, "[prefill {} tokens, {:.1f} tok/s | decode {} tokens, {:.1f} tok/s | finish: {}]\n",
                 res->prompt_tokens, pre, res->tokens.size(), dec, res->finish_reason);
    }
    history.push_back(Message(chat::ChatRole::kAssistant, answer));
  }
  if (tty) std::fputs("\n", stdout);
  return 0;
}

}  // namespace qwenmux::apps
