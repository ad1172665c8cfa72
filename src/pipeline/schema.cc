#include "pipeline/schema.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include <fmt/format.h>

namespace qwenmux::pipeline {

using Json = nlohmann::ordered_json;

namespace {

Status Bad(const std::string& path, std::string_view msg) {
  return Error(StatusCode::kInvalidArgument, "{}: {}", path, msg);
}

int32_t CountChars(std::string_view s) {
  int32_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// Complete, valid UTF-8 (no partial sequences), no NUL.
bool CompleteUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || c == 0 || i + len > s.size()) return false;
    for (int k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

Status CheckNode(const Json& node, const std::string& path, bool top) {
  if (!node.is_object()) return Bad(path, "a schema must be a map");
  static const std::set<std::string> kKeys = {"type", "properties", "required", "additionalProperties",
                                              "description", "title", "enum", "minLength", "maxLength"};
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!kKeys.count(it.key())) {
      return Bad(path + "." + it.key(),
                 "not supported by constrained extraction (supported: type, properties, required, "
                 "additionalProperties, enum, minLength, maxLength, description, title)");
    }
  }
  if (!node.contains("type") || !node["type"].is_string()) {
    return Bad(path + ".type", "missing or not a string (object, string, integer, number or boolean)");
  }
  const std::string type = node["type"].get<std::string>();
  if (top && type != "object") return Bad(path + ".type", fmt::format("the top level must be an object, got \"{}\"", type));
  if (type != "object" && type != "string" && type != "integer" && type != "number" && type != "boolean") {
    return Bad(path + ".type", fmt::format("\"{}\" is not supported (object, string, integer, number, boolean)", type));
  }
  if (type != "object" && (node.contains("properties") || node.contains("required") || node.contains("additionalProperties"))) {
    return Bad(path, "properties/required/additionalProperties only apply to objects");
  }
  if (node.contains("enum")) {
    const Json& e = node["enum"];
    if (type != "string") return Bad(path + ".enum", "enum is supported for strings only");
    if (!e.is_array() || e.empty()) return Bad(path + ".enum", "expected a non-empty list of strings");
    for (const Json& v : e) {
      if (!v.is_string()) return Bad(path + ".enum", "expected a non-empty list of strings");
    }
  }
  for (const char* k : {"minLength", "maxLength"}) {
    if (!node.contains(k)) continue;
    if (type != "string") return Bad(path + "." + k, "applies to strings only");
    if (!node[k].is_number_integer() || node[k].get<int64_t>() < 0 || node[k].get<int64_t>() > 4096) {
      return Bad(path + "." + k, "expected an integer in [0, 4096]");
    }
  }
  if (node.contains("minLength") && node.contains("maxLength") &&
      node["minLength"].get<int64_t>() > node["maxLength"].get<int64_t>()) {
    return Bad(path + ".minLength", "greater than maxLength");
  }
  if (type == "object") {
    if (!node.contains("properties") || !node["properties"].is_object() || node["properties"].empty()) {
      return Bad(path + ".properties", "an object needs a non-empty map of properties");
    }
    for (auto it = node["properties"].begin(); it != node["properties"].end(); ++it) {
      QM_RETURN_IF_ERROR(CheckNode(it.value(), path + ".properties." + it.key(), false));
    }
    if (node.contains("required")) {
      const Json& r = node["required"];
      if (!r.is_array()) return Bad(path + ".required", "expected a list of property names");
      for (const Json& n : r) {
        if (!n.is_string() || !node["properties"].contains(n.get<std::string>())) {
          return Bad(path + ".required", fmt::format("{} is not a property", n.dump()));
        }
      }
    }
    if (node.contains("additionalProperties") && !node["additionalProperties"].is_boolean()) {
      return Bad(path + ".additionalProperties", "expected true or false");
    }
  }
  return Status::Ok();
}

void Validate(const Json& schema, const Json& v, const std::string& path, std::vector<std::string>* errors) {
  const std::string where = path.empty() ? "(root)" : path;
  const std::string type = schema.value("type", "");
  auto err = [&](const std::string& m) { errors->push_back(fmt::format("{}: {}", where, m)); };
  if (type == "object") {
    if (!v.is_object()) return err("expected an object");
    const Json& props = schema["properties"];
    if (schema.contains("required")) {
      for (const Json& r : schema["required"]) {
        if (!v.contains(r.get<std::string>())) err(fmt::format("missing required property \"{}\"", r.get<std::string>()));
      }
    }
    for (auto it = v.begin(); it != v.end(); ++it) {
      const std::string sub = path.empty() ? it.key() : path + "." + it.key();
      if (props.contains(it.key())) {
        Validate(props[it.key()], it.value(), sub, errors);
      } else if (schema.contains("additionalProperties") && !schema["additionalProperties"].get<bool>()) {
        errors->push_back(fmt::format("{}: property not allowed", sub));
      }
    }
  } else if (type == "string") {
    if (!v.is_string()) return err("expected a string");
    const std::string& s = v.get_ref<const std::string&>();
    const int64_t n = CountChars(s);
    if (schema.contains("minLength") && n < schema["minLength"].get<int64_t>()) err(fmt::format("shorter than {}", schema["minLength"].get<int64_t>()));
    if (schema.contains("maxLength") && n > schema["maxLength"].get<int64_t>()) err(fmt::format("longer than {}", schema["maxLength"].get<int64_t>()));
    if (schema.contains("enum") && std::find(schema["enum"].begin(), schema["enum"].end(), v) == schema["enum"].end()) {
      err(fmt::format("{} is not one of {}", v.dump(), schema["enum"].dump()));
    }
  } else if (type == "integer") {
    const bool integral = v.is_number_integer() || (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
    if (!integral) err("expected an integer");
  } else if (type == "number") {
    if (!v.is_number()) err("expected a number");
  } else if (type == "boolean") {
    if (!v.is_boolean()) err("expected true or false");
  }
}

// Builds segments as text first; tokenized at the end.
struct Draft {
  SchemaTemplate::Segment::Kind kind;
  std::string text;                 // literal
  std::vector<std::string> choices; // choice values (JSON text)
  int32_t min_chars = 0, max_chars = 64;
};

void Emit(std::vector<Draft>* out, std::string_view text) {
  if (out->empty() || out->back().kind != SchemaTemplate::Segment::Kind::kLiteral) {
    out->push_back({SchemaTemplate::Segment::Kind::kLiteral, "", {}, 0, 0});
  }
  out->back().text += text;
}

void Build(const Json& node, std::vector<Draft>* out) {
  using K = SchemaTemplate::Segment::Kind;
  const std::string type = node["type"].get<std::string>();
  if (type == "object") {
    Emit(out, "{");
    bool first = true;
    for (auto it = node["properties"].begin(); it != node["properties"].end(); ++it) {
      Emit(out, fmt::format("{}{}: ", first ? "" : ", ", Json(it.key()).dump()));
      first = false;
      Build(it.value(), out);
    }
    Emit(out, "}");
  } else if (type == "string" && node.contains("enum")) {
    Draft d{K::kChoice, "", {}, 0, 0};
    for (const Json& v : node["enum"]) d.choices.push_back(v.dump());
    out->push_back(std::move(d));
  } else if (type == "string") {
    Emit(out, "\"");
    Draft d{K::kString, "", {}, 0, 64};
    if (node.contains("minLength")) d.min_chars = node["minLength"].get<int32_t>();
    if (node.contains("maxLength")) d.max_chars = node["maxLength"].get<int32_t>();
    out->push_back(std::move(d));
    Emit(out, "\"");
  } else if (type == "boolean") {
    out->push_back({K::kChoice, "", {"true", "false"}, 0, 0});
  } else {
    out->push_back({type == "integer" ? K::kInteger : K::kNumber, "", {}, 0, 0});
  }
}

// Number grammar: 0 start, 1 after '-', 2 integer digits, 3 a leading zero, 4 after '.', 5 fraction.
int NumberStep(int state, char c, bool allow_fraction) {
  const bool digit = c >= '0' && c <= '9';
  switch (state) {
    case 0: return c == '-' ? 1 : c == '0' ? 3 : digit ? 2 : -1;
    case 1: return c == '0' ? 3 : digit ? 2 : -1;
    case 2: return digit ? 2 : (c == '.' && allow_fraction) ? 4 : -1;
    case 3: return (c == '.' && allow_fraction) ? 4 : -1;
    case 4: return digit ? 5 : -1;
    case 5: return digit ? 5 : -1;
  }
  return -1;
}
bool NumberAccepting(int state) { return state == 2 || state == 3 || state == 5; }
constexpr int kMaxNumberChars = 16;

class TemplateProcessor final : public engine::LogitProcessor {
 public:
  explicit TemplateProcessor(const SchemaTemplate& t) : t_(t), segs_(t.segments()) { Enter(); }

  Status Apply(std::span<float> logits) override {
    using K = SchemaTemplate::Segment::Kind;
    if (seg_ >= segs_.size()) return Error(StatusCode::kInternal, "extract: output already complete");
    const auto& s = segs_[seg_];
    const float kNeg = -std::numeric_limits<float>::infinity();
    switch (s.kind) {
      case K::kLiteral: return Only(logits, {s.tokens[pos_]});
      case K::kChoice: {
        std::vector<int32_t> ids;
        for (size_t a : live_) ids.push_back(segs_[seg_].choices[a][pos_]);
        return Only(logits, ids);
      }
      case K::kString: {
        const int32_t close = segs_[seg_ + 1].tokens[0];
        const float keep_close = close >= 0 && static_cast<size_t>(close) < logits.size() ? logits[close] : 0.0f;
        const auto& safe = t_.string_safe();
        const auto& nchars = t_.token_chars();
        const int32_t n = static_cast<int32_t>(std::min(logits.size(), safe.size()));
        const int32_t room = s.max_chars - chars_;
        for (int32_t i = 0; i < n; ++i) {
          if (!safe[i] || nchars[i] > room) logits[i] = kNeg;
        }
        if (close >= 0 && close < n) logits[close] = chars_ < s.min_chars ? kNeg : keep_close;
        for (size_t i = n; i < logits.size(); ++i) logits[i] = kNeg;
        return Status::Ok();
      }
      case K::kInteger:
      case K::kNumber: {
        std::vector<int32_t> ids;
        if (NumberAccepting(num_state_)) ids.push_back(segs_[seg_ + 1].tokens[0]);
        for (int32_t id : t_.numeric_tokens()) {
          const std::string_view b = t_.tokenizer().TokenBytes(id);
          if (num_chars_ + static_cast<int>(b.size()) > kMaxNumberChars) continue;
          int st = num_state_;
          for (char c : b) {
            st = NumberStep(st, c, s.kind == K::kNumber);
            if (st < 0) break;
          }
          if (st >= 0) ids.push_back(id);
        }
        return Only(logits, ids);
      }
    }
    return Status::Ok();
  }

  Status Accept(int32_t token) override {
    using K = SchemaTemplate::Segment::Kind;
    if (seg_ >= segs_.size()) return Error(StatusCode::kInternal, "extract: output already complete");
    const auto& s = segs_[seg_];
    auto bad = [&] { return Error(StatusCode::kInvalidArgument, "extract: token {} not allowed here", token); };
    switch (s.kind) {
      case K::kLiteral:
        if (token != s.tokens[pos_]) return bad();
        if (++pos_ == s.tokens.size()) Next();
        return Status::Ok();
      case K::kChoice: {
        std::vector<size_t> keep;
        for (size_t a : live_) {
          if (s.choices[a][pos_] == token) keep.push_back(a);
        }
        if (keep.empty()) return bad();
        live_ = std::move(keep);
        ++pos_;
        for (size_t a : live_) {
          if (s.choices[a].size() == pos_) {
            Next();
            break;
          }
        }
        return Status::Ok();
      }
      case K::kString:
      case K::kInteger:
      case K::kNumber: {
        const auto& lit = segs_[seg_ + 1].tokens;
        if (token == lit[0]) {  // the value ends: the closing literal starts
          Next();
          pos_ = 1;
          if (pos_ == lit.size()) Next();
          return Status::Ok();
        }
        const std::string_view b = t_.tokenizer().TokenBytes(token);
        if (s.kind == K::kString) {
          if (token < 0 || static_cast<size_t>(token) >= t_.string_safe().size() || !t_.string_safe()[token]) return bad();
          chars_ += CountChars(b);
        } else {
          for (char c : b) {
            num_state_ = NumberStep(num_state_, c, s.kind == K::kNumber);
            if (num_state_ < 0) return bad();
          }
          num_chars_ += static_cast<int>(b.size());
        }
        return Status::Ok();
      }
    }
    return Status::Ok();
  }

  bool Done() const override { return seg_ >= segs_.size(); }

 private:
  static Status Only(std::span<float> logits, const std::vector<int32_t>& ids) {
    if (ids.empty()) return Error(StatusCode::kInternal, "extract: no token allowed");
    std::vector<float> keep(ids.size());
    for (size_t k = 0; k < ids.size(); ++k) {
      if (ids[k] < 0 || static_cast<size_t>(ids[k]) >= logits.size()) {
        return Error(StatusCode::kInternal, "extract: token {} outside the logits", ids[k]);
      }
      keep[k] = logits[ids[k]];
    }
    std::fill(logits.begin(), logits.end(), -std::numeric_limits<float>::infinity());
    for (size_t k = 0; k < ids.size(); ++k) logits[ids[k]] = keep[k];
    return Status::Ok();
  }
  void Next() {
    ++seg_;
    Enter();
  }
  void Enter() {
    pos_ = 0;
    chars_ = 0;
    num_state_ = 0;
    num_chars_ = 0;
    live_.clear();
    if (seg_ < segs_.size()) {
      for (size_t a = 0; a < segs_[seg_].choices.size(); ++a) live_.push_back(a);
    }
  }

  const SchemaTemplate& t_;
  const std::vector<SchemaTemplate::Segment>& segs_;
  size_t seg_ = 0, pos_ = 0;
  int32_t chars_ = 0;
  int num_state_ = 0, num_chars_ = 0;
  std::vector<size_t> live_;
};

}  // namespace

Status CheckSupportedSchema(const Json& schema, const std::string& path) { return CheckNode(schema, path, true); }

std::vector<std::string> ValidateJson(const Json& schema, const Json& value) {
  std::vector<std::string> errors;
  Validate(schema, value, "", &errors);
  return errors;
}

Result<std::shared_ptr<const SchemaTemplate>> SchemaTemplate::Compile(const Json& schema, const tokenizer::Tokenizer& tok) {
  using K = Segment::Kind;
  QM_RETURN_IF_ERROR(CheckSupportedSchema(schema, "schema"));
  std::vector<Draft> drafts;
  Build(schema, &drafts);
  // A choice absorbs the literal after it (each value's text + that literal is one alternative).
  for (size_t i = 0; i + 1 < drafts.size(); ++i) {
    if (drafts[i].kind == K::kChoice && drafts[i + 1].kind == K::kLiteral) {
      for (std::string& c : drafts[i].choices) c += drafts[i + 1].text;
      drafts.erase(drafts.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    }
  }
  auto t = std::shared_ptr<SchemaTemplate>(new SchemaTemplate());
  t->tok_ = &tok;
  for (const Draft& d : drafts) {
    Segment s;
    s.kind = d.kind;
    s.min_chars = d.min_chars;
    s.max_chars = d.max_chars;
    if (d.kind == K::kLiteral) s.tokens = tok.Encode(d.text);
    for (const std::string& c : d.choices) {
      std::vector<int32_t> ids = tok.Encode(c);
      if (std::find(s.choices.begin(), s.choices.end(), ids) == s.choices.end()) s.choices.push_back(std::move(ids));
    }
    if ((d.kind == K::kLiteral && s.tokens.empty()) || (d.kind == K::kChoice && s.choices.empty())) {
      return Error(StatusCode::kInternal, "extract: empty segment in the schema template");
    }
    t->segments_.push_back(std::move(s));
  }
  const int32_t V = tok.vocab_size();
  t->string_safe_.assign(V, 0);
  t->token_chars_.assign(V, 255);
  for (int32_t i = 0; i < V; ++i) {
    if (tok.IsSpecial(i) || tok.IsControl(i)) continue;
    const std::string_view b = tok.TokenBytes(i);
    if (b.empty() || !CompleteUtf8(b)) continue;
    bool ok = true;
    bool numeric = true;
    for (unsigned char c : b) {
      if (c == '"' || c == '\\' || c < 0x20) ok = false;
      if (!((c >= '0' && c <= '9') || c == '-' || c == '.')) numeric = false;
    }
    t->string_safe_[i] = ok;
    t->token_chars_[i] = static_cast<uint8_t>(std::min(255, CountChars(b)));
    if (numeric) t->numeric_tokens_.push_back(i);
  }
  return std::shared_ptr<const SchemaTemplate>(std::move(t));
}

std::unique_ptr<engine::LogitProcessor> SchemaTemplate::NewProcessor() const {
  return std::make_unique<TemplateProcessor>(*this);
}

int32_t SchemaTemplate::min_tokens() const {
  int32_t n = 0;
  for (const Segment& s : segments_) {
    if (s.kind == Segment::Kind::kLiteral) {
      n += static_cast<int32_t>(s.tokens.size());
    } else if (s.kind == Segment::Kind::kChoice) {
      size_t m = SIZE_MAX;
      for (const auto& c : s.choices) m = std::min(m, c.size());
      n += static_cast<int32_t>(m);
    } else {
      n += 1;
    }
  }
  return n;
}

}  // namespace qwenmux::pipeline
