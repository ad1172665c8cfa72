#!/usr/bin/env bash
# Installs what the aarch64 cross build and its qemu-user test run need (scripts/test.sh's aarch64
# stage calls this): the cross compiler, qemu-user, and the arm64 -dev packages through Debian
# multiarch. The native packages stay in scripts/install-deps.sh; this is the one list of the arm64 ones.
# Every arm64 -dev package here is Multi-Arch: same, so it installs beside its amd64 twin; apt only
# requires both to have the same version, which holds as long as both come from the same, current
# package lists (so this runs apt-get update whenever something is missing).
# nlohmann-json3-dev and libcli11-dev are architecture-independent headers, already installed natively.
set -euo pipefail
HOST_PACKAGES=(
  g++-aarch64-linux-gnu      # cross compiler (also brings libc6-dev-arm64-cross under /usr/aarch64-linux-gnu)
  qemu-user                  # qemu-aarch64 runs the test binary
)
ARM64_PACKAGES=(
  libhwy-dev:arm64 libfmt-dev:arm64 libutf8proc-dev:arm64 libgtest-dev:arm64 libgmock-dev:arm64
)
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
updated=0
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
  updated=1
fi
missing=()
for p in "${HOST_PACKAGES[@]}" "${ARM64_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$updated" = 0 ]; then $SUDO apt-get update -qq; fi
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
