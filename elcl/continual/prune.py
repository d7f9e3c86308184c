"""Give back the disk a finished run no longer needs.

A finished run's report reads only ``run.json``, ``metrics.jsonl`` and the prediction
files. Its checkpoints serve ``elcl link``, ``elcl export`` and ``elcl fisher``; its
curvature statistics served only the penalties of its own later steps (a finished run is
never trained further: ``--resume`` skips it). On a MiniLM grid those two are ~0.8 GB of
every run's ~0.8 GB (three 90 MB checkpoints, 0.5 GB of factors), so a λ grid over
several seeds fills a small disk long before its reports need anything but kilobytes.

Only runs whose ``run.json`` says ``done`` are touched, each under its run lock (a
process writing into the run is never raced), and what went is recorded in
``pruned.json`` so that a later ``elcl link --step i`` says the checkpoint was pruned
rather than "not found". A pruned step-0 checkpoint is no longer adopted by sibling runs
(``train.share_first_task``): they train their first step themselves.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from elcl.continual.lock import RunLock
from elcl.continual.rundir import RunDir, write_json
from elcl.errors import ElclError, RunLockedError
from elcl.schemas import PruneRecord, RunRecord, parse_json_file

Keep = Literal["final", "all", "none"]
KEEP_CHOICES: tuple[str, ...] = ("final", "all", "none")


@dataclass(frozen=True)
class PrunePlan:
    """What pruning one run would remove (nothing, with a reason, when it is left alone)."""

    run: Path
    steps: tuple[tuple[int, Path], ...] = ()
    curvature: tuple[tuple[str, Path], ...] = ()
    nbytes: int = 0
    skipped: str | None = None

    @property
    def empty(self) -> bool:
        return not self.steps and not self.curvature


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _step_index(name: str) -> int | None:
    head = name.split("_", 1)[0]
    return int(head) if head.isdigit() else None


def run_dirs(path: Path) -> list[Path]:
    """``path`` itself when it is a run directory, else the run directories directly under it."""
    path = Path(path)
    if not path.is_dir():
        raise ElclError(f"{path}: not a directory")
    if (path / "run.json").is_file():
        return [path]
    found = sorted(d for d in path.iterdir() if (d / "run.json").is_file())
    if not found:
        raise ElclError(f"{path}: no run directories (*/run.json) in it")
    return found


def plan_prune(run: Path, keep: Keep = "final") -> PrunePlan:
    """Curvature of every task, and the checkpoints ``keep`` does not name, of a finished run."""
    if keep not in KEEP_CHOICES:
        raise ElclError(f"--keep {keep}: expected one of {', '.join(KEEP_CHOICES)}")
    rd = RunDir(run)
    state = parse_json_file(RunRecord, rd.run_json)
    if state.status != "done":
        return PrunePlan(
            run, skipped=f"status '{state.status}' ({state.steps_done} step(s) done): only finished runs are pruned"
        )
    final = state.steps_done - 1
    steps: list[tuple[int, Path]] = []
    if keep != "all" and (rd.path / "steps").is_dir():
        for d in sorted((rd.path / "steps").iterdir()):
            i = _step_index(d.name)
            if d.is_dir() and i is not None and (keep == "none" or i != final):
                steps.append((i, d))
    curvature: list[tuple[str, Path]] = []
    if (rd.path / "curvature").is_dir():
        curvature = [(d.name, d) for d in sorted((rd.path / "curvature").iterdir()) if d.is_dir()]
    nbytes = sum(_size(p) for _, p in steps) + sum(_size(p) for _, p in curvature)
    return PrunePlan(run, tuple(steps), tuple(curvature), nbytes)


def apply_prune(plan: PrunePlan) -> PrunePlan:
    """Remove what ``plan`` lists, under the run's lock; record it in ``pruned.json``.

    Returns the plan, or a skipped copy when another process holds the lock.
    """
    if plan.skipped is not None or plan.empty:
        return plan
    rd = RunDir(plan.run)
    try:
        lock = RunLock(rd.path).acquire()
    except RunLockedError as exc:
        return PrunePlan(plan.run, skipped=str(exc))
    try:
        # re-read under the lock: a run resumed between planning and now is left alone
        if parse_json_file(RunRecord, rd.run_json).status != "done":
            return PrunePlan(plan.run, skipped="no longer finished when the lock was taken")
        before = parse_json_file(PruneRecord, rd.pruned_json) if rd.pruned_json.is_file() else None
        record = PruneRecord(
            removed_steps=sorted({*(before.removed_steps if before else []), *(i for i, _ in plan.steps)}),
            removed_curvature=sorted({*(before.removed_curvature if before else []), *(t for t, _ in plan.curvature)}),
            bytes_freed=(before.bytes_freed if before else 0) + plan.nbytes,
        )
        # the record first: a crash halfway leaves a record naming a file still there, never a file gone unrecorded
        write_json(rd.pruned_json, record.dump())
        for _, path in (*plan.steps, *plan.curvature):
            shutil.rmtree(path)
    finally:
        lock.release()
    return plan


def prune(paths: Iterable[Path], keep: Keep = "final", dry_run: bool = False) -> list[PrunePlan]:
    """Plan (and unless ``dry_run`` apply) pruning of every run under ``paths``."""
    plans = [plan_prune(run, keep) for path in paths for run in run_dirs(path)]
    return plans if dry_run else [apply_prune(p) for p in plans]
