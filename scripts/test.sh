#!/usr/bin/env bash
# Builds and runs every test: release build (all tests) and the smoke run of the server,
# ASan/UBSan build (all tests), TSan build (the concurrent parts), an aarch64 cross build whose
# kernel, quant, tokenizer and golden tests run under qemu-user, and the GGUF reader and
# tokenizer fuzzers (clang, which also compiles the SIMD kernels as macOS builds would) for a
# bounded time each.
# Every stage fails CI on a failed test, on a test that did not run where one should have (a
# gtest filter pattern matching nothing, a run with no test), and on a GTEST_SKIP whose message
# is not one of the hardware conditions listed in scripts/ci_checks.sh.
# Usage: scripts/test.sh            (everything; what .ci/run runs)
#        QWENMUX_FUZZ_SECONDS=0 scripts/test.sh   (skip the fuzzers; the SIMD kernels are then
#                                                  compiled with clang on their own)
#        QWENMUX_AARCH64=0 scripts/test.sh        (skip the aarch64/qemu stage)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ci_checks.sh
scripts/install-deps.sh
# The compiler cache sits outside the checkout, so the next clone on this machine (CI clones
# afresh) reuses it: paths under the checkout are hashed relative to it (CCACHE_BASEDIR) and the
# build folder's own path is left out (CCACHE_NOHASHDIR), so one clone's objects serve another.
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/qwenmux-ccache}" CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
export CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-20G}"
ccache -z >/dev/null 2>&1 || true
JOBS="${JOBS:-$(nproc)}"
FUZZ_SECONDS="${QWENMUX_FUZZ_SECONDS:-30}"  # per fuzzer
summary=()

stage() { echo; echo "=== [$((SECONDS / 60))m$((SECONDS % 60))s] $*"; }

stage "official API clients for the server tests (npm ci, pinned by tests/clients/package-lock.json)"
(cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)

stage "release build + tests"
cmake --preset release -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null  # CI compiles CUDA once, sm_90 only
cmake --build build -j"$JOBS"
(cd build && ctest --output-on-failure -j"$JOBS" >/tmp/qwenmux-ctest-release.txt 2>&1) || {
  tail -n 60 /tmp/qwenmux-ctest-release.txt; exit 1; }
tail -n 40 /tmp/qwenmux-ctest-release.txt
grep -q "100% tests passed" /tmp/qwenmux-ctest-release.txt
check_ctest_skips /tmp/qwenmux-ctest-release.txt ./build/qwenmux_tests
summary+=("release: $(grep 'tests passed' /tmp/qwenmux-ctest-release.txt)")

stage "smoke run (README quick start): QWENMUX_SMOKE=1 scripts/run.sh"
QWENMUX_PORT="${QWENMUX_SMOKE_PORT:-18434}" QWENMUX_SMOKE=1 scripts/run.sh | tee /tmp/qwenmux-smoke.txt
grep -q '"choices"' /tmp/qwenmux-smoke.txt
summary+=("smoke: serve answered one chat request and stopped cleanly")

stage "dashboard in headless chromium (playwright-core, pinned by tests/dashboard/package-lock.json)"
# The release binary serves the page; the test fails (never skips) without chromium or the binary.
rm -rf build/dashboard-artifacts
(cd tests/dashboard && npm ci --no-audit --no-fund --loglevel=error &&
  QWENMUX_BIN="$PWD/../../build/qwenmux" timeout 300 node --test --test-reporter=spec >/tmp/qwenmux-dashboard.txt 2>&1) || {
  tail -n 60 /tmp/qwenmux-dashboard.txt; exit 1; }
tail -n 12 /tmp/qwenmux-dashboard.txt
summary+=("dashboard: chromium tests passed, $(tr -d ' \n' <build/dashboard-artifacts/figures.json), screenshots in build/dashboard-artifacts")

