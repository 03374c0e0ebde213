#!/usr/bin/env bash
# The CPU part of the benchmark suite (issue 5), as recorded in docs/BENCHMARKS.md.
# About 12 minutes on 2 cores. JSON and logs go to $OUT (else a temp folder).
#   bash bench/cpu.sh [NAME ...]     NAME in: throughput compile augment overhead quickstart report
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
out=${OUT:-$(mktemp -d /tmp/s3l-cpu-bench.XXXXXX)}
mkdir -p "$out"
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(throughput compile augment overhead quickstart report)

for name in "${names[@]}"; do
  echo "== $name ($(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg))"
  t0=$SECONDS
  case $name in
    throughput)
      # Full-width ResNet-18 trains ~30 img/s at 32 px on 2 cores: width 0.25 keeps this to minutes.
      "$PY" -m bench throughput --device cpu --resolutions 16 32 64 --width 0.25 --batch 64 --steps 10 --warmup 2 \
        --workers 2 --json "$out/throughput.json" ;;
    compile)
      "$PY" -m bench throughput --device cpu --resolutions 32 --width 0.25 --batch 64 --steps 10 --warmup 2 \
        --pipelines s3l model --compile --json "$out/throughput_compile.json" ;;
    augment)
      "$PY" -m bench augment --resolution 28 --batch 512 --workers 2 0 --json "$out/augment.json" ;;
    overhead)
      "$PY" -m bench overhead --trials 50 --json "$out/overhead.json" 2>"$out/overhead.stderr" | grep -v '^\s*$' | tail -n 30
      ;;
    quickstart)
      "$PY" -m bench quickstart --json "$out/quickstart.json" ;;
    report)
      "$PY" -m bench report --sizes 100 1000 10000 ;;
    *)
      echo "unknown benchmark $name" >&2 ;;
  esac
  echo "== $name: $((SECONDS - t0)) s"
done
echo "== files in $out"
