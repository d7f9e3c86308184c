"""Reading run directories written by the trainer.

A run directory holds ``run.json`` and ``metrics.jsonl`` (format in the module
docstring of :mod:`elcl.evaluation.report` and in the trainer). An experiment directory
holds run directories (found recursively: any directory with a ``run.json``).
Every format problem raises :class:`~elcl.errors.ElclError` naming the file (and line).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from elcl.continual.methods import NAMES as METHODS
from elcl.continual.methods import get as get_method
from elcl.continual.methods import parse_run_lambda
from elcl.continual.rundir import RunSpec
from elcl.errors import ElclError

STATUSES = ("running", "done", "interrupted", "failed")
SPLITS = ("dev", "test")
RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"

__all__ = [
    "METHODS",
    "MetricRow",
    "Run",
    "load_run",
    "is_run_dir",
    "discover_runs",
    "accuracy_matrix",
    "single_baseline",
]


@dataclass(frozen=True)
class MetricRow:
    step: int
    trained_task: str
    eval_task: str
    split: str
    acc1: float
    acc5: float
    n: int
    n_unlinkable: int
    tfidf_acc1: float | None = None
    """The retriever's own top-1 on the same mentions (written by elcl >= 0.1; optional)."""


@dataclass(frozen=True, kw_only=True)
class Run(RunSpec):
    """A run directory as read back: its spec plus where it is and what it measured."""

    path: Path
    status: str
    steps_done: int
    rows: list[MetricRow] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def n_tasks(self) -> int:
        return len(self.order)

    @property
    def n_steps(self) -> int:
        return 1 + max((r.step for r in self.rows), default=-1)

    def splits(self) -> set[str]:
        return {r.split for r in self.rows}


def is_run_dir(path: Path) -> bool:
    return (Path(path) / RUN_FILE).is_file()


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _lambda_ok(v: object) -> bool:
    try:
        parse_run_lambda(v)
    except ValueError:
        return False
    return True


