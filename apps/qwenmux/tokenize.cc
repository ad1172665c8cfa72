// qwenmux tokenize MODEL.gguf TEXT [--json] [--special]: prints the token ids of TEXT.
// Plain output is one line "id id id ..."; --json prints exactly {"ids": [...]}. --special
// parses control/user-defined tokens written in TEXT (e.g. <|im_start|>); without it they are
// plain text.
#include <cstdio>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "commands.h"
#include "model_ref_flag.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

namespace qwenmux::apps {
namespace {

int RunTokenize(std::string path, const std::string& models_dir, const std::string& text, bool json, bool special) {
  if (Status r = ResolveModelRefs({&path}, models_dir); !r.ok()) return ReportError(r);
  auto file = gguf::File::Open(path);
  if (!file.ok()) {
    fmt::print(stderr, "error: {}\n", file.status().ToString());
    return 1;
  }
  auto tok = tokenizer::Tokenizer::FromGguf(*file);
  if (!tok.ok()) {
    fmt::print(stderr, "error: {}\n", tok.status().ToString());
    return 1;
  }
  const std::vector<int32_t> ids = tok->Encode(text, {.parse_special = special});
  if (json) {
    fmt::print("{{\"ids\": [{}]}}\n", fmt::join(ids, ", "));
  } else {
    fmt::print("{}\n", fmt::join(ids, " "));
  }
  return 0;
}

}  // namespace

void RegisterTokenize(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("tokenize", "Print the token ids of a text");
  auto path = std::make_shared<std::string>();
  auto text = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto special = std::make_shared<bool>(false);
  auto models_dir = std::make_shared<std::string>();
  AddModelRef(cmd, "model", path.get(), models_dir.get(), "Tokenizer (a model or vocab-only file)")->required();
  cmd->add_option("text", *text, "Text to tokenize")->required();
  cmd->add_flag("--json", *json, "Print {\"ids\": [...]}");
  cmd->add_flag("--special", *special, "Parse control tokens such as <|im_start|> in the text");
  cmd->callback([=] { *exit_code = RunTokenize(*path, *models_dir, *text, *json, *special); });
}

}  // namespace qwenmux::apps
