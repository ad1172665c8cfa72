#include "rag/rag.h"

#include <algorithm>
#include <chrono>
#include <set>

#include "base/stopwatch.h"
#include "chat/chat.h"
#include "rag/chunker.h"
#include "rag/backend_model.h"

namespace qwenmux::rag {

namespace {

using qwenmux::Stopwatch;

constexpr const char* kRewriteSystem =
    "You turn questions into search queries for a document search engine.";
constexpr const char* kAnswerSystem =
    "You answer questions using only the numbered sources provided. Cite the sources that support each sentence "
    "as [n], for example [1] or [2][3]. If the sources do not contain the answer, say that you cannot find it in "
    "the documents.";
constexpr const char* kScoreSystem =
    "Judge whether an answer is grounded in the given sources. Note that the reply can only be \"yes\" or \"no\".";

Result<std::vector<int32_t>> ChatTokens(const engine::Model& m, const std::string& system, const std::string& user,
                                        bool thinking) {
  std::vector<chat::ChatMessage> msgs(2);
  msgs[0].role = chat::ChatRole::kSystem;
  msgs[0].content = system;
  msgs[1].role = chat::ChatRole::kUser;
  msgs[1].content = user;
  chat::ChatOptions opt;
  opt.add_generation_prompt = true;
  opt.enable_thinking = thinking;
  QM_ASSIGN_OR_RETURN(std::string text, chat::RenderChat(msgs, opt));
  // Special tokens come from the template only: user text with "<|im_end|>" in it must stay text.
  // RenderChat output is encoded with parse_special, so strip them from the user parts first.
  tokenizer::EncodeOptions special;
  special.parse_special = true;
  return m.tokenizer().Encode(text, special);
}

// Removes anything the tokenizer would parse as a special token ("<|im_end|>", "<think>").
std::string Defang(std::string_view s) {
  std::string out(s);
  for (const char* t : {"<|", "|>"}) {
    for (size_t p; (p = out.find(t)) != std::string::npos;) out.replace(p, 2, t[0] == '<' ? "< |" : "| >");
  }
  for (const char* t : {"<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"}) {
    for (size_t p; (p = out.find(t)) != std::string::npos;) out.insert(p + 1, " ");
  }
  return out;
}

std::string StripThink(std::string s) {
  const size_t end = s.find("</think>");
  if (end != std::string::npos) s.erase(0, end + 8);
  const size_t b = s.find_first_not_of(" \n\t");
  return b == std::string::npos ? "" : s.substr(b);
}

std::string PassageText(const Source& s) {
  std::string label = s.title;
  if (!s.heading.empty() && s.heading != s.title) label += (label.empty() ? "" : " > ") + s.heading;
  return fmt::format("[{}] {}\n{}\n\n", s.n, label, s.text);
}

// The model of a chat stage (query understanding, response generation): a loaded engine::Model
// or a backend model, behind one interface so the stage code does not branch on which.
class ChatStage {
 public:
  ChatStage(engine::Model* local, const std::string& backend_ref, const BackendAccess& backend, int32_t backend_ctx)
      : local_(backend_ref.empty() ? local : nullptr), ref_(backend_ref), backend_(backend), backend_ctx_(backend_ctx) {}
  explicit operator bool() const { return local_ || !ref_.empty(); }
  int32_t n_ctx() const { return local_ ? local_->n_ctx() : backend_ctx_; }
  int32_t Count(std::string_view s) const {
    return local_ ? static_cast<int32_t>(local_->tokenizer().Encode(s).size()) : ApproxTokens(s);
  }
  // Tokens of the rendered (system, user) prompt; a backend's: approximate, with the template's share.
  Result<int32_t> PromptTokens(const std::string& system, const std::string& user, bool thinking) const {
    if (!local_) return ApproxTokens(system) + ApproxTokens(user) + 16;
    QM_ASSIGN_OR_RETURN(auto ids, ChatTokens(*local_, system, user, thinking));
    return static_cast<int32_t>(ids.size());
  }
  struct Output {
    std::string text, finish_reason;
    int32_t tokens = 0;
  };
  // Generates the answer of (system, user), streaming pieces to on_piece (a backend's: one piece,
  // the whole answer). `adapter`: a LoRA adapter file for this call ("" none; local models only).
  Result<Output> Generate(const std::string& system, const std::string& user, bool thinking, int32_t max_tokens,
                          const engine::SamplerOptions& sampler, const std::string& adapter, float adapter_scale,
                          const std::function<bool(std::string_view)>& on_piece) const {
    Output o;
    if (!local_) {
      if (!adapter.empty())
        return Error(StatusCode::kInvalidArgument, "rag: the LoRA adapter {} cannot apply to backend model {}", adapter, ref_);
      BackendChatOptions bo;
      bo.max_tokens = max_tokens;
      bo.temperature = sampler.temperature;
      bo.seed = sampler.seed;
      bo.thinking = thinking;
      QM_ASSIGN_OR_RETURN(BackendChatResult r, BackendChat(backend_, ref_, system, user, bo));
      if (on_piece && !r.text.empty()) (void)on_piece(r.text);
      o.tokens = r.completion_tokens > 0 ? static_cast<int32_t>(r.completion_tokens) : ApproxTokens(r.text);
      o.text = std::move(r.text);
      o.finish_reason = std::move(r.finish_reason);
      return o;
    }
    QM_ASSIGN_OR_RETURN(auto ids, ChatTokens(*local_, system, user, thinking));
    engine::GenerateOptions g;
    g.sampler = sampler;
    g.max_tokens = std::min(max_tokens, local_->n_ctx() - static_cast<int32_t>(ids.size()));
    if (!adapter.empty()) {
      Result<int32_t> id = local_->LoadAdapter(adapter);
      if (!id.ok()) return id.status().WithContext(fmt::format("rag: response generation adapter {}", adapter));
      g.adapter = *id;
      g.adapter_scale = adapter_scale;
    }
    Result<engine::GenerateResult> generated = local_->Generate(ids, g, on_piece);
    if (g.adapter != -1) (void)local_->UnloadAdapter(g.adapter);  // the answer is done: nothing runs with it
    QM_ASSIGN_OR_RETURN(engine::GenerateResult out, std::move(generated));
    o.text = std::move(out.text);
    o.tokens = static_cast<int32_t>(out.tokens.size());
    o.finish_reason = std::move(out.finish_reason);
    return o;
  }

