"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tiny_models import write_tiny_bert


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT (tests/tiny_models.py), written once per test module."""
    return write_tiny_bert(tmp_path_factory.mktemp("tinybert") / "bert")


@pytest.fixture(scope="session")
def shared_corpora() -> Path:
    """The real corpora dir ($ELCL_DATA_DIR or ../shared/corpora); skips when absent."""
    env = os.environ.get("ELCL_DATA_DIR")
    root = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
    if not (root / "ncbi_disease").is_dir():
        pytest.skip(f"real corpora not found at {root}")
    return root
