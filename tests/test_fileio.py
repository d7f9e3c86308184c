"""atomic_path: the one temp-file-and-rename mechanism behind every writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from elcl.fileio import atomic_path, atomic_write_text


def test_replaces_on_success_and_keeps_the_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.bin"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target, ".part") as tmp:
            assert tmp.parent == target.parent and tmp.name.endswith(".part")
            tmp.write_text("half")
            raise RuntimeError("writer crashed")
    assert target.read_text() == "old"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]  # no temp files left
