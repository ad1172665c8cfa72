#include "pipeline/definition.h"

#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "orchestrator/config/yaml_walk.h"
#include "pipeline/schema.h"
#include "rag/store.h"

namespace qwenmux::pipeline {

using Json = nlohmann::ordered_json;

const char* StageTypeName(StageType t) {
  switch (t) {
    case StageType::kRead: return "read";
    case StageType::kChunk: return "chunk";
    case StageType::kEmbed: return "embed";
    case StageType::kClassify: return "classify";
    case StageType::kExtract: return "extract";
    case StageType::kValidate: return "validate";
  }
  return "?";
}

const StageDef* PipelineDef::Find(StageType t) const {
  for (const StageDef& s : stages) {
    if (s.type == t) return &s;
  }
  return nullptr;
}

namespace {

constexpr const char* kTiers[] = {"fast", "balanced", "quality", "max"};

using orchestrator::yaml::Ctx;
using orchestrator::yaml::ForEachKey;
using orchestrator::yaml::Handler;
using orchestrator::yaml::KindName;

Result<std::string> Str(const Ctx& ctx, const YAML::Node& n, const std::string& path) {
  return orchestrator::yaml::NonEmptyScalar(ctx, n, path);
}

Result<int32_t> Int(const Ctx& ctx, const YAML::Node& n, const std::string& path, int32_t lo, int32_t hi) {
  if (!n.IsScalar()) return ctx.At(n, path, fmt::format("expected a number, got {}", KindName(n)));
  const std::string& s = n.Scalar();
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno != 0 || v < lo || v > hi) {
    return ctx.At(n, path, fmt::format("\"{}\" is not an integer in [{}, {}]", s, lo, hi));
  }
  return static_cast<int32_t>(v);
}

Result<double> Real(const Ctx& ctx, const YAML::Node& n, const std::string& path, double lo, double hi) {
  if (!n.IsScalar()) return ctx.At(n, path, fmt::format("expected a number, got {}", KindName(n)));
  const std::string& s = n.Scalar();
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !(v >= lo && v <= hi)) {
    return ctx.At(n, path, fmt::format("\"{}\" is not a number in [{}, {}]", s, lo, hi));
  }
  return v;
}

Result<bool> Bool(const Ctx& ctx, const YAML::Node& n, const std::string& path) {
  if (n.IsScalar()) {
    if (n.Scalar() == "true") return true;
    if (n.Scalar() == "false") return false;
  }
  return ctx.At(n, path, "expected true or false");
}

// YAML -> JSON (for schemas). Plain scalars become numbers/booleans/null when they read as one.
Json ToJson(const YAML::Node& n) {
  if (n.IsMap()) {
    Json o = Json::object();
    for (auto it = n.begin(); it != n.end(); ++it) o[it->first.Scalar()] = ToJson(it->second);
    return o;
  }
  if (n.IsSequence()) {
    Json a = Json::array();
    for (const YAML::Node& e : n) a.push_back(ToJson(e));
    return a;
  }
  if (n.IsNull()) return nullptr;
  const std::string& s = n.Scalar();
  if (n.Tag() == "!") return s;  // quoted: a string
  if (s == "true") return true;
  if (s == "false") return false;
  char* end = nullptr;
  errno = 0;
  const long long i = std::strtoll(s.c_str(), &end, 10);
  if (!s.empty() && *end == '\0' && errno == 0) return i;
  const double d = std::strtod(s.c_str(), &end);
  if (!s.empty() && *end == '\0') return d;
  return s;
}

Result<Json> SchemaOf(const Ctx& ctx, const YAML::Node& n, const std::string& path) {
  Json j = ToJson(n);
  Status s = CheckSupportedSchema(j, path);
  if (!s.ok()) return ctx.At(n, "", s.message());
  return j;
}

Result<StageType> TypeOf(const Ctx& ctx, const YAML::Node& n, const std::string& path) {
  QM_ASSIGN_OR_RETURN(std::string s, Str(ctx, n, path));
  for (StageType t : {StageType::kRead, StageType::kChunk, StageType::kEmbed, StageType::kClassify,
                      StageType::kExtract, StageType::kValidate}) {
    if (s == StageTypeName(t)) return t;
  }
  return ctx.At(n, path, fmt::format("\"{}\" is not a stage type (read, chunk, embed, classify, extract, validate)", s));
}

