#include "finetune/data.h"

#include <algorithm>
#include <fstream>
#include <numeric>

#include <fmt/format.h>

#include "chat/chat.h"
#include "finetune/rng.h"
#include "finetune/step.h"

namespace qwenmux::finetune {

namespace {

constexpr std::string_view kAsstOpen = "<|im_start|>assistant\n";
constexpr std::string_view kImEnd = "<|im_end|>";
constexpr std::string_view kEmptyThink = "<think>\n\n</think>\n\n";

struct Piece {
  std::string_view text;
  bool special = false;  // template text: encode with special tokens
  bool masked = false;   // its tokens are labels
};

// Splits the rendered segments into pieces with the mask convention of data.h.
std::vector<Piece> MaskPieces(const std::vector<chat::PromptSegment>& segs) {
  std::vector<Piece> out;
  bool in_asst = false, at_start = false;
  for (const chat::PromptSegment& seg : segs) {
    std::string_view t = seg.text;
    if (!seg.template_text) {
      if (!t.empty()) out.push_back({t, false, in_asst}), at_start = false;
      continue;
    }
    while (!t.empty()) {
      if (!in_asst) {
        const size_t p = t.find(kAsstOpen);
        if (p == std::string_view::npos) {
          out.push_back({t, true, false});
          break;
        }
        out.push_back({t.substr(0, p + kAsstOpen.size()), true, false});
        t.remove_prefix(p + kAsstOpen.size());
        in_asst = at_start = true;
        continue;
      }
      if (at_start && t.starts_with(kEmptyThink)) {
        out.push_back({t.substr(0, kEmptyThink.size()), true, false});
        t.remove_prefix(kEmptyThink.size());
      }
      at_start = false;
      const size_t e = t.find(kImEnd);
      if (e == std::string_view::npos) {
        out.push_back({t, true, true});
        break;
      }
      out.push_back({t.substr(0, e + kImEnd.size()), true, true});
      t.remove_prefix(e + kImEnd.size());
      in_asst = false;
    }
  }
  return out;
}

Result<std::string> StringField(const nlohmann::ordered_json& j, const char* key, bool required) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) return Error(StatusCode::kInvalidArgument, "missing \"{}\"", key);
    return std::string();
  }
  if (!j[key].is_string()) return Error(StatusCode::kInvalidArgument, "\"{}\" is not a string", key);
  return j[key].get<std::string>();
}

Result<std::vector<chat::ChatMessage>> Messages(const nlohmann::ordered_json& j) {
  if (!j.is_object()) return Error(StatusCode::kInvalidArgument, "not a JSON object");
  std::vector<chat::ChatMessage> m;
  auto push = [&](chat::ChatRole r, std::string text) {
    chat::ChatMessage msg;
    msg.role = r;
    msg.content = std::move(text);
    m.push_back(std::move(msg));
  };
  if (j.contains("messages")) {
    QM_ASSIGN_OR_RETURN(m, chat::ParseChatMessagesJson(j["messages"]));
  } else if (j.contains("instruction")) {
    QM_ASSIGN_OR_RETURN(std::string sys, StringField(j, "system", false));
    QM_ASSIGN_OR_RETURN(std::string ins, StringField(j, "instruction", true));
    QM_ASSIGN_OR_RETURN(std::string input, StringField(j, "input", false));
    // "response": the field name of examples/pipelines/finetune-prep.yaml's extraction.
    QM_ASSIGN_OR_RETURN(std::string output, StringField(j, j.contains("response") ? "response" : "output", true));
    if (!sys.empty()) push(chat::ChatRole::kSystem, sys);
    push(chat::ChatRole::kUser, input.empty() ? ins : ins + "\n\n" + input);
    push(chat::ChatRole::kAssistant, output);
  } else if (j.contains("prompt")) {
    QM_ASSIGN_OR_RETURN(std::string prompt, StringField(j, "prompt", true));
    QM_ASSIGN_OR_RETURN(std::string completion, StringField(j, "completion", true));
    push(chat::ChatRole::kUser, prompt);
    push(chat::ChatRole::kAssistant, completion);
  } else {
    return Error(StatusCode::kInvalidArgument,
                 "unknown shape: expected \"messages\", \"instruction\"/\"output\" or \"prompt\"/\"completion\"");
  }
  if (m.empty()) return Error(StatusCode::kInvalidArgument, "empty conversation");
  if (std::none_of(m.begin(), m.end(), [](const auto& x) { return x.role == chat::ChatRole::kAssistant; })) {
    return Error(StatusCode::kInvalidArgument, "no assistant turn (nothing to learn)");
  }
  return m;
}

}  // namespace

