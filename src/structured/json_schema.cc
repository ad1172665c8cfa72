// JSON Schema -> Grammar. See structured.h for the supported subset and the generation bounds.
#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <map>
#include <set>

#include "structured/json_schema_compiler.h"
#include "structured/structured.h"

namespace qwenmux::structured {

using json = nlohmann::ordered_json;
using namespace internal;

Status JsonSchemaOptions::Validate() const {
  auto bad = [](const char* name, int32_t v, const char* range) {
    return Error(StatusCode::kInvalidArgument, "json schema options: {} = {} not in {}", name, v, range);
  };
  if (max_string_length < 0 || max_string_length > static_cast<int32_t>(kMaxStringRun)) return bad("max_string_length", max_string_length, "0..65535");
  if (max_array_items < 0 || max_array_items > 4096) return bad("max_array_items", max_array_items, "0..4096");
  if (max_whitespace < 0 || max_whitespace > 64) return bad("max_whitespace", max_whitespace, "0..64");
  if (max_extra_properties < 0 || max_extra_properties > 256) return bad("max_extra_properties", max_extra_properties, "0..256");
  if (max_nesting < 0 || max_nesting > 32) return bad("max_nesting", max_nesting, "0..32");
  if (max_ref_depth < 0 || max_ref_depth > 32) return bad("max_ref_depth", max_ref_depth, "0..32");
  if (max_integer_digits < 1 || max_integer_digits > 18) return bad("max_integer_digits", max_integer_digits, "1..18");
  if (max_fraction_digits < 1 || max_fraction_digits > 18) return bad("max_fraction_digits", max_fraction_digits, "1..18");
  if (max_schema_bytes < 1) return bad("max_schema_bytes", max_schema_bytes, "1..");
  if (max_enum_values < 1) return bad("max_enum_values", max_enum_values, "1..");
  if (max_literal_bytes < 1) return bad("max_literal_bytes", max_literal_bytes, "1..");
  if (max_schema_depth < 1 || max_schema_depth > 256) return bad("max_schema_depth", max_schema_depth, "1..256");
  if (max_alternatives < 1) return bad("max_alternatives", max_alternatives, "1..");
  if (max_grammar_rules < 1) return bad("max_grammar_rules", max_grammar_rules, "1..");
  return Status::Ok();
}

namespace internal {

uint32_t SchemaCompiler::Ws() {
  if (!ws_) {
    ByteSet ws;
    ws.Set(' ');
    ws.Set('\t');
    ws.Set('\n');
    ws_ = g_.Repeat({g_.Bytes(ws)}, 0, o_.max_whitespace, "ws");
  }
  return *ws_;
}

Result<const json*> SchemaCompiler::Resolve(const std::string& ref, const std::string& path) const {
  if (ref == "#") return &root_;
  for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
    const std::string p = prefix;
    if (ref.compare(0, p.size(), p) == 0) {
      const std::string section = p.substr(2, p.size() - 3);
      const std::string name = ref.substr(p.size());
      if (root_.is_object() && root_.contains(section) && root_[section].is_object() && root_[section].contains(name)) {
        return &root_[section][name];
      }
      return Fail(path, fmt::format("$ref '{}' not found", ref));
    }
  }
  return Fail(path, fmt::format("$ref '{}' is not supported (only local #/$defs/NAME and #/definitions/NAME)", ref));
}

Result<unsigned> SchemaCompiler::Types(const json& s, const std::string& path, int depth) const {
  if (depth > 32) return static_cast<unsigned>(kAll);
  if (s.is_boolean()) return s.get<bool>() ? static_cast<unsigned>(kAll) : 0u;
  if (!s.is_object()) return static_cast<unsigned>(kAll);
  unsigned t = kAll;
  if (s.contains("$ref") && s["$ref"].is_string()) {
    QM_ASSIGN_OR_RETURN(const json* r, Resolve(s["$ref"].get<std::string>(), path));
    QM_ASSIGN_OR_RETURN(t, Types(*r, path, depth + 1));
  }
  if (s.contains("type")) {
    unsigned tt = 0;
    auto add = [&](const json& n) {
      const std::string x = n.is_string() ? n.get<std::string>() : "";
      if (x == "null") tt |= kNull;
      else if (x == "boolean") tt |= kBool;
      else if (x == "integer" || x == "number") tt |= kNumber;
      else if (x == "string") tt |= kString;
      else if (x == "array") tt |= kArray;
      else if (x == "object") tt |= kObject;
    };
    if (s["type"].is_array()) {
      for (const auto& n : s["type"]) add(n);
    } else {
      add(s["type"]);
    }
    t &= tt;
  }
  if (s.contains("const")) t &= TypeOfValue(s["const"]);
  if (s.contains("enum") && s["enum"].is_array()) {
    unsigned te = 0;
    for (const auto& v : s["enum"]) te |= TypeOfValue(v);
    t &= te;
  }
  for (const char* k : {"anyOf", "oneOf"}) {
    if (s.contains(k) && s[k].is_array()) {
      unsigned tu = 0;
      for (const auto& b : s[k]) {
        QM_ASSIGN_OR_RETURN(unsigned tb, Types(b, path, depth + 1));
        tu |= tb;
      }
      t &= tu;
    }
  }
  return t;
}

Status SchemaCompiler::CheckOneOf(const json& branches, const std::string& path) const {
  std::vector<unsigned> types;
  for (const auto& b : branches) {
    QM_ASSIGN_OR_RETURN(unsigned t, Types(b, path, 0));
    types.push_back(t);
  }
  bool disjoint = true;
  for (size_t i = 0; i < types.size(); ++i) {
    for (size_t j = i + 1; j < types.size(); ++j) disjoint &= (types[i] & types[j]) == 0;
  }
  if (disjoint) return Status::Ok();
  // A discriminator: a property required by every branch with pairwise distinct const/enum values.
  std::vector<const json*> resolved;
  for (const auto& b : branches) {
    const json* r = &b;
    if (r->is_object() && r->contains("$ref") && (*r)["$ref"].is_string()) {
      QM_ASSIGN_OR_RETURN(r, Resolve((*r)["$ref"].get<std::string>(), path));
    }
    if (!r->is_object() || !r->contains("properties") || !(*r)["properties"].is_object()) {
      return Fail(path, "oneOf whose branches may overlap is not supported (use anyOf, or disjoint branches)");
    }
    resolved.push_back(r);
  }
  for (const auto& [name, _] : (*resolved[0])["properties"].items()) {
    std::vector<json> seen;
    bool ok = true;
    for (const json* r : resolved) {
      const json& props = (*r)["properties"];
      const bool required = r->contains("required") && (*r)["required"].is_array() &&
                            std::find((*r)["required"].begin(), (*r)["required"].end(), json(name)) != (*r)["required"].end();
      if (!required || !props.contains(name) || !props[name].is_object()) {
        ok = false;
        break;
      }
      const json& p = props[name];
      std::vector<json> values;
      if (p.contains("const")) values.push_back(p["const"]);
      else if (p.contains("enum") && p["enum"].is_array()) values.assign(p["enum"].begin(), p["enum"].end());
      else {
        ok = false;
        break;
      }
      for (const json& v : values) {
        if (std::find(seen.begin(), seen.end(), v) != seen.end()) ok = false;
      }
      seen.insert(seen.end(), values.begin(), values.end());
      if (!ok) break;
    }
    if (ok) return Status::Ok();
  }
  return Fail(path, "oneOf whose branches may overlap is not supported (use anyOf, or disjoint branches)");
}

uint32_t SchemaCompiler::AnyValue(int depth) {
  if (auto it = any_value_.find(depth); it != any_value_.end()) return it->second;
  if (!free_string_) free_string_ = g_.Rule("string", {{g_.Byte('"'), GrammarBuilder::StringRun(0, o_.max_string_length)}});
  if (!default_number_) {
    const json empty = json::object();
    (void)*Number(empty, "");  // no bounds: cannot fail; sets default_number_
  }
  std::vector<Seq> alts = {{GrammarBuilder::Ref(*free_string_)}, {GrammarBuilder::Ref(*default_number_)},
                           g_.Lit("true"), g_.Lit("false"), g_.Lit("null")};
  if (depth > 0) {
    alts.push_back({GrammarBuilder::Ref(AnyObject(depth))});
    const uint32_t item = AnyValue(depth - 1);
    const int32_t n = o_.max_array_items;
    Seq arr{g_.Byte('['), GrammarBuilder::Ref(Ws())};
    if (n > 0) {
      Seq more = Sep(',');
      more.push_back(GrammarBuilder::Ref(item));
      Seq items{GrammarBuilder::Ref(item), GrammarBuilder::Ref(g_.Repeat(more, 0, n - 1, "items")), GrammarBuilder::Ref(Ws())};
      arr.push_back(GrammarBuilder::Ref(g_.Optional(items)));
    }
    arr.push_back(g_.Byte(']'));
    alts.push_back(arr);
  }
  const uint32_t r = g_.Rule("value" + std::to_string(depth), std::move(alts));
  any_value_[depth] = r;
  return r;
}

uint32_t SchemaCompiler::AnyObject(int depth) {
  if (auto it = any_object_.find(depth); it != any_object_.end()) return it->second;
  const uint32_t value = AnyValue(std::max(depth - 1, 0));
  Seq member{g_.Byte('"'), GrammarBuilder::StringRun(0, std::min(o_.max_string_length, 32)), GrammarBuilder::Ref(Ws()),
             g_.Byte(':'), GrammarBuilder::Ref(Ws()), GrammarBuilder::Ref(value)};
  Seq obj{g_.Byte('{'), GrammarBuilder::Ref(Ws())};
  const int32_t n = o_.max_extra_properties;
  if (n > 0) {
    Seq more = Sep(',');
    more.insert(more.end(), member.begin(), member.end());
    Seq members = member;
    members.push_back(GrammarBuilder::Ref(g_.Repeat(more, 0, n - 1, "members")));
    members.push_back(GrammarBuilder::Ref(Ws()));
    obj.push_back(GrammarBuilder::Ref(g_.Optional(members)));
  }
  obj.push_back(g_.Byte('}'));
  const uint32_t r = g_.Rule("object" + std::to_string(depth), {obj});
  any_object_[depth] = r;
  return r;
}

Result<uint32_t> SchemaCompiler::Array(const json& s, const std::string& path, int ref_depth) {
  std::vector<uint32_t> prefix;
  if (s.contains("prefixItems")) {
    if (!s["prefixItems"].is_array()) return Fail(path, "'prefixItems' must be an array");
    for (size_t i = 0; i < s["prefixItems"].size(); ++i) {
      QM_ASSIGN_OR_RETURN(uint32_t r, Compile(s["prefixItems"][i], fmt::format("{}/prefixItems/{}", path, i), ref_depth));
      prefix.push_back(r);
    }
  }
  std::optional<uint32_t> items;
  bool items_allowed = true;
  if (s.contains("items")) {
    if (s["items"].is_boolean() && !s["items"].get<bool>()) {
      items_allowed = false;
    } else if (s["items"].is_array()) {
      return Fail(path + "/items", "'items' as an array (draft 4-7 tuples) is not supported; use prefixItems");
    } else {
      QM_ASSIGN_OR_RETURN(uint32_t r, Compile(s["items"], path + "/items", ref_depth));
      items = r;
    }
  }
  auto get = [&](const char* k) -> Result<std::optional<int64_t>> {
    if (!s.contains(k)) return std::optional<int64_t>();
    if (!s[k].is_number_integer() || s[k].get<int64_t>() < 0) return Fail(path, fmt::format("'{}' must be a non-negative integer", k));
    return std::optional<int64_t>(s[k].get<int64_t>());
  };
  QM_ASSIGN_OR_RETURN(auto min_items, get("minItems"));
  QM_ASSIGN_OR_RETURN(auto max_items, get("maxItems"));
  const int64_t lo = min_items.value_or(0);
  if (lo > 4096) return Fail(path, "minItems is too large (at most 4096)");
  int64_t hi = max_items ? std::min<int64_t>(*max_items, std::max<int64_t>(lo, 4096))
                         : std::max<int64_t>(lo, std::max<int64_t>(o_.max_array_items, static_cast<int64_t>(prefix.size())));
  if (!items_allowed) hi = std::min<int64_t>(hi, static_cast<int64_t>(prefix.size()));
  if (hi < lo) return Fail(path, "no array length satisfies minItems/maxItems (and items: false)");
  if (!items && items_allowed) items = AnyValue(o_.max_nesting);
  auto elem = [&](int64_t j) { return j < static_cast<int64_t>(prefix.size()) ? prefix[j] : *items; };
  // tail_j: j items emitted.
  std::vector<uint32_t> tail(static_cast<size_t>(hi) + 1);
  for (int64_t j = hi; j >= 1; --j) {
    std::vector<Seq> alts;
    if (j < hi) {
      Seq more = Sep(',');
      more.push_back(GrammarBuilder::Ref(elem(j)));
      more.push_back(GrammarBuilder::Ref(tail[j + 1]));
      alts.push_back(more);
    }
    if (j >= lo) alts.push_back({GrammarBuilder::Ref(Ws()), g_.Byte(']')});
    tail[j] = g_.Rule("items", std::move(alts));
  }
  std::vector<Seq> alts;
  if (hi >= 1) alts.push_back({g_.Byte('['), GrammarBuilder::Ref(Ws()), GrammarBuilder::Ref(elem(0)), GrammarBuilder::Ref(tail[1])});
  if (lo == 0) alts.push_back({g_.Byte('['), GrammarBuilder::Ref(Ws()), g_.Byte(']')});
  return g_.Rule("array", std::move(alts));
}

uint32_t SchemaCompiler::KeyExcluding(const std::vector<std::string>& names) {
  constexpr int kMaxKey = 16;
  ByteSet cls = ByteSet::Range('a', 'z');
  cls.SetRange('A', 'Z');
  cls.SetRange('0', '9');
  cls.Set('_');
  std::vector<uint32_t> tails(kMaxKey + 1);  // tails[k]: [cls]{0,k} '"'
  for (int k = 0; k <= kMaxKey; ++k) {
    tails[k] = g_.Rule("key_tail", {{GrammarBuilder::Ref(g_.Repeat({g_.Bytes(cls)}, 0, k, "key_chars")), g_.Byte('"')}});
  }
  std::function<uint32_t(const std::string&)> node = [&](const std::string& prefix) -> uint32_t {
    std::vector<Seq> alts;
    const bool is_name = std::find(names.begin(), names.end(), prefix) != names.end();
    if (!prefix.empty() && !is_name) alts.push_back({g_.Byte('"')});
    const int d = static_cast<int>(prefix.size());
    if (d < kMaxKey) {
      ByteSet free = cls;
      std::set<uint8_t> next;
      for (const std::string& n : names) {
        if (n.size() > prefix.size() && n.compare(0, prefix.size(), prefix) == 0 && cls.Test(static_cast<uint8_t>(n[d]))) {
          next.insert(static_cast<uint8_t>(n[d]));
        }
      }
      for (uint8_t c : next) {
        free.w[c >> 6] &= ~(uint64_t{1} << (c & 63));
        alts.push_back({g_.Byte(c), GrammarBuilder::Ref(node(prefix + static_cast<char>(c)))});
      }
      if (!free.Empty()) alts.push_back({g_.Bytes(free), GrammarBuilder::Ref(tails[kMaxKey - d - 1])});
    }
    return g_.Rule("key", std::move(alts));
  };
  return g_.Rule("extra_key", {{g_.Byte('"'), GrammarBuilder::Ref(node(""))}});
}

Result<uint32_t> SchemaCompiler::Object(const json& s, const std::string& path, int ref_depth) {
  const json empty = json::object();
  const json& props = s.contains("properties") ? s["properties"] : empty;
  if (!props.is_object()) return Fail(path, "'properties' must be an object");
  std::set<std::string> required;
  if (s.contains("required")) {
    if (!s["required"].is_array()) return Fail(path, "'required' must be an array");
    for (const auto& r : s["required"]) {
      if (!r.is_string()) return Fail(path, "'required' must hold strings");
      if (!props.contains(r.get<std::string>())) {
        return Fail(path, fmt::format("required property '{}' is not in 'properties' (not supported)", r.get<std::string>()));
      }
      required.insert(r.get<std::string>());
    }
  }
  std::optional<uint32_t> extra_value;
  if (s.contains("additionalProperties")) {
    const json& ap = s["additionalProperties"];
    if (ap.is_boolean()) {
      if (ap.get<bool>()) extra_value = AnyValue(o_.max_nesting);
    } else {
      QM_ASSIGN_OR_RETURN(uint32_t r, Compile(ap, path + "/additionalProperties", ref_depth));
      extra_value = r;
    }
  } else if (!s.contains("properties")) {
    extra_value = AnyValue(o_.max_nesting);
  }
  std::vector<std::string> names;
  std::vector<uint32_t> values;
  for (const auto& [name, sub] : props.items()) {
    QM_ASSIGN_OR_RETURN(uint32_t r, Compile(sub, path + "/properties/" + name, ref_depth));
    names.push_back(name);
    values.push_back(r);
  }
  auto member = [&](size_t i) {
    Seq m = g_.Lit(json(names[i]).dump());
    Seq sep = Sep(':');
    m.insert(m.end(), sep.begin(), sep.end());
    m.push_back(GrammarBuilder::Ref(values[i]));
    return m;
  };
  const size_t n = names.size();
  // rest_i: something was emitted; first_i: nothing yet.
  std::vector<uint32_t> first(n + 1), rest(n + 1);
  const int32_t k = extra_value ? o_.max_extra_properties : 0;
  Seq extra;
  if (k > 0) {
    extra = {GrammarBuilder::Ref(n ? KeyExcluding(names) : g_.Rule("key", {{g_.Byte('"'), GrammarBuilder::StringRun(0, 32)}}))};
    Seq sep = Sep(':');
    extra.insert(extra.end(), sep.begin(), sep.end());
    extra.push_back(GrammarBuilder::Ref(*extra_value));
  }
  {
    Seq more = Sep(',');
    more.insert(more.end(), extra.begin(), extra.end());
    std::vector<Seq> rest_alts;
    Seq tail_ws{GrammarBuilder::Ref(Ws())};
    if (k > 0) tail_ws.insert(tail_ws.begin(), GrammarBuilder::Ref(g_.Repeat(more, 0, k, "extras")));
    rest[n] = g_.Rule("rest", {tail_ws});
    std::vector<Seq> first_alts = {{}};
    if (k > 0) {
      Seq f = extra;
      f.push_back(GrammarBuilder::Ref(g_.Repeat(more, 0, k - 1, "extras")));
      f.push_back(GrammarBuilder::Ref(Ws()));
      first_alts.push_back(f);
    }
    first[n] = g_.Rule("first", std::move(first_alts));
  }
  for (size_t i = n; i-- > 0;) {
    const bool optional = !required.count(names[i]);
    Seq m = member(i);
    Seq r = Sep(',');
    r.insert(r.end(), m.begin(), m.end());
    r.push_back(GrammarBuilder::Ref(rest[i + 1]));
    std::vector<Seq> ra = {r};
    if (optional) ra.push_back({GrammarBuilder::Ref(rest[i + 1])});
    rest[i] = g_.Rule("rest", std::move(ra));
    m.push_back(GrammarBuilder::Ref(rest[i + 1]));
    std::vector<Seq> fa = {m};
    if (optional) fa.push_back({GrammarBuilder::Ref(first[i + 1])});
    first[i] = g_.Rule("first", std::move(fa));
  }
  return g_.Rule("object", {{g_.Byte('{'), GrammarBuilder::Ref(Ws()), GrammarBuilder::Ref(first[0]), g_.Byte('}')}});
}

Result<uint32_t> SchemaCompiler::Compile(const json& s, const std::string& path, int ref_depth) {
  if (depth_ >= o_.max_schema_depth) {
    return Fail(path, fmt::format("schema nested too deeply (more than the limit of {} levels)", o_.max_schema_depth));
  }
  ++depth_;
  auto r = CompileNode(s, path, ref_depth);
  --depth_;
  return r;
}

Result<uint32_t> SchemaCompiler::CompileNode(const json& s, const std::string& path, int ref_depth) {
  if (s.is_boolean()) return s.get<bool>() ? AnyValue(o_.max_nesting) : g_.Never("false");
  if (!s.is_object()) return Fail(path, "a schema must be an object or a boolean");
  for (const auto& [k, _] : s.items()) {
    if (!KnownKeywords().count(k)) return Fail(path, fmt::format("unsupported keyword '{}'", k));
  }
  auto only_meta_besides = [&](std::initializer_list<const char*> allowed) -> std::optional<std::string> {
    for (const auto& [k, _] : s.items()) {
      if (MetaKeywords().count(k)) continue;
      if (std::any_of(allowed.begin(), allowed.end(), [&](const char* a) { return k == a; })) continue;
      return k;
    }
    return std::nullopt;
  };
  if (s.contains("$ref")) {
    if (auto k = only_meta_besides({"$ref"})) return Fail(path, fmt::format("'$ref' together with '{}' is not supported", *k));
    if (!s["$ref"].is_string()) return Fail(path, "'$ref' must be a string");
    const std::string ref = s["$ref"].get<std::string>();
    QM_ASSIGN_OR_RETURN(const json* target, Resolve(ref, path));
    if (ref_depth >= o_.max_ref_depth) return g_.Never("ref_too_deep");
    const auto key = std::make_pair(ref, ref_depth);
    if (auto it = refs_.find(key); it != refs_.end()) return it->second;
    const uint32_t r = g_.Declare("ref");
    refs_[key] = r;
    QM_ASSIGN_OR_RETURN(uint32_t body, Compile(*target, ref.substr(1), ref_depth + 1));
    g_.Define(r, {{GrammarBuilder::Ref(body)}});
    return r;
  }
  for (const char* comb : {"anyOf", "oneOf", "allOf"}) {
    if (!s.contains(comb)) continue;
    if (auto k = only_meta_besides({comb})) return Fail(path, fmt::format("'{}' together with '{}' is not supported", comb, *k));
    const json& branches = s[comb];
    if (!branches.is_array() || branches.empty()) return Fail(path, fmt::format("'{}' must be a non-empty array", comb));
    if (branches.size() > static_cast<size_t>(o_.max_alternatives)) {
      return Fail(path, fmt::format("'{}' has {} branches, more than the limit of {}", comb, branches.size(), o_.max_alternatives));
    }
    if (std::string(comb) == "allOf") {
      if (branches.size() != 1) return Fail(path, "'allOf' with more than one subschema is not supported");
      return Compile(branches[0], path + "/allOf/0", ref_depth);
    }
    if (std::string(comb) == "oneOf") QM_RETURN_IF_ERROR(CheckOneOf(branches, path));
    std::vector<Seq> alts;
    for (size_t i = 0; i < branches.size(); ++i) {
      QM_ASSIGN_OR_RETURN(uint32_t r, Compile(branches[i], fmt::format("{}/{}/{}", path, comb, i), ref_depth));
      alts.push_back({GrammarBuilder::Ref(r)});
    }
    return g_.Rule(comb, std::move(alts));
  }
  // Types allowed.
  unsigned types = 0;
  bool integer_only = false;
  if (s.contains("type")) {
    std::vector<json> list = s["type"].is_array() ? std::vector<json>(s["type"].begin(), s["type"].end()) : std::vector<json>{s["type"]};
    bool has_number = false, has_integer = false;
    for (const json& t : list) {
      const std::string x = t.is_string() ? t.get<std::string>() : "";
      if (x == "null") types |= kNull;
      else if (x == "boolean") types |= kBool;
      else if (x == "integer") types |= kNumber, has_integer = true;
      else if (x == "number") types |= kNumber, has_number = true;
      else if (x == "string") types |= kString;
      else if (x == "array") types |= kArray;
      else if (x == "object") types |= kObject;
      else return Fail(path, fmt::format("unknown type {}", t.dump()));
    }
    integer_only = has_integer && !has_number;
  } else {
    types = kAll;
  }
  if (s.contains("const") || s.contains("enum")) {
    std::vector<json> values;
    if (s.contains("const")) values.push_back(s["const"]);
    if (s.contains("enum")) {
      if (!s["enum"].is_array()) return Fail(path, "'enum' must be an array");
      if (s["enum"].size() > static_cast<size_t>(o_.max_enum_values)) {
        return Fail(path, fmt::format("'enum' has {} values, more than the limit of {}", s["enum"].size(), o_.max_enum_values));
      }
      std::vector<json> e(s["enum"].begin(), s["enum"].end());
      if (s.contains("const")) {
        if (std::find(e.begin(), e.end(), s["const"]) == e.end()) values.clear();
      } else {
        values = e;
      }
    }
    std::vector<std::string> texts;
    for (const json& v : values) {
      if (!(TypeOfValue(v) & types)) continue;
      if (integer_only && v.is_number_float() && v.get<double>() != std::floor(v.get<double>())) continue;
      if (v.is_string() && (s.contains("minLength") || s.contains("maxLength") || s.contains("format") || s.contains("pattern"))) {
        return Fail(path, "'enum'/'const' together with string length or format keywords is not supported");
      }
      texts.push_back(v.dump());
      literal_bytes_ += texts.back().size();
      if (literal_bytes_ > static_cast<size_t>(o_.max_literal_bytes)) {
        return Fail(path, fmt::format("the schema's enum/const values take more than the limit of {} bytes of JSON",
                                      o_.max_literal_bytes));
      }
    }
    if (texts.empty()) return Fail(path, "no value of 'enum'/'const' matches the schema's type");
    return LiteralTrie(std::move(texts));
  }
  if (!s.contains("type")) {
    // Infer from the keywords present.
    unsigned inferred = 0;
    for (const char* k : {"properties", "required", "additionalProperties"}) inferred |= s.contains(k) ? unsigned{kObject} : 0u;
    for (const char* k : {"items", "prefixItems", "minItems", "maxItems"}) inferred |= s.contains(k) ? unsigned{kArray} : 0u;
    for (const char* k : {"minLength", "maxLength", "format", "pattern"}) inferred |= s.contains(k) ? unsigned{kString} : 0u;
    for (const char* k : {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}) inferred |= s.contains(k) ? unsigned{kNumber} : 0u;
    if (inferred == 0) return AnyValue(o_.max_nesting);
    if (std::popcount(inferred) > 1) return Fail(path, "keywords of several types without 'type' are not supported");
    types = inferred;
  }
  std::vector<Seq> alts;
  if (types & kNull) alts.push_back(g_.Lit("null"));
  if (types & kBool) {
    alts.push_back(g_.Lit("true"));
    alts.push_back(g_.Lit("false"));
  }
  if (types & kNumber) {
    QM_ASSIGN_OR_RETURN(uint32_t r, integer_only ? Integer(s, path) : Number(s, path));
    alts.push_back({GrammarBuilder::Ref(r)});
  }
  if (types & kString) {
    QM_ASSIGN_OR_RETURN(uint32_t r, String(s, path));
    alts.push_back({GrammarBuilder::Ref(r)});
  }
  if (types & kArray) {
    QM_ASSIGN_OR_RETURN(uint32_t r, Array(s, path, ref_depth));
    alts.push_back({GrammarBuilder::Ref(r)});
  }
  if (types & kObject) {
    QM_ASSIGN_OR_RETURN(uint32_t r, Object(s, path, ref_depth));
    alts.push_back({GrammarBuilder::Ref(r)});
  }
  return g_.Rule("value", std::move(alts));
}

uint32_t SchemaCompiler::LiteralTrie(std::vector<std::string> texts) {
  std::sort(texts.begin(), texts.end());  // char_traits<char> orders bytes as unsigned
  texts.erase(std::unique(texts.begin(), texts.end()), texts.end());
  return TrieNode(texts, 0, texts.size(), 0);
}

// texts[lo, hi) share their first `d` bytes; a rule for the rest of them.
uint32_t SchemaCompiler::TrieNode(const std::vector<std::string>& t, size_t lo, size_t hi, size_t d) {
  std::vector<Seq> alts;
  size_t i = lo;
  if (t[i].size() == d) alts.push_back({}), ++i;  // sorted and unique: the text ending here comes first
  while (i < hi) {
    const char b = t[i][d];
    size_t j = i + 1;
    while (j < hi && t[j][d] == b) ++j;
    const std::string_view first(t[i]);
    if (j - i == 1) {
      alts.push_back(g_.Lit(first.substr(d)));
    } else {
      // Sorted: the common prefix of the group is that of its first and last text.
      const std::string_view last(t[j - 1]);
      size_t l = d + 1;
      while (l < first.size() && l < last.size() && first[l] == last[l]) ++l;
      Seq seq = g_.Lit(first.substr(d, l - d));
      seq.push_back(GrammarBuilder::Ref(TrieNode(t, i, j, l)));
      alts.push_back(std::move(seq));
    }
    i = j;
  }
  return g_.Rule("enum", std::move(alts));
}

}  // namespace internal

