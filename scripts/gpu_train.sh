#!/usr/bin/env bash
# One prepared GPU session (device tool; DESIGN §7): render 64 px training data from the 69
# training scans, time the sd21 config at 6 views while it renders, then train two tiny models at
# 64 px cells side by side on the one GPU: per-view (nocs_self) and tiled (nocs_ref, reference
# attention). Results land in $OUT: both EMA pipelines in float16 (tar split under 16 MiB) + logs.
# Tested on CPU with: WHEELS=none GL_DEBS=none PY=.venv/bin/python SAMPLES=2 BUDGET_S=240 OUT=/tmp/o bash scripts/gpu_train.sh
set -u
PY=${PY:-python3}
SAMPLES=${SAMPLES:-150}         # samples per training object
BUDGET_S=${BUDGET_S:-540}       # everything must end by then (seconds from the start)
RENDER_S=${RENDER_S:-150}       # cap on rendering; shards written by then are used
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
echo "[$(el)s] setup done; meshes: $(ls "$MESHES" | wc -l)"
SP="$PY -m sparp_ros.cli"

timeout 200 $PY benchmarks/time_sd21.py --out "$OUT/logs/sd21_timing.json" ${SD21_ARGS:-} > "$OUT/logs/sd21.log" 2>&1 &
SD=$!
timeout "$RENDER_S" $SP dataset --meshes "$MESHES" --out "$WORK/data64" --cell-size 64 \
  --samples-per-object "$SAMPLES" --views-per-sample 1..6 --seed 0 --no-fixed-views --quiet \
  --workers "${RENDER_WORKERS:-15}"
echo "[$(el)s] dataset rc $? : $(ls "$WORK/data64" | grep -c shard) shards"
cp "$WORK/data64/meta.json" "$OUT/logs/data_meta.json"
wait $SD; echo "[$(el)s] sd21 timing rc $?"; tail -3 "$OUT/logs/sd21.log"

MIN=$(awk -v b="$BUDGET_S" -v e="$(el)" 'BEGIN { m = (b - e - 45) / 60; printf "%.2f", (m < 0.2 ? 0.2 : m) }')
echo "[$(el)s] training two models for $MIN min each"
common="train --config tiny --data $WORK/data64 --cell-size 64 --batch-size ${BATCH:-64} --lr 4e-4
  --lr-schedule cosine --steps 1000000 --max-minutes $MIN --save-every 1000000 --log-every 50
  --workers ${LOADER_WORKERS:-6} --threads 2"
$SP $common --out "$WORK/self64" --domains nocs_self --set reference_attention=false > "$OUT/logs/self64.log" 2>&1 &
A=$!
$SP $common --out "$WORK/ref64" --domains nocs_ref > "$OUT/logs/ref64.log" 2>&1 &
B=$!
wait $A; echo "[$(el)s] self64 rc $?"; wait $B; echo "[$(el)s] ref64 rc $?"
tail -n 2 "$OUT/logs/self64.log" "$OUT/logs/ref64.log"

mkdir -p "$WORK/export"
for r in self64 ref64; do
  [ -d "$WORK/$r/final" ] && $PY scripts/half_weights.py "$WORK/$r/final" "$WORK/export/$r"
  cp "$WORK/$r/log.jsonl" "$OUT/logs/${r}_log.jsonl" 2>/dev/null
  cp "$WORK/$r/train_config.json" "$OUT/logs/${r}_train_config.json" 2>/dev/null
done
tar cf - -C "$WORK/export" . | split -b 15M -d - "$OUT/weights.tar.part"
echo "[$(el)s] done"; ls -la "$OUT"
tar czf "$OUT/logs.tgz" -C "$OUT" logs && rm -rf "$OUT/logs"
