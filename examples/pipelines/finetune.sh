#!/bin/sh
# The seed's fine-tuning pipeline end to end, on the CPU:
#   1. prepare: finetune-prep.yaml turns documents into validated instruction/response pairs
#   2. train:   a LoRA adapter on those pairs (frozen base in any type the engine runs)
#   3. eval:    base against base + adapter on the held-out split (perplexity, exact match)
#   4. serve:   the adapter through the OpenAI / Ollama APIs (requests name it BASE:tuned)
#
#   examples/pipelines/finetune.sh CORPUS_DIR BASE.gguf FAST.gguf BALANCED.gguf QUALITY.gguf [OUT_DIR]
#
# Training knobs come from the environment: STEPS (200), RANK (16), LR (2e-4), BATCH (4).
# Stop it at any time and run it again: the prepare step skips finished documents and training
# resumes from its last checkpoint (written every 20 steps).
set -eu
corpus=${1:?corpus directory}; base=${2:?base model GGUF}
fast=${3:?fast model}; balanced=${4:?balanced model}; quality=${5:?quality model}
out=${6:-finetune-out}
qwenmux=${QWENMUX:-qwenmux}
mkdir -p "$out"

"$qwenmux" pipeline run examples/pipelines/finetune-prep.yaml "$corpus" -o "$out/prep.results.jsonl" \
  --model "fast=$fast" --model "balanced=$balanced" --model "quality=$quality" --json > /dev/null
# One training example per document whose extraction passed validation.
jq -c 'select(.extracted.instruction? and .extracted.response?) | .extracted' \
  "$out/prep.results.jsonl" > "$out/train.jsonl"

"$qwenmux" finetune train "$base" "$out/train.jsonl" -o "$out/adapter.gguf" --peft "$out/adapter-peft" \
  --steps "${STEPS:-200}" --rank "${RANK:-16}" --alpha "$((2 * ${RANK:-16}))" --lr "${LR:-2e-4}" \
  --batch "${BATCH:-4}" --warmup 10 --schedule cosine --clip 1 --valid 0.1 --eval-every 50 \
  --checkpoint-every 20 --resume --log-json "$out/train.log.jsonl"

"$qwenmux" finetune eval "$base" "$out/train.jsonl" --lora "$out/adapter.gguf" --split valid --valid 0.1 --json \
  > "$out/eval.json"
cat "$out/eval.json"

exec "$qwenmux" serve -m "$base" --adapter "tuned=$out/adapter.gguf"
