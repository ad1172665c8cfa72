// Structured generation: constraints that make the sampled text match a JSON Schema, any JSON
// object, a GBNF-like grammar or Qwen3 tool calls, whatever the model's weights; plus a
// thinking-budget processor that composes with them. See README "Structured output".
//
//   auto vocab = structured::VocabIndex::Shared(model.tokenizer());          // once per vocabulary
//   QM_ASSIGN_OR_RETURN(auto c, structured::CompileJsonSchema(schema, vocab));  // once per schema
//   auto proc = c->NewProcessor();                                           // once per sequence
//   gen.processor = proc.get();                                              // engine::GenerateOptions
//
// Compile errors are kInvalidArgument and name the keyword and the place, e.g.
// "json schema: unsupported keyword 'pattern' at #/properties/phone" (never a silent ignore).
//
// Generation bounds. A constraint must end with random weights too, so free-form parts get
// bounded sizes when the schema gives none (JsonSchemaOptions, defaults below): strings
// without maxLength get at most max_string_length characters, arrays without maxItems at most
// max_array_items items, each place that allows JSON whitespace at most max_whitespace bytes,
// objects that allow extra properties at most max_extra_properties of them, free-form values
// ({} / true / json_object) nest at most max_nesting levels, recursive $ref at most
// max_ref_depth levels, integers without bounds at most max_integer_digits digits. The output
// is always valid against the schema: the bounds only narrow what is generated.
// Schema limits (JsonSchemaOptions, defaults below): the schema's JSON text, values of one enum,
// bytes of all enum/const values, nesting, anyOf/oneOf branches and grammar rules; above one
// the compile fails with kInvalidArgument naming the limit. An enum compiles to a trie of its
// values' JSON texts (one shared prefix once), so matching keeps at most one pushdown stack per
// distinct next byte, however many values there are.
// Other choices, all on the side of valid output:
//   - properties are generated in the schema's order; unspecified additionalProperties with
//     "properties" generates no extra properties (like llama.cpp); extra property names are
//     [A-Za-z0-9_]{1,16} and never one of the declared names;
//   - oneOf is accepted when its branches are provably disjoint (different JSON types, or a
//     required property with distinct const/enum values); otherwise it is an error;
//   - number bounds are rounded inward to integers (minimum 0.5 generates from 1);
//   - formats: date, time, date-time (RFC 3339, with a zone), email, uuid, ipv4.
//
// Thread-safety: every function here is thread-safe; compiled constraints are shared across
// threads; processors belong to one sequence.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>

#include <nlohmann/json.hpp>

#include "engine/logit_processor.h"
#include "structured/grammar.h"
#include "structured/matcher.h"
#include "structured/vocab_index.h"

namespace qwenmux::structured {

struct JsonSchemaOptions {
  int32_t max_string_length = 64;
  int32_t max_array_items = 8;
  int32_t max_whitespace = 4;
  int32_t max_extra_properties = 4;
  int32_t max_nesting = 3;
  int32_t max_ref_depth = 4;
  int32_t max_integer_digits = 12;  // <= 18
  int32_t max_fraction_digits = 6;
  // Limits on the schema itself, since compile time and grammar size grow with them and a
  // server compiles what clients send; above one: kInvalidArgument naming it (HTTP 400).
  int32_t max_schema_bytes = 256 << 10;    // the schema's JSON text
  int32_t max_enum_values = 4096;          // values of one 'enum'
  int32_t max_literal_bytes = 128 << 10;   // JSON text of all enum/const values together
  int32_t max_schema_depth = 32;           // nested subschemas (properties, items, anyOf, $ref...)
  int32_t max_alternatives = 128;          // branches of one anyOf / oneOf
  int32_t max_grammar_rules = 200000;      // rules of the compiled grammar
  ConstraintOptions constraint;

