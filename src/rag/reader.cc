#include "rag/reader.h"

#include <cmark.h>
#include <gumbo.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <memory>
#include <mutex>

#include <poppler/cpp/poppler-document.h>
#include <poppler/cpp/poppler-global.h>
#include <poppler/cpp/poppler-page.h>

#include "base/mapped_file.h"

namespace qwenmux::rag {

namespace {

// Collapses runs of whitespace to one space and trims.
std::string Normalize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool space = false;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      space = !out.empty();
    } else {
      if (space) out += ' ';
      space = false;
      out += c;
    }
  }
  return out;
}

void AddBlock(ParsedDocument* d, int level, std::string_view text) {
  std::string t = Normalize(text);
  if (!t.empty()) d->blocks.push_back({level, std::move(t)});
}

std::string StemOf(std::string_view name) { return std::filesystem::path(std::string(name)).stem().string(); }

void SetTitle(ParsedDocument* d, std::string_view name) {
  if (!d->title.empty()) return;
  int best = 7;
  for (const Block& b : d->blocks)
    if (b.heading_level > 0 && b.heading_level < best) best = b.heading_level, d->title = b.text;
  if (d->title.empty()) d->title = StemOf(name);
}

// Paragraphs are separated by blank lines; single newlines are soft.
void SplitParagraphs(std::string_view text, ParsedDocument* d) {
  size_t start = 0;
  while (start < text.size()) {
    size_t end = start;
    // find a blank line: "\n" followed by optional spaces and "\n"
    size_t next = text.size();
    for (size_t i = start; i < text.size(); ++i) {
      if (text[i] != '\n') continue;
      size_t j = i + 1;
      while (j < text.size() && (text[j] == ' ' || text[j] == '\t' || text[j] == '\r')) ++j;
      if (j < text.size() && text[j] == '\n') {
        end = i;
        next = j + 1;
        break;
      }
    }
    if (next == text.size()) end = text.size();
    AddBlock(d, 0, text.substr(start, end - start));
    start = next;
  }
}

// --- Markdown (cmark) ---

void InlineText(cmark_node* n, std::string* out) {
  for (cmark_node* c = cmark_node_first_child(n); c; c = cmark_node_next(c)) {
    switch (cmark_node_get_type(c)) {
      case CMARK_NODE_TEXT:
      case CMARK_NODE_CODE:
      case CMARK_NODE_HTML_INLINE:
        if (const char* l = cmark_node_get_literal(c)) *out += l;
        break;
      case CMARK_NODE_SOFTBREAK:
      case CMARK_NODE_LINEBREAK:
        *out += ' ';
        break;
      default:
        InlineText(c, out);
    }
  }
}

Result<ParsedDocument> ParseMarkdown(std::string_view bytes) {
  ParsedDocument d;
  std::unique_ptr<cmark_node, void (*)(cmark_node*)> root(
      cmark_parse_document(bytes.data(), bytes.size(), CMARK_OPT_DEFAULT), cmark_node_free);
  if (!root) return Error(StatusCode::kInternal, "markdown parser failed");
  std::unique_ptr<cmark_iter, void (*)(cmark_iter*)> it(cmark_iter_new(root.get()), cmark_iter_free);
  for (cmark_event_type ev; (ev = cmark_iter_next(it.get())) != CMARK_EVENT_DONE;) {
    if (ev != CMARK_EVENT_ENTER) continue;
    cmark_node* n = cmark_iter_get_node(it.get());
    switch (cmark_node_get_type(n)) {
      case CMARK_NODE_HEADING:
      case CMARK_NODE_PARAGRAPH: {
        std::string text;
        InlineText(n, &text);
        const bool heading = cmark_node_get_type(n) == CMARK_NODE_HEADING;
        AddBlock(&d, heading ? std::clamp(cmark_node_get_heading_level(n), 1, 6) : 0, text);
        break;
      }
      case CMARK_NODE_CODE_BLOCK:
      case CMARK_NODE_HTML_BLOCK:
        if (const char* l = cmark_node_get_literal(n)) AddBlock(&d, 0, l);
        break;
      default:
        break;
    }
  }
  return d;
}

