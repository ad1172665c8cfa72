#!/usr/bin/env bash
# Builds and runs every test: release build (all tests), ASan/UBSan build (all tests),
# TSan build (the concurrent parts), an aarch64 cross build whose kernel, quant, tokenizer and
# golden tests run under qemu-user, a clang build of the SIMD kernels, and the GGUF reader fuzzer
# for a bounded time.
# Usage: scripts/test.sh            (everything; what .ci/run runs)
#        QWENMUX_FUZZ_SECONDS=0 scripts/test.sh   (skip the fuzzer)
#        QWENMUX_AARCH64=0 scripts/test.sh        (skip the aarch64/qemu stage)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export CCACHE_DIR="${CCACHE_DIR:-$PWD/.cache/ccache}"
JOBS="${JOBS:-$(nproc)}"
FUZZ_SECONDS="${QWENMUX_FUZZ_SECONDS:-60}"
summary=()

stage() { echo; echo "=== $*"; }

stage "official API clients for the server tests (npm ci, pinned by tests/clients/package-lock.json)"
(cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)

stage "release build + tests"
cmake --preset release -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null  # CI compiles CUDA once, sm_90 only
cmake --build build -j"$JOBS"
(cd build && ctest --output-on-failure -j"$JOBS" 2>&1 | tail -n 40) | tee /tmp/qwenmux-ctest-release.txt
grep -q "100% tests passed" /tmp/qwenmux-ctest-release.txt
summary+=("release: $(grep 'tests passed' /tmp/qwenmux-ctest-release.txt)")

stage "ASan/UBSan build + tests"
# The slowest variants (same code paths as tests that do run here) run in the release stage only.
ASAN_EXCLUDE='Synth\.MoeOneLayer|Golden\.MeetsTheBars/(dense|moe)_(chunked|pair)|ServerLoad\.|ServerClients\.'
cmake --preset asan >/dev/null
cmake --build build-asan -j"$JOBS"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest --output-on-failure -j"$JOBS" -E "${QWENMUX_ASAN_EXCLUDE:-$ASAN_EXCLUDE}" 2>&1 | tail -n 40) \
  | tee /tmp/qwenmux-ctest-asan.txt
grep -q "100% tests passed" /tmp/qwenmux-ctest-asan.txt
summary+=("asan+ubsan: $(grep 'tests passed' /tmp/qwenmux-ctest-asan.txt)")

stage "TSan build + concurrency tests"
cmake --preset tsan >/dev/null
cmake --build build-tsan -j"$JOBS" --target qwenmux_tests
TSAN_OPTIONS=halt_on_error=1 ./build-tsan/qwenmux_tests --gtest_filter='ThreadPool*:*Concurrent*:*Threaded*' \
  2>&1 | tail -n 5 | tee /tmp/qwenmux-tsan.txt
grep -q "PASSED" /tmp/qwenmux-tsan.txt
summary+=("tsan: $(grep PASSED /tmp/qwenmux-tsan.txt)")

if [ "${QWENMUX_AARCH64:-1}" != 0 ]; then
  # Highway's ARM code paths (NEON; SVE/SVE2 where the kernels' target set allows it) really run,
  # under qemu-user with its `max` CPU, which has every extension Highway can dispatch to. Only
  # the test binary (and the qwenmux program it names) is built. All tests run but: the CLI tests
  # (they exec the aarch64 qwenmux binary, which needs binfmt_misc) and the slowest cases under
  # emulation (chunked/paired golden runs, MoE requantization: same kernels, other batching; the
  # structured-output validity suite: portable code, covered by the x86 stages).
  stage "aarch64 cross build + kernel/quant/tokenizer/golden tests under qemu-user"
  scripts/install-deps-aarch64.sh
  t0=$SECONDS
  cmake --preset aarch64 >/dev/null
  cmake --build build-aarch64 -j"$JOBS" --target qwenmux_tests
  t1=$SECONDS
  AARCH64_FILTER="${QWENMUX_AARCH64_FILTER:-*:-*Cli.*:QuantizeModel.CommandLine:QuantFiles.MoeQ4KM*:\
Refs/Golden.MeetsTheBars/*_chunked:Refs/Golden.MeetsTheBars/*_pair:StructuredValidity.*}"
  QEMU_CPU=max qemu-aarch64 -L / ./build-aarch64/qwenmux_tests --gtest_filter="$AARCH64_FILTER" \
    >/tmp/qwenmux-aarch64.txt 2>&1 || true
  t2=$SECONDS
  grep -E '^\[hwy\]|^(dense|moe): |FAILED|Failure' /tmp/qwenmux-aarch64.txt | head -n 40 || true
  tail -n 3 /tmp/qwenmux-aarch64.txt
  grep -q "PASSED" /tmp/qwenmux-aarch64.txt && ! grep -q "FAILED" /tmp/qwenmux-aarch64.txt
  summary+=("aarch64/qemu: $(sed -n 's/^\[  PASSED  \] \([0-9]*\).*/\1/p' /tmp/qwenmux-aarch64.txt) tests passed, kernels \
$(grep -o 'dispatches to [A-Z0-9_]*' /tmp/qwenmux-aarch64.txt | head -n 1 | sed 's/dispatches/dispatched/'); \
build $((t1 - t0))s, tests $((t2 - t1))s")
fi

stage "clang build of the SIMD kernels (the compiler of macOS/Apple silicon builds)"
objs=$(mktemp -d)
ls src/kernels/cpu/*.cc | xargs -P"$JOBS" -I{} sh -c \
  'ccache clang++ -std=c++20 -O2 -Wall -Wextra -Werror -Isrc -c "$1" -o "$2/$(basename "$1").o"' _ {} "$objs"
rm -rf "$objs"
summary+=("clang: SIMD kernels compile (-O2 -Wall -Wextra -Werror)")

if [ "$FUZZ_SECONDS" != 0 ]; then
  stage "GGUF reader fuzzer (${FUZZ_SECONDS}s)"
  cmake --preset fuzz >/dev/null
  cmake --build build-fuzz -j"$JOBS"
  corpus=$(mktemp -d)
  cp ../shared/testdata/models/*.gguf "$corpus"/
  ./build-fuzz/fuzz/gguf_reader_fuzz -max_total_time="$FUZZ_SECONDS" -max_len=65536 -rss_limit_mb=2048 \
    -print_final_stats=1 "$corpus" 2>&1 | tail -n 8
  rm -rf "$corpus"
  summary+=("fuzz: gguf reader ran ${FUZZ_SECONDS}s, no crash")
fi

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
