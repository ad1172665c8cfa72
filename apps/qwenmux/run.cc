// qwenmux run MODEL [-p TEXT | -p -] [--chat] [--no-think] [--temp T] [-n N] ...
//   [--format json | --json-schema FILE | --grammar FILE] [--think-budget N]
// MODEL: a GGUF file or a store name (qwen3:0.6b-q8_0). With -p: streams the generated text to
// stdout, then prefill and decode tokens/s to stderr (-p - reads the prompt from stdin). Without
// -p: an interactive chat (chat_loop.cc).
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>

#include <fmt/format.h>

#include "chat/chat.h"
#include "commands.h"
#include "engine_flags.h"
#include "model_ref_flag.h"
#include "run_chat.h"
#include "structured/structured.h"

namespace qwenmux::apps {

namespace {

struct Args {
  std::string model, models_dir, prompt, system;
  bool prompt_given = false;
  bool chat = false, no_think = false;
  std::string format, json_schema_file, grammar_file;
  int32_t think_budget = -1;
  engine::LoadOptions load;
  engine::GenerateOptions gen;
  LoraFlag lora;
};

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Error(StatusCode::kNotFound, "cannot open {}", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The constraint of --format / --json-schema / --grammar (nullptr: none), wrapped in a
// thinking budget when the chat turn thinks.
Result<std::unique_ptr<engine::LogitProcessor>> MakeProcessor(const Args& a, const engine::Model& m) {
  const int given = !a.format.empty() + !a.json_schema_file.empty() + !a.grammar_file.empty();
  if (given > 1) return Error(StatusCode::kInvalidArgument, "use one of --format, --json-schema, --grammar");
  const bool thinking = a.chat && !a.no_think;
  if (given == 0 && !(thinking && a.think_budget >= 0)) return std::unique_ptr<engine::LogitProcessor>();
  auto vocab = structured::VocabIndex::Shared(m.tokenizer());
  structured::Constraint c;
  if (!a.format.empty()) {
    if (a.format != "json") return Error(StatusCode::kInvalidArgument, "--format: only 'json' (any JSON object) is known");
    QM_ASSIGN_OR_RETURN(c, structured::CompileJsonObject(vocab));
  } else if (!a.json_schema_file.empty()) {
    QM_ASSIGN_OR_RETURN(std::string text, ReadFile(a.json_schema_file));
    auto schema = nlohmann::ordered_json::parse(text, nullptr, false);
    if (schema.is_discarded()) return Error(StatusCode::kInvalidArgument, "{}: not valid JSON", a.json_schema_file);
    QM_ASSIGN_OR_RETURN(c, structured::CompileJsonSchema(schema, vocab));
  } else if (!a.grammar_file.empty()) {
    QM_ASSIGN_OR_RETURN(std::string text, ReadFile(a.grammar_file));
    QM_ASSIGN_OR_RETURN(c, structured::CompileGrammar(text, vocab));
  }
  std::unique_ptr<engine::LogitProcessor> p = c ? c->NewProcessor() : nullptr;
  if (thinking) {
    structured::ThinkingOptions o;
    o.budget = a.think_budget;
    p = structured::MakeThinkingBudget(std::move(p), vocab, o);
  }
  return p;
}

int Run(Args a) {
  if (Status r = ResolveModelRefs({&a.model}, a.models_dir); !r.ok()) return ReportError(r);
  if (a.prompt_given && a.prompt == "-") {  // -p -: the prompt from stdin
    a.prompt.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    if (a.prompt.empty()) return ReportError(Error(StatusCode::kInvalidArgument, "run -p -: empty prompt on stdin"));
  }
  if (Status d = ResolveLoadDevice(&a.load); !d.ok()) return ReportError(d);
  auto model = engine::Model::Load(a.model, a.load);
  if (!model.ok()) {
    return ReportError(model.status());
  }
  engine::Model& m = **model;
  auto lora = LoadLoraFlag(m, a.lora);
  if (!lora.ok()) return ReportError(lora.status());
  a.gen.adapter = *lora;
  a.gen.adapter_scale = a.lora.scale;
  auto processor = MakeProcessor(a, m);
  if (!processor.ok()) {
    return ReportError(processor.status());
  }
  a.gen.processor = processor->get();
  if (!a.prompt_given) {
    if (a.gen.processor != nullptr)
      return ReportError(Error(StatusCode::kInvalidArgument,
                               "run: --format, --json-schema, --grammar and --think-budget need -p (one prompt)"));
    ChatLoopOptions co;
    co.system = a.system;
    co.thinking = !a.no_think;
    return RunChatLoop(m, a.gen, co);
  }
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
  AddModelRef(cmd, "model", &a->model, &a->models_dir)->required();
  auto* prompt = cmd->add_option("-p,--prompt", a->prompt,
                                 "Prompt text ('-': read it from stdin); without -p, an interactive chat");
  cmd->add_flag("--chat", a->chat, "Wrap the prompt in the Qwen3 chat template");
  cmd->add_option("--system", a->system, "System message (with --chat or the interactive chat)");
  cmd->add_flag("--no-think", a->no_think, "Disable thinking (with --chat; the chat's starting /no_think)");
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
  cmd->add_option("--format", a->format, "Constrain the output: 'json' (any JSON object)");
  cmd->add_option("--json-schema", a->json_schema_file, "Constrain the output to a JSON Schema (file)");
  cmd->add_option("--grammar", a->grammar_file, "Constrain the output to a GBNF grammar (file; start rule 'root')");
  cmd->add_option("--think-budget", a->think_budget, "With --chat and thinking: force </think> after N tokens (-1: off)")
      ->capture_default_str();
  AddLoadFlags(cmd, &a->load);
  AddLoraFlag(cmd, &a->lora);
  cmd->callback([=] {
    a->prompt_given = prompt->count() > 0;
    *exit_code = Run(*a);
  });
}

}  // namespace qwenmux::apps