 private:
  engine::Model* local_;
  std::string ref_;
  const BackendAccess& backend_;
  int32_t backend_ctx_;
};

}  // namespace

std::vector<std::string> ParseRewrites(std::string_view text, std::string_view question, int max) {
  std::vector<std::string> out;
  std::set<std::string> seen{std::string(question)};
  size_t start = 0;
  while (start <= text.size() && static_cast<int>(out.size()) < max) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string line(text.substr(start, end - start));
    start = end + 1;
    // Drop bullets, numbering and quotes: "1. ", "- ", "* ", "\"...\"".
    size_t b = line.find_first_not_of(" \t-*\"'0123456789.)");
    if (b == std::string::npos) continue;
    line = line.substr(b);
    while (!line.empty() && (line.back() == ' ' || line.back() == '"' || line.back() == '\'' || line.back() == '\r'))
      line.pop_back();
    if (line.size() < 3 || line.size() > 300 || !IsTextUtf8(line) || line.find("</think>") != std::string::npos ||
        line.find("<think>") != std::string::npos)
      continue;
    if (seen.insert(line).second) out.push_back(line);
  }
  return out;
}

std::vector<int> CitationsIn(std::string_view a) {
  std::vector<int> out;
  std::set<int> seen;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != '[') continue;
    size_t j = i + 1;
    std::vector<int> nums;
    bool ok = false;
    while (j < a.size()) {
      size_t k = j;
      int v = 0;
      while (k < a.size() && k - j < 4 && a[k] >= '0' && a[k] <= '9') v = v * 10 + (a[k++] - '0');
      if (k == j) break;
      nums.push_back(v);
      while (k < a.size() && a[k] == ' ') ++k;
      if (k < a.size() && a[k] == ']') {
        ok = true;
        j = k;
        break;
      }
      if (k < a.size() && a[k] == ',') {
        j = k + 1;
        while (j < a.size() && a[j] == ' ') ++j;
        continue;
      }
      break;
    }
    if (!ok) continue;
    for (int v : nums)
      if (seen.insert(v).second) out.push_back(v);
    i = j;
  }
  return out;
}

CitationSplit SplitCitations(std::string_view answer, size_t n_sources) {
  CitationSplit out;
  for (int n : CitationsIn(answer)) {
    if (n >= 1 && static_cast<size_t>(n) <= n_sources) out.cited.push_back(n);
    else out.invalid.push_back(n);
  }
  return out;
}

