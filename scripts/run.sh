#!/usr/bin/env bash
# Builds the release binary and runs the main job: `qwenmux serve` on 127.0.0.1:11434 with the
# tiny test model (or the --model/--config arguments given), until Ctrl-C.
#   QWENMUX_SMOKE=1 scripts/run.sh   starts it, sends one chat request, prints the answer, stops it
#                                    (non-interactive; what CI uses)
#   QWENMUX_PORT=8080 scripts/run.sh another port
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export CCACHE_DIR="${CCACHE_DIR:-$PWD/.cache/ccache}"
cmake --preset release >/dev/null
cmake --build build -j"$(nproc)" --target qwenmux
PORT="${QWENMUX_PORT:-11434}"
args=("$@")
if [ ${#args[@]} -eq 0 ]; then
  args=(--model ../shared/testdata/models/tiny-dense.q8_0.gguf=tiny --ctx 2048)
fi
if [ "${QWENMUX_SMOKE:-0}" = 0 ]; then
  exec ./build/qwenmux serve --port "$PORT" "${args[@]}"
fi
./build/qwenmux serve --port "$PORT" "${args[@]}" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  sleep 0.1
done
model=$(curl -sf "http://127.0.0.1:$PORT/v1/models" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
curl -sf "http://127.0.0.1:$PORT/v1/chat/completions" \
  -d "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":16,\"chat_template_kwargs\":{\"enable_thinking\":false}}"
echo
kill -TERM $pid
wait $pid
trap - EXIT
