"""What a sweep keeps about its cells, beside the runs: ``<exp>/.sweep/``.

::

    <exp>/.sweep/<cell>.cell.json   the cell: run spec, resolved run config, run directory (CellFile)
    <exp>/.sweep/<cell>.json        how its last attempt ended: status, exit code, seconds,
                                    last error line (CellRecord)
    <exp>/.sweep/<cell>.log         the worker's stdout and stderr

A run's progress lives in its own ``run.json`` (the runner writes it); the record adds
what the run cannot say about itself: that its process died with an error (its
run.json may still read ``running``), the error's last line, how long it ran. Each file
is written by the one sweep process that runs the cell (the run's lock makes sure there
is one), so parts of a grid may run beside each other on one experiment directory.
"""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from elcl.config import experiment_diff, resolved_run_config
from elcl.continual.lock import RunLock
from elcl.errors import ElclError
from elcl.fileio import atomic_write_text
from elcl.sweep.grid import Cell

SWEEP_DIR = ".sweep"
CELL_FORMAT = "elcl-sweep-cell/1"

CellStatus = Literal["pending", "waiting", "running", "done", "failed", "interrupted", "reused", "pruned", "busy"]
FINISHED: tuple[str, ...] = ("done", "reused")


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpecFields(_Schema):
    experiment: str
    method: str
    lam: float | str | None
    seed: int
    order: list[str]
    order_index: int


class CellFile(_Schema):
    """``<cell>.cell.json``: everything the worker needs to run the cell."""

    format: Literal["elcl-sweep-cell/1"] = "elcl-sweep-cell/1"
    spec: SpecFields
    config: dict
    run_dir: str


class CellRecord(_Schema):
    """``<cell>.json``: the end of the cell's last attempt."""

    status: Literal["running", "done", "failed", "interrupted", "pruned", "reused"]
    rc: int | None = None
    seconds: float = Field(0.0, ge=0)
    """Wall time of all attempts together."""
    attempts: int = Field(0, ge=0)
    last_error: str | None = None
    host: str = Field(default_factory=socket.gethostname)


def sweep_dir(exp: Path) -> Path:
    return exp / SWEEP_DIR


def cell_file(exp: Path, name: str) -> Path:
    return sweep_dir(exp) / f"{name}.cell.json"


def record_file(exp: Path, name: str) -> Path:
    return sweep_dir(exp) / f"{name}.json"


def log_file(exp: Path, name: str) -> Path:
    return sweep_dir(exp) / f"{name}.log"


def write_cell_file(exp: Path, cell: Cell) -> Path:
    s = cell.spec
    doc = CellFile(
        spec=SpecFields(
            experiment=s.experiment,
            method=s.method,
            lam=s.lam,
            seed=s.seed,
            order=list(s.order),
            order_index=s.order_index,
        ),
        config=cell.config,
        run_dir=str(exp / cell.name),
    )
    path = cell_file(exp, cell.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, doc.model_dump_json(indent=1) + "\n")
    return path


def read_record(exp: Path, name: str) -> CellRecord | None:
    path = record_file(exp, name)
    if not path.is_file():
        return None
    try:
        return CellRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError:
        raise ElclError(f"{path}: not a sweep cell record (expected status, rc, seconds, attempts)") from None


def write_record(exp: Path, name: str, rec: CellRecord) -> None:
    path = record_file(exp, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, rec.model_dump_json(indent=1) + "\n")


def run_state(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def steps_done(run_dir: Path) -> int:
    state = run_state(run_dir)
    return int(state.get("steps_done", 0)) if state else 0


def non_finite_metric(run_dir: Path) -> str | None:
    """The first metric row of a run holding a NaN or infinite accuracy, described."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        for key in ("acc1", "acc5"):
            v = row.get(key)
            if v is None or not math.isfinite(float(v)):
                return f"{path}:{i}: {key} is {v} (a NaN run is a failure)"
    return None


def last_error_line(log: Path) -> str:
    """The last line of a worker's log that says what went wrong."""
    if not log.is_file():
        return "(no log)"
    lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(("error:", "interrupted:")) or "Error" in ln.split(":")[0]:
            return ln
    return lines[-1] if lines else "(empty log)"


def foreign_config(exp: Path, cell: Cell) -> str | None:
    """Why the run directory of ``cell`` belongs to another experiment config, if it does."""
    cfg_path = exp / cell.name / "config.yaml"
    if not cfg_path.is_file():
        return None
    import yaml

    try:
        stored = resolved_run_config(yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError):
        return f"{cfg_path}: unreadable"
    changed = experiment_diff(stored, cell.config)
    return f"{cfg_path} differs in {', '.join(changed[:3])}" if changed else None


def clear_stale_lock(run_dir: Path) -> bool:
    """Remove the lock of a run whose writer is dead on this host (a killed worker)."""
    return RunLock(run_dir).clear_if_stale()


def reused_from(cell: Cell, folders: list[Path]) -> Path | None:
    """A finished run of the same cell (name, seed and experiment config) in ``folders``."""
    for folder in folders:
        d = folder / cell.name
        state = run_state(d)
        if not state or state.get("status") != "done" or int(state.get("seed", -1)) != cell.spec.seed:
            continue
        if foreign_config(folder, cell) is None and (d / "config.yaml").is_file() and non_finite_metric(d) is None:
            return d
    return None
