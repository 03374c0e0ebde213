#!/usr/bin/env bash
# The GPU part of the benchmark suite (issue 5) in one run: < 8 minutes on one H100/H200,
# offline. Prints a summary table last; logs and JSON go to $OUT (else a temp folder).
#
#   bash bench/gpu.sh [STEP ...]              on the GPU host (any working directory)
#   bash bench/gpu.sh --cpu-smoke [STEP ...]  every step with tiny settings on the CPU
# STEP: tests throughput packing compile fmnist (default: all five, in that order).
#
# Needs PyTorch + torchvision on the host. Ray and Optuna come from .device/install.sh when
# present (Ray 2.60 and Optuna wheels installed into /tmp/site: docs/BENCHMARKS.md, "Preparing
# the host"; without it the packing step is skipped). The full Fashion-MNIST run needs the four idx files in .device/fashion-mnist/,
# as .gz (copy them from /usr/share/datasets/fashion-mnist/) or as .xz (recompressed, so that
# they fit one call beside the Ray bundle); without them that step is skipped.
#
# Steps, each under `timeout`, inside a total budget (GPU_BENCH_BUDGET_S, default 465 s):
#   0. the CUDA-only tests: python -m pytest -m gpu -q (bf16, channels_last, generators, memory)
#   1. throughput, eager: ResNet-18 w1.0 at 16/32/64 px, s3l_core / trainer / peer / model
#   2. packing: 1, 2, 4, 8 concurrent 16 px trials through Ray fractional GPUs
#   3. throughput, torch.compile: s3l_core and model-only at 16/32 px (compile time apart)
#   4. Fashion-MNIST SimCLR ResNet-18 w1.0 at 28 px through `python -m s3l_core train`,
#      epochs = what fits the remaining budget at the 32 px rate step 1 measured (10..100;
#      without step 1 in this run, a 32 px trainer-only throughput run measures it first),
#      or $FMNIST_EPOCHS when set; $FMNIST_SET adds settings to it, e.g.
#      FMNIST_SET="augment.min_scale=0.4 method_params.temperature=0.2" (each becomes --set K=V)
# The Ray bundle and Fashion-MNIST (30 MB) may not fit one device call's 64 MiB together:
# then run `throughput packing compile` carrying the bundle, and `fmnist` in a second call.
set -uo pipefail
cd "$(dirname "$0")/.."

smoke=0
if [ "${1:-}" = "--cpu-smoke" ]; then smoke=1; shift; fi
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(tests throughput packing compile fmnist)
wanted() { [[ " ${steps[*]} " == *" $1 "* ]]; }

if [ -f .device/install.sh ]; then
  echo "== installing the bundled Ray + Optuna into /tmp/site"
  bash .device/install.sh && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
out=${OUT:-$(mktemp -d /tmp/s3l-gpu-bench.XXXXXX)}
mkdir -p "$out"
log=$out/gpu_bench.log
budget=${GPU_BENCH_BUDGET_S:-465}
reserve=15  # for the summary
: > "$out/steps.txt"

if [ $smoke = 1 ]; then
  echo "== CPU smoke run: tiny settings, no meaningful figures" | tee -a "$log"
  dev=cpu
else
  if ! nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$log"; then
    echo "nvidia-smi failed: no NVIDIA GPU here (use --cpu-smoke to check the script on a CPU)" | tee -a "$log"
    exit 1
  fi
  dev=cuda
fi
"$PY" -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0], 'cuda', torch.cuda.is_available())" | tee -a "$log"

# step NAME CAP_S COMMAND...: run with a time limit clipped to what is left of the budget.
step() {
  local name=$1 cap=$2
  shift 2
  local left=$((budget - SECONDS - reserve))
  if [ "$left" -lt 20 ]; then
    echo "== $name: skipped, the time budget is spent" | tee -a "$log"
    echo "$name skipped 0" >>"$out/steps.txt"
    return 0
  fi
  [ "$cap" -gt "$left" ] && cap=$left
  echo "== $name (limit ${cap}s, ${SECONDS}s elapsed): $*" | tee -a "$log"
  local t0=$SECONDS
  timeout --kill-after=10 "$cap" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $((SECONDS - t0))s" | tee -a "$log"
  echo "$name $rc $((SECONDS - t0))" >>"$out/steps.txt"
}

if [ $smoke = 1 ]; then
  tp=(--device cpu --width 0.0625 --batch 16 --steps 2 --warmup 1 --workers 1)
  wanted throughput && step throughput-eager 300 "$PY" -m bench throughput "${tp[@]}" --resolutions 8 16 --json "$out/throughput_eager.json"
  wanted packing && step packing 120 "$PY" -m bench packing --cpu-smoke --json "$out/packing.json"
  wanted compile && step throughput-compile 300 "$PY" -m bench throughput "${tp[@]}" --resolutions 8 --compile --pipelines s3l model --json "$out/throughput_compile.json"