stage "ASan/UBSan build + tests"
# The slowest variants (same code paths as tests that do run here) run in the release stage only.
# ManagerEstimate.*Within10Percent compare RSS with the estimate, meaningless under a sanitizer
# (they skip there, and a skip fails CI); PlanAccuracy compares plan's kernel-rate predictions
# with the engine's speed, meaningless when the sanitizer slows the two unevenly.
ASAN_EXCLUDE='Synth\.MoeOneLayer|Golden\.MeetsTheBars/(dense|moe)_(chunked|pair)|ServerLoad\.|ServerClients\.|ManagerEstimate\..*Within10Percent|PlanAccuracy\.'
cmake --preset asan >/dev/null
cmake --build build-asan -j"$JOBS"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest --output-on-failure -j"$JOBS" -E "${QWENMUX_ASAN_EXCLUDE:-$ASAN_EXCLUDE}" \
  >/tmp/qwenmux-ctest-asan.txt 2>&1) || { tail -n 60 /tmp/qwenmux-ctest-asan.txt; exit 1; }
tail -n 40 /tmp/qwenmux-ctest-asan.txt
grep -q "100% tests passed" /tmp/qwenmux-ctest-asan.txt
check_ctest_skips /tmp/qwenmux-ctest-asan.txt ./build-asan/qwenmux_tests
summary+=("asan+ubsan: $(grep 'tests passed' /tmp/qwenmux-ctest-asan.txt)")

stage "TSan build + concurrency tests"
cmake --preset tsan >/dev/null
cmake --build build-tsan -j"$JOBS" --target qwenmux_tests
# The tests that run threads against each other; each pattern must match at least one test
# (the old '*Threaded*' matched none, and a filter matching nothing passed).
TSAN_FILTER="ThreadPool.*:*Concurrent.*:Targets/MatMulTargets.ThreadPools/*:ManagerTest.ReaperThread*"
check_filter_matches ./build-tsan/qwenmux_tests "$TSAN_FILTER"
TSAN_OPTIONS="halt_on_error=1 suppressions=$PWD/scripts/tsan.supp" run_gtest /tmp/qwenmux-tsan.txt ./build-tsan/qwenmux_tests --gtest_filter="$TSAN_FILTER"
summary+=("tsan: $(grep '^\[  PASSED  \]' /tmp/qwenmux-tsan.txt)")

if [ "${QWENMUX_AARCH64:-1}" != 0 ]; then
  # Highway's ARM code paths (NEON; SVE/SVE2 where the kernels' target set allows it) really run,
  # under qemu-user with its `max` CPU, which has every extension Highway can dispatch to. Only
  # the test binary (and the qwenmux program it names) is built. All tests run but: the CLI tests
  # (they exec the aarch64 qwenmux binary, which needs binfmt_misc) and the slowest cases under
  # emulation (chunked/paired golden runs, MoE requantization: same kernels, other batching; the
  # structured-output validity suite: portable code, covered by the x86 stages; plan's speed
  # predictions against the engine: a 230 MB synthesized model, and emulated speeds).
  stage "aarch64 cross build + kernel/quant/tokenizer/golden tests under qemu-user"
  scripts/install-deps-aarch64.sh
  t0=$SECONDS
  cmake --preset aarch64 >/dev/null
  cmake --build build-aarch64 -j"$JOBS" --target qwenmux_tests
  t1=$SECONDS
  AARCH64_FILTER="${QWENMUX_AARCH64_FILTER:-*:-*Cli.*:Synth.CommandLineErrors:QuantFiles.MoeQ4KM*:\
Refs/Golden.MeetsTheBars/*_chunked:Refs/Golden.MeetsTheBars/*_pair:Structured*:LoraGolden.*:PlanAccuracy.*}"
  # qemu-user runs one thread: the tests go in $JOBS shards (googletest's sharding), one qemu each,
  # side by side. qemu-user exits with the test binary's status: run_gtest fails the stage on it,
  # on a shard with no test, and on a skip that is not an allowed hardware condition.
  pids=()
  for ((shard = 0; shard < JOBS; ++shard)); do
    GTEST_TOTAL_SHARDS=$JOBS GTEST_SHARD_INDEX=$shard QEMU_CPU=max run_gtest /tmp/qwenmux-aarch64-$shard.txt \
      qemu-aarch64 -L / ./build-aarch64/qwenmux_tests --gtest_filter="$AARCH64_FILTER" &
    pids+=($!)
  done
  rc=0
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  [ "$rc" = 0 ]  # a failed shard fails the stage
  t2=$SECONDS
  cat /tmp/qwenmux-aarch64-*.txt >/tmp/qwenmux-aarch64.txt
  grep -E '^\[hwy\]|^(dense|moe): ' /tmp/qwenmux-aarch64.txt | head -n 20 || true
  summary+=("aarch64/qemu: $(sed -n 's/^\[  PASSED  \] \([0-9]*\).*/\1/p' /tmp/qwenmux-aarch64.txt | awk '{s += $1} END {print s}') tests passed \
in $JOBS shards, kernels $(grep -o 'dispatches to [A-Z0-9_]*' /tmp/qwenmux-aarch64.txt | head -n 1 | sed 's/dispatches/dispatched/'); \
build $((t1 - t0))s, tests $((t2 - t1))s")
fi

