"""Run a sweep's cells on a backend: first steps once, a deadline, failures by name.

The loop polls; it never blocks on a run. Each turn it collects the workers that
ended, starts ready cells up to ``max_parallel`` (owners of a first step first; a cell
that adopts a first step once its owner has finished step 0), asks a search for new
cells and whether to prune a running one, and reports to the progress display. A cell
is *done* only when its worker exited 0, its run.json says ``done`` and no metric is
NaN; anything else that ends is *failed* with its last error line, or *interrupted*
(the deadline, Ctrl-C) and resumable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from elcl.errors import ElclError
from elcl.sweep import cells as C
from elcl.sweep.backends import Backend
from elcl.sweep.grid import Cell

POLL_S = 0.5
STOP_GRACE_S = 120.0
TERMINAL = ("done", "reused", "failed", "interrupted", "pruned", "busy")


class Search(Protocol):
    """What the scheduler asks a λ search (elcl.sweep.search.OptunaSearch)."""

    def propose(self, free_slots: int) -> list[Cell]: ...

    def progress(self, cell: Cell, run_dir: Path) -> bool:
        """True: prune this running cell now."""
        ...

    def finished(self, cell: Cell, status: str, run_dir: Path) -> None: ...

    def exhausted(self) -> bool: ...


@dataclass
class CellState:
    cell: Cell
    status: str = "pending"
    seconds: float = 0.0
    started: float | None = None
    error: str | None = None
    handle: Any = None
    stop_reason: str | None = None
    steps: int = 0
    source: Path | None = None
    """Where a reused run's files are."""


@dataclass
class SweepResult:
    states: dict[str, CellState] = field(default_factory=dict)
    deadline_hit: bool = False

    def count(self, *statuses: str) -> int:
        return sum(1 for s in self.states.values() if s.status in statuses)

    def failed(self) -> list[CellState]:
        return [s for s in self.states.values() if s.status == "failed"]


def refuse_foreign(exp: Path, cells: list[Cell]) -> None:
    """One line when the experiment directory holds runs of another config."""
    for cell in cells:
        why = C.foreign_config(exp, cell)
        if why:
            raise ElclError(
                f"{exp}: holds runs of another config ({why}); choose another --output-dir or experiment name, "
                "or run the config that made them"
            )


def initial_state(exp: Path, cell: Cell, reuse: list[Path], retry_failed: bool) -> CellState:
    st = CellState(cell)
    run_dir = exp / cell.name
    rec = C.read_record(exp, cell.name)
    st.seconds = rec.seconds if rec else 0.0
    state = C.run_state(run_dir)
    st.steps = int(state.get("steps_done", 0)) if state else 0
    if state and state.get("status") == "done":
        nan = C.non_finite_metric(run_dir)
        st.status, st.error = ("failed", nan) if nan else ("done", None)
        return st
    src = C.reused_from(cell, reuse)
    if src is not None:
        st.status, st.source, st.steps = "reused", src, C.steps_done(src)
        C.write_record(exp, cell.name, C.CellRecord(status="reused", last_error=None, rc=None))  # for --status
        return st
    failed = (rec is not None and rec.status == "failed") or (state is not None and state.get("status") == "failed")
    if failed and not retry_failed:
        st.status = "failed"
        st.error = (rec.last_error if rec else None) or str(state.get("reason") if state else "failed")
    return st


def _ready(st: CellState, states: dict[str, CellState], exp: Path) -> bool:
    """A cell that adopts a first step starts once its owner has one to give. An owner
    that will not (reused from elsewhere: no checkpoint here; failed) hands the role to
    the block's first running cell, so the step is still trained once."""
    owner = st.cell.owner
    if owner is None or owner not in states:
        return True
    o = states[owner]
    if o.status in ("pending", "running"):
        return C.steps_done(exp / owner) >= 1
    if o.status == "done":
        return True
    stand_in = [
        s
        for s in states.values()
        if s.status == "running"
        and s.cell.block == st.cell.block
        and (s.cell.owner is not None or s.cell.name == owner)
    ]
    return all(C.steps_done(exp / s.cell.name) >= 1 for s in stand_in)