Status ParseStage(const Ctx& ctx, const YAML::Node& node, const std::string& path, StageDef* st) {
  st->line = node.Mark().line + 1;
  bool has_type = false;
  QM_RETURN_IF_ERROR(ForEachKey(ctx, node, path, {
      {"name", [&](const YAML::Node& v, const std::string& p) -> Status { QM_ASSIGN_OR_RETURN(st->name, Str(ctx, v, p)); return Status::Ok(); }},
      {"type", [&](const YAML::Node& v, const std::string& p) -> Status { QM_ASSIGN_OR_RETURN(st->type, TypeOf(ctx, v, p)); has_type = true; return Status::Ok(); }},
      {"model", [&](const YAML::Node& v, const std::string& p) -> Status { QM_ASSIGN_OR_RETURN(st->model, Str(ctx, v, p)); return Status::Ok(); }},
      {"prompt", [&](const YAML::Node& v, const std::string& p) -> Status { QM_ASSIGN_OR_RETURN(st->prompt, Str(ctx, v, p)); return Status::Ok(); }},
      {"batch", [&](const YAML::Node& v, const std::string& p) -> Status { QM_ASSIGN_OR_RETURN(st->batch, Int(ctx, v, p, 1, 256)); return Status::Ok(); }},
      {"concurrency", [&](const YAML::Node& v, const std::string& p) -> Status { QM_ASSIGN_OR_RETURN(st->concurrency, Int(ctx, v, p, 1, 64)); return Status::Ok(); }},
      {"max_tokens", [&](const YAML::Node& v, const std::string& p) -> Status { QM_ASSIGN_OR_RETURN(st->max_tokens, Int(ctx, v, p, 1, 32768)); return Status::Ok(); }},
      {"max_chars", [&](const YAML::Node& v, const std::string& p) -> Status { QM_ASSIGN_OR_RETURN(st->max_chars, Int(ctx, v, p, 16, 1 << 24)); return Status::Ok(); }},
      {"chunk_tokens", [&](const YAML::Node& v, const std::string& p) -> Status { QM_ASSIGN_OR_RETURN(st->chunk_tokens, Int(ctx, v, p, 16, 8192)); return Status::Ok(); }},
      {"chunk_overlap", [&](const YAML::Node& v, const std::string& p) -> Status { QM_ASSIGN_OR_RETURN(st->chunk_overlap, Int(ctx, v, p, 0, 4096)); return Status::Ok(); }},
      {"threshold", [&](const YAML::Node& v, const std::string& p) -> Status { QM_ASSIGN_OR_RETURN(st->threshold, Real(ctx, v, p, 0.0, 1.0)); return Status::Ok(); }},
      {"require_grounded", [&](const YAML::Node& v, const std::string& p) -> Status { QM_ASSIGN_OR_RETURN(st->require_grounded, Bool(ctx, v, p)); return Status::Ok(); }},
      {"schema", [&](const YAML::Node& v, const std::string& p) -> Status { QM_ASSIGN_OR_RETURN(st->schema, SchemaOf(ctx, v, p)); return Status::Ok(); }},
      {"collection", [&](const YAML::Node& v, const std::string& p) -> Status { QM_ASSIGN_OR_RETURN(st->collection, Str(ctx, v, p)); return Status::Ok(); }},
      {"labels", [&](const YAML::Node& v, const std::string& p) -> Status {
         if (!v.IsMap() || v.size() < 2) return ctx.At(v, p, "expected a map of at least two labels (label: {description, schema})");
         for (auto it = v.begin(); it != v.end(); ++it) {
           const YAML::Node key = it->first;
           const YAML::Node val = it->second;
           LabelDef l;
           QM_ASSIGN_OR_RETURN(l.name, Str(ctx, key, p));
           const std::string lp = p + "." + l.name;
           for (const LabelDef& o : st->labels) {
             if (o.name == l.name) return ctx.At(key, lp, "duplicate label");
           }
           if (!val.IsNull()) {
             QM_RETURN_IF_ERROR(ForEachKey(ctx, val, lp, {
                 {"description", [&](const YAML::Node& x, const std::string& q) -> Status { QM_ASSIGN_OR_RETURN(l.description, Str(ctx, x, q)); return Status::Ok(); }},
                 {"schema", [&](const YAML::Node& x, const std::string& q) -> Status { QM_ASSIGN_OR_RETURN(l.schema, SchemaOf(ctx, x, q)); return Status::Ok(); }},
             }));
           }
           st->labels.push_back(std::move(l));
         }
         return Status::Ok();
       }},
  }));
  if (st->name.empty()) return ctx.At(node, path + ".name", "missing");
  if (!has_type) return ctx.At(node, path + ".type", "missing (read, chunk, embed, classify, extract, validate)");
  const bool needs_model = st->type == StageType::kClassify || st->type == StageType::kExtract ||
                           st->type == StageType::kValidate || st->type == StageType::kEmbed;
  if (needs_model && st->model.empty()) return ctx.At(node, path + ".model", fmt::format("a {} stage needs a model (a tier such as qwen3-fast, or a model name)", StageTypeName(st->type)));
  if (st->type == StageType::kRead && !st->model.empty()) return ctx.At(node, path + ".model", "a read stage uses no model");
  if (st->type == StageType::kClassify && st->labels.empty()) return ctx.At(node, path + ".labels", "a classify stage needs labels");
  if (st->type != StageType::kClassify && !st->labels.empty()) return ctx.At(node, path + ".labels", "only classify stages have labels");
  if (st->type != StageType::kExtract && !st->schema.is_null()) return ctx.At(node, path + ".schema", "only extract stages have a schema (classify labels carry their own)");
  if (st->chunk_overlap >= st->chunk_tokens) return ctx.At(node, path + ".chunk_overlap", "must be smaller than chunk_tokens");
  if (st->type != StageType::kEmbed && !st->collection.empty()) return ctx.At(node, path + ".collection", "only embed stages store into a collection");
  if (!st->collection.empty()) {
    if (Status v = rag::ValidateCollectionName(st->collection); !v.ok()) return ctx.At(node, path + ".collection", v.message());
  }
  return Status::Ok();
}

}  // namespace

