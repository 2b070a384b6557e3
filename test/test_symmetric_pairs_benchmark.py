"""benchmarks/symmetric_pairs.py: a mesh's turns about up that map it onto itself, and pair
errors up to them (a diagnostic beside the plain relative rotation error)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import symmetric_pairs  # noqa: E402


def _coloured(mesh: trimesh.Trimesh, path: Path, rgb=(200, 40, 40)) -> str:
    mesh.visual.vertex_colors = np.tile([*rgb, 255], (len(mesh.vertices), 1)).astype(np.uint8)
    mesh.export(path)
    return str(path)


def test_a_one_coloured_cylinder_turns_onto_itself_and_a_box_only_by_half_a_turn(tmp_path):
    cylinder = trimesh.creation.cylinder(radius=0.04, height=0.1, sections=96)
    cylinder.apply_translation([0.01, -0.02, 0.05])              # off the origin, on z = 0
    turns = symmetric_pairs.symmetry_turns(_coloured(cylinder, tmp_path / "cylinder.ply"))
    assert len(turns) == 360 // symmetric_pairs.STEP_DEG - 1
    box = trimesh.creation.box(extents=[0.2, 0.08, 0.05])
    box.apply_translation([0.0, 0.0, 0.025])
    turns = symmetric_pairs.symmetry_turns(_coloured(box, tmp_path / "box.ply"))
    assert 180 in turns and 90 not in turns and 30 not in turns


def test_pair_errors_up_to_a_symmetry():
    from scipy.spatial.transform import Rotation
    gt = []
    for k in range(3):
        T = np.eye(4)
        T[:3, :3] = Rotation.from_euler("xyz", [100 + 10 * k, 5 * k, 60 * k], degrees=True).as_matrix()
        T[:3, 3] = [0.0, 0.0, 0.5]
        gt.append(T)
    est = [T.copy() for T in gt]
    est[1][:3, :3] = gt[1][:3, :3] @ Rotation.from_euler("z", 40, degrees=True).as_matrix()
    plain, symmetric = symmetric_pairs.symmetric_errors(est, gt, turns=(40, 320))
    np.testing.assert_allclose(plain, [40.0, 0.0, 40.0], atol=1e-6)
    np.testing.assert_allclose(symmetric, [0.0, 0.0, 0.0], atol=1e-6)
    plain, symmetric = symmetric_pairs.symmetric_errors(est, gt, turns=(180,))
    np.testing.assert_allclose(symmetric, plain, atol=1e-6)      # a turn the object lacks
    missing = symmetric_pairs.symmetric_errors([est[0], None, est[2]], gt, turns=(40,))
    assert missing[0][0] == missing[1][0] == 180.0
