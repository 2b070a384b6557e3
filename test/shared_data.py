"""Where the shared test data is (``SPARP_SHARED``, else ``../shared`` beside the repository): one
definition for conftest and the test modules. A module of its own because ``from conftest import``
is ambiguous in a full run (test/ros has a conftest too)."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPARP_SHARED", REPO.parent / "shared"))
OBJECTS = SHARED / "data" / "objects"
