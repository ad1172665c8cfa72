#!/usr/bin/env bash
# One device call per test round for the CUDA backend (issue 14).
#
# Here (the build machine, no GPU):
#   scripts/device-test.sh pack [MODEL...]
# builds the release tree with CUDA for sm_90, then fills /work/main/.devpack (git-ignored in the
# lead's checkout, which is what the device tool sends) with qwenmux, qwenmux_cuda_tests (the tests/cuda suites alone), cuda_bench,
# the shared libraries the device image lacks, qwen3-vocab.gguf, the named shared test models
# (one or two: 64 MiB a call in all) and this script.
#
# Then one call of the device tool:
#   run  carry=[".devpack"]  command="cd .devpack && ./device-test.sh run"
# On the device (an H100, Ubuntu 24.04 with the CUDA driver) `run` runs the CUDA tests (kernels
# against the CPU reference kernels, the CUDA backend against the CPU forward on synthesized
# Qwen3 shapes), then synthesizes the benchmark models with `qwenmux synth` and runs cuda_bench
# (pp512 + tg128, batch 1) on each. Results go to $OUT: tests.xml, tests.log, bench.jsonl,
# device.txt. BENCH="qwen3-1.7b:q4_k_m qwen3-8b:q8_0" (shape:type list) picks the models;
# TESTS=0, SANITIZE=0 or BENCH=none skips a part; PROFILE=1 adds cuda_bench's per-step device
# times (a second JSON line per model); PP, TG set the prompt and generated lengths (512, 128);
# AB_FLASH=1 benches each model with the one-pass prefill attention too; AB=1 benches each model with the f32 matrix-vector kernels too
# (QWENMUX_CUDA_MATVEC=perunit and lane8; the default is the integer kernels).
set -euo pipefail

mode=${1:-}
shift || true

if [[ $mode == pack ]]; then
  root=$(cd "$(dirname "$0")/.." && pwd)
  dest=${DEVPACK:-/work/main/.devpack}
  export CCACHE_DIR=${CCACHE_DIR:-/root/.cache/qwenmux-ccache} CCACHE_BASEDIR=${CCACHE_BASEDIR:-/work}
  (cd "$root" && cmake --preset release -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null &&
     cmake --build build -j2 --target qwenmux qwenmux_cuda_tests cuda_bench)
  rm -rf "$dest" && mkdir -p "$dest/testdata/models"
  for b in build/qwenmux build/qwenmux_cuda_tests build/bench/cuda_bench; do
    strip -o "$dest/$(basename "$b")" "$root/$b"
  done
  # Shared libraries other than the C/C++ runtime (the device image has newer ones of those).
  ldd "$root/build/qwenmux" "$root/build/qwenmux_cuda_tests" | awk '/=> \//{print $3}' | sort -u |
    grep -v -E '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*|libgcc_s|libstdc\+\+)\.so' |
    while read -r lib; do cp -L "$lib" "$dest/"; done
  cp "$root/../shared/testdata/models/qwen3-vocab.gguf" "$dest/testdata/models/"
  for m in "$@"; do cp "$root/../shared/testdata/models/$m" "$dest/testdata/models/"; done
  mkdir -p "$dest/testdata/refs"  # the transformers references of the models packed
  for m in "$@"; do cp "$root"/../shared/testdata/refs/"${m%%.*}".hf-*.json "$dest/testdata/refs/"; done
  # The device tool carries 64 MiB a call: binaries and models travel xz-compressed.
  (cd "$dest" && find . -type f ! -name device-test.sh ! -name '*.xz' -print0 | xargs -0 -r xz -T2 -6)
  cp "$root/scripts/device-test.sh" "$dest/"
  du -sh "$dest"
  echo "now: run carry=[\".devpack\"] command=\"cd .devpack && ./device-test.sh run\""
  exit 0
fi

if [[ $mode != run ]]; then
  echo "usage: $0 pack [MODEL...] | run" >&2
  exit 2
fi

