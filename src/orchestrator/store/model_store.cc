#include "orchestrator/store/model_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/sha256.h"
#include "gguf/gguf.h"

namespace qwenmux::orchestrator {

namespace fs = std::filesystem;

namespace {

// Exclusive flock on <dir>/.lock for the lifetime of the object.
class DirLock {
 public:
  static Result<DirLock> Acquire(const std::string& dir) {
    std::string path = dir + "/.lock";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Error(StatusCode::kIo, "store: cannot open {}: {}", path, std::strerror(errno));
    while (::flock(fd, LOCK_EX) != 0) {
      if (errno != EINTR) {
        ::close(fd);
        return Error(StatusCode::kIo, "store: cannot lock {}: {}", path, std::strerror(errno));
      }
    }
    return DirLock(fd);
  }
  DirLock(DirLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  DirLock& operator=(DirLock&&) = delete;
  ~DirLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the flock
  }

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_;
};

using Json = nlohmann::json;

Result<std::vector<StoredModel>> ReadManifest(const std::string& dir) {
  std::string path = dir + "/manifest.json";
  std::vector<StoredModel> out;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!fs::exists(path)) return out;  // a new store
    return Error(StatusCode::kIo, "store: cannot read {}", path);
  }
  std::stringstream ss;
  ss << in.rdbuf();
  Json j = Json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  auto corrupt = [&](std::string_view why) {
    return Error(StatusCode::kCorrupt, "store: {}: {} (fix or delete the file)", path, why);
  };
  if (j.is_discarded() || !j.is_object()) return corrupt("not a JSON object");
  if (!j.contains("version") || j["version"] != 1) return corrupt("unknown \"version\" (want 1)");
  if (!j.contains("models") || !j["models"].is_array()) return corrupt("no \"models\" list");
  for (const Json& e : j["models"]) {
    if (!e.is_object()) return corrupt("a model entry is not an object");
    StoredModel m;
    auto str = [&](const char* k, std::string* v, bool required) -> bool {
      if (!e.contains(k)) return !required;
      if (!e[k].is_string()) return false;
      *v = e[k].get<std::string>();
      return true;
    };
    if (!str("name", &m.name, true) || !str("sha256", &m.sha256, true) ||
        !str("quantization", &m.quantization, false) || !str("role", &m.role, false) ||
        !str("source", &m.source, false))
      return corrupt("a model entry lacks name/sha256 or has a non-string field");
    if (!IsSha256Hex(m.sha256)) return corrupt(fmt::format("model \"{}\": bad sha256", m.name));
    if (!e.contains("size") || !e["size"].is_number_unsigned())
      return corrupt(fmt::format("model \"{}\": bad size", m.name));
    m.size = e["size"].get<uint64_t>();
    if (e.contains("added") && e["added"].is_number_integer()) m.added_unix = e["added"].get<int64_t>();
    if (e.contains("aliases")) {
      if (!e["aliases"].is_array()) return corrupt(fmt::format("model \"{}\": bad aliases", m.name));
      for (const Json& a : e["aliases"]) {
        if (!a.is_string()) return corrupt(fmt::format("model \"{}\": bad aliases", m.name));
        m.aliases.push_back(a.get<std::string>());
      }
    }
    out.push_back(std::move(m));
  }
  return out;
}

Status WriteManifest(const std::string& dir, const std::vector<StoredModel>& models) {
  Json list = Json::array();
  for (const StoredModel& m : models) {
    list.push_back({{"name", m.name},
                    {"aliases", m.aliases},
                    {"sha256", m.sha256},
                    {"size", m.size},
                    {"quantization", m.quantization},
                    {"role", m.role},
                    {"source", m.source},
                    {"added", m.added_unix}});
  }
  Json j = {{"version", 1}, {"models", list}};
  std::string text = j.dump(2) + "\n";
  std::string path = dir + "/manifest.json";
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Error(StatusCode::kIo, "store: cannot write {}: {}", tmp, std::strerror(errno));
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return Error(StatusCode::kIo, "store: cannot write {}: {}", tmp, std::strerror(e));
    }
    off += static_cast<size_t>(n);
  }
  bool ok = ::fsync(fd) == 0;
  ok = (::close(fd) == 0) && ok;
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return Error(StatusCode::kIo, "store: cannot replace {}: {}", path, std::strerror(e));
  }
  return Status::Ok();
}

