#!/usr/bin/env bash
# The benchmark run (`make bench`): render rate, then accuracy / speed / memory of every method
# (the measurement limit `limit` included) on fixed-seed captures of the shared objects for 1, 2, 4
# and 6 views, their depth through the stereo noise model (BENCH_DEPTH_NOISE=none: exact depth), a
# robustness sweep, and benchmarks/RESULTS.md with its plots (benchmarks/*.png), then the slow tests.
# Not part of `make test` (slow: ~40 min on 2 loaded cores). Raw results: benchmarks/out/ (git-ignored).
#   BENCH_OBJECTS=25 BENCH_SWEEP_OBJECTS=6 [BENCH_DEPTH_NOISE=stereo] [SOAK=1] bash benchmarks/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export AMENT_PREFIX_PATH=${AMENT_PREFIX_PATH:-$PWD/.venv} PYTHONNOUSERSITE=1
OBJECTS=${BENCH_OBJECTS:-25}
SWEEP_OBJECTS=${BENCH_SWEEP_OBJECTS:-6}
DEPTH_NOISE=${BENCH_DEPTH_NOISE:-stereo}
mkdir -p benchmarks/out
start=$(date +%s)
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(uname -m), $(date -u +%F)"
echo "== $PY benchmarks/render_rate.py"
$PY benchmarks/render_rate.py | tee benchmarks/out/render_rate.txt
echo "== $PY benchmarks/benchmark.py all --objects $OBJECTS --sweep-objects $SWEEP_OBJECTS --depth-noise $DEPTH_NOISE"
$PY benchmarks/benchmark.py all --objects "$OBJECTS" --sweep-objects "$SWEEP_OBJECTS" \
    --depth-noise "$DEPTH_NOISE"
# Images alone on inputs our plain renderer did not make (issue 21): photo-like renders of the
# shared objects (the data engine's realism), 4-view subsets of the real Middlebury temple and of
# the CO3D apple; each report has an overview picture per capture (OUT/overviews/).
echo "== $PY benchmarks/eval_shared.py --objects $OBJECTS --views 4 --realism --backend model+images --baseline none"
OMP_NUM_THREADS=1 $PY benchmarks/eval_shared.py --objects "$OBJECTS" --views 4 --realism \
    --out benchmarks/out/eval25r --backend model+images --baseline none > benchmarks/out/eval25r.json
grep -A3 '^| method' benchmarks/out/eval25r/report/report.md
if [ -f "${SPARP_SHARED:-../shared}/data/real/middlebury_temple/cameras.json" ]; then
  echo "== real temple: $PY benchmarks/real_subsets.py --views 4 --subsets 8; sparp-ros eval --backend model+images"
  $PY benchmarks/real_subsets.py --views 4 --subsets 8 --out benchmarks/out/real/temple
  OMP_NUM_THREADS=1 $PY -m sparp_ros.cli eval benchmarks/out/real/temple \
      --out benchmarks/out/real/temple_report --backend model+images --baseline pycolmap
  grep -A4 '^| method' benchmarks/out/real/temple_report/report.md
fi
if [ -f "${SPARP_SHARED:-../shared}/data/real/co3d_apple/cameras.json" ]; then
  # no masks, no depth: `eval` segments each subset with the learned segmenter, as the node would
  echo "== real apple: $PY benchmarks/real_subsets.py --source .../co3d_apple --views 4 --subsets 4"
  $PY benchmarks/real_subsets.py --source "${SPARP_SHARED:-../shared}/data/real/co3d_apple" \
      --views 4 --subsets 4 --out benchmarks/out/real/apple
  OMP_NUM_THREADS=1 $PY -m sparp_ros.cli eval benchmarks/out/real/apple \
      --out benchmarks/out/real/apple_report --backend model+images --baseline none
  grep -A3 '^| method' benchmarks/out/real/apple_report/report.md
fi
if [ "${SOAK:-0}" = 1 ]; then   # the node's soak run, ~7 min (benchmarks/soak.py -> soak.md)
    echo "== $PY benchmarks/soak.py"
    $PY benchmarks/soak.py
fi
echo "== $PY -m pytest -q -m slow test"
$PY -m pytest -q -m slow test || [ $? -eq 5 ]
echo "== benchmarks/run.sh done in $(( ($(date +%s) - start) / 60 )) min; see benchmarks/RESULTS.md"