// --- HTML (gumbo) ---

bool IsBlockTag(GumboTag t) {
  switch (t) {
    case GUMBO_TAG_P: case GUMBO_TAG_DIV: case GUMBO_TAG_LI: case GUMBO_TAG_UL: case GUMBO_TAG_OL:
    case GUMBO_TAG_PRE: case GUMBO_TAG_BLOCKQUOTE: case GUMBO_TAG_TD: case GUMBO_TAG_TH: case GUMBO_TAG_TR:
    case GUMBO_TAG_TABLE: case GUMBO_TAG_DD: case GUMBO_TAG_DT: case GUMBO_TAG_SECTION: case GUMBO_TAG_ARTICLE:
    case GUMBO_TAG_HEADER: case GUMBO_TAG_FOOTER: case GUMBO_TAG_NAV: case GUMBO_TAG_ASIDE: case GUMBO_TAG_MAIN:
    case GUMBO_TAG_BR: case GUMBO_TAG_HR: case GUMBO_TAG_FIGURE: case GUMBO_TAG_FIGCAPTION: case GUMBO_TAG_BODY:
      return true;
    default:
      return false;
  }
}

int HeadingLevel(GumboTag t) {
  switch (t) {
    case GUMBO_TAG_H1: return 1;
    case GUMBO_TAG_H2: return 2;
    case GUMBO_TAG_H3: return 3;
    case GUMBO_TAG_H4: return 4;
    case GUMBO_TAG_H5: return 5;
    case GUMBO_TAG_H6: return 6;
    default: return 0;
  }
}

struct HtmlWalker {
  ParsedDocument* d;
  std::string text;  // the paragraph being gathered
  std::string title;

  void Flush(int level = 0) {
    AddBlock(d, level, text);
    text.clear();
  }
  void Walk(const GumboNode* n, int depth) {
    if (depth > 512) return;  // absurd nesting: ignore the rest of this branch
    if (n->type == GUMBO_NODE_TEXT || n->type == GUMBO_NODE_WHITESPACE || n->type == GUMBO_NODE_CDATA) {
      text += n->v.text.text;
      return;
    }
    if (n->type != GUMBO_NODE_ELEMENT && n->type != GUMBO_NODE_TEMPLATE) return;
    const GumboTag tag = n->v.element.tag;
    if (tag == GUMBO_TAG_SCRIPT || tag == GUMBO_TAG_STYLE || tag == GUMBO_TAG_NOSCRIPT || tag == GUMBO_TAG_TEMPLATE)
      return;
    if (tag == GUMBO_TAG_TITLE) {
      std::string saved = std::move(text);
      text.clear();
      WalkChildren(n, depth);
      title = Normalize(text);
      text = std::move(saved);
      return;
    }
    const int level = HeadingLevel(tag);
    if (level > 0 || IsBlockTag(tag)) Flush();
    WalkChildren(n, depth);
    if (level > 0) {
      Flush(level);
    } else if (IsBlockTag(tag)) {
      Flush();
    } else {
      text += ' ';  // inline elements: keep words apart ("<b>a</b><i>b</i>" stays two words)
    }
  }
  void WalkChildren(const GumboNode* n, int depth) {
    const GumboVector& ch = n->v.element.children;
    for (unsigned i = 0; i < ch.length; ++i) Walk(static_cast<const GumboNode*>(ch.data[i]), depth + 1);
  }
};

Result<ParsedDocument> ParseHtml(std::string_view bytes) {
  ParsedDocument d;
  GumboOptions options = kGumboDefaultOptions;
  options.max_errors = 0;
  GumboOutput* out = gumbo_parse_with_options(&options, bytes.data(), bytes.size());
  if (!out) return Error(StatusCode::kInternal, "HTML parser failed");
  HtmlWalker w{&d, {}, {}};
  w.Walk(out->root, 0);
  w.Flush();
  gumbo_destroy_output(&options, out);
  d.title = w.title;
  return d;
}

// --- PDF (poppler-cpp) ---

void QuietPoppler(const std::string&, void*) {}