Result<uint32_t> AddJsonSchemaRules(GrammarBuilder& g, const json& schema, const JsonSchemaOptions& options) {
  QM_RETURN_IF_ERROR(options.Validate());
  if (schema.is_object()) {
    for (const char* defs : {"$defs", "definitions"}) {
      if (schema.contains(defs) && !schema[defs].is_object()) {
        return Error(StatusCode::kInvalidArgument, "json schema: '{}' must be an object at #", defs);
      }
    }
  }
  const size_t text = schema.dump().size();
  if (text > static_cast<size_t>(options.max_schema_bytes)) {
    return Error(StatusCode::kInvalidArgument, "json schema: {} bytes of JSON, more than the limit of {}", text,
                 options.max_schema_bytes);
  }
  SchemaCompiler c(g, schema, options);
  return c.Compile(schema, "", 0);
}

Result<Constraint> CompileJsonSchema(const json& schema, std::shared_ptr<const VocabIndex> vocab, const JsonSchemaOptions& options) {
  GrammarBuilder g;
  QM_ASSIGN_OR_RETURN(uint32_t root, AddJsonSchemaRules(g, schema, options));
  if (g.num_rules() > static_cast<size_t>(options.max_grammar_rules)) {
    return Error(StatusCode::kInvalidArgument, "json schema: too complex ({} grammar rules, more than the limit of {})",
                 g.num_rules(), options.max_grammar_rules);
  }
  auto grammar = std::move(g).Build(root);
  if (!grammar.ok()) return grammar.status().WithContext("json schema");
  return Constraint(std::make_shared<CompiledConstraint>(std::move(*grammar), std::move(vocab), options.constraint));
}

Result<Constraint> CompileJsonObject(std::shared_ptr<const VocabIndex> vocab, const JsonSchemaOptions& options) {
  QM_RETURN_IF_ERROR(options.Validate());
  GrammarBuilder g;
  const json root = json::object();
  SchemaCompiler c(g, root, options);
  const uint32_t obj = c.AnyObject(std::max(options.max_nesting, 1));
  QM_ASSIGN_OR_RETURN(Grammar grammar, std::move(g).Build(obj));
  return Constraint(std::make_shared<CompiledConstraint>(std::move(grammar), std::move(vocab), options.constraint));
}

}  // namespace qwenmux::structured
