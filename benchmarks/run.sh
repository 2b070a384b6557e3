#!/usr/bin/env bash
# The benchmark run (`make bench`): speed and accuracy numbers, each printed with its command.
# Not part of `make test` (slow); results land in benchmarks/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
echo "== machine: $(nproc) cores, $(uname -m), $(date -u +%F)"
echo "== $PY benchmarks/render_rate.py"
$PY benchmarks/render_rate.py
echo "== $PY benchmarks/eval_shared.py --objects 10 --views 4"
$PY benchmarks/eval_shared.py --objects 10 --views 4
echo "== $PY -m pytest -q -m slow test"
$PY -m pytest -q -m slow test || [ $? -eq 5 ]
