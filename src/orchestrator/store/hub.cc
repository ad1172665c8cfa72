#include "orchestrator/store/hub.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>

#include <curl/curl.h>

#include "base/sha256.h"

namespace qwenmux::orchestrator {

namespace {

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlHandle {
  CURL* h = curl_easy_init();
  ~CurlHandle() {
    if (h) curl_easy_cleanup(h);
  }
};

// Headers of the last response in a chain (a new status line clears them); names lower-cased.
struct Headers {
  std::map<std::string, std::string> map;
  std::string Get(const std::string& name) const {
    auto it = map.find(name);
    return it == map.end() ? "" : it->second;
  }
};

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* h = static_cast<Headers*>(user);
  std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {
    h->map.clear();
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  std::string name(line.substr(0, colon));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' '))
    value.remove_suffix(1);
  h->map[name] = std::string(value);
  return size * n;
}

bool ParseU64(std::string_view s, uint64_t* v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size();
}

// `"abc"` or `W/"abc"` -> abc.
std::string StripEtag(std::string s) {
  if (s.starts_with("W/")) s.erase(0, 2);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

std::string Origin(const std::string& url) {
  size_t scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  size_t slash = url.find('/', scheme + 3);
  return slash == std::string::npos ? url : url.substr(0, slash);
}

void CommonOptions(CURL* h, const HubOptions& opt, Headers* headers) {
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_USERAGENT, "qwenmux/0.1");
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, opt.connect_timeout_s);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, opt.stall_timeout_s);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, headers);
}

Status CurlError(CURLcode rc, const std::string& url, const char* errbuf) {
  std::string detail = errbuf && *errbuf ? errbuf : curl_easy_strerror(rc);
  if (rc == CURLE_TOO_MANY_REDIRECTS)
    return Error(StatusCode::kIo, "hub: {}: too many redirects (a redirect loop?): {}", url, detail);
  if (rc == CURLE_OPERATION_TIMEDOUT)
    return Error(StatusCode::kIo, "hub: {}: transfer stalled or timed out: {}", url, detail);
  if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST)
    return Error(StatusCode::kIo, "hub: {}: cannot connect: {}", url, detail);
  return Error(StatusCode::kIo, "hub: {}: {}", url, detail);
}

bool SafePart(std::string_view p) {
  if (p.empty() || p == "." || p == "..") return false;
  for (char c : p) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '+'))
      return false;
  }
  return true;
}

}  // namespace

Status CheckRepoAndFile(std::string_view repo, std::string_view file) {
  size_t slash = repo.find('/');
  if (slash == std::string_view::npos || repo.find('/', slash + 1) != std::string_view::npos ||
      !SafePart(repo.substr(0, slash)) || !SafePart(repo.substr(slash + 1)))
    return Error(StatusCode::kInvalidArgument,
                 "hub: \"{}\" is not a repository name (owner/name with letters, digits, - _ .)", repo);
  if (file.empty() || file.front() == '/')
    return Error(StatusCode::kInvalidArgument, "hub: file \"{}\": an absolute or empty path", file);
  size_t start = 0;
  while (start <= file.size()) {
    size_t end = file.find('/', start);
    if (end == std::string_view::npos) end = file.size();
    std::string_view part = file.substr(start, end - start);
    if (!SafePart(part))
      return Error(StatusCode::kInvalidArgument,
                   "hub: file \"{}\": part \"{}\" is not allowed (no \"..\", \".\", empty parts or "
                   "characters other than letters, digits, - _ . +)", file, part);
    start = end + 1;
  }
  return Status::Ok();
}

