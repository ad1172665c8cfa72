// Qwen3 tool-call constraint and the thinking-budget processor.
#include <algorithm>
#include <cmath>
#include <limits>

#include "structured/structured.h"

namespace qwenmux::structured {

using json = nlohmann::ordered_json;

Result<Constraint> MakeToolCallConstraint(const json& tools, const json& tool_choice, std::shared_ptr<const VocabIndex> vocab,
                                          const ToolCallOptions& options) {
  std::optional<std::string> forced;
  if (tool_choice.is_null() || (tool_choice.is_string() && (tool_choice == "auto" || tool_choice == "none"))) {
    return Constraint(nullptr);
  }
  if (tool_choice.is_string()) {
    if (tool_choice != "required") {
      return Error(StatusCode::kInvalidArgument, "tool_choice: unknown value {} (auto, none, required or a function)", tool_choice.dump());
    }
  } else if (tool_choice.is_object()) {
    const json* fn = tool_choice.contains("function") ? &tool_choice["function"] : &tool_choice;
    if (!fn->is_object() || !fn->contains("name") || !(*fn)["name"].is_string()) {
      return Error(StatusCode::kInvalidArgument, "tool_choice: expected {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}");
    }
    forced = (*fn)["name"].get<std::string>();
  } else {
    return Error(StatusCode::kInvalidArgument, "tool_choice: must be a string or an object");
  }
  if (!tools.is_array() || tools.empty()) return Error(StatusCode::kInvalidArgument, "tool_choice {} needs a non-empty tools array", tool_choice.dump());
  if (options.max_calls < 1) return Error(StatusCode::kInvalidArgument, "tool calls: max_calls must be >= 1");

  GrammarBuilder g;
  const int32_t open = vocab->special_id("<tool_call>"), close = vocab->special_id("</tool_call>");
  auto tag = [&](int32_t id, std::string_view text) { return id >= 0 ? Seq{GrammarBuilder::Token(id)} : g.Lit(text); };
  std::vector<Seq> calls;
  for (size_t i = 0; i < tools.size(); ++i) {
    const json& t = tools[i];
    const json* fn = t.is_object() && t.contains("function") ? &t["function"] : &t;
    if (!fn->is_object() || !fn->contains("name") || !(*fn)["name"].is_string()) {
      return Error(StatusCode::kInvalidArgument, "tools[{}]: expected a function with a string 'name'", i);
    }
    const std::string name = (*fn)["name"].get<std::string>();
    if (forced && name != *forced) continue;
    const json params = fn->contains("parameters") && !(*fn)["parameters"].is_null() ? (*fn)["parameters"]
                                                                                      : json{{"type", "object"}, {"properties", json::object()}};
    auto args = AddJsonSchemaRules(g, params, options.schema);
    if (!args.ok()) return args.status().WithContext(fmt::format("tools[{}] ({}) parameters", i, name));
    Seq call = tag(open, "<tool_call>");
    for (const Seq& part : {g.Lit("\n{\"name\": " + json(name).dump() + ", \"arguments\": "), Seq{GrammarBuilder::Ref(*args)},
                            g.Lit("}\n")}) {
      call.insert(call.end(), part.begin(), part.end());
    }
    const Seq end = tag(close, "</tool_call>");
    call.insert(call.end(), end.begin(), end.end());
    calls.push_back(std::move(call));
  }
  if (calls.empty()) return Error(StatusCode::kInvalidArgument, "tool_choice names '{}', which is not in tools", forced.value_or(""));
  const uint32_t call = g.Rule("tool_call", std::move(calls));
  const int32_t max_calls = forced ? 1 : options.max_calls;
  Seq more = g.Lit("\n");
  more.push_back(GrammarBuilder::Ref(call));
  const uint32_t root = g.Rule("tool_calls", {{GrammarBuilder::Ref(call), GrammarBuilder::Ref(g.Repeat(more, 0, max_calls - 1, "more_calls"))}});
  if (g.num_rules() > static_cast<size_t>(options.schema.max_grammar_rules)) {
    return Error(StatusCode::kInvalidArgument, "tools: too complex ({} grammar rules, more than the limit of {})",
                 g.num_rules(), options.schema.max_grammar_rules);
  }
  auto grammar = std::move(g).Build(root);
  if (!grammar.ok()) return grammar.status().WithContext("tool calls");
  return Constraint(std::make_shared<CompiledConstraint>(std::move(*grammar), std::move(vocab), options.schema.constraint));
}

namespace {

class ThinkingBudget final : public engine::LogitProcessor {
 public:
  ThinkingBudget(std::unique_ptr<engine::LogitProcessor> inner, std::shared_ptr<const VocabIndex> vocab, const ThinkingOptions& o)
      : inner_(std::move(inner)), v_(std::move(vocab)), o_(o) {
    open_ = v_->special_id("<think>");
    close_ = v_->special_id("</think>");
    nl_ = v_->newline_id();
    nl2_ = v_->double_newline_id();
    phase_ = o.expect_open && open_ >= 0 ? kOpen : kThinking;
  }

