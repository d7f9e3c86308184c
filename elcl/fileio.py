"""Small file helpers shared by every writer: atomic writes, JSON lines and content hashes.

Everything elcl writes goes through a temporary file in the target directory and
``os.replace``, so a crash or a full disk never leaves a half-written file in place of
a good one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from elcl.errors import ConfigError, ElclError

TEMP_PREFIX = ".elcl-tmp."
"""Every temporary file starts with this, so leftovers of a killed write are recognisable
(:func:`remove_stale_temps`) and never mistaken for data."""


def _umask() -> int:
    # os.umask can only be read by setting it; restore at once (elcl is single-threaded here).
    old = os.umask(0o022)
    os.umask(old)
    return old


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that needs a file name
    (safetensors, joblib, a download); it replaces ``path`` when the block ends without
    an error and is removed either way, so ``path`` is the old file or the new one.
    The result gets the permissions the umask gives a new file (mkstemp makes 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete temporary files a killed writer left under ``directory``; call it only while
    holding the directory's lock (another process's temp file is live)."""
    removed = []
    for p in Path(directory).rglob(f"{TEMP_PREFIX}*"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise ElclError(f"{path}:{i}: not valid JSON") from None
    return rows


def append_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Rewrite-with-append so the file is never left with a partial line."""
    write_jsonl(path, read_jsonl(path) + list(rows))


def read_yaml_file(
    path: Path,
    what: str,
    max_bytes: int,
    encoding: str = "utf-8",
    check_text: Callable[[str, Path], None] | None = None,
) -> Any:
    """The parsed YAML of a small settings file (a config, a task entry), every failure one
    ConfigError line naming the file: missing, too large, unreadable, or not YAML (with the
    line of the YAML error). ``check_text`` sees the text before it is parsed."""
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ConfigError(f"{path}: {size} bytes; a {what} is expected to be under {max_bytes} bytes")
        text = path.read_text(encoding=encoding)
        if check_text is not None:
            check_text(text, path)
        return yaml.safe_load(text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f"{path}:{line + 1}" if line is not None else str(path)
        raise ConfigError(f"{where}: not a valid YAML file ({exc.__class__.__name__})") from None
