#include "orchestrator/router/features.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <span>

#include <fmt/format.h>

#include "base/ascii.h"
#include "orchestrator/config/units.h"

namespace qwenmux::orchestrator {

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool ContainsAny(const std::string& hay, std::span<const std::string_view> needles) {
  for (std::string_view n : needles)
    if (hay.find(n) != std::string::npos) return true;
  return false;
}

// Markers, matched on the lower-cased text.
constexpr std::string_view kCodeMarkers[] = {
    "```", "#include", "def ", "std::", "=>", "traceback (most recent", "console.log", "fn main",
    "function(", "function ", "public static", "select * from", "#!/", "import numpy", "<?php",
    "segmentation fault", "nullpointerexception", "});", "return 0;"};
constexpr std::string_view kMathMarkers[] = {
    "\\frac", "\\int", "\\sum", "\\sqrt", "$$", "integral", "derivative", "prove that",
    "theorem", "lemma", "equation", "eigenvalue", "probability that", "solve for"};
constexpr std::string_view kReasoningMarkers[] = {
    "step by step", "step-by-step", "think carefully", "explain why", "analyze", "analyse",
    "analysis", "compare", "trade-off", "tradeoff", "pros and cons", "root cause", "derive",
    "justify", "in depth", "in-depth", "reason about", "plan for", "evaluate"};

bool IsOp(char c) { return c == '+' || c == '-' || c == '*' || c == '/' || c == '^' || c == '='; }

// Arithmetic like "3x + 2 = 7" or "12*4": a digit (or x/y/n after one), optional spaces, an
// operator, optional spaces, a digit or variable; found at least twice.
bool HasArithmetic(std::string_view s) {
  int hits = 0;
  for (size_t i = 0; i + 2 < s.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) continue;
    size_t j = i + 1;
    if (j < s.size() && (s[j] == 'x' || s[j] == 'y' || s[j] == 'n')) ++j;
    while (j < s.size() && s[j] == ' ') ++j;
    if (j >= s.size() || !IsOp(s[j])) continue;
    ++j;
    while (j < s.size() && s[j] == ' ') ++j;
    if (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == 'x' || s[j] == 'y')) {
      if (++hits >= 2) return true;
      i = j - 1;  // the operand may start the next match
    }
  }
  return false;
}

int64_t EstimateTokens(std::string_view s) {
  int64_t ascii = 0, other = 0;
  for (unsigned char c : s) {
    if (c < 0x80) ++ascii;
    else if ((c & 0xC0) != 0x80) ++other;  // a UTF-8 lead byte: one code point
  }
  return (ascii + 3) / 4 + other;
}

Complexity FromScore(int score) {
  if (score <= 0) return Complexity::kSimple;
  if (score <= 2) return Complexity::kMedium;
  if (score <= 4) return Complexity::kComplex;
  return Complexity::kHardest;
}

}  // namespace

const char* ComplexityName(Complexity c) {
  switch (c) {
    case Complexity::kSimple: return "simple";
    case Complexity::kMedium: return "medium";
    case Complexity::kComplex: return "complex";
    case Complexity::kHardest: return "hardest";
  }
  return "?";
}

Result<Complexity> ParseComplexity(std::string_view s) {
  std::string l = AsciiLower(Trim(s));
  for (Complexity c : {Complexity::kSimple, Complexity::kMedium, Complexity::kComplex, Complexity::kHardest})
    if (l == ComplexityName(c)) return c;
  return Error(StatusCode::kInvalidArgument,
               "\"{}\" is not a complexity (use simple, medium, complex or hardest)", s);
}

const char* LatencyClassName(LatencyClass c) {
  switch (c) {
    case LatencyClass::kLow: return "low";
    case LatencyClass::kNormal: return "normal";
    case LatencyClass::kRelaxed: return "relaxed";
    case LatencyClass::kBudget: return "budget";
  }
  return "?";
}

Result<LatencyRequest> ParseLatency(std::string_view text) {
  std::string l = AsciiLower(Trim(text));
  if (l.empty() || l == "normal") return LatencyRequest{};
  if (l == "low" || l == "fast" || l == "interactive") return LatencyRequest{LatencyClass::kLow, 0};
  if (l == "high" || l == "relaxed" || l == "batch") return LatencyRequest{LatencyClass::kRelaxed, 0};
  int64_t ms = 0;
  auto [p, ec] = std::from_chars(l.data(), l.data() + l.size(), ms);
  bool ok = ec == std::errc() && p == l.data() + l.size();
  if (!ok) {
    Result<Duration> d = ParseDuration(l);
    ok = d.ok() && !d->forever;
    if (ok) ms = d->ms;
  }
  if (!ok || ms <= 0 || ms > 24LL * 3600 * 1000) {
    return Error(StatusCode::kInvalidArgument,
                 "latency \"{}\": use low, normal, high, or a time to first token such as 800ms, 2s or 800",
                 text);
  }
  return LatencyRequest{LatencyClass::kBudget, ms};
}

