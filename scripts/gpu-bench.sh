#!/usr/bin/env bash
# The GPU benchmark behind docs/PERFORMANCE.md. Stages (STAGES, default "default workers2 tiny-decoder"):
#   default       engine ceiling, start->READY for both archive formats, TorchServe swept over
#                 concurrency 1/8/32, and the FastAPI baseline, all with the shipped settings
#   workers2      TorchServe with two workers per GPU
#   tiny-decoder  two workers, batch 16, the TAESD-shaped decoder
#   compile       engine only, with torch.compile (mode default) of UNet and VAE decoder (cold compile)
#   compile-served  TorchServe, two workers, torch.compile with dynamic batch shapes (cold compile at start)
# The model is the full-size SD-turbo architecture with random weights (same compute as the real one).
# Usage: [STAGES="..."] scripts/gpu-bench.sh OUT_DIR   (on the GPU machine: source .device/activate.sh first)
set -euo pipefail
out=${1:?usage: scripts/gpu-bench.sh OUT_DIR}
model=${MODEL_DIR:-/tmp/sd-turbo-full}
stages=${STAGES:-default workers2 tiny-decoder}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
if [ ! -f "$model/model_index.json" ]; then
  python3 scripts/build_offline_model.py --size full --device cuda --tiny-decoder --out "$model" --force
fi
bench() { local name=$1; shift; python3 scripts/bench.py --model-dir "$model" --out "$out/$name" "$@" 2>&1 | tee "$out/$name.log"; }
for stage in $stages; do
  case $stage in
    default) bench default --concurrency 1,8,32 --requests 128 --engine-batches 1,8,16 --engine-iterations 5 ;;
    workers2) bench workers2 --skip engine --skip baseline --formats no-archive --workers 2 --concurrency 1,8,32 \
                --requests 128 ;;
    tiny-decoder) bench tiny-decoder --skip baseline --formats no-archive --workers 2 --batch-size 16 \
                    --handler-setting decoder=tiny --engine-batches 1,16 --concurrency 1,32,64 --requests 256 ;;
    compile) bench compile --skip torchserve --skip baseline --handler-setting compile=default \
               --engine-batches 1,8,16 --engine-iterations 5 ;;
    compile-served) bench compile-served --skip engine --skip baseline --formats no-archive --workers 2 \
                      --handler-setting compile=default --handler-setting compile_dynamic=true \
                      --concurrency 1,8,32 --requests 128 --startup-timeout 600 ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
