// qwenmux run MODEL [-p TEXT | -p -] [--chat] [--no-think] [--temp T] [-n N] ...
//   [--format json | --json-schema FILE | --grammar FILE] [--think-budget N]
// MODEL: a GGUF file or a store name (qwen3:0.6b-q8_0). With -p: streams the generated text to
// stdout, then prefill and decode tokens/s to stderr (-p - reads the prompt from stdin). Without
// -p: an interactive chat (chat_loop.cc).
// MODEL may be NAME/MODEL of a backend (--backend NAME=URL[,dialect] or the `backends:` of
// --config qwenmux.yaml; issue 18): the prompt is one chat turn (with --system) sent to it through
// server::Upstreams::Call, and its whole answer is printed (not streamed); --format json and
// --json-schema become its response_format; --grammar, --lora, --think-budget and the
// interactive chat need a local model.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>

#include <fmt/format.h>

#include "chat/chat.h"
#include "backend_flags.h"
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
  std::string config_path;  // qwenmux.yaml: its backends
  BackendFlags backends;
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

// MODEL is a backend's: one whole chat request through Upstreams::Call.
int RunOnBackend(const Args& a) {
  auto refuse = [&](const char* what) {
    return ReportError(Error(StatusCode::kInvalidArgument, "run: {} needs a local model; {} is a backend's model", what, a.model));
  };
  if (!a.prompt_given) return refuse("the interactive chat (no -p)");
  if (!a.grammar_file.empty()) return refuse("--grammar");
  if (!a.lora.path.empty()) return refuse("--lora");
  if (a.think_budget >= 0) return refuse("--think-budget");
  std::string prompt = a.prompt;
  if (prompt == "-") prompt.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  server::Json messages = server::Json::array();
  if (!a.system.empty()) messages.push_back({{"role", "system"}, {"content", a.system}});
  messages.push_back({{"role", "user"}, {"content", prompt}});
  const engine::SamplerOptions& sp = a.gen.sampler;
  server::Json body{{"messages", messages}, {"max_tokens", a.gen.max_tokens}, {"temperature", sp.temperature},
                    {"top_p", sp.top_p}, {"seed", sp.seed}};
  if (!a.gen.stop.empty()) body["stop"] = a.gen.stop;
  if (a.no_think) body["chat_template_kwargs"] = {{"enable_thinking", false}};
  if (!a.format.empty() && !a.json_schema_file.empty())
    return ReportError(Error(StatusCode::kInvalidArgument, "use one of --format, --json-schema"));
  if (!a.format.empty()) {
    if (a.format != "json") return ReportError(Error(StatusCode::kInvalidArgument, "--format: only 'json' (any JSON object) is known"));
    body["response_format"] = {{"type", "json_object"}};
  } else if (!a.json_schema_file.empty()) {
    auto text = ReadFile(a.json_schema_file);
    if (!text.ok()) return ReportError(text.status());
    auto schema = server::Json::parse(*text, nullptr, false);
    if (schema.is_discarded()) return ReportError(Error(StatusCode::kInvalidArgument, "{}: not valid JSON", a.json_schema_file));
    body["response_format"] = {{"type", "json_schema"}, {"json_schema", {{"name", "output"}, {"schema", schema}}}};
  }
  auto answer = a.backends.upstreams->Call(server::Upstreams::CallKind::kChat, a.model, std::move(body));
  if (!answer.ok()) return ReportError(answer.status());
  const server::Json& choice = (*answer)["choices"][0];
  const server::Json& msg = choice["message"];
  if (msg.contains("reasoning_content") && msg["reasoning_content"].is_string() && !a.no_think)
    fmt::print("<think>\n{}\n</think>\n\n", msg["reasoning_content"].get<std::string>());
  if (msg.contains("content") && msg["content"].is_string()) fmt::print("{}", msg["content"].get<std::string>());
  std::fflush(stdout);
  const server::Json usage = answer->contains("usage") ? (*answer)["usage"] : server::Json::object();
  fmt::print(stderr, "\n[backend {} | prompt {} tokens | completion {} tokens | finish: {}]\n", a.model,
             usage.value("prompt_tokens", int64_t{0}), usage.value("completion_tokens", int64_t{0}),
             choice.value("finish_reason", std::string()));
  return 0;
}

int Run(Args a) {
  {
    std::unique_ptr<orchestrator::Config> cfg;
    if (!a.config_path.empty()) {
      auto c = orchestrator::LoadConfig(a.config_path);
      if (!c.ok()) return ReportError(c.status());
      cfg = std::make_unique<orchestrator::Config>(std::move(*c));
    }
    if (Status b = a.backends.Open(cfg.get()); !b.ok()) return ReportError(b);
    if (a.backends.access.Owns(a.model)) return RunOnBackend(a);
  }
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
  cmd->add_option("--config", a->config_path, "qwenmux.yaml whose `backends:` MODEL may name (NAME/MODEL)");
  a->backends.Add(cmd);
  cmd->callback([=] {
    a->prompt_given = prompt->count() > 0;
    *exit_code = Run(*a);
  });
}

}  // namespace qwenmux::apps