def _load_run_json(path: Path) -> dict:
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ElclError(f"{where}: missing (not a run directory)") from None
    except OSError as exc:
        raise ElclError(f"{where}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ElclError(f"{where}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ElclError(f"{where}: expected a JSON object")
    checks = {
        "experiment": lambda v: isinstance(v, str),
        "method": lambda v: v in METHODS,
        "lambda": _lambda_ok,
        "seed": _is_int,
        "order": lambda v: isinstance(v, list)
        and len(v) > 0
        and all(isinstance(t, str) and t for t in v)
        and len(set(v)) == len(v),
        "order_index": _is_int,
        "status": lambda v: v in STATUSES,
        "steps_done": lambda v: _is_int(v) and v >= 0,
    }
    expected = {
        "experiment": "a string",
        "method": "one of " + "|".join(METHODS),
        "lambda": "a non-negative number, auto (auto<scale>) or null",
        "seed": "an integer",
        "order": "a non-empty list of distinct task names",
        "order_index": "an integer",
        "status": "one of " + "|".join(STATUSES),
        "steps_done": "a non-negative integer",
    }
    for key, ok in checks.items():
        if key not in data:
            raise ElclError(f"{where}: missing key '{key}' (expected {expected[key]})")
        if not ok(data[key]):
            raise ElclError(f"{where}: key '{key}' = {data[key]!r}, expected {expected[key]}")
    return data


_ROW_KEYS = {
    "step": "a non-negative integer",
    "trained_task": "a string",
    "eval_task": "a string",
    "split": "dev|test",
    "acc1": "a number in [0, 1]",
    "acc5": "a number in [0, 1]",
    "n": "a non-negative integer",
    "n_unlinkable": "a non-negative integer",
}


def _acc_ok(v: object) -> bool:
    return _is_num(v) and (math.isnan(v) or 0.0 <= v <= 1.0)


def _load_metrics(path: Path, method: str, order: tuple[str, ...]) -> list[MetricRow]:
    where = str(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ElclError(f"{where}: missing") from None
    except OSError as exc:
        raise ElclError(f"{where}: cannot read: {exc.strerror or exc}") from None
    tasks = set(order)
    labels = get_method(method).step_labels(order)
    # Last occurrence wins: a resumed trainer may re-append a step.
    latest: dict[tuple[int, str, str], MetricRow] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise ElclError(f"{where}:{lineno}: not valid JSON") from None
        if not isinstance(obj, dict):
            raise ElclError(f"{where}:{lineno}: expected a JSON object")
        for key, what in _ROW_KEYS.items():
            if key not in obj:
                raise ElclError(f"{where}:{lineno}: missing key '{key}' (expected {what})")
        ok = (
            _is_int(obj["step"])
            and obj["step"] >= 0,
            isinstance(obj["trained_task"], str),
            isinstance(obj["eval_task"], str),
            obj["split"] in SPLITS,
            _acc_ok(obj["acc1"]),
            _acc_ok(obj["acc5"]),
            _is_int(obj["n"]) and obj["n"] >= 0,
            _is_int(obj["n_unlinkable"]) and obj["n_unlinkable"] >= 0,
        )
        for key, good in zip(_ROW_KEYS, ok):
            if not good:
                raise ElclError(
                    f"{where}:{lineno}: key '{key}' = {obj[key]!r}, expected {_ROW_KEYS[key]}"
                )
        row = MetricRow(
            step=obj["step"],
            trained_task=obj["trained_task"],
            eval_task=obj["eval_task"],
            split=obj["split"],
            acc1=float(obj["acc1"]),
            acc5=float(obj["acc5"]),
            n=obj["n"],
            n_unlinkable=obj["n_unlinkable"],
            tfidf_acc1=float(obj["tfidf_acc1"]) if isinstance(obj.get("tfidf_acc1"), (int, float)) else None,
        )
        if row.eval_task not in tasks:
            raise ElclError(
                f"{where}:{lineno}: eval_task '{row.eval_task}' is not in the run's order "
                f"({', '.join(order)})"
            )
        if row.step >= len(labels):
            raise ElclError(
                f"{where}:{lineno}: step {row.step} but a {method} run over this order has only "
                f"{len(labels)} step(s)"
            )
        if row.trained_task != labels[row.step]:
            raise ElclError(
                f"{where}:{lineno}: trained_task '{row.trained_task}' at step "
                f"{row.step}, but a {method} run trains '{labels[row.step]}' there"
            )
        latest[(row.step, row.eval_task, row.split)] = row
    return sorted(
        latest.values(), key=lambda r: (r.step, r.split, order.index(r.eval_task))
    )


def load_run(path: Path | str) -> Run:
    """Read and validate ``run.json`` and ``metrics.jsonl`` of one run directory."""
    path = Path(path)
    meta = _load_run_json(path / RUN_FILE)
    order = tuple(meta["order"])
    rows = _load_metrics(path / METRICS_FILE, meta["method"], order)
    return Run(
        path=path,
        experiment=meta["experiment"],
        method=meta["method"],
        lam=parse_run_lambda(meta["lambda"]),
        seed=meta["seed"],
        order=order,
        order_index=meta["order_index"],
        status=meta["status"],
        steps_done=meta["steps_done"],
        rows=rows,
    )


def discover_runs(
    paths: list[Path] | list[str], include_partial: bool = False
) -> tuple[list[Run], list[str], bool]:
    """Load the runs under ``paths``.

    Each path is a run directory (has ``run.json``) or an experiment directory (run
    directories found recursively below it). Returns (runs, warnings, any experiment
    directory given). Runs whose status is not "done" are skipped with a warning unless
    ``include_partial``; runs with no metric rows are always skipped with a warning.
    """
    if not paths:
        raise ElclError("no run or experiment directory given")
    run_dirs: list[Path] = []
    any_experiment = False
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise ElclError(f"{p}: no such file or directory")
        if p.is_file():
            if p.name == RUN_FILE:
                p = p.parent
            else:
                raise ElclError(f"{p}: expected a run or experiment directory, got a file")
        if is_run_dir(p):
            run_dirs.append(p)
            continue
        found = sorted({f.parent for f in p.rglob(RUN_FILE) if f.is_file()})
        if not found:
            raise ElclError(
                f"{p}: neither a run directory (no {RUN_FILE}) nor an experiment "
                f"directory (no run directory below it)"
            )
        any_experiment = True
        run_dirs.extend(found)
    seen: set[Path] = set()
    runs: list[Run] = []
    warnings: list[str] = []
    for d in run_dirs:
        key = d.resolve()
        if key in seen:
            continue
        seen.add(key)
        meta = _load_run_json(d / RUN_FILE)
        if meta["status"] == "failed":
            # A diverged run is never reported, not even with --include-partial.
            warnings.append(f"{d}: status 'failed' ({meta.get('reason', 'no reason recorded')}); skipped")
            continue
        run = load_run(d)
        if not run.done:
            if include_partial:
                warnings.append(
                    f"{d}: status '{run.status}' ({run.steps_done} step(s) done); included "
                    f"(--include-partial)"
                )
            else:
                warnings.append(
                    f"{d}: status '{run.status}' ({run.steps_done} step(s) done); skipped "
                    f"(use --include-partial to include it)"
                )
                continue
        if not run.rows:
            warnings.append(f"{d}: {METRICS_FILE} has no rows; skipped")
            continue
        runs.append(run)
    return runs, warnings, any_experiment


def accuracy_matrix(run: Run, split: str = "test", metric: str = "acc1") -> np.ndarray:
    """``R[i, j]`` = ``metric`` on task ``order[j]`` after step ``i`` (NaN if missing).

    Shape ``[n_steps, n_tasks]`` where ``n_steps`` is 1 + the last step with a row.
    """
    if metric not in ("acc1", "acc5"):
        raise ValueError(f"unknown metric {metric!r}")
    n_steps = max(run.n_steps, 1)
    R = np.full((n_steps, run.n_tasks), math.nan)
    col = {t: j for j, t in enumerate(run.order)}
    for r in run.rows:
        if r.split == split:
            R[r.step, col[r.eval_task]] = getattr(r, metric)
    return R


def single_baseline(run: Run, split: str = "test", metric: str = "acc1") -> dict[str, float]:
    """For a ``single`` run: task -> accuracy of the model trained on that task alone."""
    out: dict[str, float] = {}
    for r in run.rows:
        if r.split == split and r.trained_task == r.eval_task:
            out[r.eval_task] = getattr(r, metric)
    return out
