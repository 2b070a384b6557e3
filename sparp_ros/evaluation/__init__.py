"""Evaluation: pose and shape metrics, the pycolmap baseline, reports (DESIGN.md §1.6, §4).

ROS-free. ``metrics`` needs only numpy/scipy (trimesh for mesh metrics); pycolmap and the pipeline
are imported only when a run needs them.
"""
from .colmap_baseline import BaselineResult, run_pycolmap
from .metrics import (chamfer_fscore, mesh_metrics, relative_rotation_errors,
                      relative_translation_angle_errors, relative_translation_errors,
                      summarize_rotation)


def __getattr__(name: str):
    """``run_eval`` on first use: it imports the pipeline, which metric-only users do not need."""
    if name == "run_eval":
        from .run import run_eval
        return run_eval
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BaselineResult", "chamfer_fscore", "mesh_metrics", "relative_rotation_errors",
           "relative_translation_angle_errors", "relative_translation_errors", "run_eval",
           "run_pycolmap", "summarize_rotation"]
