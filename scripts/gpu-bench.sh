#!/usr/bin/env bash
# The GPU benchmark behind docs/PERFORMANCE.md. Stages run in the order given (STAGES, default
# "shipped eager pillow tiny-decoder"); each writes OUT_DIR/<stage>/bench.json and OUT_DIR/<stage>.log.
#   shipped       engine ceiling, natural-image encode, TorchServe launch -> READY with its phases, served
#                 sweep over concurrency 1/8/32 with 2 workers (the GPU setting), and the FastAPI baseline
#   eager         engine only, CUDA graphs off (what the graphs buy)
#   pillow        engine only, Pillow's PNG encoder instead of handler/png.py (what the encoder buys)
#   tiny-decoder  2 workers, batch 16, the TAESD-shaped decoder, up to concurrency 64
#   formats       launch -> READY for both archive formats (no-archive folder vs zip-store .mar)
#   compile       engine only, torch.compile (mode default) + CUDA graphs at batch 1 and 16 (cold compile)
#   compile-served  2 workers, torch.compile + CUDA graphs at batch 1/4/16 with a shared Inductor cache:
#                 launch -> READY cold (no-archive, swept) then warm from that cache (zip-store)
# The model is the full-size SD-turbo architecture with random weights (same compute as the real one).
# STAGE_TIMEOUT (seconds, default 420) bounds each stage so one stuck stage cannot eat the others' time.
# Usage: [STAGES="..."] scripts/gpu-bench.sh OUT_DIR   (on the GPU machine: source .device/activate.sh first)
set -uo pipefail
out=${1:?usage: scripts/gpu-bench.sh OUT_DIR}
model=${MODEL_DIR:-/tmp/sd-turbo-full}
stages=${STAGES:-shipped eager pillow tiny-decoder}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
if [ ! -f "$model/model_index.json" ]; then
  python3 scripts/build_offline_model.py --size full --device cuda --tiny-decoder --out "$model" --force || exit 3
fi
status=0
bench() {
  local name=$1; shift
  timeout "${STAGE_TIMEOUT:-420}" python3 scripts/bench.py --model-dir "$model" --out "$out/$name" "$@" \
    > "$out/$name.log" 2>&1
  local rc=$?
  grep -v '^\[transformers\]' "$out/$name.log" | tail -n 25
  echo "stage $name exited $rc"
  [ $rc -eq 0 ] || status=1
}
for stage in $stages; do
  case $stage in
    shipped) bench shipped --formats no-archive --workers 2 --concurrency 1,8,32 --requests 128 \
               --baseline-requests 64 --engine-batches 1,8,16 --engine-iterations 5 ;;
    eager) bench eager --skip torchserve --skip baseline --handler-setting cuda_graphs=false \
             --engine-batches 1,8,16 --engine-iterations 5 ;;
    pillow) bench pillow --skip torchserve --skip baseline --handler-setting png_encoder=pillow \
              --engine-batches 1,8,16 --engine-iterations 5 ;;
    tiny-decoder) bench tiny-decoder --skip baseline --formats no-archive --workers 2 --batch-size 16 \
                    --handler-setting decoder=tiny --engine-batches 1,16 --concurrency 1,32,64 --requests 256 ;;
    formats) bench formats --skip engine --skip baseline --concurrency 1 --requests 8 ;;
    compile) bench compile --skip torchserve --skip baseline --handler-setting compile=default \
               --handler-setting cuda_graph_batch_sizes=1,16 --handler-setting vae_decode_batch=4 \
               --engine-batches 1,16 --engine-iterations 5 ;;
    compile-served) rm -rf /tmp/sdturbo-compile-cache
                    bench compile-served --skip engine --skip baseline --formats no-archive,zip-store --workers 2 \
                      --handler-setting compile=default --handler-setting cuda_graph_batch_sizes=1,4,16 \
                      --handler-setting compile_cache_dir=/tmp/sdturbo-compile-cache \
                      --concurrency 1,8,32 --requests 128 ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
exit $status