# --- on the device ---
here=$(cd "$(dirname "$0")" && pwd)
find "$here" -name '*.xz' -print0 | xargs -0 -r -n1 -P8 unxz -f
out=${OUT:-$here/out}
mkdir -p "$out"
export LD_LIBRARY_PATH=$here${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export QWENMUX_TESTDATA=$here/testdata
cd "$here"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; nproc; } >"$out/device.txt" 2>&1 || true
cat "$out/device.txt"

if [[ ${TESTS:-1} != 0 ]]; then
  timeout "${TEST_TIMEOUT:-300}" ./qwenmux_cuda_tests --gtest_filter="${FILTER:-Cuda*:*/CudaMatMul.*:*/CudaVsCpu.*:*/CudaGolden.*}" \
    --gtest_output="xml:$out/tests.xml" 2>&1 | tee "$out/tests.log" | grep -E '^\[  (FAILED|PASSED|  OK|SKIPPED) |: rows=|Failure|error|Expected|Which is' | head -150 || true
fi

if [[ ${SANITIZE:-1} != 0 ]]; then
  # compute-sanitizer memcheck on the kernel tests and one whole forward (tiny model).
  cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1 || true)
  if [[ -n $cs ]]; then
    timeout "${SANITIZE_TIMEOUT:-150}" "$cs" --tool memcheck --leak-check full ./qwenmux_cuda_tests \
      --gtest_filter="${SANITIZE_FILTER:-*/CudaMatMul.*:CudaGemm.*:CudaRmsNorm.*:CudaSwiGlu.*:Models/CudaVsCpu.LogitsAgree/tiny_dense}" \
      >"$out/sanitizer.log" 2>&1 || true
    grep -E 'ERROR SUMMARY|LEAK SUMMARY|^\[  (PASSED|FAILED) ' "$out/sanitizer.log" | head -n 10
  else
    echo "compute-sanitizer: not on this image" | tee "$out/sanitizer.log"
  fi
fi

models=${BENCH:-"qwen3-1.7b:q4_k_m qwen3-1.7b:q8_0 qwen3-8b:q4_k_m qwen3-8b:q8_0 qwen3-8b:f16"}
if [[ $models != none ]]; then
  mkdir -p /tmp/qwenmux-bench
  for m in $models; do
    shape=${m%%:*} type=${m##*:}
    file=/tmp/qwenmux-bench/$shape-$type.gguf
    if [[ ! -f $file ]]; then
      s=$SECONDS
      timeout "${SYNTH_TIMEOUT:-180}" ./qwenmux synth --shape "$shape" --type "$type" \
        --vocab testdata/models/qwen3-vocab.gguf -o "$file" >/dev/null || { echo "synth $shape $type failed"; continue; }
      echo "synth $shape $type: $((SECONDS - s)) s"
    fi
    # AB=1: also the f32 matrix-vector kernels (AB_LAYOUTS, default "perunit lane8")
    # AB_FLASH=1: also the one-pass prefill attention (QWENMUX_CUDA_FLASH=0), tagged "flash": 0
    # AB_UNROLL=1: also the integer matrix-vector kernels loading one unit at a time, tagged "unroll": 1
    for mv in default ${AB:+${AB_LAYOUTS:-perunit lane8}} ${AB_FLASH:+noflash} ${AB_UNROLL:+unroll1}; do
      flash=1 unroll=4
      [[ $mv == noflash ]] && flash=0 mv=default
      [[ $mv == unroll1 ]] && unroll=1 mv=default
      QWENMUX_CUDA_FLASH=$flash QWENMUX_CUDA_MV_UNROLL=$unroll QWENMUX_CUDA_MATVEC=$mv \
        timeout 240 ./cuda_bench "$file" "${PP:-512}" "${TG:-128}" "${REPS:-3}" |
        sed "s/^{/{\"flash\": $flash, \"unroll\": $unroll, /" | tee -a "$out/bench.jsonl" ||
        echo "{\"model\": \"$file\", \"matvec\": \"$mv\", \"error\": \"cuda_bench failed\"}" | tee -a "$out/bench.jsonl"
    done
  done
fi
