#!/usr/bin/env bash
# Builds the release binary and runs the main job (for now: the help text and `inspect` on the
# tiny test model; the server replaces this once it exists).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export CCACHE_DIR="${CCACHE_DIR:-$PWD/.cache/ccache}"
cmake --preset release >/dev/null
cmake --build build -j"$(nproc)" --target qwenmux
./build/qwenmux --help
./build/qwenmux inspect "${1:-../shared/testdata/models/tiny-dense.q8_0.gguf}"