  Status Apply(std::span<float> logits) override {
    if (close_ < 0) return Error(StatusCode::kUnsupported, "thinking: the vocabulary has no </think> token");
    switch (phase_) {
      case kOpen: return Force(logits, open_);
      case kThinking:
        if (o_.budget >= 0 && count_ >= o_.budget) return Force(logits, close_);
        for (int32_t id : v_->eos_ids()) Block(logits, id);
        if (open_ >= 0) Block(logits, open_);
        return Status::Ok();
      case kGap: {
        if (!inner_) return Status::Ok();
        // Newline tokens stay allowed (with their own logits) while the gap lasts.
        float keep1 = 0, keep2 = 0;
        const bool allow1 = nl_ >= 0 && gap_ + 1 <= o_.max_gap_newlines && static_cast<size_t>(nl_) < logits.size();
        const bool allow2 = nl2_ >= 0 && gap_ + 2 <= o_.max_gap_newlines && static_cast<size_t>(nl2_) < logits.size();
        if (allow1) keep1 = logits[nl_];
        if (allow2) keep2 = logits[nl2_];
        Status s = inner_->Apply(logits);
        if (allow1) logits[nl_] = keep1;
        if (allow2) logits[nl2_] = keep2;
        if (!s.ok() && (allow1 || allow2)) return Status::Ok();
        return s;
      }
      case kAnswer: return inner_ ? inner_->Apply(logits) : Status::Ok();
    }
    return Status::Ok();
  }

  Status Accept(int32_t token) override {
    switch (phase_) {
      case kOpen:
        if (token != open_) return Error(StatusCode::kInvalidArgument, "thinking: expected <think>, got token {}", token);
        phase_ = kThinking;
        return Status::Ok();
      case kThinking:
        if (token == close_) {
          phase_ = kGap;
        } else {
          if (o_.budget >= 0 && count_ >= o_.budget) return Error(StatusCode::kInvalidArgument, "thinking: budget spent, expected </think>");
          ++count_;
        }
        return Status::Ok();
      case kGap:
        if (inner_ && (token == nl_ || token == nl2_) && gap_ + (token == nl2_ ? 2 : 1) <= o_.max_gap_newlines) {
          gap_ += token == nl2_ ? 2 : 1;
          return Status::Ok();
        }
        phase_ = kAnswer;
        return inner_ ? inner_->Accept(token) : Status::Ok();
      case kAnswer: return inner_ ? inner_->Accept(token) : Status::Ok();
    }
    return Status::Ok();
  }

  bool Done() const override { return phase_ == kAnswer && inner_ && inner_->Done(); }

 private:
  enum Phase { kOpen, kThinking, kGap, kAnswer };
  static void Block(std::span<float> logits, int32_t id) {
    if (id >= 0 && static_cast<size_t>(id) < logits.size()) logits[id] = -std::numeric_limits<float>::infinity();
  }
  static Status Force(std::span<float> logits, int32_t id) {
    if (id < 0 || static_cast<size_t>(id) >= logits.size()) return Error(StatusCode::kInternal, "thinking: token {} outside the logits", id);
    const float v = std::isfinite(logits[id]) ? logits[id] : 0.0f;
    std::fill(logits.begin(), logits.end(), -std::numeric_limits<float>::infinity());
    logits[id] = v;
    return Status::Ok();
  }

  std::unique_ptr<engine::LogitProcessor> inner_;
  std::shared_ptr<const VocabIndex> v_;
  ThinkingOptions o_;
  int32_t open_ = -1, close_ = -1, nl_ = -1, nl2_ = -1;
  Phase phase_ = kThinking;
  int32_t count_ = 0, gap_ = 0;
};

}  // namespace

std::unique_ptr<engine::LogitProcessor> MakeThinkingBudget(std::unique_ptr<engine::LogitProcessor> inner,
                                                           std::shared_ptr<const VocabIndex> vocab, const ThinkingOptions& options) {
  return std::make_unique<ThinkingBudget>(std::move(inner), std::move(vocab), options);
}

bool ResolveThinking(std::optional<bool> enable_thinking, const std::vector<std::string>& user_messages) {
  if (enable_thinking) return *enable_thinking;
  bool on = true;
  for (const std::string& m : user_messages) {
    const size_t t = m.rfind("/think"), n = m.rfind("/no_think");
    if (t == std::string::npos && n == std::string::npos) continue;
    if (n == std::string::npos) on = true;
    else if (t == std::string::npos) on = false;
    else on = t > n;
  }
  return on;
}

}  // namespace qwenmux::structured
