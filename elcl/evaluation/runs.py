"""Reading run directories written by the trainer.

A run directory holds ``run.json``, ``metrics.jsonl``, ``config.yaml`` and the
per-mention ``predictions/`` (formats: :mod:`elcl.schemas`, the same models the trainer
writes with). An experiment directory holds run directories (found recursively: any
directory with a ``run.json``). Every format problem raises one
:class:`~elcl.errors.ElclError` line naming the file (and line) and the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from elcl.continual.methods import NAMES as METHODS
from elcl.continual.methods import REGISTRY
from elcl.continual.methods import get as get_method
from elcl.continual.rundir import RunSpec
from elcl.errors import ElclError
from elcl.schemas import (
    MetricRow,
    PredictionRow,
    RunRecord,
    parse_json_file,
    parse_jsonl_file,
)

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.yaml"

MentionKeys = list[tuple[str, int, int]] | list[str]
"""The mentions a correctness array is over: (document, start, end) per mention from a
predictions file, or the one ``sha256:<digest>`` of that list a run's compact
``correctness.json`` keeps. Two arrays pair when their keys are equal."""

__all__ = [
    "METHODS",
    "MentionKeys",
    "MetricRow",
    "Run",
    "accuracy_matrix",
    "discover_runs",
    "is_run_dir",
    "lam_label",
    "load_run",
    "order_label",
    "prediction_file",
    "read_correctness",
    "single_baseline",
]


@dataclass(frozen=True, kw_only=True)
class Run(RunSpec):
    """A run directory as read back: its spec plus where it is and what it measured."""

    path: Path
    status: str
    steps_done: int
    rows: list[MetricRow] = field(default_factory=list)
    config: dict | None = None
    """The run's resolved config.yaml (None for a run directory without one)."""
    environments: list[dict] | None = None
    """Where each start of the run computed (``run.json``; None in runs of older elcl)."""

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


def order_label(order: tuple[str, ...] | list[str]) -> str:
    """A task order as written in reports: ``a>b>c``."""
    return ">".join(order)


def lam_label(lam: float | str | None) -> str:
    """λ as written in reports: ``-`` (no penalty), ``1000``, or the rule's name (``auto``)."""
    from elcl.continual.methods import format_lambda

    return format_lambda(lam)


def is_run_dir(path: Path) -> bool:
    return (Path(path) / RUN_FILE).is_file()


def _load_metrics(path: Path, method: str, order: tuple[str, ...]) -> list[MetricRow]:
    # Last occurrence wins: a resumed trainer may re-append a step.
    latest: dict[tuple[int, str, str], MetricRow] = {}
    ctx: dict[str, object] = {"order": order, "method": method}
    cls = REGISTRY.get(method)
    if cls is not None and cls.all_tasks_at_once:
        ctx["one_step"] = cls.step_labels(order)[0]
    for _, row in parse_jsonl_file(MetricRow, path, ctx):
        latest[(row.step, row.eval_task, row.split)] = row
    return sorted(latest.values(), key=lambda r: (r.step, r.split, order.index(r.eval_task)))


def _load_config(path: Path) -> dict | None:
    """The run's resolved ``config.yaml`` as a dict (None when the run has none)."""
    if not path.is_file():
        return None
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ElclError(f"{path}: not a valid YAML file ({exc.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise ElclError(f"{path}: expected a mapping of config sections")
    return raw


def load_run(path: Path | str) -> Run:
    """Read and validate ``run.json``, ``metrics.jsonl`` (and ``config.yaml``) of a run."""
    path = Path(path)
    rec = parse_json_file(RunRecord, path / RUN_FILE)
    order = tuple(rec.order)
    rows = _load_metrics(path / METRICS_FILE, rec.method, order)
    lam = rec.lam
    return Run(
        path=path,
        experiment=rec.experiment,
        method=rec.method,
        lam=float(lam) if isinstance(lam, (int, float)) else lam,
        seed=rec.seed,
        order=order,
        order_index=rec.order_index,
        status=rec.status,
        steps_done=rec.steps_done,
        rows=rows,
        config=_load_config(path / CONFIG_FILE),
        environments=[e.dump() for e in rec.environments] if rec.environments is not None else None,
    )


def discover_runs(paths: list[Path] | list[str], include_partial: bool = False) -> tuple[list[Run], list[str], bool]:
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
                f"{p}: neither a run directory (no {RUN_FILE}) nor an experiment directory (no run directory below it)"
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
        rec = parse_json_file(RunRecord, d / RUN_FILE)
        if rec.status == "failed":
            # A diverged run is never reported, not even with --include-partial.
            reason = (rec.model_extra or {}).get("reason", "no reason recorded")
            warnings.append(f"{d}: status 'failed' ({reason}); skipped")
            continue
        if rec.status != "done":
            if not include_partial:
                # Decided from run.json alone: a run stopped before its first step has no metrics file yet.
                warnings.append(
                    f"{d}: status '{rec.status}' ({rec.steps_done} step(s) done); skipped "
                    f"(use --include-partial to include it)"
                )
                continue
            if not (d / METRICS_FILE).is_file():
                warnings.append(f"{d}: status '{rec.status}', no {METRICS_FILE} yet; skipped")
                continue
            warnings.append(f"{d}: status '{rec.status}' ({rec.steps_done} step(s) done); included (--include-partial)")
        run = load_run(d)
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


def prediction_file(run: Run, step: int, eval_task: str, split: str = "test") -> Path:
    """Where the trainer wrote the predictions of step ``step`` on ``eval_task``."""
    method = get_method(run.method)
    trained = method.step_labels(run.order)[0] if method.all_tasks_at_once else run.order[step]
    return run.path / "predictions" / f"{step}_{trained}" / f"{eval_task}.{split}.jsonl"


def read_correctness(path: Path) -> tuple[MentionKeys, np.ndarray] | None:
    """Per-mention top-1 correctness from a predictions file: (mention keys, 0/1 array).

    Falls back to the run's compact ``correctness.json`` (:mod:`elcl.evaluation.export`);
    None when neither exists (runs of older elcl, or copied without predictions).
    """
    if not path.is_file():
        from elcl.evaluation.export import read_compact_correctness

        return read_compact_correctness(path)
    rows = [r for _, r in parse_jsonl_file(PredictionRow, path)]
    return [r.key for r in rows], np.array([r.correct for r in rows], dtype=float)