Result<Example> ExampleFromJson(const nlohmann::ordered_json& j, const tokenizer::Tokenizer& tok) {
  QM_ASSIGN_OR_RETURN(std::vector<chat::ChatMessage> msgs, Messages(j));
  chat::ChatOptions opts;
  opts.add_generation_prompt = false;
  opts.enable_thinking = false;
  QM_ASSIGN_OR_RETURN(std::vector<chat::PromptSegment> segs, chat::RenderChatSegments(msgs, opts));
  Example ex;
  tokenizer::EncodeOptions special;
  special.parse_special = true;
  for (const Piece& p : MaskPieces(segs)) {
    const size_t before = ex.ids.size();
    tok.EncodeAppend(p.text, p.special ? special : tokenizer::EncodeOptions{}, &ex.ids);
    ex.mask.resize(ex.ids.size(), 0);
    if (p.masked) std::fill(ex.mask.begin() + static_cast<std::ptrdiff_t>(before), ex.mask.end(), 1);
  }
  if (!ex.mask.empty()) ex.mask[0] = 0;  // nothing predicts the first token
  return ex;
}

std::string Dataset::Summary() const {
  std::string s = fmt::format(
      "data: {} lines, {} train + {} valid examples, {} skipped, {} over the length limit {} ({} truncated)\n"
      "tokens: {} ({} labels), longest example {} tokens, mean {:.1f}\n",
      lines, train.size(), valid.size(), skipped.size(), dropped_long + truncated,
      dropped_long + truncated > 0 ? "dropped or truncated" : "", truncated, tokens, labels, max_len,
      train.size() + valid.size() > 0 ? static_cast<double>(tokens) / static_cast<double>(train.size() + valid.size())
                                      : 0.0);
  for (size_t i = 0; i < skipped.size() && i < 20; ++i) {
    s += fmt::format("  line {}: {}\n", skipped[i].line, skipped[i].message);
  }
  if (skipped.size() > 20) s += fmt::format("  ... and {} more\n", skipped.size() - 20);
  return s;
}

Result<Dataset> LoadJsonl(const std::string& path, const tokenizer::Tokenizer& tok, const DataOptions& o) {
  std::ifstream in(path);
  if (!in) return Error(StatusCode::kNotFound, "finetune: cannot open data file {}", path);
  if (o.max_tokens < 2) return Error(StatusCode::kInvalidArgument, "finetune: max tokens {} < 2", o.max_tokens);
  Dataset d;
  std::vector<Example> all;
  std::string line;
  int64_t no = 0;
  while (std::getline(in, line)) {
    ++no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ++d.lines;
    const auto j = nlohmann::ordered_json::parse(line, nullptr, false);
    if (j.is_discarded()) {
      d.skipped.push_back({no, "invalid JSON"});
      continue;
    }
    Result<Example> ex = ExampleFromJson(j, tok);
    if (!ex.ok()) {
      d.skipped.push_back({no, ex.status().message()});
      continue;
    }
    ex->line = no;
    if (static_cast<int64_t>(ex->ids.size()) > o.max_tokens) {
      if (!o.truncate) {
        ++d.dropped_long;
        d.skipped.push_back({no, fmt::format("{} tokens, over the limit of {} (dropped)", ex->ids.size(), o.max_tokens)});
        continue;
      }
      ex->ids.resize(static_cast<size_t>(o.max_tokens));
      ex->mask.resize(static_cast<size_t>(o.max_tokens));
      ++d.truncated;
    }
    if (CountLabels(*ex) == 0) {
      d.skipped.push_back({no, "no assistant token left to learn"});
      continue;
    }
    all.push_back(std::move(*ex));
  }
  if (all.empty()) {
    return Error(StatusCode::kInvalidArgument, "finetune: {}: no usable example in {} lines{}", path, d.lines,
                 d.skipped.empty() ? "" : fmt::format(" (line {}: {})", d.skipped[0].line, d.skipped[0].message));
  }
  // Deterministic split: a seeded Fisher-Yates shuffle, the first share to validation.
  std::vector<size_t> order(all.size());
  std::iota(order.begin(), order.end(), 0);
  SplitMix64 rng(MixSeed(o.seed, 0x5eed));
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.Next() % i]);
  size_t n_valid = static_cast<size_t>(o.valid_fraction * static_cast<double>(all.size()) + 0.5);
  if (o.valid_fraction > 0 && n_valid == 0 && all.size() >= 2) n_valid = 1;
  n_valid = std::min(n_valid, all.size() - 1);
  for (size_t i = 0; i < order.size(); ++i) {
    Example& e = all[order[i]];
    d.tokens += static_cast<int64_t>(e.ids.size());
    d.labels += CountLabels(e);
    d.max_len = std::max<int64_t>(d.max_len, static_cast<int64_t>(e.ids.size()));
    (i < n_valid ? d.valid : d.train).push_back(std::move(e));
  }
  // Keep file order inside each split (readable logs); the trainer shuffles per epoch.
  for (auto* v : {&d.train, &d.valid}) {
    std::sort(v->begin(), v->end(), [](const Example& a, const Example& b) { return a.line < b.line; });
  }
  return d;
}

}  // namespace qwenmux::finetune