bool HasName(const StoredModel& m, std::string_view n) {
  return m.name == n || std::find(m.aliases.begin(), m.aliases.end(), n) != m.aliases.end();
}

}  // namespace

std::string DefaultModelsDir(std::string* why) {
  if (const char* home = std::getenv("QWENMUX_HOME"); home && *home) {
    if (why) *why = "$QWENMUX_HOME/models";
    return std::string(home) + "/models";
  }
  const char* home = std::getenv("HOME");
  if (why) *why = "default ~/.qwenmux/models";
  return std::string(home && *home ? home : ".") + "/.qwenmux/models";
}

Status CheckStoreName(std::string_view name) {
  if (name.empty() || name.size() > 200)
    return Error(StatusCode::kInvalidArgument, "\"{}\": a name must have 1 to 200 characters", name);
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == ':' ||
          c == '/'))
      return Error(StatusCode::kInvalidArgument,
                   "\"{}\": names may use letters, digits and - _ . : /", name);
  }
  if (name.front() == '/' || name.find("..") != std::string_view::npos)
    return Error(StatusCode::kInvalidArgument, "\"{}\": a name may not start with '/' or contain \"..\"", name);
  return Status::Ok();
}

Status CheckGgufFile(const std::string& path) {
  char head[24] = {0};
  size_t n = 0;
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    n = std::fread(head, 1, sizeof head, f);
    std::fclose(f);
  } else {
    return Error(StatusCode::kIo, "cannot open {}: {}", path, std::strerror(errno));
  }
  if (n < 4 || std::memcmp(head, "GGUF", 4) != 0) {
    std::string shown;
    for (size_t i = 0; i < n; ++i) {
      const unsigned char c = static_cast<unsigned char>(head[i]);
      shown += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '.';
    }
    return Error(StatusCode::kCorrupt, "{} is not a GGUF file ({} bytes at the start: \"{}\"; a GGUF file "
                 "starts with \"GGUF\")", path, n, shown);
  }
  Result<gguf::File> f = gguf::File::Open(path);
  if (!f.ok()) return f.status();
  return Status::Ok();
}

Result<ModelStore> ModelStore::Open(const std::string& dir) {
  if (dir.empty()) return Error(StatusCode::kInvalidArgument, "store: empty models directory");
  std::error_code ec;
  fs::create_directories(fs::path(dir) / "blobs", ec);
  if (ec) return Error(StatusCode::kIo, "store: cannot create {}/blobs: {}", dir, ec.message());
  ModelStore s(dir);
  QM_ASSIGN_OR_RETURN(DirLock lock, DirLock::Acquire(dir));
  QM_RETURN_IF_ERROR(ReadManifest(dir).status());  // a corrupt manifest fails at open
  return s;
}

std::string ModelStore::BlobPath(std::string_view sha256) const {
  return fmt::format("{}/blobs/sha256-{}", dir_, sha256);
}
std::string ModelStore::PartialPath(std::string_view sha256) const {
  return BlobPath(sha256) + ".partial";
}

Result<std::vector<StoredModel>> ModelStore::List() const {
  QM_ASSIGN_OR_RETURN(DirLock lock, DirLock::Acquire(dir_));
  return ReadManifest(dir_);
}

Result<StoredModel> ModelStore::Find(std::string_view name) const {
  QM_ASSIGN_OR_RETURN(std::vector<StoredModel> models, List());
  for (const StoredModel& m : models)
    if (HasName(m, name)) return m;
  return Error(StatusCode::kNotFound, "store: no model \"{}\" in {} (see `qwenmux list`)", name, dir_);
}

