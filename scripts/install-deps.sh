#!/usr/bin/env bash
# Installs every Debian 12 package the build, the tests, the fuzzer and the benchmarks need.
# Used by the README's set-up commands and by .ci/run, so the list lives in one place.
set -euo pipefail
PACKAGES=(
  build-essential g++ cmake ninja-build ccache pkg-config git
  clang libclang-rt-14-dev llvm            # libFuzzer target, sanitizer runtimes
  libhwy-dev                               # portable SIMD (x86 AVX2/AVX-512, ARM NEON)
  nlohmann-json3-dev                       # JSON (refs, --json output)
  libcli11-dev                             # command-line parsing
  libfmt-dev                               # formatting
  libutf8proc-dev                          # Unicode NFC + categories for the tokenizer
  libyaml-cpp-dev                          # qwenmux.yaml configuration
  libcurl4-openssl-dev libssl-dev          # model downloads (HTTP), SHA-256 (OpenSSL EVP)
  curl                                     # scripts/run.sh smoke request
  libgtest-dev libgmock-dev googletest     # tests
  libbenchmark-dev                         # micro-benchmarks
  prometheus-cpp-dev                       # metrics registry, Prometheus text format
  python3 python3-jsonschema python3-yaml # test helpers: JSON Schema validator, YAML output check
  libboost-dev                             # Boost.Beast/Asio HTTP server (header-only)
  libsqlite3-dev sqlite3                   # document store (WAL, FTS5)
  libhnswlib-dev                           # HNSW vector index
  libcmark-dev libgumbo-dev libpoppler-cpp-dev   # Markdown, HTML, PDF ingest
  chromium                                 # dashboard tests: headless browser (tests/dashboard, playwright-core)
)
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Node.js + npm for the official-client tests (tests/clients, `npm ci`). A machine that already
# has a node (e.g. from NodeSource) keeps it; Debian's own packages otherwise.
if ! command -v npm >/dev/null 2>&1; then
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi
