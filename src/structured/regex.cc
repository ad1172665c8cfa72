// JSON Schema `pattern` (a regular-expression subset) -> the grammar of a JSON string body.
// Supported: literals, escapes (\d \w \s \D \W \S \. \n \t \uXXXX \xHH ...), classes [...] and
// [^...], '.', groups (...) and (?:...), '|', quantifiers * + ? {m} {m,} {m,n} (lazy '?'
// suffix accepted), ^ at the start and $ at the end. A pattern is a search, so generating
// strings that match it whole is valid. Generated characters avoid control characters and
// emit '"' and '\' escaped; unbounded repetitions are capped (max_repeat) so generation ends;
// \w \d \s and negated classes generate their ASCII members only (always a subset of what the
// validator's regex engine accepts). Lookarounds, backreferences, \b and flags are errors.
#include <string>

#include "structured/json_schema_compiler.h"

namespace qwenmux::structured::internal {

namespace {

using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;

class RegexParser {
 public:
  RegexParser(GrammarBuilder& g, std::string_view p, int max_repeat) : g_(g), s_(p), max_repeat_(max_repeat) {}

  Result<Seq> Parse() {
    if (!s_.empty() && s_[0] == '^') ++pos_;
    size_t end = s_.size();
    if (end > pos_ && s_[end - 1] == '$' && (end < 2 || s_[end - 2] != '\\')) --end;
    s_ = s_.substr(0, end);
    QM_ASSIGN_OR_RETURN(std::vector<Seq> alts, Alternation());
    if (pos_ != s_.size()) return Fail(fmt::format("unexpected '{}'", s_[pos_]));
    if (alts.size() == 1) return alts[0];
    return Seq{GrammarBuilder::Ref(g_.Rule("pattern", std::move(alts)))};
  }

 private:
  Status Fail(const std::string& msg) const {
    return Error(StatusCode::kInvalidArgument, "pattern: {} at offset {} (supported: literals, classes, groups, |, quantifiers)", msg, pos_);
  }
  bool More() const { return pos_ < s_.size(); }

  // One code point from the pattern (UTF-8).
  uint32_t Utf8() {
    const unsigned char c = static_cast<unsigned char>(s_[pos_]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
    if (pos_ + static_cast<size_t>(len) > s_.size()) len = 1;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int i = 1; i < len; ++i) cp = (cp << 6) | (static_cast<unsigned char>(s_[pos_ + i]) & 0x3F);
    pos_ += static_cast<size_t>(len);
    return cp;
  }

