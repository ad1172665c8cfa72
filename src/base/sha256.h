// Streaming SHA-256 (OpenSSL EVP): content hashes of model blobs, documents and pipeline inputs.
// Built only where OpenSSL is found (every build with the orchestrator). Thread-safety: one object
// per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"

namespace qwenmux {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;

  void Update(const void* data, size_t n);
  std::string HexDigest();  // finishes; the object is reset afterwards
  void Reset();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// SHA-256 of a byte string / of the first `limit` bytes of a file (all of it by default).
std::string Sha256Hex(const void* data, size_t n);
Result<std::string> Sha256File(const std::string& path, uint64_t limit = UINT64_MAX,
                               Sha256* into = nullptr);

// Whether `s` is 64 lower-case hex digits.
bool IsSha256Hex(std::string_view s);

}  // namespace qwenmux