RequestInput InputFromChat(const chat::ChatRequest& req) {
  RequestInput in;
  for (const chat::ChatMessage& m : req.messages) {
    in.texts.push_back(m.content);
    if (m.reasoning_content) in.texts.push_back(*m.reasoning_content);
  }
  in.n_tools = req.options.tools.is_array() ? req.options.tools.size() : 0;
  in.enable_thinking = req.options.enable_thinking;
  return in;
}

std::vector<chat::ChatMessage> ClassificationMessages(std::string_view text, size_t max_chars) {
  if (text.size() > max_chars) {
    size_t cut = max_chars;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // UTF-8 boundary
    text = text.substr(0, cut);
  }
  std::vector<chat::ChatMessage> m(2);
  m[0].role = chat::ChatRole::kSystem;
  m[0].content =
      "Classify how hard the user's request is for a language model. Answer with one word:\n"
      "simple - greetings, facts, short rewrites, classification\n"
      "medium - ordinary code, extraction, summaries, explanations\n"
      "complex - multi-step reasoning, math, careful analysis, long documents\n"
      "hardest - research-level math or proofs, large designs, very long multi-part tasks";
  m[1].role = chat::ChatRole::kUser;
  m[1].content = std::string(text);
  return m;
}

Result<Complexity> ParseClassification(std::string_view answer) {
  std::string l = AsciiLower(answer);
  size_t best = std::string::npos;
  Complexity out = Complexity::kSimple;
  for (Complexity c : {Complexity::kSimple, Complexity::kMedium, Complexity::kComplex, Complexity::kHardest}) {
    size_t at = l.find(ComplexityName(c));
    if (at < best) {
      best = at;
      out = c;
    }
  }
  if (best == std::string::npos)
    return Error(StatusCode::kInvalidArgument, "router: classifier answer \"{}\" names no complexity",
                 answer.substr(0, 80));
  return out;
}

std::string FormatTokens(int64_t n) {
  if (n < 1000) return fmt::format("{}", n);
  if (n < 10000) return fmt::format("{:.1f}k", static_cast<double>(n) / 1000.0);
  return fmt::format("{}k", (n + 500) / 1000);
}

Result<RequestFeatures> ExtractFeatures(const RequestInput& in) {
  RequestFeatures f;
  f.role = in.role;
  if (!in.latency_field.empty()) {
    Result<LatencyRequest> l = ParseLatency(in.latency_field);
    if (!l.ok()) return l.status().WithContext("router: request field \"latency\"");
    f.latency = *l;
  } else if (!in.latency_header.empty()) {
    Result<LatencyRequest> l = ParseLatency(in.latency_header);
    if (!l.ok()) return l.status().WithContext("router: header X-Qwenmux-Latency");
    f.latency = *l;
  }
  int64_t est = 0;
  for (std::string_view t : in.texts) {
    est += EstimateTokens(t);
    if (f.code && f.math && f.reasoning) continue;
    std::string l = AsciiLower(t);
    f.code = f.code || ContainsAny(l, kCodeMarkers);
    f.math = f.math || ContainsAny(l, kMathMarkers) || HasArithmetic(l);
    f.reasoning = f.reasoning || ContainsAny(l, kReasoningMarkers);
  }
  f.tokens_exact = in.prompt_tokens.has_value();
  f.prompt_tokens = in.prompt_tokens ? std::max<int64_t>(0, *in.prompt_tokens) : est;
  f.json_schema = in.json_schema;
  f.tools = in.n_tools > 0;
  f.thinking = in.enable_thinking;

  std::vector<std::string> why;
  int score = 0;
  int length_points = f.prompt_tokens >= 16000 ? 3 : f.prompt_tokens >= 4000 ? 2 : f.prompt_tokens >= 1000 ? 1 : 0;
  score += length_points;
  auto add = [&](bool on, const char* what) {
    if (!on) return;
    ++score;
    why.emplace_back(what);
  };
  add(f.code, "code markers");
  add(f.math, "math markers");
  add(f.reasoning, "reasoning markers");
  add(f.json_schema, "JSON schema");
  add(f.tools, "tools");
  add(f.thinking.value_or(false), "thinking on");
  if (f.thinking.has_value() && !*f.thinking) {
    --score;
    why.emplace_back("thinking off");
  }
  why.push_back(fmt::format("{}{}-token prompt", f.tokens_exact ? "" : "~", FormatTokens(f.prompt_tokens)));
  f.score = std::max(score, 0);
  f.rule_complexity = FromScore(f.score);
  f.classified = in.classified;
  f.complexity = in.classified.value_or(f.rule_complexity);
  for (size_t i = 0; i < why.size(); ++i) f.summary += (i ? " + " : "") + why[i];
  return f;
}

}  // namespace qwenmux::orchestrator
