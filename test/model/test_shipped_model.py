"""The model shipped in the package: it loads (safetensors only, within the size budget) and, in the
slow benchmark run, its pose error on two unseen shared objects stays below the measured bound."""
from __future__ import annotations

import numpy as np
import pytest

from sparp_ros.model.backend import DEFAULT_WEIGHTS

# Measured with this test's captures, images alone, median over 36 pairs (in brackets: the same
# networks over the 75 eval captures, docs/research-log.md): 89.4° with the first checkpoint,
# 76.5° with the 32 px pair-azimuth network (34.9°; these two objects are among the hard ones),
# 38.2° with the 64 px pair network and mirror-averaged view angles (35.2°: 36 pairs are noisy),
# 34.9° with the colour-augmented pair network (33.0°), 35.3° with the small networks trained on
# object variants (28.4°), 28.7° with the correlation-volume pair network at search weight 0.3
# (24.7°), 31.7° with the view-angle network of all 16 variant datasets (25.1°).
# Earlier this test let the captures' camera poses align the views (the pipeline's default since
# per-view mode), which measured nothing of the model.
# A uniformly random relative rotation has a median angle of ~126°, so the bound still catches a
# model that learned nothing; tighten it with every better checkpoint (80° before the
# correlation-volume pair network; 60° is about twice the measurements above: 36 pairs are noisy).
MEDIAN_BOUND_DEG = 60.0


def _weight_files():
    return sorted(p for p in DEFAULT_WEIGHTS.rglob("*") if p.is_file())


def test_shipped_weights_are_safetensors_within_budget():
    files = _weight_files()
    assert files, f"no shipped weights under {DEFAULT_WEIGHTS}"
    tensors = [p for p in files if p.suffix == ".safetensors"]
    assert tensors, "shipped weights must be safetensors"
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    assert sum(p.stat().st_size for p in files) <= 60 * 2 ** 20
    assert (DEFAULT_WEIGHTS / "MODEL_CARD.md").is_file()


def test_shipped_model_predicts_nocs_for_every_view(objects_dir):
    from sparp_ros.pipeline import PipelineConfig, SparpPipeline
    from sparp_ros.render import render_capture
    capture = render_capture(objects_dir / "Schleich_Hereford_Bull.glb", views=3, seed=11)
    pipeline = SparpPipeline(PipelineConfig(backend="model", mesh=False))
    cells = [pipeline.prepare_view(i, f).cell for i, f in enumerate(capture.frames)]
    preds = pipeline.backend.predict(cells)
    assert len(preds) == 3
    S = pipeline.cell_size
    for p, c in zip(preds, cells):
        assert p.nocs.shape == (S, S, 3) and p.nocs.dtype == np.float32
        assert 0.0 <= p.nocs.min() and p.nocs.max() <= 1.0
        assert p.frame == "per_view" and not (p.mask & ~c.mask).any()
        assert p.mask.sum() > 0.5 * c.mask.sum()     # foreground predicted on the object


@pytest.mark.slow
def test_shipped_model_pose_error_on_two_unseen_objects(objects_dir):
    from sparp_ros.evaluation.metrics import relative_rotation_errors
    from sparp_ros.pipeline import PipelineConfig, SparpPipeline
    from sparp_ros.render import render_capture
    # Images alone: with the captures' camera poses the views would be aligned by construction.
    pipeline = SparpPipeline(PipelineConfig(backend="model", mesh=False, align_with_camera_motion=False))
    errors = []
    for name in ("Nintendo_Mario_Action_Figure", "Schleich_Hereford_Bull"):
        for seed in range(3):
            capture = render_capture(objects_dir / f"{name}.glb", views=4, seed=100 + seed)
            recon = pipeline(capture.frames)
            errors += relative_rotation_errors([v.T_camera_object for v in recon.views],
                                               capture.gt.T_camera_object)
    median = float(np.median(errors))
    print(f"shipped model: median relative rotation error {median:.1f}° over {len(errors)} pairs")
    assert median < MEDIAN_BOUND_DEG
