#!/usr/bin/env bash
# The curve of error against the number of training objects (issue 21): the shipped denoiser
# fine-tuned on the realism data of the first N of the 319 training scans (runs/data_real32,
# 24 samples per object; `train --objects N`), the same schedule for every N (STEPS steps,
# batch 16, lr 5e-5 after a 20-step warm-up, one thread, nice 19), each validated on the realism
# renders of the 25 shared objects (runs/data_real32_val, never trained on) every 50 steps.
# Two runs at a time (one per core). Resumable: run it again and each run continues.
#   nohup bash scripts/data_curve.sh > runs/data_curve.log 2>&1 &
# Then: python benchmarks/data_curve.py runs/curve_objects_*   (the table)
set -u
cd "$(dirname "$0")/.."
export AMENT_PREFIX_PATH=$PWD/.venv PYTHONNOUSERSITE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
DATA=${DATA:-runs/data_real32}
VAL=${VAL:-runs/data_real32_val}
STEPS=${STEPS:-200}
run() {
  nice -n 19 $PY -m sparp_ros.cli train --config tiny --data "$DATA" --objects "$1" \
    --out "runs/curve_objects_$1" --resume --init sparp_ros/model/weights/tiny/denoiser \
    --domains nocs_self --set reference_attention=false --batch-size 16 --lr 5e-5 \
    --warmup-steps 20 --steps "$STEPS" --threads 1 --save-every 25 --snapshot-every 50 \
    --log-every 25 --val-data "$VAL" --val-every 50 \
    --validate sparp_ros.training.validate:pose_validator > "runs/curve_objects_$1.log" 2>&1
  echo "objects $1: train ended with $?"
}
for pair in "40 319" "80 160"; do
  set -- $pair
  run "$1" & run "$2" & wait
done
