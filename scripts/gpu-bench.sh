#!/usr/bin/env bash
# The GPU benchmark behind docs/PERFORMANCE.md. Stages run in the order given; each writes
# OUT_DIR/<stage>/bench.json (or <stage>.json) and OUT_DIR/<stage>.log.
#   kernels       build the compiled kernels of the shipped settings into the model folder (cold compile)
#   kernels-tiny  the same for the tiny decoder (decoder=tiny)
#   shipped       the shipped settings (compile from those kernels, CUDA graphs, fast PNG), 2 workers:
#                 engine ceiling, launch -> READY with its phases, served sweep c = 1/8/32, FastAPI baseline
#   workers3      served sweep only, 3 workers per GPU, c = 32/64
#   workers4      4 workers per GPU, c = 32/64 with 512 requests each, beside the engine at batches 8 and 16
#   eager         compile off (graphs on): engine and served sweep, and launch -> READY without kernels
#   baseline      the FastAPI one-at-a-time baseline alone (c = 1/8/32)
#   memory-cap    2 workers capped at MEMORY_CAP_GIB (default 7) each, worst request mix (bench.py --memory-cap-gib)
#   tiny-decoder  the tiny decoder with its kernels, 2 workers, batch 16, c = 1/32/64
#   probe-decoder the VAE decoder alone: nearest vs sub-pixel upsampling, eager and compiled, slices 4/16
#   probe-engine  the shipped engine under the profiler at batch 16 (wall vs device time), and its images
#                 against plain diffusers' (parity, PARITY_SEEDS seeds, default 8); after the kernels stage
#   engine        the engine alone at batches 1 and 16 (text-to-image and image-to-image)
#   served-image  4 workers, JSON and Accept: image/png at c = 1 (split along the path) and c = 64
#   ready2        launch -> READY with 2 workers and the kernels (the default 2-worker start)
#   tiny-image    the tiny decoder (kernels-tiny first), 4 workers, batch 16, image replies at c = 1/64
#   memory-profile  a profile's T4 proof: PROFILE's endpoint sizing (handler/profiles.yaml, default
#                 sdxl-turbo: run with ARCH=sdxl) under the worst mix; the whole GPU must stay 1 GiB under
#                 a T4's 15,360 MiB (bench.py --memory-profile)
#   fp16-fix-vae  copy the model's vae/ to vae-fp16-fix/ (random weights of its architecture), so later
#                 stages decode SDXL in fp16 with the fp32 fallback armed (ARCH=sdxl)
# The model is the full-size SD-turbo architecture (SDXL-turbo's with ARCH=sdxl) with random weights (same
# compute as the real one), built once into MODEL_DIR (default /tmp/sd-turbo-full or /tmp/sdxl-turbo-full).
# STAGE_TIMEOUT (seconds, default 420) bounds each stage; KERNEL_ARGS are extra build_compiled_kernels.py
# arguments (the settings a baseline's kernels are built with). Two GPUs can run two
# stage lists at once: CUDA_VISIBLE_DEVICES=1 STAGES="..." scripts/gpu-bench.sh OUT2 & (TorchServe counts
# the GPUs in CUDA_VISIBLE_DEVICES).
# Usage: [STAGES="..."] scripts/gpu-bench.sh OUT_DIR   (on the GPU machine: source .device/activate.sh first)
# Exit codes: 0 every stage passed, 1 a stage failed, 2 bad usage, 3 the model could not be built.
set -uo pipefail
usage() { sed -n '2,/^set -uo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; }
case ${1:-} in
  -h|--help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
esac
out=$1
arch=${ARCH:-sd}
model=${MODEL_DIR:-/tmp/$arch-turbo-full}
stages=${STAGES-kernels shipped eager memory-cap}  # STAGES="" only builds the model
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
gpu=${CUDA_VISIBLE_DEVICES:+--id=$CUDA_VISIBLE_DEVICES}
nvidia-smi $gpu --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
if [ ! -f "$model/model_index.json" ]; then
  python3 scripts/build_offline_model.py --arch "$arch" --size full --device cuda --tiny-decoder --out "$model" \
    --force || exit 3
fi
status=0
run() {  # run NAME COMMAND...: bounded, logged, summarised
  local name=$1; shift
  local started=$SECONDS
  timeout "${STAGE_TIMEOUT:-420}" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  grep -v '^\[transformers\]' "$out/$name.log" | tail -n 12
  echo "stage $name exited $rc after $((SECONDS - started)) s"
  [ $rc -eq 0 ] || status=1
}
# BENCH_ARGS: extra bench.py arguments for every stage (e.g. --handler-setting compile=none)
bench() { local name=$1; shift; run "$name" python3 scripts/bench.py --model-dir "$model" --out "$out/$name" "$@" ${BENCH_ARGS:-}; }
for stage in $stages; do
  case $stage in
    kernels) run kernels python3 scripts/build_compiled_kernels.py --model-dir "$model" ${KERNEL_ARGS:-} ;;
    kernels-tiny) run kernels-tiny python3 scripts/build_compiled_kernels.py --model-dir "$model" \
                    --handler-setting decoder=tiny ${KERNEL_ARGS:-} ;;
    shipped) bench shipped --formats no-archive --workers 2 --concurrency 1,8,32 --requests 128 \
               --baseline-requests 48 --engine-batches 1,8,16 --engine-iterations 5 ;;
    workers3) bench workers3 --skip engine --skip baseline --formats no-archive --workers 3 \
                --concurrency 32,64 --requests 256 ;;
    workers4) bench workers4 --skip baseline --formats no-archive --workers 4 --concurrency 32,64 \
                --requests 512 --engine-batches 8,16 --engine-iterations 5 ;;
    eager) bench eager --skip baseline --handler-setting compile=none --formats no-archive --workers 2 \
             --concurrency 1,32 --requests 128 --engine-batches 1,8,16 --engine-iterations 5
           bench eager-start --skip engine --skip baseline --handler-setting compiled_kernels_dir=absent \
             --formats no-archive --workers 2 --concurrency 1 --requests 8 ;;
    baseline) bench baseline --skip engine --skip torchserve --concurrency 1,8,32 --baseline-requests 48 ;;
    memory-cap) bench memory-cap --skip engine --skip torchserve --skip baseline \
                  --memory-cap-gib "${MEMORY_CAP_GIB:-7}" --memory-cap-requests 96 ;;
    tiny-decoder) bench tiny-decoder --skip baseline --formats no-archive --workers 2 --batch-size 16 \
                    --handler-setting decoder=tiny --engine-batches 1,16 --concurrency 1,32,64 --requests 256 ;;
    probe-decoder) run probe-decoder python3 scripts/gpu_probe.py --model-dir "$model" --out "$out/probe.jsonl" \
                     --decoder "${PROBE_VARIANTS:-nearest:eager:4,subpixel:eager:4,nearest:default:4,subpixel:default:4,subpixel:default:16,nearest:default:16}" ;;
    probe-engine) run probe-engine python3 scripts/gpu_probe.py --model-dir "$model" --out "$out/probe.jsonl" \
                    --engine-batch 16 --parity "${PARITY_SEEDS:-8}" ;;
    engine) bench engine --skip torchserve --skip baseline --engine-batches 1,16 --engine-iterations 5 ;;
    served-image) bench served-image --skip engine --skip baseline --formats no-archive --workers 4 \
                    --image-replies --concurrency 1,64 --requests 384 ;;
    ready2) bench ready2 --skip engine --skip baseline --formats no-archive --workers 2 --concurrency 1 \
              --requests 16 ;;
    tiny-image) bench tiny-image --skip baseline --formats no-archive --workers 4 --batch-size 16 --image-replies \
                  --handler-setting decoder=tiny --engine-batches 1,16 --concurrency 1,64 --requests 512 ;;
    memory-profile) bench memory-profile --skip engine --skip torchserve --skip baseline \
                      --memory-profile "${PROFILE:-sdxl-turbo}" --memory-cap-requests 64 ;;
    fp16-fix-vae) [ -d "$model/vae-fp16-fix" ] || cp -r "$model/vae" "$model/vae-fp16-fix"
                  echo "stage fp16-fix-vae: $model/vae-fp16-fix" ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
exit $status
