"""Export an experiment's small per-run files, so its report outlives the machine.

Checkpoints, curvature factors and full prediction files stay behind; what a report
needs is kept: ``run.json``, ``config.yaml``, ``metrics.jsonl``, the run's ``log.txt`` (a
few kilobytes: what ran, on which data, how long each step took) and, instead of the
prediction files (megabytes per run), ``correctness.json`` — per prediction file of the
test split, the top-1 correctness of each mention as a string of 0/1 and the sha256 of
the mention keys in file order. The mention bootstrap pairs runs by those keys, so the
digest is all it needs to check that two runs were scored on the same mentions.
``elcl evaluate`` reads an exported directory exactly like the original one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from elcl.errors import ElclError
from elcl.fileio import atomic_write_text
from elcl.schemas import PredictionRow, parse_jsonl_file

CORRECTNESS_FILE = "correctness.json"
CORRECTNESS_FORMAT = "elcl-correctness/1"
RUN_FILES = ("run.json", "config.yaml", "metrics.jsonl", "log.txt")


def keys_digest(keys: list[tuple[str, int, int]]) -> str:
    """An identity of the mention list (document, start, end, in file order)."""
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()


def correctness_entries(run_dir: Path, split: str = "test") -> dict[str, dict[str, str]]:
    """Compact correctness of every ``predictions/*/*.<split>.jsonl`` of a run."""
    out: dict[str, dict[str, str]] = {}
    for path in sorted(run_dir.glob(f"predictions/*/*.{split}.jsonl")):
        rows = [r for _, r in parse_jsonl_file(PredictionRow, path)]
        out[path.relative_to(run_dir).as_posix()] = {
            "keys_sha256": keys_digest([r.key for r in rows]),
            "correct": "".join("1" if r.correct else "0" for r in rows),
        }
    return out


def read_compact_correctness(path: Path) -> tuple[list[str], np.ndarray] | None:
    """The entry for prediction file ``path`` from its run's ``correctness.json``, if any.

    The keys come back as a one-element list holding the digest: equal for runs scored on
    the same mentions in the same order, which is what the bootstrap compares.
    """
    run_dir = path.parents[2]
    file = run_dir / CORRECTNESS_FILE
    if not file.is_file():
        return None
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
        entry = doc["files"].get(path.relative_to(run_dir).as_posix())
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise ElclError(f"{file}: expected a {CORRECTNESS_FORMAT} object with 'files'") from None
    if entry is None:
        return None
    bits = entry.get("correct", "") if isinstance(entry, dict) else ""
    if not isinstance(bits, str) or set(bits) - {"0", "1"} or not isinstance(entry.get("keys_sha256"), str):
        raise ElclError(f"{file}: entry {path.name}: expected 'correct' as a string of 0/1 and 'keys_sha256'")
    return ["sha256:" + entry["keys_sha256"]], np.array([c == "1" for c in bits], dtype=float)


def export_experiment(runs: list[Path], exp_root: Path, out: Path) -> list[Path]:
    """Copy each run's small files to ``out/<run path relative to exp_root>``; returns them."""
    written = []
    for run_dir in runs:
        dest = out / run_dir.relative_to(exp_root)
        if dest.resolve() == run_dir.resolve():
            raise ElclError(f"{out}: the export directory is the experiment itself")
        dest.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            if (run_dir / name).is_file():
                shutil.copyfile(run_dir / name, dest / name)
        doc = {"format": CORRECTNESS_FORMAT, "split": "test", "files": correctness_entries(run_dir)}
        atomic_write_text(dest / CORRECTNESS_FILE, json.dumps(doc, sort_keys=True) + "\n")
        written.append(dest)
    return written
