// qwenmux run MODEL.gguf -p TEXT [--chat] [--no-think] [--temp T] [-n N] ...
// Streams the generated text to stdout, then prefill and decode tokens/s to stderr.
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "chat/chat.h"
#include "commands.h"
#include "engine_flags.h"

namespace qwenmux::apps {

namespace {

struct Args {
  std::string model, prompt, system;
  bool chat = false, no_think = false;
  engine::LoadOptions load;
  engine::GenerateOptions gen;
};

int Run(Args a) {
  auto model = engine::Model::Load(a.model, a.load);
  if (!model.ok()) {
    return ReportError(model.status());
  }
  engine::Model& m = **model;
  std::vector<int32_t> ids;
  if (a.chat) {
    std::vector<chat::ChatMessage> msgs;
    auto add = [&](chat::ChatRole role, const std::string& content) {
      chat::ChatMessage msg;
      msg.role = role;
      msg.content = content;
      msgs.push_back(std::move(msg));
    };
    if (!a.system.empty()) add(chat::ChatRole::kSystem, a.system);
    add(chat::ChatRole::kUser, a.prompt);
    chat::ChatOptions opt;
    opt.add_generation_prompt = true;
    if (a.no_think) opt.enable_thinking = false;
    auto text = chat::RenderChat(msgs, opt);
    if (!text.ok()) {
      return ReportError(text.status());
    }
    tokenizer::EncodeOptions special;
    special.parse_special = true;  // the rendered template; the prompt comes from the local operator
    ids = m.tokenizer().Encode(*text, special);
  } else {
    ids = m.tokenizer().Encode(a.prompt);
  }
  auto res = m.Generate(ids, a.gen, [](std::string_view s) {
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  if (!res.ok()) {
    fmt::print(stderr, "\nerror: {}\n", res.status().ToString());
    return 1;
  }
  const double pre = res->prefill_seconds > 0 ? res->prompt_tokens / res->prefill_seconds : 0;
  const double dec = res->decode_seconds > 0 ? res->tokens.size() / res->decode_seconds : 0;
  fmt::print(stderr, "\n[prefill {} tokens, {:.1f} tok/s | decode {} tokens, {:.1f} tok/s | finish: {}]\n",
             res->prompt_tokens, pre, res->tokens.size(), dec, res->finish_reason);
  return 0;
}

}  // namespace

void RegisterRun(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("run", "Generate text from a prompt, streamed");
  cmd->add_option("model", a->model, "GGUF model file")->required();
  cmd->add_option("-p,--prompt", a->prompt, "Prompt text")->required();
  cmd->add_flag("--chat", a->chat, "Wrap the prompt in the Qwen3 chat template");
  cmd->add_option("--system", a->system, "System message (with --chat)");
  cmd->add_flag("--no-think", a->no_think, "Disable thinking (with --chat)");
  cmd->add_option("-n,--max-tokens", a->gen.max_tokens, "Tokens to generate")->capture_default_str();
  cmd->add_option("--temp", a->gen.sampler.temperature, "Temperature (0: greedy)")->capture_default_str();
  cmd->add_option("--top-k", a->gen.sampler.top_k, "Top-k (0: off)")->capture_default_str();
  cmd->add_option("--top-p", a->gen.sampler.top_p, "Top-p")->capture_default_str();
  cmd->add_option("--min-p", a->gen.sampler.min_p, "Min-p")->capture_default_str();
  cmd->add_option("--repeat-penalty", a->gen.sampler.repetition_penalty, "Repetition penalty")->capture_default_str();
  cmd->add_option("--presence-penalty", a->gen.sampler.presence_penalty, "Presence penalty")->capture_default_str();
  cmd->add_option("--frequency-penalty", a->gen.sampler.frequency_penalty, "Frequency penalty")->capture_default_str();
  cmd->add_option("--seed", a->gen.sampler.seed, "Random seed")->capture_default_str();
  cmd->add_option("--stop", a->gen.stop, "Stop string (repeatable)");
  AddLoadFlags(cmd, &a->load);
  cmd->callback([=] { *exit_code = Run(*a); });
}

}  // namespace qwenmux::apps