Status ModelStore::Add(const StoredModel& m) {
  QM_RETURN_IF_ERROR(CheckStoreName(m.name));
  for (const std::string& a : m.aliases) QM_RETURN_IF_ERROR(CheckStoreName(a));
  if (!IsSha256Hex(m.sha256)) return Error(StatusCode::kInvalidArgument, "store: bad sha256 \"{}\"", m.sha256);
  QM_ASSIGN_OR_RETURN(DirLock lock, DirLock::Acquire(dir_));
  std::error_code ec;
  if (fs::file_size(BlobPath(m.sha256), ec) != m.size || ec)
    return Error(StatusCode::kInternal, "store: blob {} missing or of the wrong size", m.sha256);
  QM_ASSIGN_OR_RETURN(std::vector<StoredModel> models, ReadManifest(dir_));
  StoredModel add = m;
  if (add.added_unix == 0) add.added_unix = static_cast<int64_t>(std::time(nullptr));
  for (const StoredModel& o : models) {
    if (o.name == add.name) continue;
    for (const std::string& a : add.aliases)
      if (o.name == a)
        return Error(StatusCode::kInvalidArgument, "store: alias \"{}\" is the name of another model", a);
    if (std::find(add.aliases.begin(), add.aliases.end(), add.name) != add.aliases.end() ||
        std::find(o.aliases.begin(), o.aliases.end(), add.name) != o.aliases.end())
      return Error(StatusCode::kInvalidArgument, "store: \"{}\" is already an alias of \"{}\"", add.name, o.name);
  }
  std::vector<StoredModel> out;
  bool replaced = false;
  for (StoredModel& o : models) {
    if (o.name == add.name) {
      // Keep aliases the user gave earlier.
      for (const std::string& a : o.aliases)
        if (std::find(add.aliases.begin(), add.aliases.end(), a) == add.aliases.end()) add.aliases.push_back(a);
      out.push_back(add);
      replaced = true;
      continue;
    }
    std::erase_if(o.aliases, [&](const std::string& a) {
      return std::find(add.aliases.begin(), add.aliases.end(), a) != add.aliases.end();
    });
    out.push_back(std::move(o));
  }
  if (!replaced) out.push_back(add);
  return WriteManifest(dir_, out);
}

Status ModelStore::Remove(std::string_view name, std::string* what) {
  QM_ASSIGN_OR_RETURN(DirLock lock, DirLock::Acquire(dir_));
  QM_ASSIGN_OR_RETURN(std::vector<StoredModel> models, ReadManifest(dir_));
  for (StoredModel& m : models) {
    auto it = std::find(m.aliases.begin(), m.aliases.end(), name);
    if (it != m.aliases.end()) {
      m.aliases.erase(it);
      if (what) *what = fmt::format("removed alias \"{}\" of {}", name, m.name);
      return WriteManifest(dir_, models);
    }
  }
  auto it = std::find_if(models.begin(), models.end(), [&](const StoredModel& m) { return m.name == name; });
  if (it == models.end())
    return Error(StatusCode::kNotFound, "store: no model \"{}\" in {} (see `qwenmux list`)", name, dir_);
  StoredModel gone = *it;
  models.erase(it);
  QM_RETURN_IF_ERROR(WriteManifest(dir_, models));  // the manifest first: never a dangling name
  bool shared = std::any_of(models.begin(), models.end(),
                            [&](const StoredModel& m) { return m.sha256 == gone.sha256; });
  if (!shared && ::unlink(BlobPath(gone.sha256).c_str()) != 0 && errno != ENOENT)
    return Error(StatusCode::kIo, "store: removed {} but could not delete its blob: {}", gone.name,
                 std::strerror(errno));
  if (what)
    *what = fmt::format("removed {} ({}){}", gone.name, gone.sha256.substr(0, 12),
                        shared ? "; its blob stays: another name uses it" : "");
  return Status::Ok();
}

Status ModelStore::Tag(std::string_view name, std::string_view alias) {
  QM_RETURN_IF_ERROR(CheckStoreName(alias));
  QM_ASSIGN_OR_RETURN(DirLock lock, DirLock::Acquire(dir_));
  QM_ASSIGN_OR_RETURN(std::vector<StoredModel> models, ReadManifest(dir_));
  auto target = std::find_if(models.begin(), models.end(), [&](const StoredModel& m) { return HasName(m, name); });
  if (target == models.end())
    return Error(StatusCode::kNotFound, "store: no model \"{}\" in {} (see `qwenmux list`)", name, dir_);
  for (StoredModel& m : models) {
    if (m.name == alias)
      return Error(StatusCode::kInvalidArgument, "store: \"{}\" is the name of a model; pick another alias", alias);
    if (&m != &*target) std::erase(m.aliases, std::string(alias));
  }
  if (std::find(target->aliases.begin(), target->aliases.end(), alias) == target->aliases.end())
    target->aliases.emplace_back(alias);
  return WriteManifest(dir_, models);
}

}  // namespace qwenmux::orchestrator
