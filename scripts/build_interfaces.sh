#!/usr/bin/env bash
# Build our ROS interface packages (interfaces/*) into a venv that holds the ROS 2 PyPI wheels.
#
#   bash scripts/build_interfaces.sh VENV
#
# Why this is needed (DESIGN.md §5): rclpy has no runtime message types, so the messages must be
# generated and compiled (rosidl + cmake + g++). The generated packages are installed into the venv
# itself (colcon --merge-install --install-base VENV) and then import with no further environment.
#
# Steps:
#   1. The wheels' exported CMake files name the wheel builder's Python include dirs
#      (/opt/python/cp3XX-cp3XX/...): point them at this interpreter's include dirs (idempotent).
#   2. colcon build interfaces/ into the venv. tf2_msgs (TFMessage only) is built only when a real
#      tf2_msgs is not importable (a full ROS 2 install has one; the wheels do not).
#   3. Check that the messages import and can be constructed.
# Quiet on success; on failure prints the build log and exits non-zero.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 VENV" >&2
    exit 2
fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(cd "$1" && pwd)"
PY="$VENV/bin/python"
BUILD_BASE="$REPO/build/interfaces"
LOG="$BUILD_BASE/build.log"
[[ -x "$PY" ]] || { echo "build_interfaces: $PY not found (create the venv first)" >&2; exit 1; }
for tool in cmake g++ make; do
    command -v "$tool" >/dev/null || { echo "build_interfaces: '$tool' is required but not on PATH" >&2; exit 1; }
done
[[ -x "$VENV/bin/colcon" ]] || { echo "build_interfaces: $VENV/bin/colcon missing (pip install -r requirements.txt)" >&2; exit 1; }
mkdir -p "$BUILD_BASE"

fail() {
    echo "build_interfaces: $1" >&2
    [[ -f "$LOG" ]] && tail -n 80 "$LOG" >&2
    exit 1
}

# The venv's own environment, whatever the caller has sourced.
export PATH="$VENV/bin:$PATH"
export AMENT_PREFIX_PATH="$VENV"
export CMAKE_PREFIX_PATH="$VENV"
export PYTHONNOUSERSITE=1

# 1. Rewrite the wheel builder's Python include paths in the exported CMake files.
read -r PY_INCLUDE NUMPY_INCLUDE < <("$PY" -c \
    "import sysconfig, numpy; print(sysconfig.get_paths()['include'], numpy.get_include())")
[[ -f "$PY_INCLUDE/Python.h" ]] || fail "Python.h not found in $PY_INCLUDE (install the Python dev headers)"
mapfile -t CMAKE_FILES < <(grep -rl --include='*.cmake' '/opt/python/' "$VENV/share" 2>/dev/null || true)
if [[ ${#CMAKE_FILES[@]} -gt 0 ]]; then
    sed -i -E \
        -e "s#/opt/python/cp[0-9]+-cp[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/(_core|core)/include#${NUMPY_INCLUDE}#g" \
        -e "s#/opt/python/cp[0-9]+-cp[0-9]+/include/python3\.[0-9]+#${PY_INCLUDE}#g" \
        "${CMAKE_FILES[@]}"
    if grep -rl --include='*.cmake' '/opt/python/' "$VENV/share" >/dev/null 2>&1; then
        fail "some /opt/python paths in $VENV/share/**/*.cmake were not rewritten: $(grep -rl --include='*.cmake' '/opt/python/' "$VENV/share" | head -3)"
    fi
fi

# 2. Build. A tf2_msgs that imports from outside the venv, or that colcon did not put there, is real.
SKIP=()
if TF2_FILE="$("$PY" -c 'import tf2_msgs.msg, tf2_msgs; print(tf2_msgs.__file__)' 2>/dev/null)"; then
    if [[ "$TF2_FILE" != "$VENV"/* || ! -e "$VENV/share/colcon-core/packages/tf2_msgs" ]]; then
        SKIP=(--packages-skip tf2_msgs)
    fi
fi
(
    cd "$REPO"
    colcon --log-base "$BUILD_BASE/log" build \
        --base-paths interfaces \
        --build-base "$BUILD_BASE" \
        --install-base "$VENV" \
        --merge-install \
        --event-handlers console_direct+ \
        "${SKIP[@]}" \
        --cmake-args -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF -Wno-dev
) >"$LOG" 2>&1 || fail "colcon build failed (full log: $LOG)"

# 3. Check: the messages import in a fresh interpreter and can be constructed.
"$PY" - >>"$LOG" 2>&1 <<'EOF' || fail "the built interfaces do not import (see $LOG)"
from geometry_msgs.msg import TransformStamped
from sparp_ros_msgs.msg import ObjectReconstruction, ObjectReconstructionArray
from tf2_msgs.msg import TFMessage

msg = ObjectReconstruction(object_id="check", scale=0.2, view_ok=[True, False])
assert msg.scale == 0.2 and list(msg.view_ok) == [True, False]
assert ObjectReconstructionArray(objects=[msg]).objects[0].object_id == "check"
assert len(TFMessage(transforms=[TransformStamped()]).transforms) == 1
EOF
