#!/usr/bin/env bash
# Compare a denoiser (a training snapshot or a checkpoint's pipeline/denoiser) with the shipped one
# on the three capture sets of issue 21, images alone (model+images), one torch thread, niced:
#   (a) realism renders of the 25 shared objects (benchmarks/out/eval25r, eval_shared.py --realism),
#   (b) the real temple, 8 four-view subsets (benchmarks/real_subsets.py),
#   (c) the bar's plain renders (benchmarks/out/eval25n/captures, the seed-0 captures),
# plus the NOCS model per view on (a) and (c) (exp_perview_captures.py). Reports in OUT/.
#   bash scripts/eval_realism_checkpoint.sh runs/real_self/snapshots/step_0000150 runs/eval_step150 [shipped]
# With a third argument "shipped", the shipped model is measured too (same captures, same run).
set -eu
cd "$(dirname "$0")/.."
export AMENT_PREFIX_PATH=$PWD/.venv PYTHONNOUSERSITE=1 OMP_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
DEN=$1; OUT=$2
mkdir -p "$OUT"
nice -n 15 $PY scripts/weights_with_denoiser.py "$DEN" "$OUT/weights" > /dev/null
[ -f benchmarks/out/eval25r/captures/ACE_Coffee_Mug_Kristen_16_oz_cup_v4_s0_real/cameras.json ] || \
  nice -n 15 $PY benchmarks/eval_shared.py --objects 25 --views 4 --realism --no-eval --out benchmarks/out/eval25r
[ -d benchmarks/out/real/temple/middlebury_temple_07 ] || \
  nice -n 15 $PY benchmarks/real_subsets.py --views 4 --subsets 8 --out benchmarks/out/real/temple
[ -d benchmarks/out/eval25n/captures ] || \
  nice -n 15 $PY benchmarks/eval_shared.py --objects 25 --views 4 --depth-noise stereo --out benchmarks/out/eval25n --backend oracle --baseline none
W=("$OUT/weights"); [ "${3:-}" = shipped ] && W+=(shipped)
for w in "${W[@]}"; do
  tag=$( [ "$w" = shipped ] && echo shipped || echo new )
  arg=(); [ "$w" = shipped ] || arg=(--weights "$w")
  for set in "eval25r benchmarks/out/eval25r/captures" "temple benchmarks/out/real/temple" "eval25n benchmarks/out/eval25n/captures"; do
    read -r name caps <<< "$set"
    nice -n 15 $PY -m sparp_ros.cli eval $caps --out "$OUT/${tag}_$name" --backend model+images \
      --baseline none "${arg[@]}" > /dev/null 2>&1
    echo "$tag $name: $(grep '^| model+images' "$OUT/${tag}_$name/report.md" | cut -d'|' -f3-5)"
  done
done | tee "$OUT/summary.txt"
for caps in benchmarks/out/eval25r/captures benchmarks/out/eval25n/captures; do
  CAPTURES=$caps nice -n 15 $PY benchmarks/experiments/exp_perview_captures.py "$OUT/weights" 2>&1 | grep per-view
done | tee -a "$OUT/summary.txt"
