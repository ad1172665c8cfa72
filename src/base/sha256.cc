#include "base/sha256.h"

#include <cstdio>
#include <vector>

#include <openssl/evp.h>

namespace qwenmux {

struct Sha256::Impl {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) { Reset(); }
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::Reset() { EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr); }

void Sha256::Update(const void* data, size_t n) {
  if (n) EVP_DigestUpdate(impl_->ctx, data, n);
}

std::string Sha256::HexDigest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(impl_->ctx, md, &len);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  Reset();
  return out;
}

std::string Sha256Hex(const void* data, size_t n) {
  Sha256 h;
  h.Update(data, n);
  return h.HexDigest();
}

Result<std::string> Sha256File(const std::string& path, uint64_t limit, Sha256* into) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return Error(StatusCode::kNotFound, "sha256: cannot open {}", path);
  Sha256 local;
  Sha256* h = into ? into : &local;
  std::vector<char> buf(1 << 20);
  uint64_t left = limit;
  while (left > 0) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), left));
    size_t got = std::fread(buf.data(), 1, want, f);
    h->Update(buf.data(), got);
    left -= got;
    if (got < want) break;
  }
  bool err = std::ferror(f);
  std::fclose(f);
  if (err) return Error(StatusCode::kIo, "sha256: read error in {}", path);
  return into ? std::string() : local.HexDigest();
}

bool IsSha256Hex(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace qwenmux
