#!/usr/bin/env bash
# Resumable CPU training of the per-view NOCS diffusion model on the realism data engine (issue 21):
# renders the realism shards of all 319 training scans in the background (niced, resumable), a
# realism validation set of the 25 shared objects, then fine-tunes the shipped denoiser on them
# (nice 19, one thread, checkpoints every 25 steps, an EMA snapshot every 50 for the curve).
# Run it again to resume everything (data and training pick up where they stopped):
#   nohup bash scripts/train_realism.sh > runs/train_realism.log 2>&1 &
# Stop cleanly: kill the train process (its latest checkpoint is at most 25 steps old), or let
# MINUTES run out. Restarting also picks up shards rendered since the last start.
set -u
cd "$(dirname "$0")/.."
export AMENT_PREFIX_PATH=$PWD/.venv PYTHONNOUSERSITE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
SP="nice -n 19 $PY -m sparp_ros.cli"
SHARED=${SPARP_SHARED:-../shared}
DATA=${DATA:-runs/data_real32}
VAL=${VAL:-runs/data_real32_val}
RUN=${RUN:-runs/real_self}
SAMPLES=${SAMPLES:-24}           # realism samples per training object (319 objects)
STEPS=${STEPS:-6000}
LR=${LR:-5e-5}                   # constant after a 20-step warm-up. runs/real_self: steps 0-125 at
                                 # 2e-4 (drifted on the plain renders), then 5e-5 (LR=5e-5 resume)
MINUTES=${MINUTES:-600}          # this invocation's training time
MIN_SHARDS=${MIN_SHARDS:-3}      # training starts once this many shards exist (it takes in
                                 # the shards rendered meanwhile at every epoch)
mkdir -p runs

# 1. Training data, in the background (a crashed renderer ends one try; the shards written stay);
#    one renderer per data folder (the lock), so running this script again does not add a second.
(
  flock -n 9 || { echo "$DATA is being rendered already"; exit 0; }
  for try in $(seq 30); do
    $SP dataset --meshes "$SHARED/data/train_objects" --out "$DATA" --cell-size 32 \
      --samples-per-object "$SAMPLES" --views-per-sample 1..6 --seed 0 --no-fixed-views \
      --realism --quiet && break
    echo "dataset try $try ended with $?; resuming"; sleep 5
  done
) 9> "$DATA.lock" >> runs/data_real32.log 2>&1 &
echo "data: $DATA in the background (pid $!, log runs/data_real32.log)"

# 2. Validation data: the 25 shared (evaluation) objects, realism on; never trained on.
for try in 1 2 3; do
  $SP dataset --meshes "$SHARED/data/objects" --out "$VAL" --cell-size 32 --samples-per-object 2 \
    --views-per-sample 1..6 --seed 1 --no-fixed-views --realism --quiet && break
done

# 3. Wait for enough shards, then train (fine-tune from the shipped denoiser; --resume continues).
while [ "$(ls "$DATA" 2>/dev/null | grep -c '^shard_')" -lt "$MIN_SHARDS" ]; do sleep 30; done
echo "training on $(ls "$DATA" | grep -c '^shard_') shards"
$SP train --config tiny --data "$DATA" --out "$RUN" --resume \
  --init sparp_ros/model/weights/tiny/denoiser --domains nocs_self --set reference_attention=false \
  --batch-size 16 --lr "$LR" --warmup-steps 20 --steps "$STEPS" --max-minutes "$MINUTES" --threads 1 \
  --save-every 25 --snapshot-every 50 --log-every 5 \
  --val-data "$VAL" --val-every 50 --validate sparp_ros.training.validate:pose_validator
echo "train ended with $?"
