"""``write_outputs``: the files a reconstruction leaves, read back with the tools users have."""
from __future__ import annotations

import json

import numpy as np
import trimesh

from sparp_ros.outputs import write_outputs
from sparp_ros.reconstruction import Reconstruction, ViewPose


def test_mesh_glb_and_obj_hold_the_same_coloured_mesh(tmp_path):
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.05)
    rgb = np.random.default_rng(0).integers(0, 256, (len(mesh.vertices), 3), dtype=np.uint8)
    mesh.visual.vertex_colors = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], 1)
    T = np.eye(4)
    T[2, 3] = 0.5
    recon = Reconstruction([ViewPose(T, True)], scale=0.17, scale_source="depth", confidence=1.0,
                           backend="test", mesh=mesh)
    paths = write_outputs(recon, tmp_path)

    assert paths["mesh"] == tmp_path / "mesh.glb" and paths["mesh_obj"] == tmp_path / "mesh.obj"
    glb = trimesh.load(paths["mesh"], force="mesh")
    obj = trimesh.load(paths["mesh_obj"], force="mesh")
    assert len(glb.vertices) == len(obj.vertices) == len(mesh.vertices)
    assert len(glb.faces) == len(obj.faces) == len(mesh.faces)
    for loaded in (glb, obj):                       # same geometry, metres, and the colours kept
        assert np.allclose(np.sort(loaded.vertices, 0), np.sort(mesh.vertices, 0), atol=1e-6)
        assert loaded.visual.kind == "vertex"
        assert np.array_equal(np.sort(loaded.visual.vertex_colors[:, :3], 0), np.sort(rgb, 0))
    result = json.loads(paths["result"].read_text())
    assert result["mesh"]["file"] == "mesh.glb" and result["mesh"]["obj_file"] == "mesh.obj"


def test_no_mesh_no_mesh_files(tmp_path):
    recon = Reconstruction([ViewPose(None, False)], scale=0.2, scale_source="prior",
                           confidence=0.0, backend="test")
    paths = write_outputs(recon, tmp_path)
    assert "mesh" not in paths and not (tmp_path / "mesh.obj").exists()
    assert json.loads(paths["result"].read_text())["mesh"] is None
