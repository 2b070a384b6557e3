"""Shared fixtures: paths to the shared meshes (the test set is never used for training)."""
from __future__ import annotations

from pathlib import Path

import pytest

from shared_data import OBJECTS


@pytest.fixture(scope="session")
def objects_dir() -> Path:
    if not OBJECTS.is_dir():
        pytest.skip(f"shared meshes not found at {OBJECTS}")
    return OBJECTS
