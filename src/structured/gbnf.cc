// GBNF-like grammar text -> Grammar (llama.cpp's grammar syntax).
#include <map>

#include "structured/structured.h"
#include "tokenizer/unicode.h"

namespace qwenmux::structured {

namespace {

class GbnfParser {
 public:
  GbnfParser(GrammarBuilder& g, std::string_view text, const VocabIndex& vocab) : g_(g), s_(text), vocab_(vocab) {}

  Result<uint32_t> Parse() {
    SkipSpace();
    while (pos_ < s_.size()) {
      QM_ASSIGN_OR_RETURN(std::string name, Name());
      SkipSpace();
      if (s_.compare(pos_, 3, "::=") != 0) return Fail("expected '::=' after rule name");
      pos_ += 3;
      const uint32_t r = RuleId(name);
      if (g_.defined(r)) return Fail(fmt::format("rule '{}' defined twice", name));
      QM_ASSIGN_OR_RETURN(std::vector<Seq> alts, Alternatives(0));
      g_.Define(r, std::move(alts));
      SkipSpace();
    }
    auto it = rules_.find("root");
    if (it == rules_.end() || !g_.defined(it->second)) return Error(StatusCode::kInvalidArgument, "grammar: no 'root' rule");
    return it->second;
  }

 private:
  Status Fail(const std::string& msg) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos_ && i < s_.size(); ++i) {
      if (s_[i] == '\n') ++line, col = 1;
      else ++col;
    }
    return Error(StatusCode::kInvalidArgument, "grammar: line {} column {}: {}", line, col, msg);
  }
  static bool NameChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; }
  void SkipSpace() {
    while (pos_ < s_.size()) {
      if (s_[pos_] == '#') {
        while (pos_ < s_.size() && s_[pos_] != '\n') ++pos_;
      } else if (std::isspace(static_cast<unsigned char>(s_[pos_]))) {
        ++pos_;
      } else {
        break;
      }
    }
  }
  Result<std::string> Name() {
    const size_t b = pos_;
    while (pos_ < s_.size() && NameChar(s_[pos_])) ++pos_;
    if (b == pos_) return Fail("expected a rule name");
    return std::string(s_.substr(b, pos_ - b));
  }
  uint32_t RuleId(const std::string& name) {
    auto it = rules_.find(name);
    if (it != rules_.end()) return it->second;
    const uint32_t r = g_.Declare(name);
    rules_[name] = r;
    return r;
  }
  // At a rule start: NAME ws "::=".
  bool AtRuleStart() const {
    size_t p = pos_;
    while (p < s_.size() && NameChar(s_[p])) ++p;
    if (p == pos_) return false;
    while (p < s_.size() && (s_[p] == ' ' || s_[p] == '\t' || s_[p] == '\n' || s_[p] == '\r')) ++p;
    return s_.compare(p, 3, "::=") == 0;
  }

  Result<uint32_t> Hex(int n) {
    uint32_t v = 0;
    for (int i = 0; i < n; ++i) {
      if (pos_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[pos_]))) return Fail("bad hex escape");
      const char c = s_[pos_++];
      v = v * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (std::tolower(c) - 'a' + 10));
    }
    return v;
  }
  // One code point (UTF-8 decoded, escapes resolved) of a literal or class.
  Result<uint32_t> Char() {
    if (pos_ >= s_.size()) return Fail("unexpected end of grammar");
    const unsigned char c = static_cast<unsigned char>(s_[pos_]);
    if (c == '\\') {
      ++pos_;
      if (pos_ >= s_.size()) return Fail("unexpected end after '\\'");
      const char e = s_[pos_++];
      switch (e) {
        case 'n': return uint32_t{'\n'};
        case 't': return uint32_t{'\t'};
        case 'r': return uint32_t{'\r'};
        case '\\': return uint32_t{'\\'};
        case '"': return uint32_t{'"'};
        case '[': return uint32_t{'['};
        case ']': return uint32_t{']'};
        case '-': return uint32_t{'-'};
        case '^': return uint32_t{'^'};
        case 'x': return Hex(2);
        case 'u': return Hex(4);
        case 'U': return Hex(8);
        default: return Fail(fmt::format("unknown escape '\\{}'", e));
      }
    }
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || pos_ + static_cast<size_t>(len) > s_.size()) return Fail("invalid UTF-8 in grammar");
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int i = 1; i < len; ++i) cp = (cp << 6) | (static_cast<unsigned char>(s_[pos_ + i]) & 0x3F);
    pos_ += static_cast<size_t>(len);
    return cp;
  }

  Result<Seq> Primary() {
    const char c = s_[pos_];
    if (c == '"') {
      ++pos_;
      std::string bytes;
      while (pos_ < s_.size() && s_[pos_] != '"') {
        QM_ASSIGN_OR_RETURN(uint32_t cp, Char());
        if (cp > 0x10FFFF) return Fail("code point out of range");
        tokenizer::AppendUtf8(cp, &bytes);
      }
      if (pos_ >= s_.size()) return Fail("unterminated string literal");
      ++pos_;
      return g_.Lit(bytes);
    }
    if (c == '[') {
      ++pos_;
      bool negate = false;
      if (pos_ < s_.size() && s_[pos_] == '^') negate = true, ++pos_;
      std::vector<std::pair<uint32_t, uint32_t>> ranges;
      while (pos_ < s_.size() && s_[pos_] != ']') {
        QM_ASSIGN_OR_RETURN(uint32_t lo, Char());
        uint32_t hi = lo;
        if (pos_ + 1 < s_.size() && s_[pos_] == '-' && s_[pos_ + 1] != ']') {
          ++pos_;
          QM_ASSIGN_OR_RETURN(hi, Char());
          if (hi < lo) return Fail("character range out of order");
        }
        ranges.push_back({lo, hi});
      }
      if (pos_ >= s_.size()) return Fail("unterminated character class");
      ++pos_;
      return Seq{GrammarBuilder::Ref(CharClass(g_, std::move(ranges), negate))};
    }
    if (c == '.') {
      ++pos_;
      return Seq{GrammarBuilder::Ref(CharClass(g_, {{0, 0x10FFFF}}, false, "any"))};
    }
    if (c == '(') {
      ++pos_;
      QM_ASSIGN_OR_RETURN(std::vector<Seq> alts, Alternatives(1));
      SkipSpace();
      if (pos_ >= s_.size() || s_[pos_] != ')') return Fail("expected ')'");
      ++pos_;
      return Seq{GrammarBuilder::Ref(g_.Rule("group", std::move(alts)))};
    }
    if (c == '<') {
      const size_t end = s_.find('>', pos_);
      if (end == std::string_view::npos) return Fail("unterminated <token>");
      const std::string text(s_.substr(pos_, end - pos_ + 1));
      const int32_t id = vocab_.special_id(text);
      if (id < 0) return Fail(fmt::format("'{}' is not a special token of the vocabulary", text));
      pos_ = end + 1;
      return Seq{GrammarBuilder::Token(id)};
    }
    if (NameChar(c)) {
      QM_ASSIGN_OR_RETURN(std::string name, Name());
      return Seq{GrammarBuilder::Ref(RuleId(name))};
    }
    return Fail(fmt::format("unexpected '{}'", c));
  }

  Result<int64_t> Int() {
    const size_t b = pos_;
    while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    if (b == pos_ || pos_ - b > 6) return Fail("expected a repetition count (0..999999)");
    return std::stoll(std::string(s_.substr(b, pos_ - b)));
  }

  Result<Seq> Item() {
    QM_ASSIGN_OR_RETURN(Seq x, Primary());
    for (;;) {
      if (pos_ >= s_.size()) break;
      const char c = s_[pos_];
      if (c == '*') {
        ++pos_;
        x = {GrammarBuilder::Ref(g_.Star(x))};
      } else if (c == '+') {
        ++pos_;
        x = {GrammarBuilder::Ref(g_.Repeat(x, 1, -1, "plus"))};
      } else if (c == '?') {
        ++pos_;
        x = {GrammarBuilder::Ref(g_.Optional(x))};
      } else if (c == '{') {
        ++pos_;
        SkipSpace();
        QM_ASSIGN_OR_RETURN(int64_t m, Int());
        int64_t n = m;
        SkipSpace();
        if (pos_ < s_.size() && s_[pos_] == ',') {
          ++pos_;
          SkipSpace();
          if (pos_ < s_.size() && s_[pos_] == '}') {
            n = -1;
          } else {
            QM_ASSIGN_OR_RETURN(n, Int());
            if (n < m) return Fail("repetition {m,n} with n < m");
          }
        }
        SkipSpace();
        if (pos_ >= s_.size() || s_[pos_] != '}') return Fail("expected '}'");
        ++pos_;
        if (std::max(m, n) > 10000) return Fail("repetition count too large (at most 10000)");
        x = {GrammarBuilder::Ref(g_.Repeat(x, m, n, "rep"))};
      } else {
        break;
      }
    }
    return x;
  }

  Result<std::vector<Seq>> Alternatives(int nesting) {
    std::vector<Seq> alts(1);
    for (;;) {
      SkipSpace();
      if (pos_ >= s_.size()) break;
      const char c = s_[pos_];
      if (c == '|') {
        ++pos_;
        alts.emplace_back();
        continue;
      }
      if (c == ')') {
        if (nesting == 0) return Fail("unbalanced ')'");
        break;
      }
      if (nesting == 0 && AtRuleStart()) break;
      QM_ASSIGN_OR_RETURN(Seq item, Item());
      alts.back().insert(alts.back().end(), item.begin(), item.end());
    }
    return alts;
  }

  GrammarBuilder& g_;
  std::string_view s_;
  const VocabIndex& vocab_;
  size_t pos_ = 0;
  std::map<std::string, uint32_t> rules_;
};

}  // namespace

Result<uint32_t> AddGrammarRules(GrammarBuilder& g, std::string_view gbnf, const VocabIndex& vocab) {
  GbnfParser p(g, gbnf, vocab);
  return p.Parse();
}

Result<Constraint> CompileGrammar(std::string_view gbnf, std::shared_ptr<const VocabIndex> vocab, const ConstraintOptions& options) {
  GrammarBuilder g;
  QM_ASSIGN_OR_RETURN(uint32_t root, AddGrammarRules(g, gbnf, *vocab));
  QM_ASSIGN_OR_RETURN(Grammar grammar, std::move(g).Build(root));
  return Constraint(std::make_shared<CompiledConstraint>(std::move(grammar), std::move(vocab), options));
}

}  // namespace qwenmux::structured
