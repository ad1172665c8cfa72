#include "rag/ingest.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "base/mapped_file.h"
#include "base/sha256.h"
#include "rag/reader.h"

namespace qwenmux::rag {

namespace fs = std::filesystem;

namespace {

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::string DocumentId(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  const std::string s = ec ? path : p.string();
  return Sha256Hex(s.data(), s.size()).substr(0, 16);
}

std::vector<std::string> ExpandPaths(std::span<const std::string> paths, std::vector<std::string>* missing) {
  std::vector<std::string> out;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> found;
      for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_regular_file(ec) && !FormatOfPath(it->path().string()).empty()) found.push_back(it->path().string());
      }
      std::sort(found.begin(), found.end());
      out.insert(out.end(), found.begin(), found.end());
    } else if (fs::exists(p, ec)) {
      out.push_back(p);
    } else if (missing) {
      missing->push_back(p);
    }
  }
  return out;
}

Result<IngestSummary> Ingest(Store& store, Embedder& embedder, std::span<const std::string> paths,
                             const IngestOptions& options, const IngestCallback& on_event) {
  QM_RETURN_IF_ERROR(options.chunk.Validate());
  const auto t0 = std::chrono::steady_clock::now();
  QM_ASSIGN_OR_RETURN(CollectionInfo coll, store.OpenCollection(options.collection, embedder.id(), embedder.dim()));
  QM_RETURN_IF_ERROR(store.Vectors(coll).status());  // load + repair now; kept current while we add

  IngestSummary sum;
  std::vector<std::string> missing;
  const std::vector<std::string> files = ExpandPaths(paths, &missing);
  const size_t total = files.size() + missing.size();
  size_t index = 0;
  auto report = [&](IngestEvent e) {
    e.index = ++index;
    e.total = total;
    if (e.status == "failed") {
      ++sum.failed;
      sum.failures.push_back(e);
    }
    if (on_event) on_event(e);
  };
  for (const std::string& m : missing) {
    ++sum.files;
    IngestEvent ev;
    ev.status = "failed";
    ev.path = m;
    ev.error = fmt::format("{}: no such file or directory", m);
    report(ev);
  }
  const TokenCounter count = [&](std::string_view s) { return embedder.CountTokens(s); };
  auto last_save = std::chrono::steady_clock::now();

  for (const std::string& path : files) {
    ++sum.files;
    IngestEvent ev;
    ev.path = path;
    ev.doc_id = DocumentId(path);
    auto fail = [&](const Status& s) {
      ev.status = "failed";
      ev.error = s.ToString();
      report(ev);
    };
    const std::string format = FormatOfPath(path);
    if (format.empty()) {
      fail(Error(StatusCode::kUnsupported, "{}: not a .txt, .md, .html or .pdf file", path));
      continue;
    }
    auto bytes = ReadFileToString(path);
    if (!bytes.ok()) {
      fail(bytes.status());
      continue;
    }
    DocumentRecord doc;
    doc.doc_id = ev.doc_id;
    doc.source = path;
    doc.format = format;
    doc.bytes = static_cast<int64_t>(bytes->size());
    doc.content_hash = Sha256Hex(bytes->data(), bytes->size());
    QM_ASSIGN_OR_RETURN(auto old, store.FindDocument(coll, doc.doc_id));
    if (old && old->content_hash == doc.content_hash) {
      ++sum.unchanged;
      ev.status = "unchanged";
      ev.chunks = old->n_chunks;
      report(ev);
      continue;
    }
    auto parsed = ParseDocument(*bytes, format, path);
    if (!parsed.ok()) {
      fail(parsed.status());
      continue;
    }
    doc.title = parsed->title;
    std::vector<Chunk> chunks = ChunkDocument(*parsed, options.chunk, count);
    if (chunks.empty()) {
      // An empty file (or one with only whitespace or markup) is not a document: report it,
      // store nothing, count it apart from the documents.
      ++sum.skipped;
      ev.status = "skipped";
      ev.error = "no text in the document (empty file)";
      report(ev);
      continue;
    }
    std::vector<std::string> texts;
    texts.reserve(chunks.size());
    for (const Chunk& c : chunks) texts.push_back(ChunkEmbedText(c.heading, c.text));
    const auto te = std::chrono::steady_clock::now();
    auto vecs = embedder.EmbedDocuments(texts, options.embed_batch);
    sum.embed_seconds += SecondsSince(te);
    if (!vecs.ok()) {
      fail(vecs.status().WithContext(path));
      continue;
    }
    std::vector<NewChunk> rows(chunks.size());
    for (size_t i = 0; i < chunks.size(); ++i) {
      rows[i] = {std::move(chunks[i].heading), std::move(chunks[i].text), chunks[i].n_tokens, std::move((*vecs)[i])};
      sum.tokens += rows[i].n_tokens;
    }
    // A store error (disk full, locked database) stops the batch: later files would fail alike.
    QM_RETURN_IF_ERROR(store.PutDocument(coll, doc, rows).status());
    ev.status = old ? "replaced" : "added";
    ev.chunks = static_cast<int64_t>(rows.size());
    (old ? sum.replaced : sum.added) += 1;
    sum.chunks += ev.chunks;
    report(ev);
    if (SecondsSince(last_save) >= options.save_every_seconds) {
      QM_RETURN_IF_ERROR(store.Flush());
      last_save = std::chrono::steady_clock::now();
    }
  }
  QM_RETURN_IF_ERROR(store.Flush());
  sum.seconds = SecondsSince(t0);
  return sum;
}

}  // namespace qwenmux::rag