  Status Validate() const;
};

using Constraint = std::shared_ptr<const CompiledConstraint>;

// A JSON Schema (draft 2020-12 subset; see above) -> constraint. The top-level value must
// match the schema exactly and the output ends with it.
Result<Constraint> CompileJsonSchema(const nlohmann::ordered_json& schema, std::shared_ptr<const VocabIndex> vocab,
                                     const JsonSchemaOptions& options = {});
// OpenAI response_format {"type": "json_object"} / Ollama format "json": any JSON object.
Result<Constraint> CompileJsonObject(std::shared_ptr<const VocabIndex> vocab, const JsonSchemaOptions& options = {});
// A GBNF-like grammar (llama.cpp syntax: `root ::= ...`, "literals", [classes], ( ), | , * + ?
// {m,n}, # comments, rule names [a-zA-Z0-9-_]; <|name|>-style text in angle brackets that is a
// special token of the vocabulary matches that token) -> constraint. The start rule is `root`.
Result<Constraint> CompileGrammar(std::string_view gbnf, std::shared_ptr<const VocabIndex> vocab,
                                  const ConstraintOptions& options = {});

// Adds the rules of `schema` to `g` (for composite grammars) and returns the value's rule.
Result<uint32_t> AddJsonSchemaRules(GrammarBuilder& g, const nlohmann::ordered_json& schema, const JsonSchemaOptions& options);
// Adds a GBNF grammar's rules to `g`; returns its root rule.
Result<uint32_t> AddGrammarRules(GrammarBuilder& g, std::string_view gbnf, const VocabIndex& vocab);

// ---- Request helpers for the HTTP APIs (errors are kInvalidArgument: answer 400) ----
// OpenAI `response_format`: null or {"type": "text"} -> nullptr (no constraint);
// {"type": "json_object"}; {"type": "json_schema", "json_schema": {"name": ..., "schema": {...},
// "strict": bool}} (strict or not, the output always matches the schema).
Result<Constraint> FromOpenAiResponseFormat(const nlohmann::ordered_json& response_format,
                                            std::shared_ptr<const VocabIndex> vocab, const JsonSchemaOptions& options = {});
// Ollama `format`: null or "" -> nullptr; "json" -> any JSON object; an object -> JSON Schema.
Result<Constraint> FromOllamaFormat(const nlohmann::ordered_json& format, std::shared_ptr<const VocabIndex> vocab,
                                    const JsonSchemaOptions& options = {});

// Compiled constraints by key (e.g. "openai:" + response_format.dump()), least recently used
// first out, so a server compiles a schema once and every request with it shares its mask
// cache. Entries are per vocabulary.
//
// Bounded by bytes: each entry's CompiledConstraint::memory_bytes() (grammar + mask cache, which
// grows as requests run) is summed and the least recently used entries go while the sum is
// above max_bytes (checked on every lookup; the newest entry always stays), and by max_entries.
// Constraints compiled with options() also share memory(): their mask caches stop growing once
// every live constraint of this cache together holds max_bytes, evicted ones still in use
// included, so memory().used() is what compiled constraints hold and never far above the cap.
//
// Thread-safe (compilation runs outside the lock; two threads compiling the same key at once
// both compile, one result is kept).
class ConstraintCache {
 public:
  static constexpr size_t kDefaultMaxBytes = size_t{256} << 20;
  explicit ConstraintCache(size_t max_bytes = kDefaultMaxBytes, size_t max_entries = 1024);
  // Errors are returned and not cached; a nullptr result (no constraint) is cached.
  Result<Constraint> GetOrCompile(const VocabIndex& vocab, const std::string& key,
                                  const std::function<Result<Constraint>()>& compile);
  // Options to compile constraints with so that their bytes count in memory().
  ConstraintOptions options() const;
  const std::shared_ptr<ConstraintMemory>& memory() const { return memory_; }
  size_t size() const;   // entries
  size_t bytes() const;  // sum of the entries' memory_bytes()
  size_t max_bytes() const;
  void set_max_bytes(size_t max_bytes);  // evicts at the next lookup

 private:
  void EvictLocked(const std::string& keep);

  mutable std::mutex mu_;
  size_t max_bytes_, max_entries_;
  std::shared_ptr<ConstraintMemory> memory_;
  uint64_t tick_ = 0;
  std::map<std::string, std::pair<Constraint, uint64_t>> entries_;  // key -> (constraint, last use)
};

// Computes and caches the token masks of the constraint's start state (for every sequence that
// uses it), so a request's first sampling step finds them ready instead of computing them on
// the model's worker. Call where the constraint was compiled (an HTTP handler thread).
Status WarmStartMasks(const Constraint& c);

// ---- Tool calls (Qwen3 / Hermes format) ----
struct ToolCallOptions {
  int32_t max_calls = 4;  // parallel_tool_calls=false: 1
  JsonSchemaOptions schema;
};
// `tools`: OpenAI tool definitions [{"type": "function", "function": {"name", "parameters"}}]
// (also accepted: the bare function objects). `tool_choice`: "auto" / "none" / null -> returns
// nullptr (no constraint); "required" -> one to max_calls calls of any tool; {"type":
// "function", "function": {"name": N}} (or {"name": N}) -> exactly one call of N. The output
// is `<tool_call>\n{"name": "N", "arguments": {...}}\n</tool_call>` blocks separated by "\n",
// arguments valid against the tool's parameters schema, as chat::ParseChatOutput reads them.
Result<Constraint> MakeToolCallConstraint(const nlohmann::ordered_json& tools, const nlohmann::ordered_json& tool_choice,
                                          std::shared_ptr<const VocabIndex> vocab, const ToolCallOptions& options = {});

// ---- Thinking ----
struct ThinkingOptions {
  // Thinking tokens (after <think>) before </think> is forced; < 0: unlimited.
  int32_t budget = -1;
  // The generation starts before the model's "<think>" (Qwen3 with thinking on: the prompt ends
  // with "<|im_start|>assistant\n"): <think> is forced first. False when the prompt already
  // holds "<think>\n".
  bool expect_open = true;
  // Newline tokens allowed between </think> and the constrained answer (Qwen3 writes "\n\n").
  int32_t max_gap_newlines = 2;
};
// Thinking (free text, no end-of-sequence) until </think> or the budget, then `inner` (may be
// null: free text after thinking). The inner constraint applies to the answer only.
std::unique_ptr<engine::LogitProcessor> MakeThinkingBudget(std::unique_ptr<engine::LogitProcessor> inner,
                                                           std::shared_ptr<const VocabIndex> vocab,
                                                           const ThinkingOptions& options = {});

// Whether a Qwen3 chat turn thinks: `enable_thinking` if set, else the last /think or /no_think
// switch in the user messages (the later one wins), else true.
bool ResolveThinking(std::optional<bool> enable_thinking, const std::vector<std::string>& user_messages);

}  // namespace qwenmux::structured