nlohmann::json AnswerResult::ToJson() const {
  nlohmann::json src = nlohmann::json::array();
  for (const Source& s : sources)
    src.push_back({{"n", s.n}, {"doc_id", s.doc_id}, {"chunk_id", s.chunk_id}, {"source", s.source},
                   {"title", s.title}, {"heading", s.heading}, {"rerank", s.rerank}, {"rrf", s.rrf},
                   {"cited", std::find(cited.begin(), cited.end(), s.n) != cited.end()}});
  nlohmann::json t = nlohmann::json::object();
  for (const StageTiming& st : timings) t[st.stage + "_ms"] = st.ms;
  t["total_ms"] = total_ms;
  nlohmann::json j{{"question", question}, {"queries", queries}, {"answer", answer}, {"citations", src},
                   {"cited", cited}, {"invalid_citations", invalid_citations}, {"timings", t},
                   {"context_tokens", context_tokens}, {"answer_tokens", answer_tokens},
                   {"finish_reason", finish_reason}};
  j["score"] = score >= 0 ? nlohmann::json(score) : nlohmann::json(nullptr);
  return j;
}

Result<AnswerResult> Answer(Store& store, const std::string& collection, std::string_view question,
                            const RagModels& models, const AnswerOptions& options, const AnswerCallback& on_event) {
  const int32_t backend_ctx = options.generator_ctx > 0 ? options.generator_ctx : 4096;
  const ChatStage query(models.query, models.query_backend, models.backend, backend_ctx);
  const ChatStage gen(models.generator, models.generator_backend, models.backend, backend_ctx);
  if (!gen) return Error(StatusCode::kInvalidArgument, "rag: no generator model");
  if (question.find_first_not_of(" \t\r\n") == std::string_view::npos)
    return Error(StatusCode::kInvalidArgument, "rag: empty question");
  if (options.max_answer_tokens <= 0) return Error(StatusCode::kInvalidArgument, "rag: max answer tokens must be positive");
  QM_RETURN_IF_ERROR(options.sampler.Validate());
  const Stopwatch total;
  AnswerResult res;
  res.question = std::string(question);
  const std::string q = Defang(question);
  auto stage_done = [&](const char* stage, double ms) -> Status {
    res.timings.push_back({stage, ms});
    if (on_event) {
      AnswerEvent e;
      e.stage = stage;
      e.ms = ms;
      if (!on_event(e)) return Error(StatusCode::kOutOfRange, "rag: cancelled");
    }
    return Status::Ok();
  };
  QM_ASSIGN_OR_RETURN(CollectionInfo coll, store.GetCollection(collection));

  // 1. Query understanding.
  res.queries.push_back(res.question);
  if (query && options.max_rewrites > 0) {
    Stopwatch sw;
    const std::string user = fmt::format(
        "Write up to {} short search queries, one per line, that would find passages answering the question "
        "below. Reply with the queries only.\n\nQuestion: {}",
        options.max_rewrites, q);
    QM_ASSIGN_OR_RETURN(const int32_t n_prompt, query.PromptTokens(kRewriteSystem, user, false));
    const int32_t room = query.n_ctx() - n_prompt;
    if (room > 8) {
      engine::SamplerOptions greedy;
      greedy.temperature = 0;
      QM_ASSIGN_OR_RETURN(ChatStage::Output out, query.Generate(kRewriteSystem, user, false,
                                                                std::min(24 * options.max_rewrites + 16, room), greedy,
                                                                "", 1.0f, nullptr));
      for (auto& r : ParseRewrites(out.text, res.question, options.max_rewrites)) res.queries.push_back(std::move(r));
    }
    QM_RETURN_IF_ERROR(stage_done("query_understanding", sw.Ms()));
  }

  // 2-3. Retrieval and rerank.
  RetrievalTimings rt;
  Stopwatch sw_ret;
  QM_ASSIGN_OR_RETURN(std::vector<Hit> hits,
                      Retrieve(store, coll, res.queries, models.embedder, models.reranker, options.retrieval, &rt));
  QM_RETURN_IF_ERROR(stage_done("retrieval", sw_ret.Ms() - rt.rerank_ms));
  if (models.reranker) QM_RETURN_IF_ERROR(stage_done("rerank", rt.rerank_ms));

  // 4. Context synthesis: number the passages and pack them into the generator's budget.
  Stopwatch sw_ctx;
  const std::string user_tail = fmt::format("Question: {}", q);
  QM_ASSIGN_OR_RETURN(const int32_t bare, gen.PromptTokens(kAnswerSystem, "Sources:\n\n" + user_tail, options.thinking));
  const int32_t n_ctx = options.generator_ctx > 0 ? std::min(gen.n_ctx(), options.generator_ctx) : gen.n_ctx();
  int32_t budget = n_ctx - bare - options.max_answer_tokens - 8;
  if (options.context_tokens > 0) budget = std::min(budget, options.context_tokens);
  if (budget < 32)
    return Error(StatusCode::kOutOfRange,
                 "rag: the generator's context ({} tokens) leaves no room for sources after the question ({} tokens) "
                 "and the answer ({} tokens)",
                 n_ctx, bare, options.max_answer_tokens);
  std::string sources_text;
  for (const Hit& h : hits) {
    Source s;
    s.n = static_cast<int>(res.sources.size()) + 1;
    s.chunk = h.chunk;
    s.chunk_id = h.record.chunk_id;
    s.doc_id = h.record.doc_id;
    s.source = h.record.source;
    s.title = Defang(h.record.title);
    s.heading = Defang(h.record.heading);
    s.text = Defang(h.record.text);
    s.rerank = h.rerank;
    s.rrf = h.rrf;
    const std::string p = PassageText(s);
    const int32_t t = gen.Count(p);
    if (res.context_tokens + t > budget) break;  // passages are in rank order: stop at the first misfit
    res.context_tokens += t;
    sources_text += p;
    res.sources.push_back(std::move(s));
  }
  QM_RETURN_IF_ERROR(stage_done("context_synthesis", sw_ctx.Ms()));

  // 5. Response generation, streamed.
  Stopwatch sw_gen;
  const std::string prompt_user =
      (res.sources.empty() ? "Sources: (none found)\n\n" : "Sources:\n\n" + sources_text) + user_tail;
  QM_ASSIGN_OR_RETURN(const int32_t n_prompt, gen.PromptTokens(kAnswerSystem, prompt_user, options.thinking));
  bool cancelled = false;
  QM_ASSIGN_OR_RETURN(
      ChatStage::Output out,
      gen.Generate(kAnswerSystem, prompt_user, options.thinking, std::min(options.max_answer_tokens, n_ctx - n_prompt),
                   options.sampler, options.generator_adapter, options.generator_adapter_scale,
                   [&](std::string_view piece) {
                     if (!on_event) return true;
                     AnswerEvent e;
                     e.kind = AnswerEvent::Kind::kText;
                     e.text = piece;
                     cancelled = !on_event(e);
                     return !cancelled;
                   }));
  if (cancelled) return Error(StatusCode::kOutOfRange, "rag: cancelled");
  res.answer = StripThink(out.text);
  res.answer_tokens = out.tokens;
  res.finish_reason = out.finish_reason;
  CitationSplit citations = SplitCitations(res.answer, res.sources.size());
  res.cited = std::move(citations.cited);
  res.invalid_citations = std::move(citations.invalid);
  QM_RETURN_IF_ERROR(stage_done("response_generation", sw_gen.Ms()));

  // 6. Quality scoring: groundedness as P(yes) from the scoring model's yes/no logits.
  if (models.scorer) {
    Stopwatch sw;
    engine::Model& sc = *models.scorer;
    const std::string ans = Defang(res.answer.empty() ? "(no answer)" : res.answer);
    std::string src = sources_text;
    std::vector<int32_t> ids;
    for (int tries = 0; tries < 12; ++tries) {
      const std::string user = fmt::format(
          "Sources:\n\n{}Question: {}\n\nAnswer: {}\n\nIs every claim in the answer supported by the sources? Answer "
          "yes or no.",
          src.empty() ? "(none)\n\n" : src, q, ans);
      QM_ASSIGN_OR_RETURN(ids, ChatTokens(sc, kScoreSystem, user, false));
      if (static_cast<int32_t>(ids.size()) < sc.n_ctx()) break;
      src.resize(src.size() * 3 / 4);  // too long for the scorer: keep the best-ranked part
      while (!src.empty() && (static_cast<unsigned char>(src.back()) & 0xC0) == 0x80) src.pop_back();
    }
    if (static_cast<int32_t>(ids.size()) < sc.n_ctx()) {
      QM_ASSIGN_OR_RETURN(auto scores, sc.RerankScores({ids}));
      res.score = scores.front();
    }
    QM_RETURN_IF_ERROR(stage_done("quality_scoring", sw.Ms()));
  }
  res.total_ms = total.Ms();
  return res;
}

}  // namespace qwenmux::rag