  // Escape after '\': a set of code points (class escapes) or one code point.
  Result<Ranges> Escape() {
    if (!More()) return Fail("pattern ends with '\\'");
    const char e = s_[pos_++];
    auto hex = [&](int n) -> Result<uint32_t> {
      uint32_t v = 0;
      for (int i = 0; i < n; ++i) {
        if (!More() || !std::isxdigit(static_cast<unsigned char>(s_[pos_]))) return Fail("bad hex escape");
        const char c = s_[pos_++];
        v = v * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : std::tolower(c) - 'a' + 10);
      }
      return v;
    };
    switch (e) {
      case 'd': return Ranges{{'0', '9'}};
      case 'w': return Ranges{{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
      case 's': return Ranges{{' ', ' '}};
      case 'D': return Ranges{{0x20, '/'}, {':', 0x7E}};
      case 'W': return Ranges{{0x20, '/'}, {':', '@'}, {'[', '^'}, {'`', '`'}, {'{', 0x7E}};
      case 'S': return Ranges{{'!', 0x7E}};
      case 'n': return Ranges{{'\n', '\n'}};
      case 't': return Ranges{{'\t', '\t'}};
      case 'r': return Ranges{{'\r', '\r'}};
      case 'f': return Ranges{{'\f', '\f'}};
      case 'v': return Ranges{{'\v', '\v'}};
      case 'x': {
        QM_ASSIGN_OR_RETURN(uint32_t v, hex(2));
        return Ranges{{v, v}};
      }
      case 'u': {
        QM_ASSIGN_OR_RETURN(uint32_t v, hex(4));
        return Ranges{{v, v}};
      }
      default:
        if (std::isalnum(static_cast<unsigned char>(e))) return Fail(fmt::format("unsupported escape '\\{}'", e));
        return Ranges{{static_cast<uint32_t>(static_cast<unsigned char>(e)), static_cast<uint32_t>(static_cast<unsigned char>(e))}};
    }
  }

  // A rule for one character of `ranges` (or outside them), as JSON string content.
  Seq CharSet(Ranges ranges, bool negate) {
    if (negate) {  // ASCII printable members only
      Ranges comp;
      uint32_t next = 0x20;
      std::sort(ranges.begin(), ranges.end());
      for (auto [lo, hi] : ranges) {
        if (lo > next && next <= 0x7E) comp.push_back({next, std::min<uint32_t>(lo - 1, 0x7E)});
        next = std::max(next, hi + 1);
      }
      if (next <= 0x7E) comp.push_back({next, 0x7E});
      ranges = std::move(comp);
    }
    bool quote = false, backslash = false;
    Ranges plain;
    for (auto [lo, hi] : ranges) {
      lo = std::max<uint32_t>(lo, 0x20);  // no control characters
      if (lo > hi) continue;
      auto cut = [&](uint32_t c, bool* flag) {
        if (lo <= c && c <= hi) *flag = true;
      };
      cut('"', &quote);
      cut('\\', &backslash);
      uint32_t a = lo;
      for (uint32_t c : {uint32_t{'"'}, uint32_t{'\\'}}) {
        if (a <= c && c <= hi) {
          if (a < c) plain.push_back({a, c - 1});
          a = c + 1;
        }
      }
      if (a <= hi) plain.push_back({a, hi});
    }
    std::vector<Seq> alts;
    if (!plain.empty()) alts.push_back({GrammarBuilder::Ref(CharClass(g_, plain, false, "pchar"))});
    if (quote) alts.push_back(g_.Lit("\\\""));
    if (backslash) alts.push_back(g_.Lit("\\\\"));
    return {GrammarBuilder::Ref(g_.Rule("pchar", std::move(alts)))};  // no alternative: unsatisfiable, pruned
  }

  Result<Seq> Atom() {
    const char c = s_[pos_];
    if (c == '(') {
      ++pos_;
      if (More() && s_[pos_] == '?') {
        if (pos_ + 1 < s_.size() && s_[pos_ + 1] == ':') {
          pos_ += 2;
        } else {
          return Fail("lookarounds, named groups and inline flags are not supported");
        }
      }
      QM_ASSIGN_OR_RETURN(std::vector<Seq> alts, Alternation());
      if (!More() || s_[pos_] != ')') return Fail("expected ')'");
      ++pos_;
      return Seq{GrammarBuilder::Ref(g_.Rule("group", std::move(alts)))};
    }
    if (c == '[') {
      ++pos_;
      bool negate = false;
      if (More() && s_[pos_] == '^') negate = true, ++pos_;
      Ranges ranges;
      bool first = true;
      while (More() && (s_[pos_] != ']' || first)) {
        first = false;
        Ranges item;
        if (s_[pos_] == '\\') {
          ++pos_;
          QM_ASSIGN_OR_RETURN(item, Escape());
        } else {
          const uint32_t cp = Utf8();
          item = {{cp, cp}};
        }
        if (item.size() == 1 && item[0].first == item[0].second && pos_ + 1 < s_.size() && s_[pos_] == '-' && s_[pos_ + 1] != ']') {
          ++pos_;
          uint32_t hi;
          if (s_[pos_] == '\\') {
            ++pos_;
            QM_ASSIGN_OR_RETURN(Ranges r, Escape());
            if (r.size() != 1 || r[0].first != r[0].second) return Fail("class escape as a range bound");
            hi = r[0].first;
          } else {
            hi = Utf8();
          }
          if (hi < item[0].first) return Fail("character range out of order");
          item[0].second = hi;
        }
        ranges.insert(ranges.end(), item.begin(), item.end());
      }
      if (!More()) return Fail("unterminated character class");
      ++pos_;
      return CharSet(std::move(ranges), negate);
    }
    if (c == '.') {
      ++pos_;
      return CharSet({{0x20, 0x10FFFF}}, false);
    }
    if (c == '\\') {
      ++pos_;
      if (More() && (std::isdigit(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == 'b' || s_[pos_] == 'B')) {
        return Fail("backreferences and word boundaries are not supported");
      }
      QM_ASSIGN_OR_RETURN(Ranges r, Escape());
      return CharSet(std::move(r), false);
    }
    if (c == '^' || c == '$') return Fail("anchors are supported only at the start and the end");
    if (c == '*' || c == '+' || c == '?' || c == '{') return Fail("quantifier without a target");
    const uint32_t cp = Utf8();
    return CharSet({{cp, cp}}, false);
  }

  Result<int64_t> Int() {
    const size_t b = pos_;
    while (More() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    if (b == pos_ || pos_ - b > 4) return Fail("bad repetition count");
    return std::stoll(std::string(s_.substr(b, pos_ - b)));
  }

  Result<Seq> Repeat() {
    QM_ASSIGN_OR_RETURN(Seq x, Atom());
    while (More()) {
      const char c = s_[pos_];
      int64_t m, n;
      if (c == '*') {
        ++pos_, m = 0, n = max_repeat_;
      } else if (c == '+') {
        ++pos_, m = 1, n = std::max(1, max_repeat_);
      } else if (c == '?') {
        ++pos_, m = 0, n = 1;
      } else if (c == '{') {
        const size_t save = pos_++;
        if (!More() || !std::isdigit(static_cast<unsigned char>(s_[pos_]))) {
          pos_ = save;
          break;  // a literal '{'
        }
        QM_ASSIGN_OR_RETURN(m, Int());
        n = m;
        if (More() && s_[pos_] == ',') {
          ++pos_;
          if (More() && s_[pos_] == '}') {
            n = m + max_repeat_;
          } else {
            QM_ASSIGN_OR_RETURN(n, Int());
          }
        }
        if (!More() || s_[pos_] != '}') return Fail("expected '}'");
        ++pos_;
        if (n < m) return Fail("repetition {m,n} with n < m");
        if (n > 1000) return Fail("repetition count too large (at most 1000)");
      } else {
        break;
      }
      if (More() && s_[pos_] == '?') ++pos_;  // lazy: same language
      x = {GrammarBuilder::Ref(g_.Repeat(x, m, n, "prep"))};
    }
    return x;
  }

  Result<std::vector<Seq>> Alternation() {
    std::vector<Seq> alts(1);
    while (More() && s_[pos_] != ')') {
      if (s_[pos_] == '|') {
        ++pos_;
        alts.emplace_back();
        continue;
      }
      QM_ASSIGN_OR_RETURN(Seq x, Repeat());
      alts.back().insert(alts.back().end(), x.begin(), x.end());
    }
    return alts;
  }

  GrammarBuilder& g_;
  std::string_view s_;
  int max_repeat_;
  size_t pos_ = 0;
};

}  // namespace

Result<Seq> PatternSeq(GrammarBuilder& g, std::string_view pattern, int max_repeat) {
  RegexParser p(g, pattern, max_repeat);
  return p.Parse();
}

}  // namespace qwenmux::structured::internal
