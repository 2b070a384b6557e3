"""Mesh loading: axes and sizes of the shared meshes, textures, OBJ, vertex colours, errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from sparp_ros.render import MeshFileError, load_mesh

MUG = "ACE_Coffee_Mug_Kristen_16_oz_cup.glb"
# bbox extents (x, y, z) in metres from data/objects/README.md: +Z up, not rotated to glTF +Y up.
README_EXTENTS = {
    MUG: (0.126, 0.091, 0.135),
    "Vans_Cereal_Honey_Nut_Crunch_11_oz_box.glb": (0.203, 0.056, 0.282),
    "Room_Essentials_Salad_Plate_Turquoise.glb": (0.222, 0.222, 0.028),
    "Sootheze_Toasty_Orca.glb": (0.214, 0.407, 0.145),
}


def _texel(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Nearest texel of OBJ-convention UVs (row = (1 - v)·H)."""
    h, w = texture.shape[:2]
    col = np.clip((uv[:, 0] % 1.0 * w).astype(int), 0, w - 1)
    row = np.clip(((1.0 - uv[:, 1] % 1.0) * h).astype(int), 0, h - 1)
    return texture[row, col]


@pytest.mark.parametrize("name", sorted(README_EXTENTS))
def test_shared_mesh_extents_match_readme(objects_dir: Path, name: str) -> None:
    mesh = load_mesh(objects_dir / name)
    lo, hi = mesh.bounds
    np.testing.assert_allclose(hi - lo, README_EXTENTS[name], atol=1.5e-3)
    assert abs(lo[2]) < 2e-3, "shared meshes rest on z = 0"


def test_every_shared_mesh_is_textured(objects_dir: Path) -> None:
    files = sorted(objects_dir.glob("*.glb"))
    assert len(files) == 25
    for f in files:
        mesh = load_mesh(f, require_texture=True)
        assert mesh.texture.shape[2] == 3 and mesh.uv.shape == (len(mesh.vertices), 2)
        unit = np.isclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-3)
        assert unit.mean() > 0.999   # a few unused/degenerate vertices may have none (shader: flat)


def test_obj_with_texture_matches_glb(objects_dir: Path, tmp_path: Path) -> None:
    glb = load_mesh(objects_dir / MUG)
    scene = trimesh.load(objects_dir / MUG, process=False)
    obj_path = tmp_path / "mug.obj"
    list(scene.geometry.values())[0].export(obj_path)
    obj = load_mesh(obj_path, require_texture=True)
    assert obj.vertices.shape == glb.vertices.shape
    np.testing.assert_allclose(obj.bounds, glb.bounds, atol=1e-5)
    # Same surface colour at the same vertices: UV conventions agree across formats.
    idx = np.random.default_rng(0).choice(len(glb.vertices), 300, replace=False)
    near = np.linalg.norm(obj.vertices[:, None] - glb.vertices[idx][None], axis=2).argmin(axis=0)
    diff = np.abs(_texel(obj.texture, obj.uv[near]).astype(int) - _texel(glb.texture, glb.uv[idx]))
    assert np.median(diff) <= 2


def test_vertex_coloured_trimesh() -> None:
    box = trimesh.creation.box(extents=(0.1, 0.2, 0.3))
    box.visual.vertex_colors = np.tile([200, 30, 40, 255], (len(box.vertices), 1))
    mesh = load_mesh(box)
    assert mesh.texture is None and mesh.vertex_colors.shape == (len(box.vertices), 3)
    assert (mesh.vertex_colors == [200, 30, 40]).all()


def test_untextured_file_loads_grey_unless_required(tmp_path: Path) -> None:
    path = tmp_path / "box.obj"
    trimesh.creation.box().export(path)
    mesh = load_mesh(path)
    assert mesh.texture is None and mesh.vertex_colors is None
    with pytest.raises(MeshFileError, match="box.obj"):
        load_mesh(path, require_texture=True)


def test_missing_and_empty_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MeshFileError, match="nope.glb"):
        load_mesh(tmp_path / "nope.glb")
    empty = tmp_path / "empty.obj"
    empty.write_text("")
    with pytest.raises(MeshFileError, match="empty.obj"):
        load_mesh(empty)
    garbage = tmp_path / "garbage.glb"
    garbage.write_bytes(b"not a gltf")
    with pytest.raises(MeshFileError, match="garbage.glb"):
        load_mesh(garbage)
