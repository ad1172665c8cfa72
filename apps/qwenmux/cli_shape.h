// How the command line as a whole behaves, apart from any one command: multi-value options take
// one value per occurrence, an unknown command gets a suggestion, `--help` groups the commands.
#pragma once

#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

namespace qwenmux::apps {

// Every option of `app` and its subcommands that collects several values (a vector) takes one
// value per occurrence and is repeated for more, so `--model a=F doc.md` leaves doc.md to the
// positional (CLI11's default for a vector option swallows every following argument).
void OneValuePerOption(CLI::App& app);

// Puts each command under its heading in `--help`: Models, Running, Serving, Data.
void GroupCommands(CLI::App& app);

// Levenshtein distance between two ASCII words.
size_t EditDistance(std::string_view a, std::string_view b);

// For a first argument that is no command of `app`: "unknown command "lsit"; did you mean
// "list"?" (Ollama's words such as chat/show/ls map to ours), or a pointer to --help when nothing
// is close. "" when `word` is a command or an option.
std::string UnknownCommandMessage(const CLI::App& app, std::string_view word);

}  // namespace qwenmux::apps