std::string TierOf(std::string_view ref) {
  std::string_view s = ref;
  if (s.substr(0, 5) == "qwen3" && s.size() > 6 && s[5] == '-') s.remove_prefix(6);
  for (const char* t : kTiers) {
    if (s == t) return t;
  }
  return "";
}

std::string NextTier(std::string_view tier) {
  for (size_t i = 0; i + 1 < std::size(kTiers); ++i) {
    if (tier == kTiers[i]) return kTiers[i + 1];
  }
  return "";
}

Result<PipelineDef> ParsePipeline(std::string_view yaml_text, std::string_view file_name) {
  const Ctx ctx{std::string(file_name)};
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return Error(StatusCode::kInvalidArgument, "{}:{}: invalid YAML: {}", file_name, e.mark.line + 1, e.msg);
  }
  PipelineDef def;
  def.source = std::string(file_name);
  YAML::Node stages_node;
  try {
    QM_RETURN_IF_ERROR(ForEachKey(ctx, root, "", {
        {"name", [&](const YAML::Node& v, const std::string& p) -> Status { QM_ASSIGN_OR_RETURN(def.name, Str(ctx, v, p)); return Status::Ok(); }},
        {"description", [&](const YAML::Node& v, const std::string& p) -> Status { QM_ASSIGN_OR_RETURN(def.description, Str(ctx, v, p)); return Status::Ok(); }},
        {"context", [&](const YAML::Node& v, const std::string& p) -> Status { QM_ASSIGN_OR_RETURN(def.context, Int(ctx, v, p, 256, 1 << 20)); return Status::Ok(); }},
        {"stages", [&](const YAML::Node& v, const std::string& p) -> Status {
           if (!v.IsSequence() || v.size() == 0) return ctx.At(v, p, "expected a non-empty list of stages");
           for (size_t i = 0; i < v.size(); ++i) {
             StageDef st;
             QM_RETURN_IF_ERROR(ParseStage(ctx, v[i], fmt::format("{}[{}]", p, i), &st));
             def.stages.push_back(std::move(st));
           }
           stages_node = v;
           return Status::Ok();
         }},
    }));
  } catch (const YAML::Exception& e) {
    return Error(StatusCode::kInvalidArgument, "{}:{}: {}", file_name, e.mark.line + 1, e.msg);
  }
  if (def.name.empty()) return ctx.At(root, "name", "missing");
  if (def.stages.empty()) return ctx.At(root, "stages", "missing");
  // Order rules.
  std::set<std::string> names;
  std::set<StageType> seen;
  for (size_t i = 0; i < def.stages.size(); ++i) {
    const StageDef& st = def.stages[i];
    const YAML::Node n = stages_node[i];
    const std::string p = fmt::format("stages[{}]", i);
    if (!names.insert(st.name).second) return ctx.At(n, p + ".name", fmt::format("duplicate stage name \"{}\"", st.name));
    if (seen.count(st.type)) return ctx.At(n, p + ".type", fmt::format("a second {} stage (one of each type)", StageTypeName(st.type)));
    if (i == 0 && st.type != StageType::kRead) return ctx.At(n, p + ".type", "the first stage must be a read stage");
    if (st.type == StageType::kEmbed && !seen.count(StageType::kChunk)) return ctx.At(n, p + ".type", "embed needs a chunk stage before it");
    if (st.type == StageType::kValidate && !seen.count(StageType::kExtract)) return ctx.At(n, p + ".type", "validate needs an extract stage before it");
    if (st.type == StageType::kExtract) {
      const StageDef* cls = def.Find(StageType::kClassify);
      const bool before = cls != nullptr && seen.count(StageType::kClassify);
      bool any_label_schema = false;
      if (before) {
        for (const LabelDef& l : cls->labels) any_label_schema |= !l.schema.is_null();
      }
      if (st.schema.is_null() && !any_label_schema) {
        return ctx.At(n, p + ".schema", "an extract stage needs a schema, or a classify stage before it whose labels carry schemas");
      }
    }
    seen.insert(st.type);
  }
  return def;
}

Result<PipelineDef> LoadPipeline(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(StatusCode::kNotFound, "pipeline: cannot open {}", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ParsePipeline(ss.str(), path);
}

}  // namespace qwenmux::pipeline