std::string Utf8(const poppler::ustring& s) {
  const poppler::byte_array b = s.to_utf8();
  return std::string(b.begin(), b.end());
}

Result<ParsedDocument> ParsePdf(std::string_view bytes) {
  static std::once_flag once;
  std::call_once(once, [] { poppler::set_debug_error_function(QuietPoppler, nullptr); });
  if (bytes.size() > static_cast<size_t>(INT32_MAX)) return Error(StatusCode::kUnsupported, "PDF larger than 2 GiB");
  ParsedDocument d;
  try {
    std::unique_ptr<poppler::document> doc(
        poppler::document::load_from_raw_data(bytes.data(), static_cast<int>(bytes.size())));
    if (!doc) return Error(StatusCode::kCorrupt, "not a readable PDF");
    if (doc->is_locked()) return Error(StatusCode::kUnsupported, "the PDF is encrypted");
    d.title = Normalize(Utf8(doc->get_title()));
    for (int p = 0; p < doc->pages(); ++p) {
      std::unique_ptr<poppler::page> page(doc->create_page(p));
      if (!page) continue;
      const std::string text = Utf8(page->text());
      if (!IsTextUtf8(text)) continue;
      SplitParagraphs(text, &d);
    }
  } catch (const std::exception& e) {
    return Error(StatusCode::kCorrupt, "PDF: {}", e.what());
  }
  return d;
}

}  // namespace

bool IsTextUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c == 0) return false;
    if (c < 0x80) { ++i; continue; }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07;
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

std::string FormatOfPath(std::string_view path) {
  std::string ext = std::filesystem::path(std::string(path)).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext == ".txt" || ext == ".text") return "txt";
  if (ext == ".md" || ext == ".markdown") return "md";
  if (ext == ".html" || ext == ".htm" || ext == ".xhtml") return "html";
  if (ext == ".pdf") return "pdf";
  return "";
}

size_t CountControlBytes(std::string_view s) {
  size_t n = 0;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v') || c == 0x7f) ++n;
  }
  return n;
}

Result<ParsedDocument> ParseDocument(std::string_view bytes, std::string_view format, std::string_view name) {
  Result<ParsedDocument> r = Error(StatusCode::kUnsupported, "unknown format \"{}\"", format);
  if (format == "pdf") {
    r = ParsePdf(bytes);
  } else if (format == "txt" || format == "md" || format == "html") {
    // Text whose bytes are more than kMaxControlShare control characters (other than tab, line
    // and page breaks) is binary data that happens to be valid UTF-8 (2,048 x 0x1C used to be
    // "added" with 8 chunks).
    const size_t control = CountControlBytes(bytes);
    if (!IsTextUtf8(bytes)) {
      r = Error(StatusCode::kCorrupt, "not UTF-8 text (binary data or another encoding)");
    } else if (static_cast<double>(control) > kMaxControlShare * static_cast<double>(bytes.size())) {
      r = Error(StatusCode::kCorrupt, "binary data, not text: {} of {} bytes are control characters", control,
                bytes.size());
    } else if (format == "txt") {
      ParsedDocument d;
      SplitParagraphs(bytes, &d);
      r = std::move(d);
    } else if (format == "md") {
      r = ParseMarkdown(bytes);
    } else {
      r = ParseHtml(bytes);
    }
  }
  if (!r.ok()) return r.status().WithContext(name);
  r->format = std::string(format);
  SetTitle(&r.value(), name);
  return r;
}

Result<ParsedDocument> ReadDocument(const std::string& path) {
  const std::string format = FormatOfPath(path);
  if (format.empty()) return Error(StatusCode::kUnsupported, "{}: not a .txt, .md, .html or .pdf file", path);
  std::error_code ec;
  if (std::filesystem::file_size(path, ec) == 0 && !ec) {
    ParsedDocument d;
    d.format = format;
    SetTitle(&d, path);
    return d;
  }
  QM_ASSIGN_OR_RETURN(MappedFile f, MappedFile::Open(path));
  return ParseDocument(std::string_view(reinterpret_cast<const char*>(f.data()), f.size()), format, path);
}

}  // namespace qwenmux::rag
