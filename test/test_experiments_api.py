"""The research scripts in benchmarks/experiments/ use the pipeline's public pieces only: any
attribute they take from a pipeline object exists on SparpPipeline and is public, so a refactor
that renames one fails here rather than in a script run months later."""
from __future__ import annotations

import ast
from pathlib import Path

from sparp_ros.pipeline import SparpPipeline

EXPERIMENTS = Path(__file__).resolve().parents[1] / "benchmarks" / "experiments"
PIPELINE_NAMES = {"pipe", "gtp", "pipeline", "self"}


def _pipeline_attributes(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in PIPELINE_NAMES and isinstance(node.ctx, ast.Load)):
            found.add(node.attr)
    return found


def test_experiments_call_only_public_pipeline_methods():
    scripts = sorted(EXPERIMENTS.glob("*.py"))
    assert len(scripts) > 10
    used = {}
    for path in scripts:
        for name in _pipeline_attributes(path):
            if callable(getattr(SparpPipeline, name, None)) or name.startswith("_"):
                used.setdefault(name, []).append(path.name)
    private = {n: files for n, files in used.items() if n.startswith("_")}
    assert not private, f"experiments reach private pipeline methods: {private}"
    for name in used:
        assert hasattr(SparpPipeline, name), name
    assert {"prepare_view", "predict_nocs", "select_poses", "align_views"} <= set(used)


def test_experiments_reach_no_private_name_of_any_module():
    """``module._name(...)`` anywhere in the experiments (e.g. ``az._total``) is a private
    function of the package used from outside it."""
    for path in sorted(EXPERIMENTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.attr.startswith("_") and not node.attr.startswith("__")
                    and node.value.id not in ("self", "cls")):
                raise AssertionError(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
