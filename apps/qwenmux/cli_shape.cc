#include "cli_shape.h"

#include <algorithm>
#include <map>
#include <vector>

#include <fmt/format.h>

namespace qwenmux::apps {

void OneValuePerOption(CLI::App& app) {
  for (CLI::Option* o : app.get_options()) {
    if (o->get_positional()) continue;  // the trailing file lists stay lists
    if (o->get_type_size_max() == 1 && o->get_items_expected_max() > 1) o->allow_extra_args(false);
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) OneValuePerOption(*sub);
}

void GroupCommands(CLI::App& app) {
  static const std::map<std::string, std::string> kGroup = {
      {"pull", "Models"},     {"list", "Models"},      {"rm", "Models"},        {"tag", "Models"},
      {"inspect", "Models"},  {"quantize", "Models"},  {"lora", "Models"},  {"finetune", "Models"},      {"plan", "Models"},
      {"run", "Running"},     {"bench", "Running"},    {"refcheck", "Running"}, {"tokenize", "Running"},
      {"render-chat", "Running"}, {"synth", "Running"},
      {"serve", "Serving"},   {"ps", "Serving"},
      {"ingest", "Data"},     {"collection", "Data"},  {"ask", "Data"},         {"eval", "Data"},
      {"pipeline", "Data"}};
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    auto it = kGroup.find(sub->get_name());
    sub->group(it == kGroup.end() ? "Other" : it->second);
  }
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string UnknownCommandMessage(const CLI::App& app, std::string_view word) {
  if (word.empty() || word[0] == '-') return "";
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (sub->check_name(std::string(word))) return "";
    names.push_back(sub->get_name());
  }
  // Other tools' words for our commands (Ollama, llama.cpp habits).
  static const std::map<std::string, std::string, std::less<>> kSynonyms = {
      {"chat", "run"},   {"generate", "run"}, {"show", "inspect"}, {"ls", "list"},  {"remove", "rm"},
      {"delete", "rm"},  {"cp", "tag"},       {"copy", "tag"},     {"download", "pull"}, {"server", "serve"},
      {"embed", "ingest"}, {"query", "ask"}, {"models", "list"}};
  std::string best;
  if (auto s = kSynonyms.find(word); s != kSynonyms.end() &&
                                     std::find(names.begin(), names.end(), s->second) != names.end()) {
    best = s->second;
  } else {
    size_t best_d = SIZE_MAX;
    for (const std::string& n : names) {
      const size_t d = EditDistance(word, n);
      if (d < best_d) best_d = d, best = n;
    }
    // Close enough to be a typo: at most a third of the longer word (and at least 1, at most 2 edits
    // in a short word).
    const size_t limit = std::max<size_t>(2, std::max(word.size(), best.size()) / 3);
    if (best_d > limit) best.clear();
  }
  if (best.empty()) return fmt::format("qwenmux: unknown command \"{}\" (qwenmux --help lists the commands)", word);
  return fmt::format("qwenmux: unknown command \"{}\"; did you mean \"{}\"? (qwenmux --help lists the commands)", word,
                     best);
}

}  // namespace qwenmux::apps