Result<HubFileInfo> HeadHubFile(const HubOptions& opt, std::string_view repo, std::string_view file) {
  QM_RETURN_IF_ERROR(CheckRepoAndFile(repo, file));
  if (!(opt.base_url.starts_with("http://") || opt.base_url.starts_with("https://")))
    return Error(StatusCode::kInvalidArgument, "hub: --hub-url \"{}\" is not http(s)", opt.base_url);
  GlobalInit();
  std::string base = opt.base_url;
  while (base.ends_with('/')) base.pop_back();
  HubFileInfo info;
  info.url = fmt::format("{}/{}/resolve/{}/{}", base, repo, opt.revision, file);
  std::string url = info.url;
  for (int hop = 0; hop <= opt.max_redirects; ++hop) {
    CurlHandle c;
    if (!c.h) return Error(StatusCode::kInternal, "hub: curl_easy_init failed");
    Headers headers;
    char errbuf[CURL_ERROR_SIZE] = {0};
    CommonOptions(c.h, opt, &headers);
    curl_easy_setopt(c.h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c.h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c.h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c.h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c.h, CURLOPT_TIMEOUT, opt.connect_timeout_s * 2);
    CURLcode rc = curl_easy_perform(c.h);
    if (rc != CURLE_OK) return CurlError(rc, url, errbuf);
    long code = 0;
    curl_easy_getinfo(c.h, CURLINFO_RESPONSE_CODE, &code);
    if (code == 404)
      return Error(StatusCode::kNotFound, "hub: {}/{} not found (HTTP 404 from {})", repo, file, url);
    if (code == 401 || code == 403)
      return Error(StatusCode::kNotFound, "hub: {}/{}: access denied (HTTP {}; gated or private repo?)",
                   repo, file, code);
    std::string etag = headers.Get("x-linked-etag");
    std::string size = headers.Get("x-linked-size");
    if (code >= 300 && code < 400 && etag.empty()) {
      std::string loc = headers.Get("location");
      if (!loc.starts_with("/"))
        return Error(StatusCode::kCorrupt, "hub: {}: redirect without X-Linked-Etag (no sha256 to verify)", url);
      url = Origin(url) + loc;  // a renamed repo: follow the hub's relative redirect
      continue;
    }
    if (code == 200) {
      if (etag.empty()) etag = headers.Get("etag");
      if (size.empty()) size = headers.Get("content-length");
    } else if (code < 300 || code >= 400) {
      return Error(StatusCode::kIo, "hub: {}: unexpected HTTP {}", url, code);
    }
    info.sha256 = StripEtag(etag);
    for (char& ch : info.sha256) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (!IsSha256Hex(info.sha256))
      return Error(StatusCode::kCorrupt,
                   "hub: {}: the hub published no sha256 for this file (X-Linked-Etag \"{}\"); refusing "
                   "a download that cannot be verified", url, etag);
    if (!ParseU64(size, &info.size) || info.size == 0)
      return Error(StatusCode::kCorrupt, "hub: {}: bad or missing X-Linked-Size \"{}\"", url, size);
    return info;
  }
  return Error(StatusCode::kIo, "hub: {}: too many redirects (a redirect loop?)", info.url);
}

