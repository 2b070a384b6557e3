#!/usr/bin/env bash
# The shipped denoiser fine-tuned on realism and plain data mixed (issue 21's lever against the
# drift on plain renders that realism-only fine-tunes show): runs/data_real32 (7 656 realism
# samples of the 319 training scans) + runs/data_plain32 (2 552 plain samples of the same scans,
# made here if missing), the data curve's schedule (200 steps, batch 16, lr 5e-5, 20-step warm-up).
# Resumable: run it again and it continues.
#   nohup bash scripts/mixed_finetune.sh > runs/mixed_finetune.log 2>&1 &
set -eu
cd "$(dirname "$0")/.."
export AMENT_PREFIX_PATH=$PWD/.venv PYTHONNOUSERSITE=1
PY=${PY:-.venv/bin/python}
SHARED=${SPARP_SHARED:-../shared}
RUN=${RUN:-runs/mixed_finetune}
THREADS=${THREADS:-2}
[ -f runs/data_plain32/meta.json ] && grep -q '"complete": true' runs/data_plain32/meta.json || \
  nice -n 10 $PY -m sparp_ros.cli dataset --meshes "$SHARED/data/train_objects" --out runs/data_plain32 \
    --cell-size 32 --samples-per-object 8 --views-per-sample 1..6 --seed 5 --no-fixed-views --quiet
nice -n 19 $PY -m sparp_ros.cli train --config tiny --data runs/data_real32 runs/data_plain32 \
  --out "$RUN" --resume --init sparp_ros/model/weights/tiny/denoiser --domains nocs_self \
  --set reference_attention=false --batch-size 16 --lr 5e-5 --warmup-steps 20 --steps 200 \
  --threads "$THREADS" --save-every 25 --snapshot-every 50 --log-every 25 \
  --val-data runs/data_real32_val --val-every 50 --validate sparp_ros.training.validate:pose_validator
