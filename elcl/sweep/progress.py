"""The sweep's progress table (rich): cells done / running / failed, time per run.

On a terminal the table redraws in place; elsewhere (a log file, CI, a leased machine's
captured output) each change of a cell's status is one line, and the full table is
printed at the end.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from elcl.sweep import cells as C
from elcl.sweep.scheduler import CellState, SweepResult

STYLE = {
    "done": "green",
    "reused": "green",
    "running": "cyan",
    "failed": "bold red",
    "interrupted": "yellow",
    "pruned": "magenta",
    "busy": "yellow",
}
ORDER = ("failed", "running", "interrupted", "pruned", "busy", "pending", "done", "reused")


def fmt_seconds(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def counts_line(states: list[CellState]) -> str:
    n = {k: sum(1 for s in states if s.status == k) for k in ORDER}
    parts = [f"{n['done'] + n['reused']}/{len(states)} done"]
    parts += [f"{n[k]} {k}" for k in ("running", "failed", "interrupted", "pruned", "busy", "pending") if n[k]]
    if n["reused"]:
        parts.append(f"({n['reused']} reused)")
    return ", ".join(parts)


def _elapsed(st: CellState) -> float:
    return st.seconds + (time.monotonic() - st.started if st.status == "running" and st.started else 0.0)


def table(states: list[CellState], title: str = "sweep", limit: int | None = None) -> Table:
    t = Table(title=f"{title}: {counts_line(states)}", title_justify="left")
    for col, just in (
        ("cell", "left"),
        ("status", "left"),
        ("steps", "right"),
        ("time", "right"),
        ("last error", "left"),
    ):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    rows = sorted(states, key=lambda s: (ORDER.index(s.status) if s.status in ORDER else 99, s.cell.name))
    shown = rows if limit is None else rows[:limit]
    for st in shown:
        style = STYLE.get(st.status, "")
        t.add_row(
            st.cell.name,
            f"[{style}]{st.status}[/]" if style else st.status,
            f"{st.steps}/{st.cell.n_steps}",
            fmt_seconds(_elapsed(st)) if _elapsed(st) else "-",
            st.error or "",
        )
    if limit is not None and len(rows) > limit:
        t.add_row(f"… {len(rows) - limit} more", "", "", "", "")
    return t


class Display:
    """``on_change`` of :func:`~elcl.sweep.scheduler.run_sweep`."""

    def __init__(self, console: Console | None = None, title: str = "sweep") -> None:
        self.console = console or Console(stderr=True)
        self.title = title
        self.seen: dict[str, str] = {}
        self.live: Live | None = None
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=2, transient=False)
            self.live.start()

    def __call__(self, result: SweepResult) -> None:
        states = list(result.states.values())
        if self.live is not None:
            self.live.update(table(states, self.title, limit=30))
            return
        for st in states:
            if self.seen.get(st.cell.name) != st.status:
                if st.cell.name in self.seen or st.status != "pending":
                    extra = f" ({fmt_seconds(_elapsed(st))})" if st.status not in ("running", "pending") else ""
                    err = f": {st.error}" if st.error and st.status == "failed" else ""
                    self.console.print(
                        f"{time.strftime('%H:%M:%S')} {st.cell.name} {st.status}{extra}{err}", highlight=False
                    )
                self.seen[st.cell.name] = st.status

    def close(self, result: SweepResult) -> None:
        # the live view (already stopped) showed the first rows; the whole table stays behind
        self.console.print(table(list(result.states.values()), self.title))


def states_on_disk(exp: Path) -> list[CellState]:
    """The cells a sweep wrote under ``exp/.sweep`` and how far their runs got, read back."""
    from elcl.continual.rundir import RunSpec
    from elcl.sweep.grid import Cell

    out = []
    for path in sorted(C.sweep_dir(exp).glob("*.cell.json")):
        doc = C.CellFile.model_validate_json(path.read_text(encoding="utf-8"))
        s = doc.spec
        cell = Cell(RunSpec(s.experiment, s.method, s.lam, s.seed, tuple(s.order), s.order_index), doc.config)
        st = CellState(cell)
        rec = C.read_record(exp, cell.name)
        state = C.run_state(exp / cell.name) or {}
        st.steps = int(state.get("steps_done", 0))
        st.seconds = rec.seconds if rec else 0.0
        if rec is not None and rec.status == "reused":
            st.status, st.steps = "reused", cell.n_steps
        elif state.get("status") == "done":
            nan = C.non_finite_metric(exp / cell.name)
            st.status, st.error = ("failed", nan) if nan else ("done", None)
        elif rec is not None:
            st.status, st.error = rec.status, rec.last_error
            if rec.status == "running" and not (exp / cell.name / ".lock").is_file():
                st.status = "interrupted"  # its sweep was killed
        out.append(st)
    return out