else
  wanted tests && step gpu-tests 90 "$PY" -m pytest -m gpu -q -p no:cacheprovider tests/s3l_core/test_gpu.py
  wanted throughput && step throughput-eager 150 "$PY" -m bench throughput --device cuda --resolutions 16 32 64 --width 1.0 \
    --batch 512 --steps 50 --warmup 10 --json "$out/throughput_eager.json"
  wanted packing && step packing 120 "$PY" -m bench packing --counts 1 2 4 8 --resolution 16 --width 1.0 --batch 512 \
    --steps 200 --warmup 30 --json "$out/packing.json"
  wanted compile && step throughput-compile 150 "$PY" -m bench throughput --device cuda --resolutions 16 32 --width 1.0 \
    --batch 512 --steps 50 --warmup 10 --compile --pipelines s3l model --json "$out/throughput_compile.json"
fi

# Fashion-MNIST: the carried idx files (or, in the smoke run, the bundled 10k sample).
# xz-compressed idx files (4.5 MB smaller than the .gz ones, so bundle and data fit one call)
# are unpacked here; the loader reads raw idx files.
for f in .device/fashion-mnist/*.xz; do
  [ -f "$f" ] && [ ! -f "${f%.xz}" ] && "$PY" -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" "$f" "${f%.xz}"
done
fm=""
for d in .device/fashion-mnist /usr/share/datasets/fashion-mnist; do
  [ -f "$d/train-images-idx3-ubyte.gz" ] || [ -f "$d/train-images-idx3-ubyte" ] && { fm=$d; break; }
done
if [ $smoke = 1 ]; then
  fm=s3l_core/sample_data
  rate_args=(--device cpu --width 0.0625 --batch 16 --steps 2 --warmup 1)
  fm_args=(--width 0.0625 --resolution 14 --batch-size 64 --data-fraction 0.05 --device cpu
    --set eval.knn_k=20 --set eval.floors=false --set eval.linear_probe=false)
  epoch_range=(--min-epochs 1 --max-epochs 2)
else
  rate_args=(--device cuda --width 1.0 --batch 512 --steps 30 --warmup 10)
  fm_args=(--width 1.0 --resolution 28 --batch-size 512 --device cuda)
  epoch_range=()
fi
fm_out=$(mktemp -d /tmp/s3l-fmnist.XXXXXX)  # checkpoints stay out of $OUT (too large to come back)
if ! wanted fmnist; then
  :
elif [ -z "$fm" ]; then
  echo "== fashion-mnist: skipped, no idx files in .device/fashion-mnist/" | tee -a "$log"
  echo "fashion-mnist skipped 0" >>"$out/steps.txt"
else
  if [ -z "${FMNIST_EPOCHS:-}" ] && [ ! -f "$out/throughput_eager.json" ]; then
    step throughput-32px 90 "$PY" -m bench throughput "${rate_args[@]}" --resolutions 32 --pipelines trainer \
      --json "$out/throughput_eager.json"
  fi
  train_budget=$((budget - SECONDS - reserve - 45))  # 45 s: start-up, floors, linear probe
  if [ -n "${FMNIST_EPOCHS:-}" ]; then
    epochs=$FMNIST_EPOCHS
    echo "FMNIST_EPOCHS=$epochs" >>"$log"
  else
    epochs=$("$PY" -m bench summary --choose-epochs "$out/throughput_eager.json" --budget-s "$train_budget" \
      "${epoch_range[@]}" 2>>"$log")
  fi
  warmup=$((epochs / 10 < 5 ? epochs / 10 : 5))
  echo "== fashion-mnist: $epochs epochs (warm-up $warmup) for a ${train_budget}s training budget: $(tail -n 1 "$log")" | tee -a "$log"
  extra_sets=()
  for kv in ${FMNIST_SET:-}; do extra_sets+=(--set "$kv"); done
  [ ${#extra_sets[@]} -gt 0 ] && echo "FMNIST_SET=$FMNIST_SET" | tee -a "$log"
  step fashion-mnist $((train_budget + 45)) "$PY" -m s3l_core train --dataset fashion-mnist --data-dir "$fm" \
    --method simclr --depth 18 --epochs "$epochs" "${fm_args[@]}" --set eval.every=10 \
    --set optimizer.warmup_epochs="$warmup" "${extra_sets[@]}" --out "$fm_out"
fi
[ -f "$fm_out/metrics.json" ] && cp "$fm_out/metrics.json" "$out/fmnist_metrics.json"
rm -rf "$fm_out"

echo "== steps (name exit seconds):" | tee -a "$log"
tee -a "$log" <"$out/steps.txt"
echo "== total ${SECONDS}s; files in $out" | tee -a "$log"
smoke_flag=()
[ $smoke = 1 ] && smoke_flag=(--smoke)
"$PY" -m bench summary --dir "$out" --wall-s "$SECONDS" "${smoke_flag[@]}" | tee -a "$log"
