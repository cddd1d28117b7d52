#!/usr/bin/env bash
# The GPU benchmark behind docs/PERFORMANCE.md, in one run:
#   1. build the full-size SD-turbo-shaped model with random weights (same compute as the real one),
#   2. scripts/bench.py with the shipped settings: engine ceiling, start->READY for both archive formats,
#      TorchServe swept over concurrency 1/8/32, and the FastAPI baseline,
#   3. variants of the served path (more workers per GPU, bigger batches).
# Usage: scripts/gpu-bench.sh OUT_DIR   (on the GPU machine: source .device/activate.sh first)
set -euo pipefail
out=${1:?usage: scripts/gpu-bench.sh OUT_DIR}
model=${MODEL_DIR:-/tmp/sd-turbo-full}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
if [ ! -f "$model/model_index.json" ]; then
  python3 scripts/build_offline_model.py --size full --device cuda --tiny-decoder --out "$model" --force
fi
python3 scripts/bench.py --model-dir "$model" --out "$out/default" --concurrency 1,8,32 --requests 128 \
  --engine-batches 1,8,16 --engine-iterations 5 2>&1 | tee "$out/default.log"
python3 scripts/bench.py --model-dir "$model" --out "$out/workers2" --skip engine --skip baseline \
  --formats no-archive --workers 2 --concurrency 1,8,32 --requests 128 2>&1 | tee "$out/workers2.log"
python3 scripts/bench.py --model-dir "$model" --out "$out/tiny-decoder" --skip baseline --formats no-archive \
  --workers 2 --batch-size 16 --handler-setting decoder=tiny --engine-batches 1,16 --concurrency 1,32,64 \
  --requests 256 2>&1 | tee "$out/tiny-decoder.log"