if [ "$FUZZ_SECONDS" != 0 ]; then
  # The fuzz preset builds qwenmux_core, SIMD kernels included, with clang (-Wall -Wextra
  # -Werror): the compiler of macOS/Apple silicon builds, so no separate clang stage is needed.
  cmake --preset fuzz >/dev/null
  cmake --build build-fuzz -j"$JOBS"
  summary+=("clang: qwenmux_core (SIMD kernels included) compiles with clang -Werror (fuzz build)")
  # fuzz NAME WHAT MAX_LEN CORPUS_DIR: runs build-fuzz/fuzz/NAME for FUZZ_SECONDS on the corpus
  # (then removed); a crash fails the stage (pipefail).
  fuzz() {
    stage "$2 fuzzer (${FUZZ_SECONDS}s)"
    ./build-fuzz/fuzz/"$1" -max_total_time="$FUZZ_SECONDS" -max_len="$3" -rss_limit_mb=2048 \
      -print_final_stats=1 "$4" 2>&1 | tail -n 8
    rm -rf "$4"
    summary+=("fuzz: $2 ran ${FUZZ_SECONDS}s, no crash")
  }
  corpus=$(mktemp -d)
  cp ../shared/testdata/models/*.gguf "$corpus"/
  fuzz gguf_reader_fuzz "GGUF reader" 65536 "$corpus"
  corpus=$(mktemp -d)
  cp ../shared/testdata/models/tiny-dense.lora-peft/adapter_model.safetensors "$corpus"/
  fuzz safetensors_fuzz "safetensors reader" 65536 "$corpus"
  corpus=$(mktemp -d)
  printf '%s' 'Hello, world! <|im_start|>user' >"$corpus/chat"
  printf '%s' $'caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd 123  \n\t' >"$corpus/unicode"
  fuzz tokenizer_fuzz "tokenizer" 4096 "$corpus"
else
  stage "clang build of the SIMD kernels (the compiler of macOS/Apple silicon builds)"
  objs=$(mktemp -d)
  ls src/kernels/cpu/*.cc | xargs -P"$JOBS" -I{} sh -c \
    'ccache clang++ -std=c++20 -O2 -Wall -Wextra -Werror -Isrc -c "$1" -o "$2/$(basename "$1").o"' _ {} "$objs"
  rm -rf "$objs"
  summary+=("clang: SIMD kernels compile (-O2 -Wall -Wextra -Werror)")
fi

summary+=("ccache: $(ccache -s 2>/dev/null | grep -m1 -E '^ *Hits:' | tr -s ' ')")
echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
