#!/usr/bin/env bash
# The benchmarks on a CUDA machine, then a packed sweep on its GPU: ~12 minutes on one GPU (QUICK=1: ~3).
# Measured in parts on one H200 with 16 cores (2026-11-30): efficiency 62 s, sweep_throughput's (a) 126 s
# and (b) 41 s of its four variants, the packed sweep 54 s; bridge_vs_base trains two full MNIST VAEs.
#
#   bash benchmarks/gpu.sh              # from anywhere, with the project's environment active
#   QUICK=1 bash benchmarks/gpu.sh      # every benchmark with --quick
#   STEP_LIMIT=120 bash benchmarks/gpu.sh   # stop any one step after 120 s (default 600) and go on
#   ONLY="throughput sweep" bash benchmarks/gpu.sh   # only these steps, of: efficiency throughput
#                                                    # bridge_vs_base sweep (default all, in that order)
#
# Where one command may run at most 10 minutes (a lent GPU machine), run it as two commands:
# ONLY="throughput sweep", then ONLY="efficiency bridge_vs_base". sweep_throughput writes its JSON after
# each of its four variants, so a step stopped by STEP_LIMIT keeps the variants it finished.
#
# Writes out/bench/gpu/{efficiency,sweep_throughput,bridge_vs_base}.json, a run folder of the packed sweep
# and gpu.log (everything printed), and prints each benchmark's table. Exits 2 when torch sees no CUDA
# device. Artifacts (base models, latents) go to out/bench/gpu/cache unless LTRANS_CACHE is set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT_DIR:-out/bench/gpu}
QUICK_FLAG=${QUICK:+--quick}
STEPS=${ONLY:-efficiency throughput bridge_vs_base sweep}
for name in $STEPS; do
  case $name in efficiency|throughput|bridge_vs_base|sweep) ;;
    *) echo "error: unknown step '$name' in ONLY; steps: efficiency throughput bridge_vs_base sweep"; exit 2 ;;
  esac
done
wanted() { [[ " $STEPS " == *" $1 "* ]]; }
mkdir -p "$OUT"
export LTRANS_CACHE=${LTRANS_CACHE:-$PWD/$OUT/cache} RAY_AUTH_MODE=disabled
exec > >(tee "$OUT/gpu.log") 2>&1

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 2)"; then
  echo "error: torch sees no CUDA device; run benchmarks/*.py with --device cpu instead"
  exit 2
fi
"$PY" -c "import torch; print(torch.cuda.get_device_name(0), 'torch', torch.__version__)"
nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv || true

# Each step is stopped after STEP_LIMIT seconds (a hang, or a GPU Ray does not see, must not eat a lease)
# and the next one runs; the script's status is the first failing step's.
STATUS=0
step() {
  echo; echo "== $* =="; local start=$SECONDS rc=0
  timeout -k 15 "${STEP_LIMIT:-600}" "$@" || rc=$?
  echo "== $(( SECONDS - start )) s, exit $rc =="
  [ "$rc" = 0 ] || [ "$STATUS" != 0 ] || STATUS=$rc
}

if wanted efficiency; then
  step "$PY" benchmarks/efficiency.py --device cuda $QUICK_FLAG --json "$OUT/efficiency.json"
fi
if wanted throughput; then
  step "$PY" benchmarks/sweep_throughput.py --device cuda $QUICK_FLAG --json "$OUT/sweep_throughput.json"
fi
if wanted bridge_vs_base; then
  step "$PY" benchmarks/bridge_vs_base.py --device cuda $QUICK_FLAG --json "$OUT/bridge_vs_base.json"
fi
wanted sweep || { echo; echo "JSON in $OUT"; exit $STATUS; }

# A packed sweep on the GPU: 64 smoke-size bridges over the loss weights and learning rate, packs of 16,
# four packs sharing the GPU; each member is one Optuna trial with its own row in trials.parquet.
cat > "$OUT/packed_gpu.yaml" <<'YAML'
name: packed_gpu
description: 64 smoke-size bridges in packs of 16 on one GPU (benchmarks/gpu.sh)
preset: smoke
pairs: [mnist_mnist]
budget: 64
pack: 16
sampler: random
objectives:
  - {name: transfer_mean, direction: maximize}
space:
  bridge.beta_swd: {type: float, low: 0.1, high: 10.0, log: true}
  bridge.beta_kl: {type: float, low: 1.0e-4, high: 0.1, log: true}
  bridge.lr: {type: float, low: 3.0e-4, high: 3.0e-3, log: true}
scheduler: {type: asha, metric: loss_recon, mode: min, grace_period: 50, reduction_factor: 2}
resources: {cpus: 1, gpus: 0.25}
max_concurrent: 4
YAML
rm -rf "$OUT/packed_gpu-run"
step "$PY" -m ltrans sweep run "$OUT/packed_gpu.yaml" --out "$OUT/packed_gpu-run"
step "$PY" -m ltrans sweep status "$OUT/packed_gpu-run"
echo; echo "tables above; JSON and the sweep's run folder in $OUT"
exit $STATUS