def run_sweep(
    exp: Path,
    cells: list[Cell],
    backend: Backend,
    max_parallel: int,
    gpus_per_run: float = 0.0,
    deadline: float | None = None,
    reuse: list[Path] | None = None,
    retry_failed: bool = False,
    search: Search | None = None,
    on_change: Callable[[SweepResult], None] | None = None,
) -> SweepResult:
    """Run every cell (and every cell ``search`` proposes) to an end; ``deadline`` is a
    ``time.monotonic()`` instant after which running cells are stopped and no new one
    starts. Ctrl-C stops the running cells the same way, then propagates."""
    refuse_foreign(exp, cells)
    C.sweep_dir(exp).mkdir(parents=True, exist_ok=True)
    result = SweepResult()
    states = result.states
    for cell in cells:
        states[cell.name] = initial_state(exp, cell, reuse or [], retry_failed)
        C.write_cell_file(exp, cell)  # --status lists the cells not started yet too
    if search is not None:
        for st in states.values():
            if st.status in TERMINAL:
                search.finished(st.cell, st.status, st.source or exp / st.cell.name)
    notify = on_change or (lambda r: None)
    notify(result)
    try:
        while True:
            changed = _collect(exp, states, backend, search)
            running = [s for s in states.values() if s.status == "running"]
            if deadline is not None and time.monotonic() >= deadline:
                result.deadline_hit = True
                _stop_all(exp, states, backend, "deadline")
                break
            if search is not None:
                for st in running:
                    if st.stop_reason is None and search.progress(st.cell, exp / st.cell.name):
                        st.stop_reason = "pruned"
                        backend.stop(st.handle)
                free = max_parallel - len(running) - sum(1 for s in states.values() if s.status == "pending")
                for cell in search.propose(max(free, 0)):
                    changed = True
                    known = states.get(cell.name)
                    if known is None:
                        refuse_foreign(exp, [cell])
                        st = states[cell.name] = initial_state(exp, cell, reuse or [], retry_failed)
                        C.write_cell_file(exp, cell)
                    else:
                        st = known
                        if st.status in ("pruned", "interrupted"):
                            st.status = "pending"  # the same λ again: its run resumes
                    st.cell = cell
                    if st.status in ("done", "reused", "failed", "busy"):
                        search.finished(cell, st.status, st.source or exp / cell.name)
            for st in [s for s in states.values() if s.status == "pending"]:
                if len(running) >= max_parallel:
                    break
                if search is not None and st.cell.trial is not None and search.progress(st.cell, exp / st.cell.name):
                    st.status = "pruned"  # its trial was pruned while it waited
                    search.finished(st.cell, st.status, exp / st.cell.name)
                    changed = True
                    continue
                if _ready(st, states, exp):
                    _start(exp, st, backend, gpus_per_run)
                    changed = True
                    if st.status == "running":
                        running.append(st)
            for st in running:
                st.steps = C.steps_done(exp / st.cell.name)
            if changed:
                notify(result)
            pending = any(s.status == "pending" for s in states.values())
            if not running and not pending and (search is None or search.exhausted()):
                break
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        _stop_all(exp, states, backend, "interrupted")
        notify(result)
        raise
    finally:
        backend.close()
    notify(result)
    return result


def _start(exp: Path, st: CellState, backend: Backend, gpus: float) -> None:
    run_dir = exp / st.cell.name
    C.clear_stale_lock(run_dir)
    if (run_dir / ".lock").is_file():
        st.status = "busy"
        st.error = f"{run_dir} is being run by another process"
        return
    path = C.write_cell_file(exp, st.cell)
    log = C.log_file(exp, st.cell.name)
    cpus = int(st.cell.config.get("train", {}).get("num_threads") or 1)
    rec = C.read_record(exp, st.cell.name)
    attempts = (rec.attempts if rec else 0) + 1
    C.write_record(exp, st.cell.name, C.CellRecord(status="running", attempts=attempts, seconds=st.seconds))
    st.handle = backend.start(path, log, cpus, gpus)
    st.status, st.started, st.error, st.stop_reason = "running", time.monotonic(), None, None


def _finish(exp: Path, st: CellState, rc: int) -> None:
    run_dir = exp / st.cell.name
    st.seconds += time.monotonic() - (st.started or time.monotonic())
    state = C.run_state(run_dir) or {}
    log = C.log_file(exp, st.cell.name)
    if rc == 0 and state.get("status") == "done":
        nan = C.non_finite_metric(run_dir)
        st.status, st.error = ("failed", nan) if nan else ("done", None)
    elif st.stop_reason is not None or rc in (130, 143):
        st.status = "pruned" if st.stop_reason == "pruned" else "interrupted"
    else:
        st.status = "failed"
        st.error = (
            C.last_error_line(log) if rc != 0 else f"exited 0 but {run_dir}/run.json says {state.get('status')!r}"
        )
    st.steps = int(state.get("steps_done", 0))
    prev = C.read_record(exp, st.cell.name)
    C.write_record(
        exp,
        st.cell.name,
        C.CellRecord(
            status=st.status,
            rc=rc,
            seconds=st.seconds,
            attempts=prev.attempts if prev else 1,
            last_error=st.error,
        ),
    )
    st.handle = None


def _collect(exp: Path, states: dict[str, CellState], backend: Backend, search: Search | None) -> bool:
    changed = False
    for st in states.values():
        if st.status != "running":
            continue
        rc = backend.poll(st.handle)
        if rc is None:
            continue
        _finish(exp, st, rc)
        changed = True
        if search is not None:
            search.finished(st.cell, st.status, exp / st.cell.name)
    return changed


def _stop_all(exp: Path, states: dict[str, CellState], backend: Backend, reason: str) -> None:
    """SIGTERM every running worker, wait for each to mark its run, kill stragglers."""
    running = [s for s in states.values() if s.status == "running"]
    for st in running:
        st.stop_reason = reason
        backend.stop(st.handle)
    end = time.monotonic() + STOP_GRACE_S
    while running and time.monotonic() < end:
        for st in list(running):
            rc = backend.poll(st.handle)
            if rc is not None:
                _finish(exp, st, rc)  # interrupted (or failed: it died of something else meanwhile)
                running.remove(st)
        time.sleep(0.2)
    for st in running:
        backend.kill(st.handle)
        _finish(exp, st, 137)
