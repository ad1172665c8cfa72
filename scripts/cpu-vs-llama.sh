#!/usr/bin/env bash
# CPU speed side by side with llama.cpp (issue 22): llama.cpp's llama-bench and `qwenmux bench`
# on the same synthesized files, interleaved round by round, plus membw_bench in the same run.
#
#   scripts/cpu-vs-llama.sh [ROUNDS]         (default 3; THREADS=2, PP=512, TG=64,
#                                             MODELS="qwen3-1.7b:q4_k_m qwen3-0.6b:q8_0";
#                                             BASE=path/to/older/qwenmux adds it as a third column)
#
# llama.cpp comes from the npm registry (the only source this machine reaches besides Debian):
# node-llama-cpp 3.22.1 ships the llama.cpp release it binds (v0.5.0) as a git bundle; it is built
# once (CPU, native, llama-bench only) under $LLAMA_DIR (default ~/.cache/qwenmux-llama). Nothing
# of it enters the repository. Output: one JSON line per measurement, then a summary line with the
# best of the rounds per model and the ratios qwenmux / llama.cpp. Decode is compared at the same
# context depth: both decode TG tokens after a PP-token prompt.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}
threads=${THREADS:-2}
pp=${PP:-512}
tg=${TG:-64}
models=${MODELS:-"qwen3-1.7b:q4_k_m qwen3-0.6b:q8_0"}
llama_dir=${LLAMA_DIR:-$HOME/.cache/qwenmux-llama}
work=${WORK:-/tmp/qwenmux-cpu-vs-llama}
qwenmux=${QWENMUX:-$root/build/qwenmux}
membw=${MEMBW:-$root/build/bench/membw_bench}
vocab=$root/../shared/testdata/models/qwen3-vocab.gguf

bench_bin=$llama_dir/llama.cpp/build/bin/llama-bench
if [[ ! -x $bench_bin ]]; then
  mkdir -p "$llama_dir" && cd "$llama_dir"
  [[ -f node-llama-cpp-3.22.1.tgz ]] || npm pack --silent node-llama-cpp@3.22.1 >/dev/null
  rm -rf package llama.cpp && tar xzf node-llama-cpp-3.22.1.tgz package/llama/gitRelease.bundle
  git clone -q package/llama/gitRelease.bundle llama.cpp
  cmake -S llama.cpp -B llama.cpp/build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  cmake --build llama.cpp/build -j"$(nproc)" --target llama-bench >/dev/null
fi

export LD_LIBRARY_PATH=$(dirname "$bench_bin")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
mkdir -p "$work"
files=()
for m in $models; do
  f=$work/${m%%:*}-${m##*:}.gguf
  [[ -f $f ]] || "$qwenmux" synth --shape "${m%%:*}" --type "${m##*:}" --vocab "$vocab" --seed 1 -o "$f" >/dev/null
  files+=("$f")
done

results=$work/results.jsonl
: >"$results"
for ((r = 1; r <= rounds; ++r)); do
  echo "{\"round\":$r,\"membw\":$("$membw" "$threads" 1024)}" | tee -a "$results"
  for f in "${files[@]}"; do
    # llama-bench's tg runs from an empty context unless told a depth; `qwenmux bench` decodes
    # after its prompt, so llama.cpp's decode is timed at depth $pp too (its depth-0 figure is
    # kept beside it as tg_d0).
    l=$({ "$bench_bin" -m "$f" -t "$threads" -p "$pp" -n "$tg" -r 1 -o jsonl 2>/dev/null
          "$bench_bin" -m "$f" -t "$threads" -p 0 -n "$tg" -d "$pp" -r 1 -o jsonl 2>/dev/null; } |
        python3 -c 'import sys,json
pp=tg=tg0=0
for line in sys.stdin:
  d=json.loads(line)
  if d["n_prompt"]>0: pp=d["avg_ts"]
  elif d.get("n_depth",0)>0: tg=d["avg_ts"]
  else: tg0=d["avg_ts"]
print(json.dumps({"pp":pp,"tg":tg,"tg_d0":tg0}))')
    q=$("$qwenmux" bench "$f" -t "$threads" -p "$pp" -n "$tg" --no-bandwidth --json |
        python3 -c 'import sys,json; d=json.loads(sys.stdin.read()); print(json.dumps({"pp":d["prefill_tok_s"],"tg":d["decode_tok_s"],"tg_GBps":d["decode_GBps"]}))')
    b=null
    if [[ -n ${BASE:-} ]]; then
      b=$("$BASE" bench "$f" -t "$threads" -p "$pp" -n "$tg" --no-bandwidth --json |
          python3 -c 'import sys,json; d=json.loads(sys.stdin.read()); print(json.dumps({"pp":d["prefill_tok_s"],"tg":d["decode_tok_s"],"tg_GBps":d["decode_GBps"]}))')
    fi
    echo "{\"round\":$r,\"model\":\"$(basename "$f")\",\"llama\":$l,\"qwenmux\":$q,\"base\":$b}" | tee -a "$results"
  done
done
python3 - "$results" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
bw = max(r["membw"]["read_GBps"] for r in rows if "membw" in r)
out = {"summary": True, "membw_read_GBps_best": bw, "models": {}}
for r in rows:
    if "model" not in r: continue
    m = out["models"].setdefault(r["model"], {"llama_pp": 0, "llama_tg": 0, "qwenmux_pp": 0, "qwenmux_tg": 0,
                                              "qwenmux_tg_GBps": 0})
    m["qwenmux_tg_GBps"] = max(m["qwenmux_tg_GBps"], r["qwenmux"]["tg_GBps"])
    for who in ("llama", "qwenmux", "base"):
        if r.get(who) is None: continue
        m[who + "_pp"] = max(m.get(who + "_pp", 0), r[who]["pp"])
        m[who + "_tg"] = max(m.get(who + "_tg", 0), r[who]["tg"])
        if "tg_d0" in r[who]: m[who + "_tg_d0"] = max(m.get(who + "_tg_d0", 0), r[who]["tg_d0"])
for m in out["models"].values():
    m["ratio_pp"] = round(m["qwenmux_pp"] / m["llama_pp"], 3) if m["llama_pp"] else None
    m["ratio_tg"] = round(m["qwenmux_tg"] / m["llama_tg"], 3) if m["llama_tg"] else None
    m["qwenmux_tg_of_membw"] = round(m["qwenmux_tg_GBps"] / bw, 3)
    if "base_tg" in m:
        m["vs_base_pp"] = round(m["qwenmux_pp"] / m["base_pp"], 3)
        m["vs_base_tg"] = round(m["qwenmux_tg"] / m["base_tg"], 3)
print(json.dumps(out))
EOF