namespace {

struct Transfer {
  CURL* h = nullptr;
  FILE* f = nullptr;
  Sha256* hash = nullptr;
  const Headers* headers = nullptr;
  uint64_t expected = 0;
  uint64_t offset = 0;        // bytes in the file
  uint64_t requested_from = 0;
  uint64_t received = 0;
  bool started = false;
  bool restarted = false;     // the server ignored Range: started from 0
  bool delete_partial = false;
  Status error;
  const HubOptions* opt = nullptr;
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t bytes = size * n;
  if (!t->started) {
    t->started = true;
    long code = 0;
    curl_easy_getinfo(t->h, CURLINFO_RESPONSE_CODE, &code);
    if (code == 206) {
      std::string range = t->headers->Get("content-range");
      std::string want = fmt::format("bytes {}-", t->requested_from);
      if (!range.starts_with(want)) {
        t->error = Error(StatusCode::kCorrupt, "hub: asked for {}..., server sent Content-Range \"{}\"",
                         t->requested_from, range);
        t->delete_partial = true;
        return 0;
      }
    } else if (code == 200) {
      if (t->offset > 0) {  // Range ignored: start over
        if (std::fflush(t->f) != 0 || ::ftruncate(fileno(t->f), 0) != 0 || std::fseek(t->f, 0, SEEK_SET) != 0) {
          t->error = Error(StatusCode::kIo, "hub: cannot truncate the partial download");
          return 0;
        }
        t->hash->Reset();
        t->offset = 0;
        t->restarted = true;
      }
    } else {
      t->error = Error(StatusCode::kIo, "hub: HTTP {} while downloading", code);
      return 0;
    }
    curl_off_t cl = -1;
    curl_easy_getinfo(t->h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    if (cl >= 0 && t->offset + static_cast<uint64_t>(cl) > t->expected) {
      t->error = Error(StatusCode::kCorrupt,
                       "hub: the server announces {} more bytes after {}, beyond the {} bytes the hub "
                       "published for this file", static_cast<uint64_t>(cl), t->offset, t->expected);
      t->delete_partial = true;
      return 0;
    }
  }
  if (t->offset + bytes > t->expected) {
    t->error = Error(StatusCode::kCorrupt, "hub: the server sent more than the {} bytes published for this file",
                     t->expected);
    t->delete_partial = true;
    return 0;
  }
  if (std::fwrite(data, 1, bytes, t->f) != bytes) {
    t->error = Error(StatusCode::kIo, "hub: write error: {}", std::strerror(errno));
    return 0;
  }
  t->hash->Update(data, bytes);
  t->offset += bytes;
  t->received += bytes;
  return bytes;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (t->opt->on_progress) t->opt->on_progress(t->offset, t->expected);
  return 0;
}

}  // namespace

Result<DownloadStats> DownloadVerified(const HubOptions& opt, const HubFileInfo& info,
                                       const std::string& partial_path, const std::string& final_path,
                                       const std::function<Status(const std::string&)>& check_file) {
  GlobalInit();
  DownloadStats stats;
  struct stat st {};
  uint64_t existing = 0;
  if (::stat(partial_path.c_str(), &st) == 0) existing = static_cast<uint64_t>(st.st_size);
  if (existing > info.size) {
    ::unlink(partial_path.c_str());
    existing = 0;
  }
  Sha256 hash;
  if (existing > 0) QM_RETURN_IF_ERROR(Sha256File(partial_path, existing, &hash).status());
  stats.resumed_from = existing;

  if (existing < info.size) {
    FILE* f = std::fopen(partial_path.c_str(), existing ? "ab" : "wb");
    if (!f) return Error(StatusCode::kIo, "hub: cannot write {}: {}", partial_path, std::strerror(errno));
    CurlHandle c;
    Headers headers;
    Transfer t;
    t.h = c.h;
    t.f = f;
    t.hash = &hash;
    t.headers = &headers;
    t.expected = info.size;
    t.offset = existing;
    t.requested_from = existing;
    t.opt = &opt;
    char errbuf[CURL_ERROR_SIZE] = {0};
    CommonOptions(c.h, opt, &headers);
    std::string range = fmt::format("{}-", existing);
    curl_easy_setopt(c.h, CURLOPT_URL, info.url.c_str());
    curl_easy_setopt(c.h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c.h, CURLOPT_MAXREDIRS, static_cast<long>(opt.max_redirects));
    if (existing > 0) curl_easy_setopt(c.h, CURLOPT_RANGE, range.c_str());
    curl_easy_setopt(c.h, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(c.h, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(c.h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c.h, CURLOPT_XFERINFOFUNCTION, OnProgress);
    curl_easy_setopt(c.h, CURLOPT_XFERINFODATA, &t);
    curl_easy_setopt(c.h, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(c.h);
    bool close_ok = std::fclose(f) == 0;
    stats.downloaded = t.received;
    if (t.restarted) stats.resumed_from = 0;
    if (!t.error.ok()) {
      if (t.delete_partial) ::unlink(partial_path.c_str());
      return t.error.WithContext(info.url);
    }
    if (rc != CURLE_OK) {
      Status s = CurlError(rc, info.url, errbuf);
      if (t.offset > 0)
        return Status(s.code(), fmt::format("{}; {} of {} bytes are kept in {}: run pull again to resume",
                                            s.message(), t.offset, info.size, partial_path));
      return s;
    }
    if (!close_ok) return Error(StatusCode::kIo, "hub: cannot write {}", partial_path);
    long code = 0;
    curl_easy_getinfo(c.h, CURLINFO_RESPONSE_CODE, &code);
    if (code == 416) {
      ::unlink(partial_path.c_str());
      return Error(StatusCode::kIo, "hub: {}: the server refused to resume at byte {} (HTTP 416); the "
                   "partial download was deleted, run pull again", info.url, existing);
    }
    if (code != 200 && code != 206)
      return Error(StatusCode::kIo, "hub: {}: HTTP {}", info.url, code);
    if (t.offset != info.size)
      return Error(StatusCode::kIo, "hub: {}: the transfer ended at {} of {} bytes; they are kept in {}: "
                   "run pull again to resume", info.url, t.offset, info.size, partial_path);
  }
  std::string got = hash.HexDigest();
  if (got != info.sha256) {
    ::unlink(partial_path.c_str());
    return Error(StatusCode::kCorrupt,
                 "hub: {}: SHA-256 mismatch: the file has {}, the hub published {}; the download was "
                 "deleted", info.url, got, info.sha256);
  }
  if (check_file) {
    if (Status s = check_file(partial_path); !s.ok()) {
      ::unlink(partial_path.c_str());
      return Status(s.code(), fmt::format("hub: {}: {}; the download was deleted", info.url, s.message()));
    }
  }
  if (::rename(partial_path.c_str(), final_path.c_str()) != 0)
    return Error(StatusCode::kIo, "hub: cannot rename {} to {}: {}", partial_path, final_path,
                 std::strerror(errno));
  return stats;
}

}  // namespace qwenmux::orchestrator
