"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_corpora() -> Path:
    """The real corpora dir ($ELCL_DATA_DIR or ../shared/corpora); skips when absent."""
    env = os.environ.get("ELCL_DATA_DIR")
    root = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
    if not (root / "ncbi_disease").is_dir():
        pytest.skip(f"real corpora not found at {root}")
    return root
