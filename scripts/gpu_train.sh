#!/usr/bin/env bash
# One prepared GPU session (device tool; DESIGN §7; issue 21): render 64 px *realism* training data
# (render/object_realism.py: wider cameras, support plane and shadows, light types, backgrounds,
# distractors, camera effects, truncation) from the training scans with EGL on the GPU, then train
# the per-view NOCS model (nocs_self, no reference attention) at 64 px cells with every item
# decoded once into GPU memory (`train --cache-data`: the last GPU run was loader-bound at ~200
# samples/s with 6 loader workers). Results land in $OUT: the EMA pipeline in float16 (tar split
# under 16 MiB) + logs.
#
# Before the session, on this machine (the meshes travel as one archive; keep the carried paths
# under 64 MiB in all, e.g. OBJECTS=200 of the 319 scans if the archive is too large):
#   mkdir -p .gpu && tar cJf .gpu/train_objects.tar.xz -C ../shared/data train_objects
# The session (the previous one's wheels and GL debs in .whl and .gl; benchmarks/gpu/README.md):
#   run(command="BUDGET_S=565 bash scripts/gpu_train.sh", carry=[".whl", ".gl", ".gpu"], timeout_s=600)
# Tested on CPU with:
#   WHEELS=none GL_DEBS=none PY=.venv/bin/python MESHES=../shared/data/train_objects OBJECTS=4 \
#     SAMPLES=2 BATCH=4 BUDGET_S=150 RENDER_WORKERS=1 LOADER_WORKERS=0 OUT=/tmp/o bash scripts/gpu_train.sh
set -u
PY=${PY:-python3}
SAMPLES=${SAMPLES:-40}          # realism samples per training object (~3x the plain render cost)
BUDGET_S=${BUDGET_S:-540}       # everything must end by then (seconds from the start)
RENDER_S=${RENDER_S:-170}       # cap on rendering; shards written by then are used
WORK=${WORK:-/tmp/sparp_gpu}
OUT=${OUT:?set OUT}
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
mkdir -p "$WORK" "$OUT/logs"
exec > >(tee "$OUT/logs/session.log") 2>&1
echo "[$(el)s] start on $(hostname); $(nvidia-smi -L 2>/dev/null || echo no GPU)"
WHEELS=${WHEELS:-.whl}; GL_DEBS=${GL_DEBS:-.gl}   # set both to "none" off the device machine
if [ -d "$WHEELS" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if [ -d "$GL_DEBS" ]; then for f in "$GL_DEBS"/*.deb; do dpkg -x "$f" /; done; ldconfig; fi
V=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f $V ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$V
MESHES=${MESHES:-}
if [ -z "$MESHES" ]; then tar xJf .gpu/train_objects.tar.xz -C "$WORK"; MESHES=$WORK/train_objects; fi
OBJ_ARG=""; [ -n "${OBJECTS:-}" ] && OBJ_ARG="--objects $OBJECTS"
echo "[$(el)s] setup done; meshes: $(ls "$MESHES" | grep -c '\.glb$')"
SP="$PY -m sparp_ros.cli"

timeout "$RENDER_S" $SP dataset --meshes "$MESHES" $OBJ_ARG --out "$WORK/real64" --cell-size 64 \
  --samples-per-object "$SAMPLES" --views-per-sample 1..6 --seed 0 --no-fixed-views --realism \
  --quiet --workers "${RENDER_WORKERS:-15}"; rc=$?
echo "[$(el)s] dataset rc $rc : $(ls "$WORK/real64" | grep -c shard) shards"
cp "$WORK/real64/meta.json" "$OUT/logs/data_meta.json"

MIN=$(awk -v b="$BUDGET_S" -v e="$(el)" 'BEGIN { m = (b - e - 60) / 60; printf "%.2f", (m < 0.2 ? 0.2 : m) }')
echo "[$(el)s] training self64 for $MIN min (caching included)"
$SP train --config tiny --data "$WORK/real64" --cell-size 64 --out "$WORK/self64" \
  --domains nocs_self --set reference_attention=false --batch-size "${BATCH:-64}" --lr 4e-4 \
  --warmup-steps 100 --lr-schedule cosine --steps 1000000 --max-minutes "$MIN" \
  --save-every 1000000 --log-every 50 --cache-data --workers "${LOADER_WORKERS:-12}" --threads 2 \
  > "$OUT/logs/self64.log" 2>&1; rc=$?
echo "[$(el)s] self64 rc $rc"; grep -m1 cached "$OUT/logs/self64.log"; tail -n 2 "$OUT/logs/self64.log"

mkdir -p "$WORK/export"
[ -d "$WORK/self64/final" ] && $PY scripts/half_weights.py "$WORK/self64/final" "$WORK/export/self64"
cp "$WORK/self64/log.jsonl" "$OUT/logs/self64_log.jsonl" 2>/dev/null
cp "$WORK/self64/train_config.json" "$OUT/logs/self64_train_config.json" 2>/dev/null
tar cf - -C "$WORK/export" . | split -b 15M -d - "$OUT/weights.tar.part"
echo "[$(el)s] done"; ls -la "$OUT"
tar czf "$OUT/logs.tgz" -C "$OUT" logs && rm -rf "$OUT/logs"
