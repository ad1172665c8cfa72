# Checks shared by scripts/test.sh's stages (sourced, not run). Each function returns non-zero
# on a problem, so under `set -e` the calling stage, and CI, fails.
#
# Skips: a GTEST_SKIP is a failure in CI unless its message starts with one of these prefixes,
# each a hardware condition a CI machine may lack. Tests that skip for such a reason start their
# message with the prefix, e.g. GTEST_SKIP() << "no CUDA device: ...".
QWENMUX_ALLOWED_SKIP_PREFIXES=(
  "no CUDA device"    # CUDA backend tests on a machine without an NVIDIA GPU
)

# check_gtest_skips LOG: every "[  SKIPPED ]" test in a googletest log (the text after
# "file:line: Skipped") must start with an allowed prefix.
check_gtest_skips() {
  local log=$1 bad=0 name msg p ok
  while IFS=$'\t' read -r name msg; do
    ok=0
    for p in "${QWENMUX_ALLOWED_SKIP_PREFIXES[@]}"; do
      [[ "$msg" == "$p"* ]] && ok=1
    done
    if [ "$ok" = 0 ]; then
      echo "CI: skipped test is not an allowed hardware condition: $name: ${msg:-<no message>}"
      bad=1
    fi
  done < <(awk '
    /^\[ RUN      \] / { name = $4; msg = ""; want = 0; next }
    /: Skipped$/ { want = 1; next }
    want == 1 { msg = $0; want = 2; next }
    /^\[  SKIPPED \] / && NF >= 4 && $4 == name { printf "%s\t%s\n", name, msg; name = "" }
  ' "$log")
  return "$bad"
}

# run_gtest LOG BINARY [ARGS...]: runs a googletest binary (ARGS may start with a runner, e.g.
# qemu-aarch64), keeps its exit status, and fails when it failed, ran no test, or skipped one
# without an allowed reason. The whole output is in LOG; failures are printed.
run_gtest() {
  local log=$1 rc=0 passed
  shift
  "$@" >"$log" 2>&1 || rc=$?
  grep -E '^\[  FAILED  \]|Failure$|^\[  PASSED  \]|^\[  SKIPPED \] [0-9]' "$log" | head -n 40 || true
  if [ "$rc" != 0 ]; then
    echo "CI: $* exited with status $rc (log: $log)"
    tail -n 20 "$log"
    return 1
  fi
  passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log")
  if [ "${passed:-0}" -eq 0 ]; then
    echo "CI: $* ran no test (log: $log)"
    return 1
  fi
  check_gtest_skips "$log"
}

# check_filter_matches BINARY FILTER: every ':'-separated positive pattern of a gtest filter
# matches at least one test (a pattern matching nothing would silently test nothing).
check_filter_matches() {
  local bin=$1 filter=$2 pat n bad=0
  IFS=':' read -ra pats <<<"${filter%%-*}"
  for pat in "${pats[@]}"; do
    [ -z "$pat" ] && continue
    n=$("$bin" --gtest_list_tests --gtest_filter="$pat" | grep -c '^  ' || true)
    if [ "$n" -eq 0 ]; then
      echo "CI: gtest filter pattern '$pat' matches no test"
      bad=1
    fi
  done
  return "$bad"
}

# check_ctest_skips CTEST_LOG BINARY [ARGS...]: the tests ctest reports as "(Skipped)" are run
# again directly to read their skip messages, which must be allowed ones; each must skip again.
check_ctest_skips() {
  local log=$1 names n
  shift
  # ctest prints parameterised tests as "NAME  # GetParam() = ...": keep the name alone.
  names=$(sed -n 's/^[[:space:]]*[0-9]\+ - \(.*\) (Skipped)$/\1/p' "$log" | sed 's/[[:space:]]*#.*$//' | paste -sd: -)
  [ -z "$names" ] && return 0
  n=$(tr ':' '\n' <<<"$names" | wc -l)
  local out rc=0 skipped
  out=$(mktemp)
  "$@" --gtest_filter="$names" >"$out" 2>&1 || true
  skipped=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) tests\?, listed below:$/\1/p' "$out")
  if [ "${skipped:-0}" != "$n" ]; then
    echo "CI: ctest skipped $n test(s) ($names) but running them again skipped ${skipped:-0}"
    tail -n 20 "$out"
    rc=1
  fi
  check_gtest_skips "$out" || rc=1
  rm -f "$out"
  return "$rc"
}
