"""Shared fixtures: paths to the shared meshes (the test set is never used for training)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPARP_SHARED", REPO.parent / "shared"))
OBJECTS = SHARED / "data" / "objects"


@pytest.fixture(scope="session")
def objects_dir() -> Path:
    if not OBJECTS.is_dir():
        pytest.skip(f"shared meshes not found at {OBJECTS}")
    return OBJECTS
